//! Chat templates: a conversation rendered into a prompt with the model's own Jinja template, with the
//! variables and helpers Hugging Face templates expect (`messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`, `tools`, `raise_exception`, `strftime_now`, Python string methods, and a
//! `tojson` that writes JSON as Hugging Face's does: keys in their order, `, ` and `: `, nothing escaped
//! for HTML).

use minijinja::value::Kwargs;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::tool_calls::Family;

/// One message of a conversation, content already flattened to text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// An assistant's calls: `{"id", "type": "function", "function": {"name", "arguments": {...}}}`, the
    /// arguments as a JSON object (what templates write with `tojson`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A tool message's answer to this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool message's function name (or a participant's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None, name: None }
    }
}

/// A conversation to render: the messages, the tools offered (OpenAI's `tools` entries as given, for the
/// template's `tools` variable), and more template variables (`chat_template_kwargs`).
#[derive(Debug, Clone, Default)]
pub struct Chat {
    /// The messages.
    pub messages: Vec<ChatMessage>,
    /// `{"type": "function", "function": {...}}` entries; empty when no tools are offered.
    pub tools: Vec<serde_json::Value>,
    /// More variables; none may be one of [`RESERVED`].
    pub kwargs: serde_json::Map<String, serde_json::Value>,
}

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The template does not parse.
    #[error("the chat template is not valid Jinja: {0}")]
    Syntax(String),
    /// Rendering failed or the template raised an exception (it rejects this conversation).
    #[error("the chat template rejected the messages: {0}")]
    Render(String),
}

/// A parsed chat template.
pub struct ChatTemplate {
    environment: Environment<'static>,
    thinks: bool,
    tool_family: Option<Family>,
}

/// Variables every render sets; `chat_template_kwargs` may not set them.
pub const RESERVED: [&str; 5] = ["messages", "add_generation_prompt", "bos_token", "eos_token", "tools"];

/// The special tokens a template may refer to.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos_token: String,
    /// End of sequence.
    pub eos_token: String,
}

impl ChatTemplate {
    /// Parses `source`.
    pub fn new(source: &str) -> Result<Self, ChatTemplateError> {
        let mut environment = Environment::new();
        environment.set_trim_blocks(true);
        environment.set_lstrip_blocks(true);
        environment.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.add_function("raise_exception", |message: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        environment.add_function("strftime_now", strftime_now);
        environment.add_filter("tojson", tojson);
        environment.add_template_owned("chat", source.to_string()).map_err(|error| ChatTemplateError::Syntax(error.to_string()))?;
        Ok(ChatTemplate { environment, thinks: source.contains("</think>"), tool_family: Family::of_template(source) })
    }

    /// The format the template teaches its model to call tools in, when it renders tools at all.
    pub fn tool_family(&self) -> Option<Family> {
        self.tool_family
    }

    /// Whether the template writes `</think>`: the model thinks in `<think>...</think>` before answering.
    pub fn thinks(&self) -> bool {
        self.thinks
    }

    /// Renders `messages`, ending with the assistant's turn opened when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tokens: &SpecialTokens,
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        self.render_chat(&Chat { messages: messages.to_vec(), ..Chat::default() }, tokens, add_generation_prompt)
    }

    /// Renders a conversation with its tools (the `tools` variable, left undefined when there are none) and
    /// more variables (`chat_template_kwargs`, such as `enable_thinking`; none may be one of [`RESERVED`]).
    pub fn render_chat(&self, chat: &Chat, tokens: &SpecialTokens, add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        if let Some(name) = chat.kwargs.keys().find(|name| RESERVED.contains(&name.as_str())) {
            return Err(ChatTemplateError::Render(format!("chat_template_kwargs.{name} is set by the server and cannot be given")));
        }
        let template = self.environment.get_template("chat").expect("added in new");
        let tools = (!chat.tools.is_empty()).then(|| Value::from_serialize(&chat.tools));
        template
            .render(minijinja::context! {
                messages => Value::from_serialize(&chat.messages),
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => tokens.bos_token,
                eos_token => tokens.eos_token,
                ..Value::from_serialize(&chat.kwargs)
            })
            .map_err(|error| {
                let mut message = error.to_string();
                if let Some(detail) = error.detail() {
                    message = format!("{message}: {detail}");
                }
                ChatTemplateError::Render(message)
            })
    }
}

/// Hugging Face's `tojson` (`json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=False)`): keys in
/// their order, `, ` and `: ` between items (`,` and newlines with `indent`), no HTML escaping.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut json = serde_json::to_value(&value).map_err(|error| minijinja::Error::new(ErrorKind::InvalidOperation, error.to_string()))?;
    if sort_keys == Some(true) {
        json.sort_all_objects();
    }
    let mut out = String::new();
    write_json(&json, indent, 0, &mut out);
    if ensure_ascii == Some(true) {
        out = out.chars().map(|c| if c.is_ascii() { c.to_string() } else { ascii_escape(c) }).collect();
    }
    Ok(Value::from_safe_string(out))
}

/// `\uXXXX` (a surrogate pair above the BMP), as Python escapes non-ASCII characters.
fn ascii_escape(c: char) -> String {
    let mut units = [0u16; 2];
    c.encode_utf16(&mut units).iter().map(|unit| format!("\\u{unit:04x}")).collect()
}

/// Python's `json.dumps` layout of `value` at nesting `level`.
pub fn write_json(value: &serde_json::Value, indent: Option<usize>, level: usize, out: &mut String) {
    use serde_json::Value as Json;
    let (open, close, items): (char, char, Vec<(Option<&String>, &Json)>) = match value {
        Json::Array(items) => ('[', ']', items.iter().map(|item| (None, item)).collect()),
        Json::Object(map) => ('{', '}', map.iter().map(|(key, item)| (Some(key), item)).collect()),
        scalar => {
            out.push_str(&scalar.to_string());
            return;
        }
    };
    out.push(open);
    for (index, (key, item)) in items.iter().enumerate() {
        match indent {
            Some(width) => {
                out.push_str(if index == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(width * (level + 1)));
            }
            None if index > 0 => out.push_str(", "),
            None => {}
        }
        if let Some(key) = key {
            out.push_str(&serde_json::Value::String((*key).clone()).to_string());
            out.push_str(": ");
        }
        write_json(item, indent, level + 1, out);
    }
    if let (Some(width), false) = (indent, items.is_empty()) {
        out.push('\n');
        out.push_str(&" ".repeat(width * level));
    }
    out.push(close);
}

/// `strftime_now(format)` for templates that print today's date (Llama 3); supports %d %m %Y %b %B %y.
fn strftime_now(format: String) -> String {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    let name = MONTHS[(month - 1) as usize];
    format
        .replace("%d", &format!("{day:02}"))
        .replace("%m", &format!("{month:02}"))
        .replace("%Y", &year.to_string())
        .replace("%y", &format!("{:02}", year % 100))
        .replace("%B", name)
        .replace("%b", &name[..3])
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template, as stored in its GGUF file.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> ChatMessage {
        ChatMessage::new("user", text)
    }

    #[test]
    fn chatml_renders_like_transformers() {
        let template = ChatTemplate::new(CHATML).unwrap();
        let prompt = template.render(&[user("Hi")], &SpecialTokens::default(), true).unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let source = "{% if messages[0].role == 'tool' %}{{ raise_exception('tool first') }}{% endif %}{{ bos_token }}{{ messages[0].content.strip() | upper }}";
        let template = ChatTemplate::new(source).unwrap();
        let tokens = SpecialTokens { bos_token: "<s>".into(), eos_token: "</s>".into() };
        assert_eq!(template.render(&[user("  hi  ")], &tokens, false).unwrap(), "<s>HI");
        let error = template.render(&[ChatMessage::new("tool", "")], &tokens, false).unwrap_err();
        assert!(error.to_string().contains("tool first"), "{error}");
    }

    #[test]
    fn kwargs_reach_the_template_and_thinking_templates_are_known() {
        let source = "{{ messages[0].content }}{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is false %}<think>\n\n</think>{% else %}<think>\n{% endif %}{% endif %}";
        let template = ChatTemplate::new(source).unwrap();
        assert!(template.thinks() && !ChatTemplate::new(CHATML).unwrap().thinks());
        let tokens = SpecialTokens::default();
        assert_eq!(template.render(&[user("Hi")], &tokens, true).unwrap(), "Hi<|assistant|><think>\n");
        let chat =
            |kwargs: serde_json::Value| Chat { messages: vec![user("Hi")], tools: vec![], kwargs: kwargs.as_object().unwrap().clone() };
        let off = chat(serde_json::json!({ "enable_thinking": false }));
        assert_eq!(template.render_chat(&off, &tokens, true).unwrap(), "Hi<|assistant|><think>\n\n</think>");
        for name in ["messages", "tools"] {
            let error = template.render_chat(&chat(serde_json::json!({ name: [] })), &tokens, true).unwrap_err();
            assert!(error.to_string().contains(&format!("chat_template_kwargs.{name}")), "{error}");
        }
    }

    /// Qwen 2.5's tool part: tools and calls written with `tojson`, tool answers in `<tool_response>`.
    const QWEN_TOOLS: &str = "{%- if tools %}<tools>{%- for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{%- endfor %}{{ '\\n' }}</tools>{%- endif %}{%- for message in messages %}{%- if message.role == 'assistant' and message.tool_calls %}{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}<tool_call>\n{\"name\": \"{{ tool_call.name }}\", \"arguments\": {{ tool_call.arguments | tojson }}}\n</tool_call>{%- endfor %}{%- elif message.role == 'tool' %}<tool_response>{{ message.content }}</tool_response>{%- else %}{{ message.content }}{%- endif %}{%- endfor %}";

    #[test]
    fn tools_and_calls_render_as_hugging_face_writes_them() {
        let template = ChatTemplate::new(QWEN_TOOLS).unwrap();
        assert_eq!(template.tool_family(), Some(Family::Hermes));
        // Key order as given (not sorted), `, ` and `: `, `<`, `>`, `&` and non-ASCII as they are.
        let tool = serde_json::json!({"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 天气",
            "parameters": {"type": "object", "properties": {"zcity": {"type": "string"}, "aunit": {"enum": ["c", "f"]}}, "required": ["zcity"]}}});
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(vec![serde_json::json!({"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"zcity": "Paris", "n": 1.5}}})]);
        let mut answer = ChatMessage::new("tool", "22 C");
        answer.tool_call_id = Some("call_1".into());
        let chat = Chat { messages: vec![user("Weather?"), call, answer], tools: vec![tool], kwargs: Default::default() };
        let prompt = template.render_chat(&chat, &SpecialTokens::default(), false).unwrap();
        assert_eq!(
            prompt,
            "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather <now> & 天气\", \"parameters\": {\"type\": \"object\", \"properties\": {\"zcity\": {\"type\": \"string\"}, \"aunit\": {\"enum\": [\"c\", \"f\"]}}, \"required\": [\"zcity\"]}}}\n</tools>Weather?<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"zcity\": \"Paris\", \"n\": 1.5}}\n</tool_call><tool_response>22 C</tool_response>"
        );
        let no_tools = template.render_chat(&Chat { messages: vec![user("Hi")], ..Chat::default() }, &SpecialTokens::default(), false);
        assert_eq!(no_tools.unwrap(), "Hi", "no tools: the variable is undefined");
    }

    #[test]
    fn tojson_takes_python_arguments() {
        let template = ChatTemplate::new("{{ messages[0] | tojson(indent=2) }}|{{ {'b': 1, 'a': 'é'} | tojson(sort_keys=true, ensure_ascii=true) }}|{{ [] | tojson(indent=2) }}").unwrap();
        let prompt = template.render(&[user("x")], &SpecialTokens::default(), false).unwrap();
        assert_eq!(prompt, "{\n  \"role\": \"user\",\n  \"content\": \"x\"\n}|{\"a\": \"\\u00e9\", \"b\": 1}|[]");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(ChatTemplate::new("{% for %}"), Err(ChatTemplateError::Syntax(_))));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }
}
