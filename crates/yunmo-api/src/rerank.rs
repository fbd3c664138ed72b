//! Reranking and scoring on cross-encoders (an ONNX encoder whose version config has `embedding.task =
//! "rerank"`): `POST /v1/rerank` in the shape Cohere's, Jina's and vLLM's clients send (`query`,
//! `documents`, `top_n`, `return_documents`), the same at `POST /v2/rerank` (Cohere's v2 API, as the
//! `cohere` SDK's `ClientV2.rerank` calls it), and vLLM's `POST /v1/score` (`text_1` against `text_2`).
//! Each (query, document) pair is tokenised as one input and scored by the model's logit through the
//! service's encoder path (access, limits, batching, metering); `relevance_score` and `score` are the
//! logit's sigmoid, in [0, 1]. Errors are OpenAI's shape. TEI's `/rerank` (bi-encoders, by cosine) is in
//! `tei`.

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use yunmo_auth::Action;
use yunmo_service::{EmbedInput, ServiceError};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openai::{OpenAiJson, openai};

/// Most documents (or pairs) in one request.
pub const MAX_DOCUMENTS: usize = 1024;

/// The routes, admitted and metered as inference.
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/rerank", post(rerank))
        .route("/v2/rerank", post(rerank))
        .route("/v1/score", post(score))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter))
}

/// A document: a string, or `{"text": ...}` (Jina's and Cohere's objects).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    fn text(&self) -> &str {
        match self {
            Document::Text(text) | Document::Object { text } => text,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RerankRequest {
    model: String,
    query: String,
    documents: Vec<Document>,
    #[serde(default)]
    top_n: Option<usize>,
    /// Whether each result carries its document (default true, as vLLM and Jina answer).
    #[serde(default)]
    return_documents: Option<bool>,
    /// Cohere's scheduling hint: accepted; requests are served in arrival order.
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    max_tokens_per_doc: Option<u32>,
    #[serde(default)]
    rank_fields: Option<Value>,
    #[serde(default)]
    max_chunks_per_doc: Option<u32>,
}

/// One text or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(text) => vec![text],
            OneOrMany::Many(texts) => texts,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreRequest {
    model: String,
    text_1: OneOrMany,
    text_2: OneOrMany,
}

fn check_count(count: usize, field: &str) -> Result<(), ServiceError> {
    if count == 0 || count > MAX_DOCUMENTS {
        return Err(ServiceError::invalid(format!("{field} must hold 1 to {MAX_DOCUMENTS} texts, got {count}")));
    }
    Ok(())
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// The relevance of each pair (the sigmoid of the model's logit) and the tokens read.
async fn scores(state: &AppState, caller: &Caller, model: &str, pairs: Vec<(String, String)>) -> Result<(Vec<f32>, u64), ServiceError> {
    let model_ref = crate::openai::model_ref(model)?;
    let target = caller.target_ref(state, &model_ref, Action::Infer).await?;
    let answer = state.service.embed(&caller.call, &target, EmbedInput::Pairs(pairs), None).await?;
    let scores = answer.vectors.iter().map(|vector| vector.first().copied().map_or(f32::NAN, sigmoid)).collect();
    Ok((scores, answer.prompt_tokens))
}

fn id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", crate::openai::run::random_seed())
}

/// `POST /v1/rerank`, `POST /v2/rerank`: the documents by relevance to the query, best first.
async fn rerank(
    State(state): State<AppState>,
    caller: Caller,
    OpenAiJson(request): OpenAiJson<RerankRequest>,
) -> Result<Json<Value>, ApiError> {
    let _ = request.priority;
    for (field, given) in [
        ("max_tokens_per_doc", request.max_tokens_per_doc.is_some()),
        ("rank_fields", request.rank_fields.is_some()),
        ("max_chunks_per_doc", request.max_chunks_per_doc.is_some()),
    ] {
        if given {
            return Err(openai(crate::openai::run::unsupported(
                field,
                "each (query, document) pair is one input, cut at the model's embedding.max_tokens when its config truncates",
            )));
        }
    }
    check_count(request.documents.len(), "documents").map_err(openai)?;
    if request.top_n == Some(0) {
        return Err(openai(ServiceError::invalid("top_n must be at least 1, got 0")));
    }
    let pairs = request.documents.iter().map(|document| (request.query.clone(), document.text().to_string())).collect();
    let (scores, tokens) = scores(&state, &caller, &request.model, pairs).await.map_err(openai)?;
    let mut ranked: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(request.top_n.unwrap_or(usize::MAX));
    let with_documents = request.return_documents.unwrap_or(true);
    let results: Vec<Value> = ranked
        .into_iter()
        .map(|(index, score)| {
            let mut result = json!({ "index": index, "relevance_score": score });
            if with_documents {
                result["document"] = json!({ "text": request.documents[index].text() });
            }
            result
        })
        .collect();
    Ok(Json(json!({
        "id": id("rerank"),
        "model": request.model,
        "results": results,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        "meta": { "api_version": { "version": "2" }, "billed_units": { "input_tokens": tokens } },
    })))
}

/// `POST /v1/score`: one score per pair: `text_1` (one text) against each of `text_2`, or the two lists
/// pairwise (the same length).
async fn score(
    State(state): State<AppState>,
    caller: Caller,
    OpenAiJson(request): OpenAiJson<ScoreRequest>,
) -> Result<Json<Value>, ApiError> {
    let (first, second) = (request.text_1.into_vec(), request.text_2.into_vec());
    check_count(first.len(), "text_1").map_err(openai)?;
    check_count(second.len(), "text_2").map_err(openai)?;
    let pairs: Vec<(String, String)> = match (first.len(), second.len()) {
        (1, _) => second.into_iter().map(|text| (first[0].clone(), text)).collect(),
        (left, right) if left == right => first.into_iter().zip(second).collect(),
        (left, right) => {
            return Err(openai(ServiceError::invalid(format!(
                "text_1 must be one text, or as many as text_2 ({right}) to score them pairwise; got {left}"
            ))));
        }
    };
    let (scores, tokens) = scores(&state, &caller, &request.model, pairs).await.map_err(openai)?;
    let data: Vec<Value> =
        scores.into_iter().enumerate().map(|(index, score)| json!({ "index": index, "object": "score", "score": score })).collect();
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(Json(json!({
        "id": id("score"),
        "object": "list",
        "created": created,
        "model": request.model,
        "data": data,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0 },
    })))
}
