//! Triton's statistics and model configuration extensions over REST (`/v2/models[/{m}[/versions/{v}]]/stats`,
//! `/v2/models/{m}[/versions/{v}]/config`), in Triton's JSON shapes, and the views both transports share:
//! what a version's configuration says in Triton's terms.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use yunmo_service::ModelMetadata;
use yunmo_service::stats::VersionTotals;
use yunmo_service::totals::Timing;
use yunmo_types::{DataType, ModelRef, TensorSpec};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use yunmo_auth::Action;

/// The routes of both extensions.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{name}/stats", get(model_stats))
        .route("/v2/models/{name}/versions/{version}/stats", get(model_stats_version))
        .route("/v2/models/{name}/config", get(model_config))
        .route("/v2/models/{name}/versions/{version}/config", get(model_config_version))
}

/// Triton's name of a tensor element type (`TYPE_STRING` for BYTES).
pub(crate) fn triton_type(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
        DataType::Bf16 => "TYPE_BF16",
    }
}

/// A tensor's dims as Triton's configuration writes them: without the batch dimension when the model is
/// batched (`max_batch_size` above 0).
pub(crate) fn config_dims(spec: &TensorSpec, max_batch_size: u32) -> Vec<i64> {
    match spec.shape.split_first() {
        Some((_, rest)) if max_batch_size > 0 => rest.to_vec(),
        _ => spec.shape.clone(),
    }
}

/// Triton's backend name for a Yunmo file format.
pub(crate) fn backend_name(format: &str) -> &str {
    match format {
        "onnx" => "onnxruntime",
        "gguf" => "llama.cpp",
        other => other,
    }
}

/// The name Triton gives an instance group.
pub(crate) fn instance_group_name(model: &str) -> String {
    format!("{}_0", model.rsplit('/').next().unwrap_or(model))
}

/// A version's configuration in Triton's JSON shape (`name` as the caller asked for it).
pub(crate) fn config_json(name: &str, metadata: &ModelMetadata) -> Value {
    let config = &metadata.config;
    let max_batch_size = config.max_batch_size;
    let inputs: Vec<Value> = metadata
        .signature
        .inputs
        .iter()
        .map(|spec| {
            json!({
                "name": spec.name, "data_type": triton_type(spec.datatype), "format": "FORMAT_NONE",
                "dims": config_dims(spec, max_batch_size), "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false,
            })
        })
        .collect();
    let outputs: Vec<Value> = metadata
        .signature
        .outputs
        .iter()
        .map(|spec| {
            json!({
                "name": spec.name, "data_type": triton_type(spec.datatype), "dims": config_dims(spec, max_batch_size),
                "label_filename": "", "is_shape_tensor": false,
            })
        })
        .collect();
    let mut body = json!({
        "name": name,
        "platform": metadata.platform,
        "backend": backend_name(&metadata.format),
        // Every version can be asked for by number; one without a number gets the model's policy.
        "version_policy": { "all": {} },
        "max_batch_size": max_batch_size,
        "input": inputs,
        "output": outputs,
        "instance_group": [{
            "name": instance_group_name(name), "kind": "KIND_CPU", "count": config.instance_count.max(1), "gpus": [],
        }],
        "default_model_filename": format!("model.{}", metadata.format),
    });
    if max_batch_size > 0 {
        body["dynamic_batching"] = json!({
            "preferred_batch_size": [], "max_queue_delay_microseconds": config.max_queue_delay_us, "preserve_ordering": false,
        });
    }
    body
}

fn timing(timing: Timing) -> Value {
    json!({ "count": timing.count, "ns": timing.ns })
}

/// One version's statistics in Triton's JSON shape.
pub(crate) fn stats_json(entry: &VersionTotals) -> Value {
    let totals = &entry.totals;
    let zero = timing(Timing::default());
    json!({
        "name": entry.model,
        "version": entry.version.to_string(),
        "last_inference": totals.last_inference_ms,
        "inference_count": totals.inference_count,
        "execution_count": totals.execution_count,
        "inference_stats": {
            "success": timing(totals.success),
            "fail": timing(totals.fail),
            "queue": timing(totals.queue),
            "compute_input": timing(totals.compute_input),
            "compute_infer": timing(totals.compute_infer),
            "compute_output": timing(totals.compute_output),
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "batch_stats": totals.batches.iter().map(|batch| json!({
            "batch_size": batch.batch_size,
            "compute_input": timing(batch.compute_input),
            "compute_infer": timing(batch.compute_infer),
            "compute_output": timing(batch.compute_output),
        })).collect::<Vec<_>>(),
        "memory_usage": [],
        "response_stats": {},
    })
}

async fn all_stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let found = state.service.all_statistics(&caller.call).await.map_err(ApiError::kserve)?;
    Ok(Json(json!({ "model_stats": found.iter().map(stats_json).collect::<Vec<_>>() })))
}

async fn stats(state: AppState, caller: Caller, model_ref: ModelRef) -> Result<Json<Value>, ApiError> {
    let target = caller.target_ref(&state, &model_ref, Action::Read).await.map_err(ApiError::kserve)?;
    let found = state.service.model_statistics(&caller.call, &target).await.map_err(ApiError::kserve)?;
    Ok(Json(json!({ "model_stats": found.iter().map(stats_json).collect::<Vec<_>>() })))
}

async fn model_stats(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    stats(state, caller, super::model_ref(name, None)?).await
}

async fn model_stats_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    stats(state, caller, super::model_ref(name, Some(version))?).await
}

async fn config(state: AppState, caller: Caller, model_ref: ModelRef) -> Result<Json<Value>, ApiError> {
    let target = caller.target_ref(&state, &model_ref, Action::Read).await.map_err(ApiError::kserve)?;
    let metadata = state.service.model_metadata(&caller.call, &target).await.map_err(ApiError::kserve)?;
    Ok(Json(config_json(&model_ref.name, &metadata)))
}

async fn model_config(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    config(state, caller, super::model_ref(name, None)?).await
}

async fn model_config_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    config(state, caller, super::model_ref(name, Some(version))?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_models_drop_the_batch_dimension_and_bytes_are_type_string() {
        let spec = TensorSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![-1, 4] };
        assert_eq!(config_dims(&spec, 8), vec![4]);
        assert_eq!(config_dims(&spec, 0), vec![-1, 4]);
        assert_eq!(triton_type(DataType::Bytes), "TYPE_STRING");
        assert_eq!(instance_group_name("acme/mlp"), "mlp_0");
        assert_eq!(backend_name("onnx"), "onnxruntime");
    }
}
