//! A Responses request as the OpenAI chat request the shared chat path runs. The conversation is a list of
//! input items, each with an id (as stored and listed by `input_items`): messages (roles `user`, `system`,
//! `developer`, `assistant`; text parts), `function_call`s (an assistant's tool calls; consecutive ones,
//! and those right after an assistant message, are one assistant turn), `function_call_output`s (tool
//! messages) and `reasoning` items (earlier thinking: not part of the prompt, as the models' templates drop
//! it). `instructions` become the system message; function tools, `tool_choice`, `text.format` and
//! `reasoning.effort` take OpenAI chat's shapes.

use serde_json::{Map, Value, json};
use yunmo_registry::StoredResponse;
use yunmo_service::ServiceError;

use super::ResponsesRequest;
use crate::openai::run::random_seed;
use crate::openai::wire::ChatCompletionRequest;

fn invalid(message: String) -> ServiceError {
    ServiceError::invalid(message)
}

/// A new item id with `prefix` (`msg`, `fc`, `rs`, ...).
pub(crate) fn item_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}{:016x}", random_seed(), random_seed())
}

/// The whole conversation: the stored one `previous` answered (its input, then its output), then `input`.
pub(crate) fn conversation(previous: Option<&StoredResponse>, input: Option<&Value>) -> Result<Vec<Value>, ServiceError> {
    let mut items = Vec::new();
    if let Some(previous) = previous {
        match serde_json::from_str(&previous.input) {
            Ok(Value::Array(input)) => items.extend(input),
            _ => return Err(ServiceError::internal(format!("stored input of response '{}' is not a list", previous.id))),
        }
        let body = super::stored_body(&previous.id, &previous.body)?;
        if let Some(Value::Array(output)) = body.get("output") {
            items.extend(output.iter().cloned());
        }
    }
    match input {
        None | Some(Value::Null) if previous.is_none() => return Err(invalid("input: Field required".into())),
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => items.push(message("user", vec![json!({ "type": "input_text", "text": text })], None)),
        Some(Value::Array(list)) => {
            for (index, item) in list.iter().enumerate() {
                items.push(normalise(index, item)?);
            }
        }
        Some(other) => return Err(invalid(format!("input: must be a string or a list of input items, got {other}"))),
    }
    if items.is_empty() {
        return Err(invalid("input: at least one input item is required".into()));
    }
    Ok(items)
}

fn message(role: &str, content: Vec<Value>, id: Option<&Value>) -> Value {
    let id = id.and_then(Value::as_str).map_or_else(|| item_id("msg"), str::to_string);
    json!({ "type": "message", "id": id, "role": role, "content": content })
}

/// A string field an item needs.
fn required<'a>(item: &'a Value, field: &str, at: &str) -> Result<&'a str, ServiceError> {
    item.get(field).and_then(Value::as_str).ok_or_else(|| invalid(format!("{at}.{field}: Field required (a string)")))
}

/// One input item, with an id, in the shape stored.
fn normalise(index: usize, item: &Value) -> Result<Value, ServiceError> {
    let at = format!("input[{index}]");
    let kind = item.get("type").and_then(Value::as_str).unwrap_or(if item.get("role").is_some() { "message" } else { "" });
    match kind {
        "message" => {
            let role = required(item, "role", &at)?;
            if !matches!(role, "user" | "system" | "developer" | "assistant") {
                return Err(invalid(format!("{at}.role: must be 'user', 'system', 'developer' or 'assistant', got '{role}'")));
            }
            let default_part = if role == "assistant" { "output_text" } else { "input_text" };
            let content = match item.get("content") {
                Some(Value::String(text)) => vec![json!({ "type": default_part, "text": text })],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .enumerate()
                    .map(|(number, part)| text_part(part, &format!("{at}.content[{number}]")))
                    .collect::<Result<_, _>>()?,
                _ => return Err(invalid(format!("{at}.content: must be a string or a list of content parts"))),
            };
            Ok(message(role, content, item.get("id")))
        }
        "function_call" => {
            let (call_id, name, arguments) =
                (required(item, "call_id", &at)?, required(item, "name", &at)?, required(item, "arguments", &at)?);
            let id = item.get("id").and_then(Value::as_str).map_or_else(|| item_id("fc"), str::to_string);
            Ok(
                json!({ "type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": "completed" }),
            )
        }
        "function_call_output" => {
            let call_id = required(item, "call_id", &at)?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for (number, part) in parts.iter().enumerate() {
                        text.push_str(text_part(part, &format!("{at}.output[{number}]"))?["text"].as_str().unwrap_or(""));
                    }
                    text
                }
                _ => return Err(invalid(format!("{at}.output: Field required (a string or a list of text parts)"))),
            };
            let id = item.get("id").and_then(Value::as_str).map_or_else(|| item_id("fco"), str::to_string);
            Ok(json!({ "type": "function_call_output", "id": id, "call_id": call_id, "output": output }))
        }
        "reasoning" => {
            let mut item = item.clone();
            if item.get("id").and_then(Value::as_str).is_none() {
                item["id"] = json!(item_id("rs"));
            }
            Ok(item)
        }
        "item_reference" => Err(invalid(format!(
            "{at}: item references are not supported; send the items themselves, or continue a stored response with previous_response_id"
        ))),
        "" => Err(invalid(format!("{at}.type: Field required"))),
        other => Err(invalid(format!(
            "{at}.type: '{other}' is not supported (message, function_call, function_call_output and reasoning items are)"
        ))),
    }
}

/// A text content part, as stored: `{"type", "text"}`.
fn text_part(part: &Value, at: &str) -> Result<Value, ServiceError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" | "output_text" | "text" => Ok(json!({ "type": kind, "text": required(part, "text", at)? })),
        "refusal" => Ok(json!({ "type": "refusal", "refusal": required(part, "refusal", at)? })),
        "input_image" | "input_file" | "input_audio" => {
            Err(invalid(format!("{at}: part type '{kind}' is not supported (the models served take text)")))
        }
        other => Err(invalid(format!("{at}.type: must be 'input_text' or 'output_text', got '{other}'"))),
    }
}

/// The concatenated text of a stored message's parts (a refusal's included).
fn text_of(item: &Value) -> String {
    let text = |part: &Value| part["text"].as_str().or_else(|| part["refusal"].as_str()).map(str::to_string);
    item["content"].as_array().map(|parts| parts.iter().filter_map(text).collect()).unwrap_or_default()
}

/// The chat messages of `instructions` and the conversation.
fn chat_messages(instructions: Option<&str>, conversation: &[Value]) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = instructions.filter(|text| !text.is_empty()) {
        messages.push(json!({ "role": "system", "content": instructions }));
    }
    for item in conversation {
        match item["type"].as_str().unwrap_or("") {
            "message" => {
                let role = match item["role"].as_str().unwrap_or("user") {
                    "developer" => "system",
                    role => role,
                };
                messages.push(json!({ "role": role, "content": text_of(item) }));
            }
            "function_call" => {
                let call = json!({ "id": item["call_id"], "type": "function", "function": { "name": item["name"], "arguments": item["arguments"] } });
                match messages.last_mut().filter(|last| last["role"] == "assistant") {
                    Some(last) => match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => last["tool_calls"] = json!([call]),
                    },
                    None => messages.push(json!({ "role": "assistant", "content": "", "tool_calls": [call] })),
                }
            }
            "function_call_output" => {
                messages.push(json!({ "role": "tool", "tool_call_id": item["call_id"], "content": item["output"] }));
            }
            _ => {}
        }
    }
    messages
}

/// Responses' function tools (`{"type": "function", "name", "description", "parameters", "strict"}`) in
/// chat's shape.
fn tools_of(tools: &[Value]) -> Result<Vec<Value>, ServiceError> {
    tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") => {}
                Some(kind) => {
                    return Err(invalid(format!("tools[{index}].type: '{kind}' (a hosted tool) is not supported; give function tools")));
                }
                None => return Err(invalid(format!("tools[{index}].type: Field required"))),
            }
            let name = tool.get("name").cloned().ok_or_else(|| invalid(format!("tools[{index}].name: Field required")))?;
            let mut function =
                json!({ "name": name, "parameters": tool.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})) });
            for field in ["description", "strict"] {
                if let Some(value) = tool.get(field).filter(|value| !value.is_null()) {
                    function[field] = value.clone();
                }
            }
            Ok(json!({ "type": "function", "function": function }))
        })
        .collect()
}

/// Responses' `tool_choice` in chat's shape.
fn tool_choice_of(choice: &Value) -> Result<Value, ServiceError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(object) if object.get("type").and_then(Value::as_str) == Some("function") => {
            let name = object.get("name").and_then(Value::as_str).ok_or_else(|| invalid("tool_choice.name: Field required".into()))?;
            Ok(json!({ "type": "function", "function": { "name": name } }))
        }
        other => Err(invalid(format!(
            "tool_choice: must be 'auto', 'none', 'required' or {{\"type\": \"function\", \"name\": ...}}, got {other}"
        ))),
    }
}

/// `text.format` as chat's `response_format`.
fn response_format_of(text: &Value) -> Result<Option<Value>, ServiceError> {
    let Some(format) = text.get("format").filter(|format| !format.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(field).filter(|value| !value.is_null()) {
                    schema.insert(field.into(), value.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(invalid("text.format.schema: Field required".into()));
            }
            Ok(Some(json!({ "type": "json_schema", "json_schema": schema })))
        }
        _ => Err(invalid(format!("text.format.type: must be 'text', 'json_object' or 'json_schema', got {}", format["type"]))),
    }
}

/// The chat request of a Responses request over `conversation`.
pub(crate) fn chat_request(request: &ResponsesRequest, conversation: &[Value]) -> Result<ChatCompletionRequest, ServiceError> {
    let mut chat = Map::new();
    chat.insert("model".into(), json!(request.model));
    chat.insert("messages".into(), Value::Array(chat_messages(request.instructions.as_deref(), conversation)));
    if let Some(tools) = request.tools.as_ref().filter(|tools| !tools.is_empty()) {
        chat.insert("tools".into(), Value::Array(tools_of(tools)?));
        if let Some(parallel) = request.parallel_tool_calls {
            chat.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }
    // Also without tools: `required` or a named function then needs them (a 400), as in chat.
    if let Some(choice) = request.tool_choice.as_ref().filter(|choice| !choice.is_null()) {
        chat.insert("tool_choice".into(), tool_choice_of(choice)?);
    }
    if let Some(format) = request.text.as_ref().map(response_format_of).transpose()?.flatten() {
        chat.insert("response_format".into(), format);
    }
    match request.reasoning.as_ref().and_then(|reasoning| reasoning.get("effort")).and_then(Value::as_str) {
        None => {}
        Some("none") => {
            chat.insert("chat_template_kwargs".into(), json!({ "enable_thinking": false }));
        }
        Some("minimal" | "low" | "medium" | "high" | "xhigh") => {
            chat.insert("chat_template_kwargs".into(), json!({ "enable_thinking": true }));
        }
        Some(other) => {
            return Err(invalid(format!("reasoning.effort: must be none, minimal, low, medium, high or xhigh, got '{other}'")));
        }
    }
    for (field, value) in [
        ("max_tokens", request.max_output_tokens.map(|v| json!(v))),
        ("temperature", request.temperature.map(|v| json!(v))),
        ("top_p", request.top_p.map(|v| json!(v))),
    ] {
        if let Some(value) = value {
            chat.insert(field.into(), value);
        }
    }
    serde_json::from_value(Value::Object(chat)).map_err(|error| invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn items_become_chat_messages_and_bad_ones_are_named() {
        let input = json!([
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "}, {"type": "input_text", "text": "Paris?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call_output", "call_id": "call_1", "output": "22 C"},
        ]);
        let items = conversation(None, Some(&input)).unwrap();
        assert!(items.iter().all(|item| item["id"].is_string()), "every item has an id: {items:?}");
        let body = json!({"model": "m", "instructions": "You are terse.", "input": input, "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}], "tool_choice": {"type": "function", "name": "get_weather"}});
        let chat = chat_request(&request(body), &items).unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "system", "user", "assistant", "tool"]);
        assert_eq!(chat.messages[3].tool_calls.as_ref().map(Vec::len), Some(2), "both calls are the assistant's turn");
        assert_eq!(chat.messages[4].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(chat.tool_choice, Some(json!({"type": "function", "function": {"name": "get_weather"}})));
        for (input, message) in [
            (
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
                "input[0].content[0]: part type 'input_image'",
            ),
            (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
            (json!([{"type": "item_reference", "id": "msg_1"}]), "item references are not supported"),
            (json!([{"type": "function_call_output", "output": "x"}]), "input[0].call_id"),
            (json!([]), "at least one input item"),
            (json!(5), "must be a string or a list"),
        ] {
            let error = conversation(None, Some(&input)).unwrap_err();
            assert!(error.message.contains(message), "{} should say {message}", error.message);
        }
        let error = chat_request(&request(json!({"model": "m", "tools": [{"type": "web_search"}]})), &items).unwrap_err();
        assert!(error.message.contains("tools[0].type: 'web_search'"), "{}", error.message);
        let error = chat_request(&request(json!({"model": "m", "text": {"format": {"type": "xml"}}})), &items).unwrap_err();
        assert!(error.message.contains("text.format.type"), "{}", error.message);
    }

    #[test]
    fn a_previous_response_is_continued_with_its_output() {
        let previous = StoredResponse {
            id: "resp_1".into(),
            tenant: "t".into(),
            model: "m".into(),
            body: json!({"output": [{"type": "message", "id": "msg_out", "role": "assistant", "content": [{"type": "output_text", "text": "Hi Ada."}]}]}).to_string(),
            input: json!([{"type": "message", "id": "msg_in", "role": "user", "content": [{"type": "input_text", "text": "I am Ada."}]}]).to_string(),
            created_at: 0,
            expires_at: 1,
        };
        let items = conversation(Some(&previous), Some(&json!("What is my name?"))).unwrap();
        let ids: Vec<&str> = items.iter().map(|item| item["id"].as_str().unwrap()).collect();
        assert_eq!(&ids[..2], ["msg_in", "msg_out"]);
        assert_eq!(text_of(&items[2]), "What is my name?");
        assert!(conversation(Some(&previous), None).is_ok(), "input may be left out when continuing");
        assert!(conversation(None, None).unwrap_err().message.contains("input: Field required"));
    }
}
