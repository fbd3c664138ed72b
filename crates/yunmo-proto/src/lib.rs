//! Generated code: the `inference.GRPCInferenceService` (KServe V2 / Open Inference Protocol gRPC and
//! Triton's repository extension) from `proto/grpc_service.proto`, and ONNX's model format from
//! `proto/onnx.proto`. Codegen only: isolating it in its own crate keeps proto rebuilds from recompiling the
//! rest.
#![allow(missing_docs, clippy::all)]

/// Messages and service of package `inference`.
pub mod inference {
    tonic::include_proto!("inference");
}

/// The encoded `FileDescriptorSet` of `proto/grpc_service.proto`, which the server's reflection service
/// describes.
pub const GRPC_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/grpc_service_descriptor.bin"));

/// ONNX's model format (package `onnx`, IR version 10 and later): `ModelProto`, `GraphProto`, `NodeProto`,
/// `TensorProto`, ...
pub mod onnx {
    tonic::include_proto!("onnx");
}
