//! The inference protocols' routes in the OpenAPI document: KServe V2 with Triton's extensions, KServe V1,
//! OpenAI's API (with the Responses API), Ollama's, Anthropic's and text-embeddings-inference's. Their
//! bodies are those protocols' own, documented by their specifications (each tag links its own); this
//! part of the document names every route, what it takes and answers, the fields a body needs, and the
//! error body each protocol uses. A test checks that every route the router declares is described.

use serde_json::{Map, Value, json};

/// One protocol: its tag, what it is, where its specification is, and its error body.
struct Protocol {
    tag: &'static str,
    description: &'static str,
    spec: &'static str,
    /// The name of its error body among the document's schemas ([`ERRORS`]).
    error: &'static str,
}

fn plain_error() -> Value {
    json!({ "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } })
}

fn openai_error() -> Value {
    json!({ "type": "object", "required": ["error"], "properties": { "error": { "type": "object", "required": ["message", "type"], "properties": {
        "message": { "type": "string" }, "type": { "type": "string" }, "param": { "type": ["string", "null"] }, "code": { "type": ["string", "null"] } } } } })
}

fn anthropic_error() -> Value {
    json!({ "type": "object", "required": ["type", "error"], "properties": { "type": { "const": "error" }, "error": { "type": "object",
        "required": ["type", "message"], "properties": { "type": { "type": "string" }, "message": { "type": "string" } } } } })
}

const V2: Protocol = Protocol {
    tag: "KServe V2",
    description: "The KServe V2 (Open Inference) protocol, with Triton's extensions (model repository, statistics, configuration, generate); also over gRPC (inference.GRPCInferenceService, with ModelStreamInfer and server reflection).",
    spec: "https://github.com/kserve/open-inference-protocol",
    error: "PlainError",
};
const V1: Protocol = Protocol {
    tag: "KServe V1",
    description: "KServe's V1 protocol: `instances` in, `predictions` out.",
    spec: "https://kserve.github.io/website/docs/concepts/architecture/data-plane/v1-protocol",
    error: "PlainError",
};
const OPENAI: Protocol = Protocol {
    tag: "OpenAI",
    description: "OpenAI's API: chat completions, completions, embeddings, models, the Responses API, and vLLM's /v1/tokenize (docs/llm.md).",
    spec: "https://platform.openai.com/docs/api-reference",
    error: "OpenAiError",
};
const OLLAMA: Protocol = Protocol {
    tag: "Ollama",
    description: "Ollama's API (docs/llm.md); streams are newline-delimited JSON.",
    spec: "https://github.com/ollama/ollama/blob/main/docs/api.md",
    error: "PlainError",
};
const ANTHROPIC: Protocol = Protocol {
    tag: "Anthropic",
    description: "Anthropic's Messages API; the key may come in x-api-key.",
    spec: "https://docs.anthropic.com/en/api/messages",
    error: "AnthropicError",
};
const TEI: Protocol = Protocol {
    tag: "TEI",
    description: "Hugging Face text-embeddings-inference's routes, over the embedding models.",
    spec: "https://huggingface.github.io/text-embeddings-inference/",
    error: "PlainError",
};
const SERVER: Protocol = Protocol {
    tag: "Server",
    description: "The server's own metrics.",
    spec: "https://prometheus.io/docs/instrumenting/exposition_formats/",
    error: "PlainError",
};

/// The protocols' error bodies, by schema name.
/// A function that makes a JSON schema.
type Schema = fn() -> Value;

const ERRORS: [(&str, Schema); 3] = [("PlainError", plain_error), ("OpenAiError", openai_error), ("AnthropicError", anthropic_error)];

const PROTOCOLS: [&Protocol; 7] = [&V2, &V1, &OPENAI, &OLLAMA, &ANTHROPIC, &TEI, &SERVER];

/// How an operation answers.
#[derive(Clone, Copy)]
enum Answer {
    Json,
    /// JSON, or Server-Sent Events when the body asks to stream.
    JsonOrEvents,
    /// Server-Sent Events.
    Events,
    /// JSON, or newline-delimited JSON when the body asks to stream (Ollama streams by default).
    JsonOrLines,
    /// Plain text.
    Text,
    /// Always 501: a route Yunmo does not offer, answered with where to go instead.
    Refused,
}

/// One route: method, path, protocol, what it does, the body's required fields (`None`: no body), and how
/// it answers.
type Operation = (&'static str, &'static str, &'static Protocol, &'static str, Option<&'static [&'static str]>, Answer);

const VERSION: &str = " of one version";

const OPERATIONS: &[Operation] = &[
    ("get", "/v2", &V2, "Server metadata: name, version, extensions.", None, Answer::Json),
    ("get", "/v2/health/live", &V2, "Liveness (open without a key).", None, Answer::Json),
    ("get", "/v2/health/ready", &V2, "Readiness (open without a key).", None, Answer::Json),
    ("get", "/v2/models/{name}", &V2, "Model metadata: versions, platform, inputs and outputs.", None, Answer::Json),
    ("get", "/v2/models/{name}/versions/{version}", &V2, "Model metadata", None, Answer::Json),
    ("get", "/v2/models/{name}/ready", &V2, "Whether the model is loaded and ready.", None, Answer::Json),
    ("get", "/v2/models/{name}/versions/{version}/ready", &V2, "Whether the version is loaded and ready.", None, Answer::Json),
    (
        "post",
        "/v2/models/{name}/infer",
        &V2,
        "Inference: named input tensors in, output tensors out (JSON, or binary tensor data).",
        Some(&["inputs"]),
        Answer::Json,
    ),
    ("post", "/v2/models/{name}/versions/{version}/infer", &V2, "Inference", Some(&["inputs"]), Answer::Json),
    (
        "get",
        "/v2/models/{name}/config",
        &V2,
        "Triton's model configuration: inputs, outputs, max_batch_size, dynamic batching, instance groups.",
        None,
        Answer::Json,
    ),
    ("get", "/v2/models/{name}/versions/{version}/config", &V2, "Triton's model configuration", None, Answer::Json),
    (
        "get",
        "/v2/models/stats",
        &V2,
        "Triton's statistics of every model the key can see: cumulative counts and durations.",
        None,
        Answer::Json,
    ),
    ("get", "/v2/models/{name}/stats", &V2, "Triton's statistics of the model's versions.", None, Answer::Json),
    ("get", "/v2/models/{name}/versions/{version}/stats", &V2, "Triton's statistics", None, Answer::Json),
    (
        "post",
        "/v2/models/{name}/generate",
        &V2,
        "Triton's generate extension: text_input in, text_output out.",
        Some(&["text_input"]),
        Answer::Json,
    ),
    ("post", "/v2/models/{name}/versions/{version}/generate", &V2, "Triton's generate extension", Some(&["text_input"]), Answer::Json),
    (
        "post",
        "/v2/models/{name}/generate_stream",
        &V2,
        "Triton's generate extension, streamed as Server-Sent Events.",
        Some(&["text_input"]),
        Answer::Events,
    ),
    (
        "post",
        "/v2/models/{name}/versions/{version}/generate_stream",
        &V2,
        "Triton's generate extension, streamed",
        Some(&["text_input"]),
        Answer::Events,
    ),
    ("post", "/v2/repository/index", &V2, "Triton's repository index: every model version and its state.", Some(&[]), Answer::Json),
    ("post", "/v2/repository/models/{name}/load", &V2, "Loads a model (Triton's repository extension).", Some(&[]), Answer::Json),
    ("post", "/v2/repository/models/{name}/unload", &V2, "Unloads a model (Triton's repository extension).", Some(&[]), Answer::Json),
    (
        "post",
        "/v1/models/{model}",
        &V1,
        "KServe V1 predict: the path is /v1/models/{name}:predict; `instances` (rows, or objects by input name) in, `predictions` out.",
        Some(&["instances"]),
        Answer::Json,
    ),
    ("get", "/v1/models", &OPENAI, "The models the key can see.", None, Answer::Json),
    (
        "get",
        "/v1/models/{model}",
        &OPENAI,
        "One model (also KServe V1's readiness: `name` and `ready`, 503 when not ready).",
        None,
        Answer::Json,
    ),
    (
        "post",
        "/v1/chat/completions",
        &OPENAI,
        "Chat completions: tools, structured output, reasoning, logprobs, n choices; `stream` for SSE.",
        Some(&["model", "messages"]),
        Answer::JsonOrEvents,
    ),
    ("post", "/v1/completions", &OPENAI, "Text completions.", Some(&["model", "prompt"]), Answer::JsonOrEvents),
    ("post", "/v1/embeddings", &OPENAI, "Embeddings of texts or token lists.", Some(&["model", "input"]), Answer::Json),
    (
        "post",
        "/v1/tokenize",
        &OPENAI,
        "vLLM's tokenize: a prompt or a conversation as the model tokenizes it.",
        Some(&["model"]),
        Answer::Json,
    ),
    (
        "post",
        "/v1/responses",
        &OPENAI,
        "The Responses API: input items (or a string), instructions, previous_response_id, function tools, text.format; stored for the tenant unless `store` is false; `stream` for its events.",
        Some(&["model"]),
        Answer::JsonOrEvents,
    ),
    ("get", "/v1/responses/{id}", &OPENAI, "A stored response of the caller's tenant.", None, Answer::Json),
    ("delete", "/v1/responses/{id}", &OPENAI, "Deletes a stored response of the caller's tenant.", None, Answer::Json),
    (
        "get",
        "/v1/responses/{id}/input_items",
        &OPENAI,
        "The conversation a stored response answered, a page at a time (limit, order, after).",
        None,
        Answer::Json,
    ),
    (
        "post",
        "/v1/rerank",
        &OPENAI,
        "Rerank (Cohere's, Jina's and vLLM's shape): `query` and `documents` in, the documents by relevance out (`top_n`, `return_documents`), on a cross-encoder (embedding.task = rerank).",
        Some(&["model", "query", "documents"]),
        Answer::Json,
    ),
    (
        "post",
        "/v2/rerank",
        &OPENAI,
        "Rerank as Cohere's v2 API (and its `cohere` SDK's ClientV2.rerank) sends it; the same as /v1/rerank.",
        Some(&["model", "query", "documents"]),
        Answer::Json,
    ),
    (
        "post",
        "/v1/score",
        &OPENAI,
        "vLLM's score: `text_1` against `text_2` (one against many, or pairwise), one relevance score per pair, on a cross-encoder.",
        Some(&["model", "text_1", "text_2"]),
        Answer::Json,
    ),
    (
        "post",
        "/v1/messages",
        &ANTHROPIC,
        "Messages: system, content blocks, tools and tool results, thinking; `stream` for Anthropic's events.",
        Some(&["model", "max_tokens", "messages"]),
        Answer::JsonOrEvents,
    ),
    (
        "post",
        "/v1/messages/count_tokens",
        &ANTHROPIC,
        "The input tokens of a Messages request.",
        Some(&["model", "messages"]),
        Answer::Json,
    ),
    ("get", "/", &OLLAMA, "Ollama's liveness answer: \"Ollama is running\" (also to HEAD).", None, Answer::Text),
    ("post", "/api/chat", &OLLAMA, "Chat; streams NDJSON unless `stream` is false.", Some(&["model"]), Answer::JsonOrLines),
    (
        "post",
        "/api/generate",
        &OLLAMA,
        "Generate from a prompt; streams NDJSON unless `stream` is false.",
        Some(&["model"]),
        Answer::JsonOrLines,
    ),
    ("post", "/api/embed", &OLLAMA, "Embeddings of one text or a list.", Some(&["model", "input"]), Answer::Json),
    ("post", "/api/embeddings", &OLLAMA, "Ollama's older embeddings route: one prompt.", Some(&["model", "prompt"]), Answer::Json),
    ("get", "/api/tags", &OLLAMA, "The models the key can see.", None, Answer::Json),
    ("post", "/api/show", &OLLAMA, "One model's details and template.", Some(&["model"]), Answer::Json),
    ("get", "/api/ps", &OLLAMA, "The loaded models.", None, Answer::Json),
    ("get", "/api/version", &OLLAMA, "The version Ollama's clients check.", None, Answer::Json),
    ("post", "/api/pull", &OLLAMA, "Not supported: answers 501 naming Yunmo's model API.", Some(&[]), Answer::Refused),
    ("post", "/api/push", &OLLAMA, "Not supported: answers 501 naming Yunmo's model API.", Some(&[]), Answer::Refused),
    ("post", "/api/create", &OLLAMA, "Not supported: answers 501 naming Yunmo's model API.", Some(&[]), Answer::Refused),
    ("post", "/api/copy", &OLLAMA, "Not supported: answers 501 naming Yunmo's model API.", Some(&[]), Answer::Refused),
    ("delete", "/api/delete", &OLLAMA, "Not supported: answers 501 naming Yunmo's model API.", Some(&[]), Answer::Refused),
    ("post", "/embed", &TEI, "Embeddings of `inputs` from the default embedding model (or `model`).", Some(&["inputs"]), Answer::Json),
    ("post", "/predict", &TEI, "Classification scores of `inputs`.", Some(&["inputs"]), Answer::Json),
    (
        "post",
        "/rerank",
        &TEI,
        "Texts ranked by the cosine similarity of their embeddings to `query`.",
        Some(&["query", "texts"]),
        Answer::Json,
    ),
    ("get", "/metrics", &SERVER, "Prometheus metrics (needs the `metrics` scope).", None, Answer::Text),
];

fn success(answer: Answer, streams: &str) -> Value {
    let json_body = json!({ "schema": { "type": "object" } });
    let events = json!({ "schema": { "type": "string", "description": "Server-Sent Events in the protocol's own event shapes" } });
    let lines = json!({ "schema": { "type": "string", "description": "One JSON object per line" } });
    let text = json!({ "schema": { "type": "string" } });
    let content = match answer {
        Answer::Json => json!({ "application/json": json_body }),
        Answer::JsonOrEvents => json!({ "application/json": json_body, "text/event-stream": events }),
        Answer::Events => json!({ "text/event-stream": events }),
        Answer::JsonOrLines => json!({ "application/json": json_body, "application/x-ndjson": lines }),
        Answer::Text => json!({ "text/plain": text }),
        Answer::Refused => json!({}),
    };
    json!({ "description": format!("The protocol's answer{streams}."), "content": content })
}

/// The error answers every operation can give, and those of operations with a body (the management API's).
pub(crate) struct Errors<'a> {
    pub common: &'a [(&'a str, &'a str)],
    pub body: &'a [(&'a str, &'a str)],
}

fn operation(&(_, path, protocol, summary, body, answer): &Operation, errors: &Errors) -> Value {
    let summary = if summary.ends_with('.') { summary.to_string() } else { format!("{summary}{VERSION}.") };
    let streams = if matches!(answer, Answer::JsonOrEvents | Answer::JsonOrLines) { ", streamed when the body asks" } else { "" };
    let schema = format!("#/components/schemas/{}", protocol.error);
    let error =
        |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "$ref": schema } } } });
    let mut responses = Map::new();
    if matches!(answer, Answer::Refused) {
        responses.insert("501".into(), error("Not offered: the message names Yunmo's own API for it."));
    } else {
        responses.insert("200".into(), success(answer, streams));
    }
    let body_errors = if body.is_some() { errors.body } else { &[] };
    for (status, description) in errors.common.iter().chain(body_errors) {
        responses.insert(status.to_string(), error(description));
    }
    responses.insert("429".into(), error("A rate limit or quota of the key or its tenant is spent; retry after Retry-After."));
    let mut operation = json!({ "tags": [protocol.tag], "summary": summary, "responses": responses });
    let parameters: Vec<Value> = ["name", "version", "model", "id"]
        .iter()
        .filter(|name| path.contains(&format!("{{{name}}}")))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": if *name == "version" { "integer" } else { "string" } } }))
        .collect();
    if !parameters.is_empty() {
        operation["parameters"] = json!(parameters);
    }
    if let Some(required) = body {
        operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": required, "description": format!("The protocol's request body ({}).", protocol.spec) } } } });
    }
    operation
}

/// Adds the inference routes, their tags and the specifications they follow to `document`.
pub(crate) fn add(document: &mut Value, errors: &Errors) {
    let Some(paths) = document["paths"].as_object_mut() else { return };
    for entry in OPERATIONS {
        let (method, path, ..) = *entry;
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[method] = operation(entry, errors);
    }
    let tags = PROTOCOLS
        .iter()
        .map(|protocol| json!({ "name": protocol.tag, "description": protocol.description, "externalDocs": { "url": protocol.spec } }));
    for (name, schema) in ERRORS {
        document["components"]["schemas"][name] = schema();
    }
    match document.get_mut("tags").and_then(Value::as_array_mut) {
        Some(existing) => existing.extend(tags),
        None => document["tags"] = Value::Array(tags.collect()),
    }
}
