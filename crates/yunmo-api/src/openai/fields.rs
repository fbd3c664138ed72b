//! The one policy for OpenAI request fields Yunmo does not act on. A field that only asks for what happens
//! anyway (`store: false`, `function_call: "none"`, `user`, …) is accepted; any other value of
//! it is refused naming the field and what is accepted; a field of the API that Yunmo cannot honour is
//! refused as unsupported; a field outside the API is refused as OpenAI refuses it ("Unrecognized request
//! argument supplied").

use serde_json::Value;
use yunmo_service::ServiceError;

use super::wire::Extra;

/// Which route a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/v1/embeddings`.
    Embeddings,
    /// `/v1/tokenize`.
    Tokenize,
}

/// What a field may hold when Yunmo does not act on it.
enum Accepted {
    /// Anything (an identifier for the caller's own records, a cache hint): it changes no answer.
    Any,
    /// Only `null` or one of these values.
    OneOf(&'static [&'static str]),
    /// Only `null`, `false`, an empty list or an empty object.
    Empty,
}

fn rule(route: Route, field: &str) -> Option<Accepted> {
    use Accepted::*;
    let generates = matches!(route, Route::Chat | Route::Completions);
    Some(match field {
        "user" | "safety_identifier" => Any,
        "prompt_cache_key" if generates => Any,
        "store" | "metadata" if route == Route::Chat => Empty,
        "service_tier" if generates => OneOf(&["auto", "default"]),
        "function_call" if route == Route::Chat => OneOf(&["none", "auto"]),
        "functions" if route == Route::Chat => Empty,
        "modalities" if route == Route::Chat => OneOf(&["text"]),
        "best_of" if route == Route::Completions => OneOf(&["1"]),
        _ => return None,
    })
}

/// Fields of the API that Yunmo cannot honour, with why.
fn unsupported(route: Route, field: &str) -> Option<&'static str> {
    match (route, field) {
        (Route::Chat, "audio") => Some("this server generates text only"),
        (Route::Chat, "prediction") => Some("predicted outputs are not supported"),
        (Route::Chat, "reasoning_effort" | "verbosity") => Some("these models take no reasoning settings"),
        (Route::Chat, "web_search_options") => Some("this server does not search the web"),
        _ => None,
    }
}

fn accepts(accepted: &Accepted, value: &Value) -> bool {
    match (accepted, value) {
        (_, Value::Null) | (Accepted::Any, _) => true,
        (Accepted::Empty, Value::Bool(false)) => true,
        (Accepted::Empty, Value::Array(items)) => items.is_empty(),
        (Accepted::Empty, Value::Object(map)) => map.is_empty(),
        (Accepted::OneOf(options), Value::String(text)) => options.contains(&text.as_str()),
        (Accepted::OneOf(options), Value::Number(number)) => options.contains(&number.to_string().as_str()),
        (Accepted::OneOf(options), Value::Array(items)) => {
            items.iter().all(|item| item.as_str().is_some_and(|text| options.contains(&text)))
        }
        _ => false,
    }
}

/// Refuses the first field of `extra` that Yunmo would otherwise ignore.
pub fn check(route: Route, extra: &Extra) -> Result<(), ServiceError> {
    for (field, value) in extra {
        if let Some(reason) = unsupported(route, field) {
            return Err(ServiceError::invalid(format!("{field} is not supported: {reason}")));
        }
        match rule(route, field) {
            Some(accepted) if accepts(&accepted, value) => {}
            Some(Accepted::OneOf(options)) => {
                return Err(ServiceError::invalid(format!("{field}: only {} is supported, got {value}", options.join(" or "))));
            }
            Some(_) => {
                return Err(ServiceError::invalid(format!("{field}: only an empty or false value is supported, got {value}")));
            }
            None => return Err(ServiceError::invalid(format!("Unrecognized request argument supplied: {field}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extra(value: Value) -> Extra {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn no_op_values_pass_and_everything_else_is_named() {
        let fine = json!({"user": "u-1", "store": false, "metadata": {}, "function_call": "none",
            "service_tier": "auto", "modalities": ["text"], "functions": [], "prompt_cache_key": "k"});
        assert!(check(Route::Chat, &extra(fine)).is_ok());
        let cases = [
            (Route::Chat, json!({"store": true}), "store: only an empty or false value is supported"),
            (Route::Chat, json!({"function_call": {"name": "f"}}), "function_call: only none or auto is supported"),
            (Route::Chat, json!({"modalities": ["text", "audio"]}), "modalities: only text is supported"),
            (Route::Chat, json!({"audio": {"voice": "x"}}), "audio is not supported"),
            (Route::Chat, json!({"min_p": 0.1}), "Unrecognized request argument supplied: min_p"),
            (Route::Completions, json!({"best_of": 3}), "best_of: only 1 is supported, got 3"),
            (Route::Embeddings, json!({"store": false}), "Unrecognized request argument supplied: store"),
        ];
        for (route, value, expected) in cases {
            let error = check(route, &extra(value.clone())).unwrap_err();
            assert!(error.message.contains(expected), "{value}: {}", error.message);
        }
        assert!(check(Route::Completions, &extra(json!({"best_of": 1, "user": "x"}))).is_ok());
    }
}
