//! `response_format`: OpenAI's structured outputs (`json_object`, `json_schema`), read into a
//! [`Constraint`] that the model's sampler enforces token by token.

use serde_json::Value;
use yunmo_service::ServiceError;
use yunmo_types::Constraint;

/// Longest accepted schema, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// The constraint `response_format` asks for (`None` for plain text).
pub fn response_format(format: Option<&Value>) -> Result<Option<Constraint>, ServiceError> {
    let Some(format) = format.filter(|format| !format.is_null()) else { return Ok(None) };
    let kind = format
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ServiceError::invalid("response_format.type must be one of \"text\", \"json_object\", \"json_schema\""))?;
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Constraint::JsonObject)),
        "json_schema" => {
            let spec = format
                .get("json_schema")
                .filter(|spec| spec.is_object())
                .ok_or_else(|| ServiceError::invalid("response_format.json_schema must be an object with a \"schema\""))?;
            if let Some(name) = spec.get("name")
                && !name.as_str().is_some_and(valid_name)
            {
                return Err(ServiceError::invalid(format!(
                    "response_format.json_schema.name must be 1 to 64 letters, digits, '_' or '-', got {name}"
                )));
            }
            let schema = spec.get("schema").cloned().unwrap_or_else(|| Value::Object(Default::default()));
            if !schema.is_object() {
                return Err(ServiceError::invalid("response_format.json_schema.schema must be a JSON schema object"));
            }
            let size = schema.to_string().len();
            if size > MAX_SCHEMA_BYTES {
                return Err(ServiceError::invalid(format!(
                    "response_format.json_schema.schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are accepted"
                )));
            }
            Ok(Some(Constraint::JsonSchema(schema)))
        }
        other => Err(ServiceError::invalid(format!(
            "response_format.type must be one of \"text\", \"json_object\", \"json_schema\", got {other:?}"
        ))),
    }
}

use yunmo_text::tools::valid_name;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_are_read_and_bad_ones_name_the_field() {
        assert_eq!(response_format(None).unwrap(), None);
        assert_eq!(response_format(Some(&json!({"type": "text"}))).unwrap(), None);
        assert_eq!(response_format(Some(&json!({"type": "json_object"}))).unwrap(), Some(Constraint::JsonObject));
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let format = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}});
        assert_eq!(response_format(Some(&format)).unwrap(), Some(Constraint::JsonSchema(schema)));
        for (bad, field) in [
            (json!({"type": "yaml"}), "response_format.type"),
            (json!({}), "response_format.type"),
            (json!({"type": "json_schema"}), "response_format.json_schema"),
            (json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}), "response_format.json_schema.name"),
            (json!({"type": "json_schema", "json_schema": {"name": "a", "schema": []}}), "response_format.json_schema.schema"),
        ] {
            let error = response_format(Some(&bad)).unwrap_err();
            assert!(error.message.contains(field), "{bad}: {}", error.message);
        }
    }
}
