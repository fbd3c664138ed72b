//! Turns token bytes into text for streaming: holds back incomplete UTF-8 characters and any tail that
//! could still become a stop string, and ends the text at the first stop string.

/// Text of one sequence, assembled token by token.
pub struct TextAssembler {
    /// The stop strings with their index in the request's list.
    stops: Vec<(u32, String)>,
    undecoded: Vec<u8>,
    held: String,
}

/// What one push produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Text safe to send now.
    pub text: String,
    /// The index (in the request's list) of the stop string found; `text` ends before it and nothing more
    /// may be sent.
    pub stopped: Option<u32>,
}

impl TextAssembler {
    /// An assembler that ends at any of `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        let stops = stops.iter().enumerate().filter(|(_, s)| !s.is_empty()).map(|(index, stop)| (index as u32, stop.clone())).collect();
        TextAssembler { stops, undecoded: Vec::new(), held: String::new() }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.undecoded.extend_from_slice(bytes);
        self.decode_complete();
        if let Some((position, index)) = self.stops.iter().filter_map(|(index, stop)| Some((self.held.find(stop.as_str())?, *index))).min()
        {
            self.held.truncate(position);
            return Pushed { text: std::mem::take(&mut self.held), stopped: Some(index) };
        }
        let keep = self.possible_stop_prefix();
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Pushed { text, stopped: None }
    }

    /// Whatever is still held, at the end of the generation (incomplete characters become U+FFFD).
    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.undecoded)));
        text
    }

    /// Moves the longest decodable prefix of `undecoded` into `held`; invalid bytes become U+FFFD.
    fn decode_complete(&mut self) {
        loop {
            match std::str::from_utf8(&self.undecoded) {
                Ok(text) => {
                    self.held.push_str(text);
                    self.undecoded.clear();
                    return;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    self.held.push_str(std::str::from_utf8(&self.undecoded[..valid]).expect("valid_up_to is valid"));
                    match error.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.undecoded.drain(..valid);
                            return;
                        }
                        Some(invalid) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.undecoded.drain(..valid + invalid);
                        }
                    }
                }
            }
        }
    }

    /// Length in bytes of the longest tail of `held` that is a proper prefix of some stop string.
    fn possible_stop_prefix(&self) -> usize {
        let mut longest = 0;
        for (_, stop) in &self.stops {
            for (start, _) in self.held.char_indices() {
                let tail = &self.held[start..];
                if tail.len() <= longest {
                    break;
                }
                if stop.len() > tail.len() && stop.starts_with(tail) {
                    longest = tail.len();
                    break;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut assembler = TextAssembler::new(&stops);
        let mut out = Vec::new();
        for piece in pieces {
            let pushed = assembler.push(piece);
            out.push(pushed.text);
            if pushed.stopped.is_some() {
                return (out, true, String::new());
            }
        }
        (out, false, assembler.finish())
    }

    #[test]
    fn split_utf8_characters_wait_for_their_last_byte() {
        let euro = "€".as_bytes();
        let (out, stopped, rest) = run(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(out, vec!["a", "", "€", "b"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn stop_strings_across_tokens_are_cut_and_never_sent() {
        let (out, stopped, _) = run(&["\n\n"], &[b"Paris.", b"\n", b"\nNext"]);
        assert_eq!(out, vec!["Paris.", "", ""]);
        assert!(stopped);
        let (out, stopped, _) = run(&["END"], &[b"a E", b"Nx", b"yz"]);
        assert_eq!(out, vec!["a ", "ENx", "yz"], "a false start is released");
        assert!(!stopped);
    }

    #[test]
    fn the_stop_string_found_first_is_named_by_its_index_in_the_request() {
        let stops: Vec<String> = ["", "zz", "b"].iter().map(|s| s.to_string()).collect();
        let mut assembler = TextAssembler::new(&stops);
        assert_eq!(assembler.push(b"a"), Pushed { text: "a".into(), stopped: None });
        assert_eq!(assembler.push(b"bzz"), Pushed { text: String::new(), stopped: Some(2) }, "'b' comes before 'zz'");
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        let (out, stopped, rest) = run(&["ab"], &[b"xa"]);
        assert_eq!(out, vec!["x"]);
        assert!(!stopped);
        assert_eq!(rest, "a");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _, _) = run(&[], &[b"a\xffb"]);
        assert_eq!(out, vec!["a\u{fffd}b"]);
    }
}
