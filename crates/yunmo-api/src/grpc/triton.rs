//! Triton's gRPC extensions on the service: model configuration (`ModelConfig`), statistics
//! (`ModelStatistics`) and streaming inference (`ModelStreamInfer`, as `tritonclient.grpc`'s `start_stream`
//! and `async_stream_infer` use it).

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use yunmo_proto::inference as pb;
use yunmo_service::ModelMetadata;
use yunmo_service::stats::VersionTotals;
use yunmo_service::totals::Timing;

use super::GrpcService;
use crate::kserve::triton::{backend_name, config_dims, instance_group_name};

/// Requests of one stream computed at once; the next message is read when one of them ends, so a client
/// that sends faster is slowed by HTTP/2 flow control, not buffered.
const STREAM_IN_FLIGHT: usize = 64;

/// The stream of answers `ModelStreamInfer` returns.
pub type AnswerStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

fn data_type(datatype: yunmo_types::DataType) -> i32 {
    pb::DataType::from_str_name(crate::kserve::triton::triton_type(datatype)).map_or(0, |found| found as i32)
}

/// A version's configuration as Triton's `ModelConfig` message.
pub(super) fn config_message(name: &str, metadata: &ModelMetadata) -> pb::ModelConfig {
    let config = &metadata.config;
    let max_batch_size = config.max_batch_size;
    pb::ModelConfig {
        name: name.to_string(),
        platform: metadata.platform.clone(),
        backend: backend_name(&metadata.format).to_string(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(pb::model_version_policy::PolicyChoice::All(pb::model_version_policy::All {})),
        }),
        max_batch_size: i32::try_from(max_batch_size).unwrap_or(i32::MAX),
        input: metadata
            .signature
            .inputs
            .iter()
            .map(|spec| pb::ModelInput {
                name: spec.name.clone(),
                data_type: data_type(spec.datatype),
                dims: config_dims(spec, max_batch_size),
                ..Default::default()
            })
            .collect(),
        output: metadata
            .signature
            .outputs
            .iter()
            .map(|spec| pb::ModelOutput {
                name: spec.name.clone(),
                data_type: data_type(spec.datatype),
                dims: config_dims(spec, max_batch_size),
                ..Default::default()
            })
            .collect(),
        instance_group: vec![pb::ModelInstanceGroup {
            name: instance_group_name(name),
            count: i32::try_from(config.instance_count.max(1)).unwrap_or(i32::MAX),
            gpus: Vec::new(),
            kind: pb::model_instance_group::Kind::Cpu as i32,
        }],
        default_model_filename: format!("model.{}", metadata.format),
        scheduling_choice: (max_batch_size > 0).then(|| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: Vec::new(),
                max_queue_delay_microseconds: config.max_queue_delay_us,
                preserve_ordering: false,
            })
        }),
    }
}

fn duration(timing: Timing) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count: timing.count, ns: timing.ns })
}

/// One version's statistics as Triton's `ModelStatistics` message.
pub(super) fn stats_message(entry: &VersionTotals) -> pb::ModelStatistics {
    let totals = &entry.totals;
    pb::ModelStatistics {
        name: entry.model.clone(),
        version: entry.version.to_string(),
        last_inference: totals.last_inference_ms,
        inference_count: totals.inference_count,
        execution_count: totals.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(totals.success),
            fail: duration(totals.fail),
            queue: duration(totals.queue),
            compute_input: duration(totals.compute_input),
            compute_infer: duration(totals.compute_infer),
            compute_output: duration(totals.compute_output),
            cache_hit: duration(Timing::default()),
            cache_miss: duration(Timing::default()),
        }),
        batch_stats: totals
            .batches
            .iter()
            .map(|batch| pb::InferBatchStatistics {
                batch_size: batch.batch_size,
                compute_input: duration(batch.compute_input),
                compute_infer: duration(batch.compute_infer),
                compute_output: duration(batch.compute_output),
            })
            .collect(),
        memory_usage: Vec::new(),
        response_stats: Default::default(),
    }
}

/// Answers each request of the stream as `ModelInfer` would (authenticated once for the stream, each one
/// admitted, access-checked, limited and metered on its own), in the order they finish; a failed request
/// is an answer with its `error_message`, and the stream goes on. When the client goes away, the requests
/// still computing are dropped (cancelled, as a unary call's are) and no more are read.
pub(super) fn stream_infer(service: &GrpcService, request: Request<Streaming<pb::ModelInferRequest>>) -> Response<AnswerStream> {
    let principal = request.extensions().get::<Arc<yunmo_auth::Principal>>().cloned();
    let request_id = request.extensions().get::<crate::request_id::RequestId>().cloned();
    let (metadata, _, mut inbound) = request.into_parts();
    let (answers, receiver) = tokio::sync::mpsc::channel::<Result<pb::ModelStreamInferResponse, Status>>(STREAM_IN_FLIGHT);
    let state = service.state.clone();
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(STREAM_IN_FLIGHT));
        loop {
            let message = tokio::select! {
                _ = answers.closed() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => tokio::select! {
                        _ = answers.closed() => break,
                        message = inbound.message() => (slot, message),
                    },
                    Err(_) => break,
                },
            };
            let (slot, message) = match message {
                (slot, Ok(Some(message))) => (slot, message),
                (_, Ok(None)) => break,
                (_, Err(status)) => {
                    let _ = answers.send(Err(status)).await;
                    break;
                }
            };
            let service = GrpcService { state: state.clone() };
            let call = crate::auth::call_for(principal.as_ref(), request_id.as_ref());
            let request = Request::from_parts(metadata.clone(), Default::default(), message);
            let answers = answers.clone();
            tokio::spawn(async move {
                let id = request.get_ref().id.clone();
                let answer = tokio::select! {
                    // The client is gone: dropping the call cancels it.
                    _ = answers.closed() => return,
                    result = service.metered_infer(call, request) => match result {
                        Ok(response) => pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response.into_inner()) },
                        Err(status) => pb::ModelStreamInferResponse {
                            error_message: status.message().to_string(),
                            infer_response: Some(pb::ModelInferResponse { id, ..Default::default() }),
                        },
                    },
                };
                let _ = answers.send(Ok(answer)).await;
                drop(slot);
            });
        }
    });
    let answers = futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|answer| (answer, receiver)) });
    Response::new(answers.boxed())
}
