//! KServe V2 over gRPC (`inference.GRPCInferenceService`) with tonic, on the same service layer as REST.
//! Inputs arrive as typed `contents` or `raw_input_contents` (shared with the request buffer, no copy);
//! outputs always go back as `raw_output_contents`, as Triton does.

mod triton;

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use tonic::{Request, Response, Status, Streaming};
use yunmo_proto::inference as pb;
use yunmo_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use yunmo_service::{Call, Code, ServiceError, Target};
use yunmo_types::{DataType, InferInput, ModelRef, RequestedOutput, Tensor, TensorData, TensorSpec};

use crate::AppState;
use crate::error::grpc_status as status;
use crate::kserve::decode::{DecodeLimits, binary_data, checked_count};
use yunmo_auth::{Action, Principal};

pub use yunmo_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The gRPC service.
pub struct GrpcService {
    state: AppState,
}

/// The served gRPC service: every call authenticated by the gate first.
pub type AuthenticatedServer = crate::auth::GrpcAuth<GrpcInferenceServiceServer<GrpcService>>;

impl GrpcService {
    /// A tonic server for `state`, with message limits from its config, behind the gate.
    pub fn server(state: AppState) -> AuthenticatedServer {
        let limit = state.config.max_body_bytes;
        let gate = state.gate.clone();
        let server =
            GrpcInferenceServiceServer::new(GrpcService { state }).max_decoding_message_size(limit).max_encoding_message_size(usize::MAX);
        crate::auth::GrpcAuth::new(server, gate)
    }

    /// The call of `request` and the model `name` (at `version`, empty: the policy's) if its caller may do
    /// `action` on it (the service's access check).
    async fn target<T>(&self, request: &Request<T>, name: &str, version: &str, action: Action) -> Result<(Call, Target), Status> {
        let call = call_of(request);
        let model_ref = model_ref(name.to_string(), version)?;
        let target = self.state.service.authorize(&call, &model_ref, action).await.map_err(status)?;
        Ok((call, target))
    }
}

/// The service's view of a call: the caller and request id the auth layer put on it.
fn call_of<T>(request: &Request<T>) -> Call {
    let extensions = request.extensions();
    crate::auth::call_for(extensions.get::<std::sync::Arc<Principal>>(), extensions.get::<crate::request_id::RequestId>())
}

fn model_ref(name: String, version: &str) -> Result<ModelRef, Status> {
    if version.is_empty() {
        return Ok(ModelRef::new(name, None));
    }
    let version = crate::kserve::parse_version(version).map_err(status)?;
    Ok(ModelRef::new(name, Some(version)))
}

fn specs(specs: &[TensorSpec]) -> Vec<pb::model_metadata_response::TensorMetadata> {
    specs
        .iter()
        .map(|spec| pb::model_metadata_response::TensorMetadata {
            name: spec.name.clone(),
            datatype: spec.datatype.as_str().to_string(),
            shape: spec.shape.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<pb::ServerReadyRequest>) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: !self.state.shutting_down() }))
    }

    async fn model_ready(&self, request: Request<pb::ModelReadyRequest>) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let (call, target) = match self.target(&request, &request.get_ref().name, &request.get_ref().version, Action::Read).await {
            Ok(found) => found,
            // Ready answers false for models that do not exist; one the caller cannot see is the same.
            Err(error) if error.code() == tonic::Code::NotFound => return Ok(Response::new(pb::ModelReadyResponse { ready: false })),
            Err(error) => return Err(error),
        };
        let ready = match self.state.service.model_ready(&call, &target).await {
            Ok(ready) => ready,
            Err(error) if error.code == Code::ModelNotFound => false,
            Err(error) => return Err(status(error)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(&self, _: Request<pb::ServerMetadataRequest>) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "yunmo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::kserve::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(&self, request: Request<pb::ModelMetadataRequest>) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let (call, target) = self.target(&request, &request.get_ref().name, &request.get_ref().version, Action::Read).await?;
        let request = request.into_inner();
        let metadata = self.state.service.model_metadata(&call, &target).await.map_err(status)?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: request.name,
            versions: metadata.versions.iter().map(u64::to_string).collect(),
            platform: metadata.platform,
            inputs: specs(&metadata.signature.inputs),
            outputs: specs(&metadata.signature.outputs),
        }))
    }

    async fn model_infer(&self, request: Request<pb::ModelInferRequest>) -> Result<Response<pb::ModelInferResponse>, Status> {
        let call = call_of(&request);
        self.metered_infer(call, request).await
    }

    type ModelStreamInferStream = triton::AnswerStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        Ok(triton::stream_infer(self, request))
    }

    async fn model_config(&self, request: Request<pb::ModelConfigRequest>) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let (call, target) = self.target(&request, &request.get_ref().name, &request.get_ref().version, Action::Read).await?;
        let metadata = self.state.service.model_metadata(&call, &target).await.map_err(status)?;
        Ok(Response::new(pb::ModelConfigResponse { config: Some(triton::config_message(&request.get_ref().name, &metadata)) }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let found = if request.get_ref().name.is_empty() {
            self.state.service.all_statistics(&call_of(&request)).await.map_err(status)?
        } else {
            let (call, target) = self.target(&request, &request.get_ref().name, &request.get_ref().version, Action::Read).await?;
            self.state.service.model_statistics(&call, &target).await.map_err(status)?
        };
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats: found.iter().map(triton::stats_message).collect() }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let call = call_of(&request);
        let ready_only = request.into_inner().ready;
        let entries = self.state.service.repository_index(&call).await.map_err(status)?;
        let models = entries
            .into_iter()
            .filter(|entry| !ready_only || entry.state == "READY")
            .map(|entry| pb::repository_index_response::ModelIndex {
                name: yunmo_registry::name_for(&entry.name, &call.principal.tenant).to_string(),
                version: entry.version.to_string(),
                state: entry.state.to_string(),
                reason: entry.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let (call, target) = self.target(&request, &request.get_ref().model_name, "", Action::Write).await?;
        let request = request.into_inner();
        yunmo_service::InferenceService::check_repository_load(&request.model_name, request.parameters.keys().map(String::as_str))
            .map_err(status)?;
        let target = target.with_version(repository_version(&request.parameters)?);
        self.state.service.load(&call, &target).await.map_err(status)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let (call, target) = self.target(&request, &request.get_ref().model_name, "", Action::Write).await?;
        let request = request.into_inner();
        let target = target.with_version(repository_version(&request.parameters)?);
        self.state.service.unload(&call, &target).await.map_err(status)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

impl GrpcService {
    /// Runs one infer call of `call`: admitted (limits, a usage record), then answered.
    async fn metered_infer(
        &self,
        mut call: Call,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let guard = self.state.service.admit(&mut call, "grpc").await.map_err(status)?;
        let usage = guard.cell().clone();
        let result = self.infer(&call, request).await;
        match &result {
            Ok(response) => {
                usage.add_bytes(0, prost::Message::encoded_len(response.get_ref()) as u64);
                usage.set_outcome("ok");
            }
            Err(error) => usage.set_outcome(error.1.as_str()),
        }
        result.map_err(|error| error.0)
    }

    /// Runs one infer call, filling in its usage record; errors carry their service code for the record.
    async fn infer(
        &self,
        call: &Call,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, (Status, Code)> {
        let fail = |error: ServiceError| {
            let code = error.code;
            (status(error), code)
        };
        let (metadata, _, request) = request.into_parts();
        let size = prost::Message::encoded_len(&request);
        if let Some(usage) = &call.usage {
            usage.add_bytes(size as u64, 0);
        }
        // The message is already decoded (tonic bounds it by max_body_bytes); it and the tensors made from
        // typed contents (raw contents are shared, not copied) are charged and held until the answer is
        // built. Past the budget the call is refused at once, so its memory is freed.
        let mut charge = self.state.budget.charge(size).map_err(fail)?;
        let typed = request.raw_input_contents.is_empty();
        let model_ref = model_ref(request.model_name.clone(), &request.model_version).map_err(|s| (s, Code::InvalidRequest))?;
        let mut target = self.state.service.authorize(call, &model_ref, Action::Infer).await.map_err(fail)?;
        if let Some(value) = target.sticky_header().and_then(|name| metadata.get(name)) {
            target = target.with_sticky_value(value.as_bytes());
        }
        let asked_for = request.model_name.clone();
        let limits = DecodeLimits { max_tensor_elements: self.state.config.max_tensor_elements };
        let input = decode_request(request, limits).map_err(fail)?;
        if typed {
            let bytes = input.inputs.iter().map(|tensor| tensor.binary_size()).sum();
            charge.merge(self.state.budget.charge(bytes).map_err(fail)?);
        }
        let output = self.state.service.infer(call, &target, input).await.map_err(fail)?;
        let output_version = output.model_version;
        let mut response = pb::ModelInferResponse {
            model_name: asked_for,
            model_version: output.model_version.to_string(),
            id: output.id.unwrap_or_default(),
            ..Default::default()
        };
        for tensor in output.outputs {
            response.outputs.push(pb::model_infer_response::InferOutputTensor {
                name: tensor.name().to_string(),
                datatype: tensor.datatype().as_str().to_string(),
                shape: tensor.shape().to_vec(),
                ..Default::default()
            });
            response.raw_output_contents.push(raw_bytes(tensor));
        }
        drop(charge);
        let mut response = Response::new(response);
        let value = crate::kserve::small_version(output_version)
            .map_or_else(|| tonic::metadata::MetadataValue::from(output_version), tonic::metadata::MetadataValue::from_static);
        response.metadata_mut().insert(crate::kserve::MODEL_VERSION_HEADER, value);
        Ok(response)
    }
}

fn repository_version(parameters: &HashMap<String, pb::ModelRepositoryParameter>) -> Result<Option<u64>, Status> {
    use pb::model_repository_parameter::ParameterChoice;
    match parameters.get("version").and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(None),
        Some(ParameterChoice::StringParam(text)) => crate::kserve::parse_version(text).map(Some).map_err(status),
        Some(ParameterChoice::Int64Param(value)) if *value > 0 => Ok(Some(*value as u64)),
        Some(other) => Err(Status::invalid_argument(format!("parameter 'version' must be a positive integer, got {other:?}"))),
    }
}

/// Triton's raw encoding of a tensor: fixed types as they are, BYTES with a 4-byte length before each element.
fn raw_bytes(tensor: Tensor) -> Bytes {
    match tensor.into_parts().3 {
        TensorData::Fixed(bytes) => bytes,
        TensorData::Bytes(items) => {
            let mut out = BytesMut::with_capacity(items.iter().map(|i| 4 + i.len()).sum());
            for item in items {
                out.put_u32_le(item.len() as u32);
                out.put_slice(&item);
            }
            out.freeze()
        }
    }
}

fn int_param(parameters: &HashMap<String, pb::InferParameter>, key: &str) -> Option<i64> {
    use pb::infer_parameter::ParameterChoice;
    match parameters.get(key)?.parameter_choice.as_ref()? {
        ParameterChoice::Int64Param(value) => Some(*value),
        ParameterChoice::Uint64Param(value) => i64::try_from(*value).ok(),
        _ => None,
    }
}

/// Decodes a gRPC infer request into the service's input.
pub fn decode_request(request: pb::ModelInferRequest, limits: DecodeLimits) -> Result<InferInput, ServiceError> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(ServiceError::invalid(format!(
            "raw_input_contents has {} entries but there are {} inputs; give one per input or none",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (index, input) in request.inputs.into_iter().enumerate() {
        let owner = format!("input '{}'", input.name);
        let datatype = DataType::parse(&input.datatype)
            .ok_or_else(|| ServiceError::invalid(format!("{owner}: unknown datatype '{}'", input.datatype)))?;
        checked_count(&input.name, &input.shape, limits)?;
        let data = match (raw.get(index), input.contents) {
            (Some(bytes), contents) => {
                if contents.is_some_and(|c| c != pb::InferTensorContents::default()) {
                    return Err(ServiceError::invalid(format!("{owner}: has both contents and raw_input_contents")));
                }
                binary_data(&owner, datatype, bytes.clone())?
            }
            (None, Some(contents)) => typed_contents(&owner, datatype, contents)?,
            (None, None) => typed_contents(&owner, datatype, pb::InferTensorContents::default())?,
        };
        inputs.push(Tensor::new(input.name, datatype, input.shape, data).map_err(|e| ServiceError::invalid(e.to_string()))?);
    }
    let outputs = request
        .outputs
        .into_iter()
        .map(|output| {
            let class_count = int_param(&output.parameters, "classification").filter(|k| *k > 0).map(|k| k as usize);
            RequestedOutput { name: output.name, class_count }
        })
        .collect();
    let id = (!request.id.is_empty()).then_some(request.id);
    Ok(InferInput { id, inputs, outputs })
}

fn narrow<T, U: TryFrom<T> + Copy, const N: usize>(
    owner: &str,
    datatype: DataType,
    values: Vec<T>,
    to_bytes: fn(U) -> [u8; N],
) -> Result<TensorData, ServiceError>
where
    T: Copy + std::fmt::Display,
{
    let mut bytes = Vec::with_capacity(values.len() * N);
    for (index, value) in values.into_iter().enumerate() {
        let narrowed = U::try_from(value)
            .map_err(|_| ServiceError::invalid(format!("{owner}: element {index}: value {value} is out of range for {datatype}")))?;
        bytes.extend_from_slice(&to_bytes(narrowed));
    }
    Ok(TensorData::Fixed(Bytes::from(bytes)))
}

fn typed_contents(owner: &str, datatype: DataType, contents: pb::InferTensorContents) -> Result<TensorData, ServiceError> {
    let wrong_field =
        || ServiceError::invalid(format!("{owner}: datatype {datatype} has no typed contents field; send it in raw_input_contents"));
    Ok(match datatype {
        DataType::Bool => TensorData::Fixed(contents.bool_contents.into_iter().map(u8::from).collect::<Vec<u8>>().into()),
        DataType::Int8 => narrow::<i32, i8, 1>(owner, datatype, contents.int_contents, i8::to_le_bytes)?,
        DataType::Int16 => narrow::<i32, i16, 2>(owner, datatype, contents.int_contents, i16::to_le_bytes)?,
        DataType::Int32 => narrow::<i32, i32, 4>(owner, datatype, contents.int_contents, i32::to_le_bytes)?,
        DataType::Int64 => narrow::<i64, i64, 8>(owner, datatype, contents.int64_contents, i64::to_le_bytes)?,
        DataType::Uint8 => narrow::<u32, u8, 1>(owner, datatype, contents.uint_contents, u8::to_le_bytes)?,
        DataType::Uint16 => narrow::<u32, u16, 2>(owner, datatype, contents.uint_contents, u16::to_le_bytes)?,
        DataType::Uint32 => narrow::<u32, u32, 4>(owner, datatype, contents.uint_contents, u32::to_le_bytes)?,
        DataType::Uint64 => narrow::<u64, u64, 8>(owner, datatype, contents.uint64_contents, u64::to_le_bytes)?,
        DataType::Fp32 => TensorData::Fixed(contents.fp32_contents.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        DataType::Fp64 => TensorData::Fixed(contents.fp64_contents.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        DataType::Bytes => TensorData::Bytes(contents.bytes_contents),
        DataType::Fp16 | DataType::Bf16 => return Err(wrong_field()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits { max_tensor_elements: 100 };

    fn input(datatype: &str, shape: Vec<i64>, contents: pb::InferTensorContents) -> pb::model_infer_request::InferInputTensor {
        pb::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape,
            parameters: HashMap::new(),
            contents: Some(contents),
        }
    }

    #[test]
    fn typed_and_raw_contents_decode_to_the_same_bytes() {
        let typed = pb::ModelInferRequest {
            inputs: vec![input("INT16", vec![2], pb::InferTensorContents { int_contents: vec![-2, 300], ..Default::default() })],
            ..Default::default()
        };
        let raw = pb::ModelInferRequest {
            inputs: vec![input("INT16", vec![2], pb::InferTensorContents::default())],
            raw_input_contents: vec![Bytes::from([(-2i16).to_le_bytes(), 300i16.to_le_bytes()].concat())],
            ..Default::default()
        };
        let a = decode_request(typed, LIMITS).unwrap();
        let b = decode_request(raw, LIMITS).unwrap();
        assert_eq!(a.inputs[0], b.inputs[0]);
    }

    #[test]
    fn errors_name_the_input_and_the_bound() {
        let cases = [
            (
                input("INT8", vec![1], pb::InferTensorContents { int_contents: vec![300], ..Default::default() }),
                "input 'x': element 0: value 300 is out of range for INT8",
            ),
            (input("FP16", vec![1], pb::InferTensorContents::default()), "datatype FP16 has no typed contents field"),
            (input("FP32", vec![2], pb::InferTensorContents { fp32_contents: vec![1.0], ..Default::default() }), "needs 8 bytes, got 4"),
            (input("FP32", vec![101], pb::InferTensorContents::default()), "more than max_tensor_elements = 100"),
            (input("FLOAT", vec![1], pb::InferTensorContents::default()), "unknown datatype 'FLOAT'"),
        ];
        for (tensor, expected) in cases {
            let request = pb::ModelInferRequest { inputs: vec![tensor], ..Default::default() };
            let message = decode_request(request, LIMITS).unwrap_err().message;
            assert!(message.contains(expected), "{message} should contain {expected}");
        }
        let mismatch = pb::ModelInferRequest {
            inputs: vec![input("FP32", vec![1], Default::default()), input("FP32", vec![1], Default::default())],
            raw_input_contents: vec![Bytes::from_static(&[0; 4])],
            ..Default::default()
        };
        assert!(decode_request(mismatch, LIMITS).unwrap_err().message.contains("raw_input_contents has 1 entries but there are 2 inputs"));
    }
}
