//! Tools offered to a model: OpenAI's `tools` entries checked and compiled (each function's parameters
//! schema validates the arguments of a call), the prompt that describes them to a model whose chat template
//! does not, and the grammar that makes a model write a valid call.

use serde_json::{Value, json};

use crate::chat::{ChatMessage, write_json};
use crate::tool_calls::{Family, ToolCall};

/// Which calls the model may or must make (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// No calls: the tools are not shown to the model.
    None,
    /// The model decides.
    Auto,
    /// At least one call.
    Required,
    /// A call of this function.
    Named(String),
}

/// One function.
struct Tool {
    name: String,
    /// The parameters schema (`{"type": "object", "properties": {}}` when none was given).
    parameters: Value,
    validator: jsonschema::Validator,
}

/// The tools of a request, checked.
pub struct Tools {
    tools: Vec<Tool>,
    /// The entries as given, for the chat template.
    specs: Vec<Value>,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.iter().map(|tool| &tool.name)).finish()
    }
}

/// Whether `name` is a valid function or schema name for OpenAI: 1 to 64 letters, digits, `_` or `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Most calls in one answer that a grammar allows (with `parallel_tool_calls`).
pub const MAX_CALLS: usize = 8;

/// Most tools per request.
pub const MAX_TOOLS: usize = 128;

impl Tools {
    /// Checks `{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}`
    /// entries; an error names the field (`tools[1].function.name`) and what it must be.
    pub fn new(specs: Vec<Value>) -> Result<Tools, String> {
        if specs.len() > MAX_TOOLS {
            return Err(format!("tools may hold at most {MAX_TOOLS} functions, got {}", specs.len()));
        }
        let mut tools: Vec<Tool> = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let at = format!("tools[{index}]");
            if spec.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!("{at}.type must be 'function', got {}", spec.get("type").unwrap_or(&Value::Null)));
            }
            let function = spec.get("function").and_then(Value::as_object).ok_or_else(|| format!("{at}.function must be an object"))?;
            let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
            if !valid_name(name) {
                return Err(format!("{at}.function.name must be 1 to 64 letters, digits, '_' or '-', got {name:?}"));
            }
            if tools.iter().any(|tool| tool.name == name) {
                return Err(format!("{at}.function.name: '{name}' is given twice"));
            }
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(other) => return Err(format!("{at}.function.parameters must be a JSON schema object, got {other}")),
            };
            let validator = jsonschema::validator_for(&parameters)
                .map_err(|error| format!("{at}.function.parameters is not a valid JSON schema: {error}"))?;
            tools.push(Tool { name: name.to_string(), parameters, validator });
        }
        Ok(Tools { tools, specs })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Whether a function of this name is offered.
    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|tool| tool.name == name)
    }

    /// The entries as given (the chat template's `tools`).
    pub fn specs(&self) -> &[Value] {
        &self.specs
    }

    /// Whether `call` names an offered function and its arguments validate against its schema.
    pub fn accepts(&self, call: &ToolCall) -> bool {
        let Some(tool) = self.tools.iter().find(|tool| tool.name == call.name) else {
            return false;
        };
        serde_json::from_str::<Value>(&call.arguments).is_ok_and(|arguments| tool.validator.is_valid(&arguments))
    }

    /// The system text that offers the tools to a model whose template does not (the Hermes format, which
    /// Qwen 2.5's template writes).
    pub fn system_prompt(&self) -> String {
        let mut text = String::from(
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
        );
        for spec in &self.specs {
            text.push('\n');
            write_json(spec, None, 0, &mut text);
        }
        text.push_str(
            "\n</tools>\n\nFor each function call, return a json object with function name and arguments within \
             <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
        );
        text
    }

    /// A Lark grammar (llguidance's dialect) for the answer: calls in `family`'s format, each call's JSON
    /// constrained by its function's schema. `choice` `Named` allows that function only; `free_text`
    /// also allows an answer that is text (one that does not start with `<`); `parallel` allows several calls
    /// (up to [`MAX_CALLS`]).
    pub fn grammar(&self, family: Family, choice: &Choice, parallel: bool, free_text: bool) -> String {
        let (arguments_key, open, separator, close) = match family {
            Family::Hermes => ("arguments", "<tool_call>\\n", "\\n", "\\n</tool_call>"),
            Family::Llama3 => ("parameters", "", "; ", ""),
            Family::Mistral => ("arguments", "", ", ", ""),
        };
        let chosen: Vec<&Tool> = self.tools.iter().filter(|tool| !matches!(choice, Choice::Named(name) if *name != tool.name)).collect();
        let mut lark = String::new();
        let calls = if parallel { "call more_1" } else { "call" };
        let calls = match family {
            Family::Mistral => format!("\"[TOOL_CALLS][\" {calls} \"]\""),
            _ => calls.to_string(),
        };
        lark.push_str(&format!("start: {}\n", if free_text { "calls | TEXT" } else { "calls" }));
        lark.push_str(&format!("calls: {calls}\n"));
        if parallel {
            // At most MAX_CALLS calls, nested so that the grammar is unambiguous: a small model that repeats
            // itself must stop after the last.
            for more in 1..MAX_CALLS - 1 {
                lark.push_str(&format!("more_{more}: (\"{separator}\" call more_{})?\n", more + 1));
            }
            lark.push_str(&format!("more_{}: (\"{separator}\" call)?\n", MAX_CALLS - 1));
        }
        let names: Vec<String> = (0..chosen.len()).map(|index| format!("call_{index}")).collect();
        lark.push_str(&format!("call: {}\n", names.join(" | ")));
        for (rule, tool) in names.iter().zip(&chosen) {
            let schema = json!({
                "type": "object",
                "properties": { "name": { "const": tool.name }, arguments_key: tool.parameters },
                "required": ["name", arguments_key],
                "additionalProperties": false,
                "x-guidance": { "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " },
            });
            lark.push_str(&format!("{rule}: \"{open}\" %json {schema} \"{close}\"\n"));
        }
        if free_text {
            lark.push_str("TEXT: /[^<](?s:.)*/\n");
        }
        lark
    }
}

/// The conversation for a template that does not render tools: the tools offered in a system message,
/// assistant calls written as `<tool_call>` blocks in their text, and tool answers as user turns in
/// `<tool_response>` blocks (consecutive answers in one turn), as Qwen 2.5's template writes them.
pub fn without_tool_support(messages: Vec<ChatMessage>, tools: Option<&Tools>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(tools) = tools.filter(|tools| !tools.is_empty()) {
        match messages.first() {
            Some(first) if first.role == "system" || first.role == "developer" => {}
            _ => out.push(ChatMessage::new("system", tools.system_prompt())),
        }
    }
    for (index, message) in messages.into_iter().enumerate() {
        let mut message = message;
        if index == 0
            && matches!(message.role.as_str(), "system" | "developer")
            && let Some(tools) = tools.filter(|t| !t.is_empty())
        {
            message.content = format!("{}\n\n{}", message.content, tools.system_prompt());
        }
        if let Some(calls) = message.tool_calls.take() {
            for call in calls {
                let function = call.get("function").unwrap_or(&call);
                let written = json!({ "name": function.get("name"), "arguments": function.get("arguments") });
                let mut text = String::new();
                write_json(&written, None, 0, &mut text);
                if !message.content.is_empty() {
                    message.content.push('\n');
                }
                message.content.push_str(&format!("<tool_call>\n{text}\n</tool_call>"));
            }
        }
        if message.role == "tool" {
            let block = format!("<tool_response>\n{}\n</tool_response>", message.content);
            match out.last_mut() {
                Some(last) if last.role == "user" && last.content.ends_with("</tool_response>") => {
                    last.content.push('\n');
                    last.content.push_str(&block);
                }
                _ => out.push(ChatMessage::new("user", block)),
            }
            continue;
        }
        out.push(message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
                "required": ["city"], "additionalProperties": false}}})
    }

    #[test]
    fn bad_tools_are_named() {
        let cases = [
            (json!([{"type": "retrieval"}]), "tools[0].type must be 'function'"),
            (json!([{"type": "function"}]), "tools[0].function must be an object"),
            (json!([weather(), {"type": "function", "function": {"name": "bad name"}}]), "tools[1].function.name must be 1 to 64"),
            (json!([weather(), weather()]), "tools[1].function.name: 'get_weather' is given twice"),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}]),
                "tools[0].function.parameters is not a valid JSON schema",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
                "tools[0].function.parameters must be a JSON schema object",
            ),
        ];
        for (specs, expected) in cases {
            let error = Tools::new(serde_json::from_value(specs).unwrap()).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn calls_are_accepted_only_when_they_validate() {
        let tools = Tools::new(vec![weather()]).unwrap();
        let call = |name: &str, arguments: &str| ToolCall { name: name.into(), arguments: arguments.into() };
        assert!(tools.accepts(&call("get_weather", r#"{"city":"Paris","days":2}"#)));
        assert!(!tools.accepts(&call("get_weather", r#"{"city":"Paris","days":0}"#)), "below the minimum");
        assert!(!tools.accepts(&call("get_weather", r#"{"town":"Paris"}"#)), "missing required, extra key");
        assert!(!tools.accepts(&call("get_time", r#"{}"#)), "not offered");
    }

    #[test]
    fn grammars_per_family_and_choice() {
        let tools = Tools::new(vec![weather(), json!({"type": "function", "function": {"name": "get_time"}})]).unwrap();
        let hermes = tools.grammar(Family::Hermes, &Choice::Required, true, false);
        assert!(hermes.starts_with("start: calls\ncalls: call more_1\nmore_1: (\"\\n\" call more_2)?\n"), "{hermes}");
        assert!(hermes.contains("more_7: (\"\\n\" call)?\ncall: call_0 | call_1\n"), "{hermes}");
        assert!(
            hermes.contains("call_0: \"<tool_call>\\n\" %json {\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"}"),
            "{hermes}"
        );
        let named = tools.grammar(Family::Llama3, &Choice::Named("get_time".into()), false, false);
        assert!(named.contains("call: call_0\n") && named.contains("\"get_time\"") && !named.contains("get_weather"), "{named}");
        assert!(named.contains("\"parameters\""), "{named}");
        let auto = tools.grammar(Family::Hermes, &Choice::Auto, true, true);
        assert!(auto.starts_with("start: calls | TEXT\n") && auto.ends_with("TEXT: /[^<](?s:.)*/\n"), "{auto}");
        let mistral = tools.grammar(Family::Mistral, &Choice::Auto, true, false);
        assert!(mistral.contains("calls: \"[TOOL_CALLS][\" call more_1 \"]\"\nmore_1: (\", \" call more_2)?"), "{mistral}");
    }

    #[test]
    fn conversations_for_templates_without_tools() {
        let tools = Tools::new(vec![weather()]).unwrap();
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls =
            Some(vec![json!({"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}})]);
        let messages =
            vec![ChatMessage::new("user", "Weather?"), call, ChatMessage::new("tool", "22 C"), ChatMessage::new("tool", "sunny")];
        let out = without_tool_support(messages.clone(), Some(&tools));
        assert_eq!(out[0].role, "system");
        assert!(
            out[0].content.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""),
            "{}",
            out[0].content
        );
        assert_eq!(out[2].content, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
        assert_eq!(out[3], ChatMessage::new("user", "<tool_response>\n22 C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"));
        assert_eq!(out.len(), 4);
        let with_system = [vec![ChatMessage::new("system", "Be brief.")], messages].concat();
        let out = without_tool_support(with_system, Some(&tools));
        assert!(out[0].content.starts_with("Be brief.\n\n# Tools"), "{}", out[0].content);
        assert_eq!(without_tool_support(vec![ChatMessage::new("user", "Hi")], None), vec![ChatMessage::new("user", "Hi")]);
    }
}
