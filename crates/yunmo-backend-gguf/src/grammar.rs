//! Structured outputs: grammars compiled by llguidance over the model's token trie, and the per-sequence
//! matcher that gives the sampler the tokens allowed next.
//!
//! The trie is built once per loaded model from llama.cpp's vocabulary: each token's bytes, and for
//! control tokens (empty as text) their name behind llguidance's special-token marker byte. Every
//! end-of-generation token ends a grammar that is complete. JSON is written with fixed separators (`, ` and
//! `: `) and no free whitespace, so a small model cannot wander into endless blank space.

use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory, TokenParser};
use serde_json::{Value, json};
use toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use yunmo_backend::{BackendError, Grammar};
use yunmo_types::Constraint;

/// How JSON is written under a schema, unless the schema says otherwise in its own `x-guidance`.
fn json_options() -> Value {
    json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " })
}

/// The grammar compiler of one loaded model.
pub(crate) struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    /// Builds the token trie of `model` (a walk over its vocabulary: tens of milliseconds).
    pub fn new(model: Arc<LlamaModel>) -> Result<Self, BackendError> {
        let env: TokEnv = Arc::new(LlamaTokens::new(model));
        let mut factory = ParserFactory::new_simple(&env).map_err(|error| BackendError::Runtime(format!("llguidance: {error}")))?;
        factory.quiet();
        Ok(Grammars { factory })
    }

    /// Compiles `constraint`; errors name what cannot be enforced.
    pub fn compile(&self, constraint: &Constraint) -> Result<Grammar, BackendError> {
        let grammar = match constraint {
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(with_options(json!({ "type": "object" }))),
            Constraint::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(BackendError::InvalidInput(format!("the JSON schema must be an object, got {}", kind(schema))));
                }
                TopLevelGrammar::from_json_schema(with_options(schema.clone()))
            }
            Constraint::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        };
        let parser = self.factory.create_parser(grammar).map_err(|error| BackendError::InvalidInput(clean(&error.to_string())))?;
        Ok(Grammar(Arc::new(parser)))
    }
}

/// The schema with Yunmo's JSON layout unless it has its own `x-guidance`.
fn with_options(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut()
        && !object.contains_key("x-guidance")
    {
        object.insert("x-guidance".into(), json_options());
    }
    schema
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// llguidance's message, on one line.
fn clean(message: &str) -> String {
    message.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ")
}

/// One sequence's position in its grammar.
pub(crate) struct Constrained {
    matcher: Matcher,
    /// The tokens allowed next, computed ahead (during the decode that produces the logits).
    mask: Option<SimpleVob>,
}

impl Constrained {
    /// A fresh matcher for a compiled grammar of this backend.
    pub fn start(grammar: &Grammar) -> Result<Self, BackendError> {
        let parser = grammar
            .0
            .downcast_ref::<TokenParser>()
            .ok_or_else(|| BackendError::InvalidInput("the grammar was compiled for another backend".into()))?;
        Ok(Constrained { matcher: Matcher::new(Ok(parser.deep_clone())), mask: None })
    }

    /// Computes the tokens allowed next, unless already computed.
    pub fn prepare(&mut self) {
        if self.mask.is_none() {
            self.mask = self.matcher.compute_mask_or_eos().ok();
        }
    }

    /// The allowed tokens (computing them now if [`Constrained::prepare`] did not); an error when the
    /// matcher failed.
    pub fn mask(&mut self) -> Result<&SimpleVob, BackendError> {
        self.prepare();
        match &self.mask {
            Some(mask) => Ok(mask),
            None => Err(BackendError::Inference(format!(
                "the output grammar failed: {}",
                self.matcher.get_error().unwrap_or_else(|| "no token is allowed".into())
            ))),
        }
    }

    /// Moves past `token`; returns whether the grammar is complete (nothing more may follow).
    pub fn accept(&mut self, token: u32) -> Result<bool, BackendError> {
        self.mask = None;
        if self.matcher.is_stopped() {
            return Ok(true);
        }
        self.matcher.consume_token(token).map_err(|error| BackendError::Inference(format!("the output grammar failed: {error}")))?;
        Ok(self.matcher.is_stopped())
    }
}

/// llama.cpp's vocabulary as llguidance sees it.
struct LlamaTokens {
    trie: TokTrie,
    model: Arc<LlamaModel>,
}

impl LlamaTokens {
    fn new(model: Arc<LlamaModel>) -> Self {
        let vocab = model.vocab();
        let n_vocab = model.n_vocab().max(0) as u32;
        let eot = vocab.eot().0;
        let eos = if eot >= 0 { eot as u32 } else { vocab.eos().0.max(0) as u32 };
        let mut end_tokens = vec![eos];
        let mut words = Vec::with_capacity(n_vocab as usize);
        for id in 0..n_vocab as i32 {
            let token = LlamaToken(id);
            if vocab.is_eog(token) && id as u32 != eos {
                end_tokens.push(id as u32);
            }
            let text = vocab.token_to_piece(token, false, None);
            if !text.is_empty() {
                words.push(text);
                continue;
            }
            let special = vocab.token_to_piece(token, true, None);
            words.push(if special.is_empty() { special } else { [&[TokTrie::SPECIAL_TOKEN_MARKER][..], &special].concat() });
        }
        let trie = TokTrie::from(&TokRxInfo::new(n_vocab, eos), &words).with_eos_tokens(&end_tokens);
        LlamaTokens { trie, model }
    }
}

impl TokenizerEnv for LlamaTokens {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<u32> {
        self.model.vocab().tokenize(bytes, false, false).into_iter().map(|token| token.0 as u32).collect()
    }

    fn tokenize_is_canonical(&self) -> bool {
        true
    }
}
