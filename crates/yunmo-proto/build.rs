//! Compiles the protos with the pure-Rust protox (no protoc needed): `proto/grpc_service.proto` into tonic
//! code (bytes fields are `bytes::Bytes`, so raw tensor contents are shared with the request buffer, not
//! copied), and `proto/onnx.proto` (copied from the `onnx` wheel, Apache-2.0) into plain prost messages that
//! the trainers and optimisers write ONNX graphs with.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it is compiled: cargo reuses a compiled build script for the same
    // sources in another checkout (a worktree), whose protos are elsewhere.
    let proto_dir = format!("{}/../../proto", std::env::var("CARGO_MANIFEST_DIR")?);
    let grpc = format!("{proto_dir}/grpc_service.proto");
    let onnx = format!("{proto_dir}/onnx.proto");
    println!("cargo:rerun-if-changed={grpc}");
    println!("cargo:rerun-if-changed={onnx}");
    let descriptors = protox::compile([&grpc], [&proto_dir])?;
    // The encoded descriptors, for gRPC server reflection (grpcurl without the proto file).
    let out_dir = std::env::var("OUT_DIR")?;
    std::fs::write(format!("{out_dir}/grpc_service_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().build_client(true).build_server(true).bytes(".").compile_fds(descriptors)?;
    let descriptors = protox::compile([&onnx], [&proto_dir])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(descriptors)?;
    Ok(())
}
