//! An Anthropic Messages request as the OpenAI chat request the shared chat path runs: `system` as a system
//! message, content blocks as text, `tool_use` blocks as an assistant's `tool_calls`, `tool_result` blocks as
//! `tool` messages (before the user's text, in their order), tools and `tool_choice` in OpenAI's shape,
//! `thinking` as the template's `enable_thinking`.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use yunmo_service::ServiceError;

use super::MessagesRequest;
use crate::openai::wire::ChatCompletionRequest;

/// One message: `content` a string or a list of blocks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageIn {
    role: String,
    content: Value,
}

fn invalid(message: String) -> ServiceError {
    ServiceError::invalid(message)
}

/// The text of a `system` or a `tool_result`'s `content`: a string or text blocks.
fn text_of(value: &Value, at: &str) -> Result<String, ServiceError> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (index, block) in blocks.iter().enumerate() {
                match (block.get("type").and_then(Value::as_str), block.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(part)) => text.push_str(part),
                    (kind, _) => {
                        return Err(invalid(format!(
                            "{at}[{index}]: block type {} is not supported here (text blocks only)",
                            kind.map_or("(none)".into(), |k| format!("'{k}'"))
                        )));
                    }
                }
            }
            Ok(text)
        }
        other => Err(invalid(format!("{at}: must be a string or a list of text blocks, got {other}"))),
    }
}

/// The OpenAI messages of one Anthropic message.
fn messages_of(index: usize, message: MessageIn, out: &mut Vec<Value>) -> Result<(), ServiceError> {
    let at = format!("messages.{index}.content");
    if !matches!(message.role.as_str(), "user" | "assistant") {
        return Err(invalid(format!("messages.{index}.role: must be 'user' or 'assistant', got '{}'", message.role)));
    }
    let blocks = match message.content {
        Value::String(text) => vec![json!({ "type": "text", "text": text })],
        Value::Array(blocks) => blocks,
        other => return Err(invalid(format!("{at}: must be a string or a list of blocks, got {other}"))),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (number, block) in blocks.into_iter().enumerate() {
        let at = format!("{at}.{number}");
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            // Earlier thinking is not part of the prompt (as the models' own templates drop it).
            "thinking" | "redacted_thinking" => {}
            "tool_use" if message.role == "assistant" => {
                let (Some(id), Some(name)) = (block.get("id").and_then(Value::as_str), block.get("name").and_then(Value::as_str)) else {
                    return Err(invalid(format!("{at}: a tool_use block needs 'id' and 'name'")));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({ "id": id, "type": "function", "function": { "name": name, "arguments": input.to_string() } }));
            }
            "tool_result" if message.role == "user" => {
                let id =
                    block.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| invalid(format!("{at}.tool_use_id: Field required")))?;
                let mut content = text_of(block.get("content").unwrap_or(&Value::Null), &format!("{at}.content"))?;
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    content = format!("Error: {content}");
                }
                out.push(json!({ "role": "tool", "tool_call_id": id, "content": content }));
            }
            kind @ ("image" | "document" | "search_result" | "server_tool_use" | "web_search_tool_result") => {
                return Err(invalid(format!("{at}: block type '{kind}' is not supported (the models served take text)")));
            }
            kind => return Err(invalid(format!("{at}: block type '{kind}' is not supported in a {} message", message.role))),
        }
    }
    if message.role == "assistant" {
        let mut assistant = json!({ "role": "assistant", "content": text });
        if !calls.is_empty() {
            assistant["tool_calls"] = Value::Array(calls);
        }
        out.push(assistant);
    } else if !text.is_empty() || !out.last().is_some_and(|last| last["role"] == "tool") {
        out.push(json!({ "role": "user", "content": text }));
    }
    Ok(())
}

/// Anthropic's tools (`name`, `description`, `input_schema`) in OpenAI's shape.
fn tools_of(tools: Vec<Value>) -> Result<Vec<Value>, ServiceError> {
    tools
        .into_iter()
        .enumerate()
        .map(|(index, tool)| {
            if let Some(kind) = tool.get("type").and_then(Value::as_str).filter(|kind| *kind != "custom") {
                return Err(invalid(format!(
                    "tools.{index}.type: '{kind}' (a server tool) is not supported; give custom tools with an input_schema"
                )));
            }
            let name = tool.get("name").cloned().ok_or_else(|| invalid(format!("tools.{index}.name: Field required")))?;
            let schema = tool.get("input_schema").cloned().ok_or_else(|| invalid(format!("tools.{index}.input_schema: Field required")))?;
            let mut function = json!({ "name": name, "parameters": schema });
            if let Some(description) = tool.get("description") {
                function["description"] = description.clone();
            }
            Ok(json!({ "type": "function", "function": function }))
        })
        .collect()
}

/// Anthropic's `tool_choice` as OpenAI's, and whether calls may be parallel.
fn tool_choice_of(choice: &Value) -> Result<(Value, bool), ServiceError> {
    let parallel = choice.get("disable_parallel_tool_use").and_then(Value::as_bool) != Some(true);
    let openai = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| invalid("tool_choice.name: Field required".into()))?;
            json!({ "type": "function", "function": { "name": name } })
        }
        _ => return Err(invalid(format!("tool_choice.type: must be 'auto', 'any', 'tool' or 'none', got {choice}"))),
    };
    Ok((openai, parallel))
}

/// The OpenAI chat request of a Messages request (`sampling`: with its sampling fields, for `/v1/messages`).
pub(crate) fn chat_request(request: MessagesRequest, sampling: bool) -> Result<ChatCompletionRequest, ServiceError> {
    let _ = (&request.metadata, &request.service_tier);
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            messages.push(json!({ "role": "system", "content": text }));
        }
    }
    if request.messages.is_empty() {
        return Err(invalid("messages: at least one message is required".into()));
    }
    for (index, message) in request.messages.into_iter().enumerate() {
        messages_of(index, message, &mut messages)?;
    }
    let mut chat = Map::new();
    chat.insert("model".into(), json!(request.model));
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = request.tools.filter(|tools| !tools.is_empty()) {
        chat.insert("tools".into(), Value::Array(tools_of(tools)?));
    }
    if let Some(choice) = request.tool_choice.filter(|choice| !choice.is_null()) {
        let (choice, parallel) = tool_choice_of(&choice)?;
        chat.insert("tool_choice".into(), choice);
        chat.insert("parallel_tool_calls".into(), json!(parallel));
    }
    match request.thinking.as_ref().and_then(|thinking| thinking.get("type")).and_then(Value::as_str) {
        None => {}
        Some("enabled" | "adaptive") => {
            chat.insert("chat_template_kwargs".into(), json!({ "enable_thinking": true }));
        }
        Some("disabled") => {
            chat.insert("chat_template_kwargs".into(), json!({ "enable_thinking": false }));
        }
        Some(other) => return Err(invalid(format!("thinking.type: must be 'enabled' or 'disabled', got '{other}'"))),
    }
    if sampling {
        chat.insert("max_tokens".into(), json!(request.max_tokens));
        for (field, value) in [
            ("temperature", request.temperature.map(|v| json!(v))),
            ("top_p", request.top_p.map(|v| json!(v))),
            ("top_k", request.top_k.map(|v| json!(v))),
        ] {
            if let Some(value) = value {
                chat.insert(field.into(), value);
            }
        }
        if let Some(stops) = request.stop_sequences.filter(|stops| !stops.is_empty()) {
            chat.insert("stop".into(), json!(stops));
        }
    }
    serde_json::from_value(Value::Object(chat)).map_err(|error| invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<ChatCompletionRequest, ServiceError> {
        chat_request(serde_json::from_value(body).unwrap(), true)
    }

    #[test]
    fn blocks_become_openai_messages_and_bad_ones_are_named() {
        let chat = request(json!({
            "model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "22 C"}]}]},
            ],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        }))
        .unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(chat.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(chat.parallel_tool_calls, Some(false));
        assert_eq!(chat.tool_choice, Some(json!({"type": "function", "function": {"name": "get_weather"}})));
        for (body, message) in [
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
                "block type 'image' is not supported",
            ),
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}), "messages.0.role"),
            (json!({"model": "m", "max_tokens": 5, "messages": []}), "at least one message"),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "sometimes"}}),
                "tool_choice.type",
            ),
        ] {
            let error = request(body).unwrap_err();
            assert!(error.message.contains(message), "{} should say {message}", error.message);
        }
    }
}
