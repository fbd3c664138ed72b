//! Ollama's `options`, `format` and `think`, read into the OpenAI chat request fields the shared chat path
//! takes. Options that change sampling are mapped; options that tune Ollama's own runtime (threads, GPU
//! layers, batch, context size) are accepted and ignored, as Yunmo's server settings own them; options Yunmo
//! cannot honour are accepted only with the value that asks for nothing, else refused by name.

use serde_json::{Map, Value, json};
use yunmo_service::ServiceError;

/// Options mapped onto Yunmo's sampling: Ollama's name, the chat request's field.
const MAPPED: [(&str, &str); 7] = [
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("seed", "seed"),
    ("repeat_penalty", "repetition_penalty"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
];

/// Options of Ollama's runtime, which Yunmo's server settings decide instead.
const RUNTIME: [&str; 12] = [
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
    "vocab_only",
    "num_keep",
    "repeat_last_n",
];

/// Options accepted only with the value that turns them off.
const OFF: [(&str, f64); 6] =
    [("min_p", 0.0), ("typical_p", 1.0), ("tfs_z", 1.0), ("mirostat", 0.0), ("mirostat_tau", 5.0), ("mirostat_eta", 0.1)];

/// Writes the sampling fields of `options` into `request` (an OpenAI chat or completion request body).
pub(crate) fn apply(options: Option<Map<String, Value>>, request: &mut Map<String, Value>) -> Result<(), ServiceError> {
    for (name, value) in options.unwrap_or_default() {
        if value.is_null() {
            continue;
        }
        if let Some((_, field)) = MAPPED.iter().find(|(option, _)| *option == name) {
            request.insert(field.to_string(), value);
        } else if name == "num_predict" {
            match value.as_i64() {
                Some(n) if n > 0 => {
                    request.insert("max_tokens".into(), json!(n));
                }
                // -1: until the end of the context; -2: fill it. Both are Yunmo's default.
                Some(-1 | -2) => {}
                _ => return Err(ServiceError::invalid(format!("options.num_predict must be a positive integer, -1 or -2, got {value}"))),
            }
        } else if name == "stop" {
            request.insert("stop".into(), value);
        } else if RUNTIME.contains(&name.as_str()) {
        } else if let Some((_, off)) = OFF.iter().find(|(option, _)| *option == name) {
            if value.as_f64() != Some(*off) {
                return Err(ServiceError::invalid(format!(
                    "options.{name} is not supported (Yunmo samples with temperature, top_k, top_p, repeat_penalty and the OpenAI penalties); only {off} is accepted, got {value}"
                )));
            }
        } else if name == "penalize_newline" {
        } else {
            return Err(ServiceError::invalid(format!("options.{name} is not an option Yunmo knows")));
        }
    }
    Ok(())
}

/// Ollama's `format` (`"json"` or a JSON schema) as an OpenAI `response_format`.
pub(crate) fn response_format(format: Option<Value>) -> Result<Option<Value>, ServiceError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) if text == "json" => Ok(Some(json!({ "type": "json_object" }))),
        Some(Value::Object(schema)) => Ok(Some(json!({ "type": "json_schema", "json_schema": { "name": "format", "schema": schema } }))),
        Some(other) => Err(ServiceError::invalid(format!("format must be \"json\" or a JSON schema object, got {other}"))),
    }
}

/// Ollama's `think` (`true`, `false`, or a level) as the template's `enable_thinking`.
pub(crate) fn thinking(think: Option<Value>) -> Result<Option<Value>, ServiceError> {
    match think {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(on)) => Ok(Some(json!({ "enable_thinking": on }))),
        Some(Value::String(level)) if ["low", "medium", "high"].contains(&level.as_str()) => Ok(Some(json!({ "enable_thinking": true }))),
        Some(other) => Err(ServiceError::invalid(format!("think must be true, false, \"low\", \"medium\" or \"high\", got {other}"))),
    }
}

/// Ollama's `keep_alive` (a duration like `"5m"`, seconds, or 0): checked and otherwise left to Yunmo's
/// residency settings (`scheduler.idle_unload_seconds`, the memory budget), which apply to every API.
pub(crate) fn keep_alive(value: Option<&Value>) -> Result<(), ServiceError> {
    match value {
        None | Some(Value::Null | Value::Number(_)) => Ok(()),
        Some(Value::String(text)) => {
            // Go's durations: "5m", "1h30m", "-1", "300ms".
            let valid = text.chars().all(|c| c.is_ascii_digit() || ".-+hmsunµ".contains(c)) && text.chars().any(|c| c.is_ascii_digit());
            if text.is_empty() || valid {
                Ok(())
            } else {
                Err(ServiceError::invalid(format!("keep_alive must be a duration like \"5m\" or a number of seconds, got {text:?}")))
            }
        }
        Some(other) => Err(ServiceError::invalid(format!("keep_alive must be a duration or a number, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(options: Value) -> Result<Map<String, Value>, ServiceError> {
        let mut request = Map::new();
        apply(options.as_object().cloned(), &mut request).map(|()| request)
    }

    #[test]
    fn options_map_onto_sampling_and_others_are_named() {
        let request = applied(
            json!({"num_predict": 8, "temperature": 0, "top_k": 40, "repeat_penalty": 1.1, "stop": ["\n"], "num_ctx": 4096, "min_p": 0.0}),
        )
        .unwrap();
        assert_eq!(request["max_tokens"], 8);
        assert_eq!(request["repetition_penalty"], 1.1);
        assert_eq!(request["top_k"], 40);
        assert!(!request.contains_key("num_ctx"));
        assert!(!applied(json!({"num_predict": -1})).unwrap().contains_key("max_tokens"));
        for (options, message) in [
            (json!({"num_predict": 0}), "options.num_predict must be"),
            (json!({"min_p": 0.05}), "options.min_p is not supported"),
            (json!({"flash": 1}), "options.flash is not an option"),
        ] {
            assert!(applied(options).unwrap_err().message.contains(message), "{message}");
        }
        assert_eq!(response_format(Some(json!("json"))).unwrap(), Some(json!({"type": "json_object"})));
        assert!(response_format(Some(json!(3))).is_err());
        assert_eq!(thinking(Some(json!(false))).unwrap(), Some(json!({"enable_thinking": false})));
        assert!(
            keep_alive(Some(&json!("5m"))).is_ok()
                && keep_alive(Some(&json!("1h30m"))).is_ok()
                && keep_alive(Some(&json!("-1"))).is_ok()
                && keep_alive(Some(&json!("soon"))).is_err()
        );
    }
}
