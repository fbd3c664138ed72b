//! The convenience routes of Hugging Face's Text Embeddings Inference for text models: `POST /predict`
//! (text classification) and `POST /rerank` (a query and texts in, the texts by relevance out). TEI serves
//! one model per process; here the body names it (`model`: `name` or `name:version`). Errors are
//! `{"error": "..."}` (TEI adds `error_type`; the message names the field and the bound).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use yunmo_auth::Action;
use yunmo_service::{EmbedInput, ServiceError};
use yunmo_types::{DataType, InferInput, Tensor, TensorData};

use crate::AppState;
use crate::auth::Caller;
use crate::body::LazyJson;
use crate::error::ApiError;

/// Most texts in one request.
pub const MAX_TEXTS: usize = 1024;

/// The routes, admitted and metered as inference.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/predict", post(predict))
        .route("/rerank", post(rerank))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter))
}

fn tei(error: ServiceError) -> ApiError {
    ApiError::kserve(error)
}

/// One text or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    model: String,
    inputs: Texts,
    #[serde(default)]
    raw_scores: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RerankRequest {
    model: String,
    query: String,
    texts: Vec<String>,
    #[serde(default)]
    return_text: bool,
    #[serde(default)]
    raw_scores: bool,
}

fn check_count(count: usize, field: &str) -> Result<(), ServiceError> {
    if count == 0 || count > MAX_TEXTS {
        return Err(ServiceError::invalid(format!("{field} must hold 1 to {MAX_TEXTS} texts, got {count}")));
    }
    Ok(())
}

fn refuse_raw_scores(raw_scores: bool) -> Result<(), ServiceError> {
    if raw_scores {
        return Err(ServiceError::invalid("raw_scores: true is not supported: the scores are what the model answers"));
    }
    Ok(())
}

/// Classifies each text with a model that takes one BYTES (text) input, such as a pipeline that
/// tokenises, encodes and classifies: the answer pairs its `labels` (BYTES) and `scores` (FP32) outputs,
/// or, for a model that answers one FP32 `[N, classes]` output, its version's labels with those scores.
async fn predict(State(state): State<AppState>, caller: Caller, body: LazyJson<PredictRequest>) -> Result<Json<Value>, ApiError> {
    let request = body.read(&state).await.map_err(tei)?;
    refuse_raw_scores(request.raw_scores).map_err(tei)?;
    let (texts, single) = match request.inputs {
        Texts::One(text) => (vec![text], true),
        Texts::Many(texts) => (texts, false),
    };
    check_count(texts.len(), "inputs").map_err(tei)?;
    let model_ref = crate::openai::model_ref(&request.model).map_err(tei)?;
    let target = caller.target_ref(&state, &model_ref, Action::Infer).await.map_err(tei)?;
    let signature = state.service.signature(&caller.call, &target).await.map_err(tei)?;
    let input_name = match signature.inputs.as_slice() {
        [spec] if spec.datatype == DataType::Bytes && spec.shape.len() == 1 => spec.name.clone(),
        _ => {
            return Err(tei(ServiceError::invalid(format!(
                "model '{}' does not take one text input (a BYTES tensor [N]): /predict needs a text classifier, e.g. a pipeline with a tokenize step",
                request.model
            ))));
        }
    };
    let rows = texts.len();
    let data = TensorData::Bytes(texts.into_iter().map(Bytes::from).collect());
    let tensor =
        Tensor::new(input_name, DataType::Bytes, vec![rows as i64], data).map_err(|error| tei(ServiceError::invalid(error.to_string())))?;
    let output = state
        .service
        .infer(&caller.call, &target, InferInput { id: None, inputs: vec![tensor], outputs: Vec::new() })
        .await
        .map_err(tei)?;
    let labelled = match labelled_scores(&output.outputs, rows) {
        Some(labelled) => labelled,
        None => {
            let served = target.clone().with_version(Some(output.model_version));
            let labels = state.service.labels(&caller.call, &served).await.map_err(tei)?;
            class_scores(&output.outputs, rows, &labels).ok_or_else(|| {
                tei(ServiceError::invalid(format!(
                    "model '{}' answers neither `labels` and `scores` nor one FP32 [N, classes] output with labels in its version config",
                    request.model
                )))
            })?
        }
    };
    let answer: Vec<Value> = labelled
        .into_iter()
        .map(|row| Value::Array(row.into_iter().map(|(label, score)| json!({"label": label, "score": score})).collect()))
        .collect();
    Ok(Json(if single { answer.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(answer) }))
}

fn floats(tensor: &Tensor) -> Option<Vec<f32>> {
    match (tensor.datatype(), tensor.data()) {
        (DataType::Fp32, TensorData::Fixed(bytes)) => {
            Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        _ => None,
    }
}

/// `labels` (BYTES `[rows, k]`) paired with `scores` (FP32 `[rows, k]`), as a top-k step answers them.
fn labelled_scores(outputs: &[Tensor], rows: usize) -> Option<Vec<Vec<(String, f32)>>> {
    let labels = outputs.iter().find(|tensor| tensor.datatype() == DataType::Bytes && tensor.shape().len() == 2)?;
    let scores = outputs.iter().find(|tensor| tensor.shape() == labels.shape() && tensor.datatype() == DataType::Fp32)?;
    let TensorData::Bytes(names) = labels.data() else { return None };
    let values = floats(scores)?;
    let k = names.len() / rows.max(1);
    Some(
        (0..rows)
            .map(|row| (0..k).map(|i| (String::from_utf8_lossy(&names[row * k + i]).into_owned(), values[row * k + i])).collect())
            .collect(),
    )
}

/// One FP32 `[rows, classes]` output with `labels` (one per class), best first.
fn class_scores(outputs: &[Tensor], rows: usize, labels: &[String]) -> Option<Vec<Vec<(String, f32)>>> {
    let classes = labels.len();
    let tensor = outputs.iter().find(|tensor| tensor.shape() == [rows as i64, classes as i64] && tensor.datatype() == DataType::Fp32)?;
    let values = floats(tensor)?;
    Some(
        values
            .chunks_exact(classes.max(1))
            .map(|row| {
                let mut pairs: Vec<(String, f32)> = labels.iter().cloned().zip(row.iter().copied()).collect();
                pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
                pairs
            })
            .collect(),
    )
}

/// Scores each text against the query with a model that serves embeddings (a bi-encoder): the cosine of
/// their vectors; best first, as TEI answers (`index` into `texts`, `score`, and `text` if asked).
async fn rerank(State(state): State<AppState>, caller: Caller, body: LazyJson<RerankRequest>) -> Result<Json<Value>, ApiError> {
    let request = body.read(&state).await.map_err(tei)?;
    refuse_raw_scores(request.raw_scores).map_err(tei)?;
    check_count(request.texts.len(), "texts").map_err(tei)?;
    let model_ref = crate::openai::model_ref(&request.model).map_err(tei)?;
    let target = caller.target_ref(&state, &model_ref, Action::Infer).await.map_err(tei)?;
    let mut texts = Vec::with_capacity(request.texts.len() + 1);
    texts.push(request.query.clone());
    texts.extend(request.texts.iter().cloned());
    let embeddings = state.service.embed(&caller.call, &target, EmbedInput::Texts(texts), None).await.map_err(tei)?;
    let (query, candidates) = embeddings.vectors.split_first().ok_or_else(|| tei(ServiceError::internal("no query vector")))?;
    let mut ranked: Vec<(usize, f32)> = candidates.iter().enumerate().map(|(index, vector)| (index, cosine(query, vector))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let answer: Vec<Value> = ranked
        .into_iter()
        .map(|(index, score)| match request.return_text {
            true => json!({"index": index, "score": score, "text": request.texts[index]}),
            false => json!({"index": index, "score": score}),
        })
        .collect();
    Ok(Json(Value::Array(answer)))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_scores_sort_each_row_and_cosine_is_of_directions() {
        let bytes: Vec<u8> = [0.2f32, 0.8, 0.6, 0.4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensor = Tensor::new("p", DataType::Fp32, vec![2, 2], TensorData::Fixed(bytes.into())).unwrap();
        let rows = class_scores(&[tensor], 2, &["a".into(), "b".into()]).unwrap();
        assert_eq!(rows[0][0].0, "b");
        assert_eq!(rows[1][0].0, "a");
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
    }
}
