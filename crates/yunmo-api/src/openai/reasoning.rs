//! Reasoning output: models that think in `<think>...</think>` before answering get the thinking in
//! `reasoning_content` and only the answer in `content`, whole or streamed. The split is made as text
//! arrives, holding back only what could still be the start of a marker.

/// The markers of the thinking section.
pub const OPEN: &str = "<think>";
/// See [`OPEN`].
pub const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the text may still open with [`OPEN`].
    Start,
    /// Inside the thinking section.
    Thinking,
    /// Right after the thinking section: whitespace before the answer is dropped.
    AnswerStart,
    /// After it (or without one): the answer.
    Answer,
}

/// New text of each part.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Split {
    /// Thinking.
    pub reasoning: String,
    /// The answer.
    pub content: String,
}

/// Splits one answer's text into thinking and answer.
#[derive(Debug, Clone)]
pub struct Splitter {
    state: State,
    held: String,
}

impl Splitter {
    /// A splitter for an answer whose prompt already opened the thinking section (`inside`: the rendered
    /// prompt ends with [`OPEN`], as templates that force thinking write it) or not.
    pub fn new(inside: bool) -> Self {
        Splitter { state: if inside { State::Thinking } else { State::Start }, held: String::new() }
    }

    /// Takes the next piece of text.
    pub fn push(&mut self, text: &str) -> Split {
        self.held.push_str(text);
        let mut split = Split::default();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(trimmed) {
                        return split;
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking => match self.held.find(CLOSE) {
                    Some(at) => {
                        split.reasoning.push_str(&self.held[..at]);
                        self.held.drain(..at + CLOSE.len());
                        self.state = State::AnswerStart;
                    }
                    None => {
                        let keep = yunmo_text::tool_calls::partial_suffix(&self.held, CLOSE);
                        let cut = self.held.len() - keep;
                        split.reasoning.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return split;
                    }
                },
                State::AnswerStart => {
                    let trimmed = self.held.trim_start();
                    if trimmed.is_empty() {
                        self.held.clear();
                        return split;
                    }
                    self.held = trimmed.to_string();
                    self.state = State::Answer;
                }
                State::Answer => {
                    split.content.push_str(&std::mem::take(&mut self.held));
                    return split;
                }
            }
        }
    }

    /// The text still held back, at the end of the answer: thinking that never closed stays thinking.
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Thinking => Split { reasoning: held, content: String::new() },
            State::AnswerStart => Split::default(),
            State::Start | State::Answer => Split { reasoning: String::new(), content: held },
        }
    }
}

/// The whole split of `text`.
pub fn split(text: &str, inside: bool) -> Split {
    let mut splitter = Splitter::new(inside);
    let mut whole = splitter.push(text);
    let rest = splitter.finish();
    whole.reasoning.push_str(&rest.reasoning);
    whole.content.push_str(&rest.content);
    whole
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces cut at every position pair, and checks each gives `expected`.
    fn streamed_equals(text: &str, inside: bool, expected: (&str, &str)) {
        assert_eq!(split(text, inside), Split { reasoning: expected.0.into(), content: expected.1.into() }, "{text:?} whole");
        let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|&&b| b >= a) {
                let mut splitter = Splitter::new(inside);
                let mut whole = Split::default();
                for piece in [&text[..a], &text[a..b], &text[b..]] {
                    let part = splitter.push(piece);
                    whole.reasoning.push_str(&part.reasoning);
                    whole.content.push_str(&part.content);
                }
                let rest = splitter.finish();
                whole.reasoning.push_str(&rest.reasoning);
                whole.content.push_str(&rest.content);
                assert_eq!((whole.reasoning.as_str(), whole.content.as_str()), expected, "{text:?} cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn thinking_is_split_from_the_answer_at_every_cut() {
        streamed_equals(
            "<think>Paris is in France.</think>\n\nThe capital is Paris.",
            false,
            ("Paris is in France.", "The capital is Paris."),
        );
        streamed_equals("\n<think>a < b, so</think>b wins", false, ("a < b, so", "b wins"));
        streamed_equals("Paris est la capitale. <think> is text here", false, ("", "Paris est la capitale. <think> is text here"));
        streamed_equals("opened by the prompt: 2 × 3</think>6", true, ("opened by the prompt: 2 × 3", "6"));
        streamed_equals("<think>never closed </thi", false, ("never closed </thi", ""));
        streamed_equals("<thi", false, ("", "<thi"));
        streamed_equals("", false, ("", ""));
    }
}
