//! Tool calls in a model's output, per model family: what the chat templates of these families teach
//! their models to write, read back into names and JSON arguments. Text outside the calls is the answer.
//!
//! - Hermes / Qwen 2.5, Qwen 3: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one block
//!   per call; or, as small models write it (Qwen2.5-Coder-0.5B does), the answer is only such an object
//!   (or a list of them), bare or in a ```` ```json ```` block, which llama.cpp's Hermes parser reads too.
//! - Llama 3.1 to 3.3: `<|python_tag|>` then `{"name": ..., "parameters": {...}}` (several separated by
//!   `;`), or such a JSON object as the whole answer.
//! - Mistral: `[TOOL_CALLS]` then a JSON array of `{"name": ..., "arguments": {...}}`.
//!
//! Output that looks like a call but does not parse stays text: a caller never gets a call it cannot use.

use serde_json::Value;

/// The call formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `<tool_call>{...}</tool_call>`.
    Hermes,
    /// `<|python_tag|>{...}` or a bare `{"name", "parameters"}` object.
    Llama3,
    /// `[TOOL_CALLS][{...}, ...]`.
    Mistral,
}

impl Family {
    /// The family a chat template writes calls in, if any.
    pub fn of_template(template: &str) -> Option<Family> {
        if template.contains("<tool_call>") {
            Some(Family::Hermes)
        } else if template.contains("[TOOL_CALLS]") {
            Some(Family::Mistral)
        } else if template.contains("<|python_tag|>") || template.contains("ipython") {
            Some(Family::Llama3)
        } else {
            None
        }
    }

    /// The text that opens a call (for the stream's hold-back).
    fn opener(self) -> &'static str {
        match self {
            Family::Hermes => "<tool_call>",
            Family::Llama3 => "<|python_tag|>",
            Family::Mistral => "[TOOL_CALLS]",
        }
    }
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The function's name.
    pub name: String,
    /// Its arguments: a JSON object, as compact JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// A whole answer read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The text outside the calls, trimmed.
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ToolCall>,
}

/// Reads the calls out of a whole answer. When the calls' part does not parse, the whole text is content.
pub fn parse(family: Family, text: &str) -> Parsed {
    parse_accepted(family, text, |_| true)
}

/// [`parse`], keeping the calls only when `accept` takes them all (they name offered functions and their
/// arguments validate); otherwise the whole text is content.
pub fn parse_accepted(family: Family, text: &str, accept: impl Fn(&[ToolCall]) -> bool) -> Parsed {
    let parsed = match family {
        Family::Hermes => hermes(text),
        Family::Llama3 => llama3(text),
        Family::Mistral => mistral(text),
    };
    parsed.filter(|parsed| accept(&parsed.calls)).unwrap_or_else(|| Parsed { content: text.to_string(), calls: Vec::new() })
}

fn hermes(text: &str) -> Option<Parsed> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        content.push_str(&rest[..at]);
        let body = &rest[at + OPEN.len()..];
        // A last block cut off by the end of the answer (a model that stops at </tool_call> as a stop
        // string, or forgets it) still counts when its JSON is whole.
        let (json, after) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            None => (body, ""),
        };
        calls.push(call(&serde_json::from_str(json.trim()).ok()?, "arguments")?);
        rest = after;
    }
    content.push_str(rest);
    if calls.is_empty() {
        return bare(text, "arguments");
    }
    Some(Parsed { content: content.trim().to_string(), calls })
}

/// An answer that is only a call object or a list of them, bare or in a Markdown code block.
fn bare(text: &str, key: &str) -> Option<Parsed> {
    let mut body = text.trim();
    if let Some(fenced) = body.strip_prefix("```") {
        let (tag, inside) = fenced.split_once('\n')?;
        if !matches!(tag.trim(), "" | "json") {
            return None;
        }
        body = inside.trim_end().strip_suffix("```")?.trim();
    }
    let list = match serde_json::from_str::<Value>(body).ok()? {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return None,
    };
    let calls = list.iter().map(|item| call(item, key)).collect::<Option<Vec<_>>>()?;
    (!calls.is_empty()).then(|| Parsed { content: String::new(), calls })
}

/// Whether text that begins an answer begins a bare call (`{"name"`, `[{"name"`, possibly in a ```` ```json ````
/// block): `Some(true)` yes, `Some(false)` no, `None` not known yet.
fn bare_start(text: &str) -> Option<bool> {
    let mut rest = text.trim_start();
    if let Some(fenced) = rest.strip_prefix("```") {
        let Some((tag, inside)) = fenced.split_once('\n') else {
            return if "json".starts_with(fenced.trim_end()) { None } else { Some(false) };
        };
        if !matches!(tag.trim(), "" | "json") {
            return Some(false);
        }
        rest = inside.trim_start();
    } else if "```".starts_with(rest) {
        return None;
    }
    for expected in ["[", "{", "\"name\""] {
        if rest.is_empty() {
            return None;
        }
        match rest.strip_prefix(expected) {
            Some(after) => rest = after.trim_start(),
            None if expected == "[" => {}
            None if expected.starts_with(rest) => return None,
            None => return Some(false),
        }
    }
    Some(true)
}

fn llama3(text: &str) -> Option<Parsed> {
    const TAG: &str = "<|python_tag|>";
    let (content, body) = match text.find(TAG) {
        Some(at) => (&text[..at], &text[at + TAG.len()..]),
        None if text.trim_start().starts_with('{') => ("", text),
        None => return None,
    };
    let calls = body
        .split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| call(&serde_json::from_str(part.trim()).ok()?, "parameters"))
        .collect::<Option<Vec<_>>>()?;
    (!calls.is_empty()).then(|| Parsed { content: content.trim().to_string(), calls })
}

fn mistral(text: &str) -> Option<Parsed> {
    const TAG: &str = "[TOOL_CALLS]";
    let at = text.find(TAG)?;
    let body = text[at + TAG.len()..].trim();
    let list: Vec<Value> = match serde_json::from_str::<Value>(body).ok()? {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return None,
    };
    let calls = list.iter().map(|item| call(item, "arguments")).collect::<Option<Vec<_>>>()?;
    (!calls.is_empty()).then(|| Parsed { content: text[..at].trim().to_string(), calls })
}

/// `{"name": "...", "<arguments key>": {...}}` (the other family's key accepted too) as a call.
fn call(value: &Value, key: &str) -> Option<ToolCall> {
    let name = value.get("name")?.as_str()?.to_string();
    let other = if key == "arguments" { "parameters" } else { "arguments" };
    let arguments = match value.get(key).or_else(|| value.get(other)) {
        None => Value::Object(Default::default()),
        // Some models write the arguments as a JSON string.
        Some(Value::String(text)) => serde_json::from_str(text).ok()?,
        Some(arguments) => arguments.clone(),
    };
    arguments.is_object().then(|| ToolCall { name, arguments: arguments.to_string() })
}

/// What a stream emits as text arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Answer text.
    Content(String),
    /// A whole call.
    Call(ToolCall),
}

/// Reads calls out of a streamed answer: text before a call's opener streams as content (holding back
/// only what could begin the opener); from the opener on, the text is held and read as calls at the end.
/// A Llama 3 answer that starts with `{` is held whole, as it may be a bare call.
#[derive(Debug, Clone)]
pub struct Stream {
    family: Family,
    /// Text not yet emitted.
    held: String,
    /// Whether the calls' part has begun (everything from here is held to the end).
    calling: bool,
    /// Whether anything but whitespace was emitted.
    started: bool,
}

impl Stream {
    /// A stream for `family`.
    pub fn new(family: Family) -> Self {
        Stream { family, held: String::new(), calling: false, started: false }
    }

    /// Takes the next text.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.held.push_str(text);
        if self.calling {
            return Vec::new();
        }
        let opener = self.family.opener();
        if let Some(at) = self.held.find(opener) {
            self.calling = true;
            let before: String = self.held.drain(..at).collect();
            return self.content(before);
        }
        let bare = match self.family {
            _ if self.started => Some(false),
            Family::Llama3 => Some(self.held.trim_start().starts_with('{')),
            Family::Hermes => bare_start(&self.held),
            Family::Mistral => Some(false),
        };
        match bare {
            Some(true) => {
                self.calling = true;
                return Vec::new();
            }
            None => return Vec::new(),
            Some(false) => {}
        }
        let keep = partial_suffix(&self.held, opener);
        let ready: String = self.held.drain(..self.held.len() - keep).collect();
        if self.family == Family::Llama3 && !self.started && ready.trim().is_empty() {
            // Leading whitespace: a bare call may still follow.
            self.held.insert_str(0, &ready);
            return Vec::new();
        }
        self.content(ready)
    }

    fn content(&mut self, text: String) -> Vec<Piece> {
        if text.is_empty() {
            return Vec::new();
        }
        self.started |= !text.trim().is_empty();
        vec![Piece::Content(text)]
    }

    /// The end of the answer: the held calls (or, when they do not parse, the held text as content).
    pub fn finish(&mut self) -> Vec<Piece> {
        self.finish_accepted(|_| true)
    }

    /// [`Stream::finish`], keeping the calls only when `accept` takes them all (else the held text is content).
    pub fn finish_accepted(&mut self, accept: impl Fn(&[ToolCall]) -> bool) -> Vec<Piece> {
        let held = std::mem::take(&mut self.held);
        if !self.calling {
            return self.content(held);
        }
        let parsed = parse_accepted(self.family, &held, accept);
        let mut pieces = Vec::new();
        if !parsed.calls.is_empty() {
            // The calls' part began with the opener; text around the calls (rare) is content.
            if !parsed.content.is_empty() {
                pieces.push(Piece::Content(parsed.content));
            }
            pieces.extend(parsed.calls.into_iter().map(Piece::Call));
            return pieces;
        }
        self.content(held)
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `marker` (0 when none): what a
/// stream must hold back because it may still become `marker`.
pub fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| text.len() >= n && text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather(city: &str) -> ToolCall {
        ToolCall { name: "get_weather".into(), arguments: format!("{{\"city\":\"{city}\"}}") }
    }

    /// The stream of `text` cut into three pieces at every pair of positions gives `parse`'s answer.
    fn streams_like_whole(family: Family, text: &str) {
        let whole = parse(family, text);
        let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|&&b| b >= a) {
                let mut stream = Stream::new(family);
                let mut pieces = Vec::new();
                for piece in [&text[..a], &text[a..b], &text[b..]] {
                    pieces.extend(stream.push(piece));
                }
                pieces.extend(stream.finish());
                let content: String =
                    pieces.iter().filter_map(|p| if let Piece::Content(t) = p { Some(t.as_str()) } else { None }).collect();
                let calls: Vec<ToolCall> = pieces.into_iter().filter_map(|p| if let Piece::Call(c) = p { Some(c) } else { None }).collect();
                assert_eq!(calls, whole.calls, "{text:?} cut at {a}, {b}");
                assert_eq!(content.trim(), whole.content, "{text:?} cut at {a}, {b}");
            }
        }
    }

    #[test]
    fn hermes_calls_one_or_several_and_text_around() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        assert_eq!(parse(Family::Hermes, text), Parsed { content: "Let me look.".into(), calls: vec![weather("Paris"), weather("Oslo")] });
        streams_like_whole(Family::Hermes, text);
        let unclosed = "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}";
        assert_eq!(parse(Family::Hermes, unclosed).calls, vec![weather("Rome")], "arguments as a JSON string, no closing tag");
    }

    #[test]
    fn hermes_answers_that_are_only_a_call() {
        let fenced = "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"city\": \"Paris\"\n  }\n}\n```";
        assert_eq!(parse(Family::Hermes, fenced), Parsed { content: String::new(), calls: vec![weather("Paris")] });
        streams_like_whole(Family::Hermes, fenced);
        let listed = " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]";
        assert_eq!(parse(Family::Hermes, listed).calls, vec![weather("Paris"), weather("Oslo")]);
        streams_like_whole(Family::Hermes, listed);
        for text in ["```python\nprint('hi')\n```", "```\n{\"a\": 1}\n```", "{\"name\": \"x\"} and more", "[1, 2]", "{\"city\": \"Paris\"}"]
        {
            assert_eq!(parse(Family::Hermes, text).calls, vec![], "{text}");
            streams_like_whole(Family::Hermes, text);
        }
        assert_eq!(bare_start("``"), None);
        assert_eq!(bare_start("```py"), Some(false));
        assert_eq!(bare_start("```json\n  {  \"na"), None);
        assert_eq!(bare_start("Sure"), Some(false));
        assert_eq!(bare_start("{\"city\""), Some(false));
    }

    #[test]
    fn llama3_python_tag_bare_objects_and_several() {
        let tagged = "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}";
        assert_eq!(parse(Family::Llama3, tagged).calls, vec![weather("Paris"), weather("Oslo")]);
        streams_like_whole(Family::Llama3, tagged);
        let bare = "  {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
        assert_eq!(parse(Family::Llama3, bare), Parsed { content: String::new(), calls: vec![weather("Paris")] });
        streams_like_whole(Family::Llama3, bare);
        streams_like_whole(Family::Llama3, "{not json, so text}");
    }

    #[test]
    fn mistral_lists_and_plain_answers() {
        let text = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]";
        assert_eq!(parse(Family::Mistral, text).calls, vec![weather("Paris"), weather("Oslo")]);
        streams_like_whole(Family::Mistral, text);
        streams_like_whole(Family::Mistral, "The weather in [Paris] is fine.");
    }

    #[test]
    fn malformed_calls_stay_text() {
        for (family, text) in [
            (Family::Hermes, "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": </tool_call>"),
            (Family::Hermes, "<tool_call>{\"arguments\": {}}</tool_call>"),
            (Family::Hermes, "<tool_call>{\"name\": \"f\", \"arguments\": [1, 2]}</tool_call>"),
            (Family::Mistral, "[TOOL_CALLS] not a list"),
            (Family::Llama3, "<|python_tag|>print('hi')"),
        ] {
            assert_eq!(parse(family, text), Parsed { content: text.into(), calls: vec![] }, "{text}");
            streams_like_whole(family, text);
        }
    }

    #[test]
    fn calls_not_accepted_stay_text() {
        let text = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
        let refuse = |_: &[ToolCall]| false;
        assert_eq!(parse_accepted(Family::Hermes, text, refuse), Parsed { content: text.into(), calls: vec![] });
        let mut stream = Stream::new(Family::Hermes);
        let mut pieces = stream.push(text);
        pieces.extend(stream.finish_accepted(refuse));
        assert_eq!(pieces, vec![Piece::Content(text.into())]);
    }

    #[test]
    fn families_from_templates() {
        assert_eq!(Family::of_template("{{ '<tool_call>' }}"), Some(Family::Hermes));
        assert_eq!(Family::of_template("<|start_header_id|>ipython<|end_header_id|>"), Some(Family::Llama3));
        assert_eq!(Family::of_template("[TOOL_CALLS]"), Some(Family::Mistral));
        assert_eq!(Family::of_template("<|im_start|>"), None);
    }
}
