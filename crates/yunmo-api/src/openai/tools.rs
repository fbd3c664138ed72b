//! Tool calling on `/v1/chat/completions`: `tools`, `tool_choice` and `parallel_tool_calls` read into a
//! [`ToolPlan`]; the grammar that guarantees a valid call where one is required or the model's template
//! does not teach calls; and the calls read back from the answer, whole or streamed, in OpenAI's shape.
//! A call whose function is not offered or whose arguments do not validate is never returned as a call:
//! the answer is then text.

use std::sync::Arc;

use serde_json::{Value, json};
use yunmo_service::{ServiceError, ToolFormat};
use yunmo_text::tool_calls::{self, Family, Piece, ToolCall};
use yunmo_text::tools::{Choice, Tools};
use yunmo_types::Constraint;

/// What a request asks of tools.
pub struct ToolPlan {
    /// The tools, when any are offered and `tool_choice` is not `none`.
    pub tools: Option<Arc<Tools>>,
    /// `tool_choice`.
    pub choice: Choice,
    /// `parallel_tool_calls`.
    pub parallel: bool,
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`.
pub fn plan(tools: Option<Vec<Value>>, tool_choice: Option<&Value>, parallel: Option<bool>) -> Result<ToolPlan, ServiceError> {
    let tools = Tools::new(tools.unwrap_or_default()).map_err(ServiceError::invalid)?;
    let choice = match tool_choice {
        None | Some(Value::Null) if tools.is_empty() => Choice::None,
        None | Some(Value::Null) => Choice::Auto,
        Some(Value::String(text)) => match text.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            other => {
                return Err(ServiceError::invalid(format!("tool_choice must be none, auto, required or a function, got '{other}'")));
            }
        },
        Some(Value::Object(object)) => {
            let name = object.get("function").and_then(|function| function.get("name")).and_then(Value::as_str);
            match (object.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => Choice::Named(name.to_string()),
                _ => {
                    return Err(ServiceError::invalid(
                        "tool_choice as an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    ));
                }
            }
        }
        Some(other) => return Err(ServiceError::invalid(format!("tool_choice must be a string or an object, got {other}"))),
    };
    match &choice {
        Choice::Required if tools.is_empty() => return Err(ServiceError::invalid("tool_choice 'required' needs tools")),
        Choice::Named(name) if !tools.has(name) => {
            return Err(ServiceError::invalid(format!("tool_choice names function '{name}', which is not in tools")));
        }
        _ => {}
    }
    let offered = !tools.is_empty() && choice != Choice::None;
    Ok(ToolPlan { tools: offered.then(|| Arc::new(tools)), choice, parallel: parallel.unwrap_or(true) })
}

impl ToolPlan {
    /// The grammar the answer must follow, for a prompt whose calls come in `format`: where a call is
    /// required or named, and where the model's template does not teach calls (then text stays allowed
    /// under `auto`). `None` when the model writes freely (its template offers the tools, `auto`).
    pub fn constraint(&self, format: ToolFormat) -> Option<Constraint> {
        let tools = self.tools.as_ref()?;
        let forced = matches!(self.choice, Choice::Required | Choice::Named(_));
        (forced || !format.native).then(|| Constraint::Lark(tools.grammar(format.family, &self.choice, self.parallel, !forced)))
    }

    /// How the answer's calls are read, for a prompt whose calls come in `format`.
    pub fn output(&self, format: Option<ToolFormat>) -> Option<ToolOutput> {
        let (tools, format) = (self.tools.clone()?, format?);
        Some(ToolOutput { tools, family: format.family, parallel: self.parallel })
    }
}

/// Reads calls out of answers.
pub struct ToolOutput {
    tools: Arc<Tools>,
    family: Family,
    parallel: bool,
}

impl ToolOutput {
    fn accept(&self) -> impl Fn(&[ToolCall]) -> bool + '_ {
        |calls| calls.iter().all(|call| self.tools.accepts(call))
    }

    /// A whole answer's text and calls (one at most without `parallel_tool_calls`).
    pub fn parse(&self, text: &str) -> (String, Vec<ToolCall>) {
        let mut parsed = tool_calls::parse_accepted(self.family, text, self.accept());
        if !self.parallel {
            parsed.calls.truncate(1);
        }
        (parsed.content, parsed.calls)
    }

    /// A stream reader for one choice.
    pub fn stream(&self) -> tool_calls::Stream {
        tool_calls::Stream::new(self.family)
    }

    /// The end of a streamed choice: what the reader held.
    pub fn finish(&self, stream: &mut tool_calls::Stream) -> Vec<Piece> {
        let mut pieces = stream.finish_accepted(self.accept());
        if !self.parallel
            && let Some(second) = pieces.iter().enumerate().filter(|(_, piece)| matches!(piece, Piece::Call(_))).nth(1).map(|(at, _)| at)
        {
            pieces.truncate(second);
        }
        pieces
    }
}

/// OpenAI's `tool_calls` entries for `calls`, numbered from `first` (streamed deltas carry `index`).
pub fn calls_json(calls: &[ToolCall], first: usize, streamed: bool) -> Value {
    let entries: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(offset, call)| {
            let mut entry = json!({
                "id": format!("call_{:016x}", super::run::random_seed()),
                "type": "function",
                "function": { "name": call.name, "arguments": call.arguments },
            });
            if streamed {
                entry["index"] = json!(first + offset);
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    #[test]
    fn choices_are_read_and_checked() {
        let plan_of = |choice: Value| plan(Some(vec![weather()]), Some(&choice), None);
        assert_eq!(plan_of(json!("required")).unwrap().choice, Choice::Required);
        assert_eq!(
            plan_of(json!({"type": "function", "function": {"name": "get_weather"}})).unwrap().choice,
            Choice::Named("get_weather".into())
        );
        assert!(plan_of(json!("none")).unwrap().tools.is_none(), "none: nothing offered");
        assert_eq!(plan(Some(vec![weather()]), None, None).unwrap().choice, Choice::Auto);
        assert_eq!(plan(None, None, None).unwrap().choice, Choice::None);
        for (choice, expected) in [
            (json!("any"), "tool_choice must be none, auto, required or a function, got 'any'"),
            (json!({"type": "function", "function": {"name": "get_time"}}), "names function 'get_time', which is not in tools"),
            (json!({"type": "function"}), "tool_choice as an object must be"),
            (json!(3), "tool_choice must be a string or an object"),
        ] {
            let error = plan_of(choice).err().unwrap();
            assert!(error.message.contains(expected), "{}", error.message);
        }
        assert!(plan(None, Some(&json!("required")), None).err().unwrap().message.contains("'required' needs tools"));
    }

    #[test]
    fn grammars_where_a_call_is_forced_or_the_template_has_no_tools() {
        let native = ToolFormat { family: Family::Hermes, native: true };
        let plain = ToolFormat { family: Family::Hermes, native: false };
        let auto = plan(Some(vec![weather()]), None, None).unwrap();
        assert!(auto.constraint(native).is_none(), "the model's own format, free");
        assert!(matches!(auto.constraint(plain), Some(Constraint::Lark(text)) if text.starts_with("start: calls | TEXT")));
        let required = plan(Some(vec![weather()]), Some(&json!("required")), Some(false)).unwrap();
        assert!(matches!(required.constraint(native), Some(Constraint::Lark(text)) if text.starts_with("start: calls\ncalls: call\n")));
    }

    #[test]
    fn only_valid_calls_come_back_and_one_without_parallel_calls() {
        let call =
            |city: &str| format!("<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"{city}\"}}}}\n</tool_call>");
        let format = Some(ToolFormat { family: Family::Hermes, native: true });
        let output = plan(Some(vec![weather()]), None, Some(false)).unwrap().output(format).unwrap();
        let (content, calls) = output.parse(&format!("{}\n{}", call("Paris"), call("Oslo")));
        assert_eq!((content.as_str(), calls.len()), ("", 1));
        let bad = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\": \"Paris\"}}\n</tool_call>";
        assert_eq!(output.parse(bad), (bad.to_string(), vec![]), "arguments that do not validate are text");
        let mut stream = output.stream();
        let mut pieces = stream.push(&format!("{}\n{}", call("Paris"), call("Oslo")));
        pieces.extend(output.finish(&mut stream));
        assert_eq!(pieces.len(), 1, "{pieces:?}");
        let entries = calls_json(&calls, 2, true);
        assert_eq!(entries[0]["index"], 2);
        assert_eq!(entries[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(entries[0]["id"].as_str().unwrap().starts_with("call_"));
    }
}
