//! Chat templates: a conversation rendered into a prompt with the model's own Jinja template, with the
//! variables and helpers Hugging Face templates expect (`messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`, `raise_exception`, `strftime_now`, Python string methods).

use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

/// One message of a conversation, content already flattened to text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
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
}

/// Variables every render sets; `chat_template_kwargs` may not set them.
pub const RESERVED: [&str; 4] = ["messages", "add_generation_prompt", "bos_token", "eos_token"];

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
        environment.add_template_owned("chat", source.to_string()).map_err(|error| ChatTemplateError::Syntax(error.to_string()))?;
        Ok(ChatTemplate { environment, thinks: source.contains("</think>") })
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
        self.render_with(messages, tokens, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`ChatTemplate::render`] with more variables for the template (`chat_template_kwargs`, such as
    /// `enable_thinking`); none may be one of [`RESERVED`].
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        tokens: &SpecialTokens,
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, ChatTemplateError> {
        if let Some(name) = kwargs.keys().find(|name| RESERVED.contains(&name.as_str())) {
            return Err(ChatTemplateError::Render(format!("chat_template_kwargs.{name} is set by the server and cannot be given")));
        }
        let template = self.environment.get_template("chat").expect("added in new");
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => tokens.bos_token,
                eos_token => tokens.eos_token,
                ..Value::from_serialize(kwargs)
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
        ChatMessage { role: "user".into(), content: text.into() }
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
        let error = template.render(&[ChatMessage { role: "tool".into(), content: String::new() }], &tokens, false).unwrap_err();
        assert!(error.to_string().contains("tool first"), "{error}");
    }

    #[test]
    fn kwargs_reach_the_template_and_thinking_templates_are_known() {
        let source = "{{ messages[0].content }}{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is false %}<think>\n\n</think>{% else %}<think>\n{% endif %}{% endif %}";
        let template = ChatTemplate::new(source).unwrap();
        assert!(template.thinks() && !ChatTemplate::new(CHATML).unwrap().thinks());
        let tokens = SpecialTokens::default();
        assert_eq!(template.render(&[user("Hi")], &tokens, true).unwrap(), "Hi<|assistant|><think>\n");
        let off = serde_json::json!({ "enable_thinking": false });
        assert_eq!(
            template.render_with(&[user("Hi")], &tokens, true, off.as_object().unwrap()).unwrap(),
            "Hi<|assistant|><think>\n\n</think>"
        );
        let reserved = serde_json::json!({ "messages": [] });
        let error = template.render_with(&[user("Hi")], &tokens, true, reserved.as_object().unwrap()).unwrap_err();
        assert!(error.to_string().contains("chat_template_kwargs.messages"), "{error}");
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
