//! Compiles proto/grpc_service.proto with the pure-Rust protox (no protoc needed) and generates tonic code.
//! Bytes fields are `bytes::Bytes`, so raw tensor contents are shared with the request buffer, not copied.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let proto = format!("{proto_dir}/grpc_service.proto");
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([&proto], [proto_dir])?;
    tonic_prost_build::configure().build_client(true).build_server(true).bytes(".").compile_fds(descriptors)?;
    Ok(())
}
