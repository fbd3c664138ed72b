use std::io::Write;
use std::time::{Duration, Instant};

use crate::harness::{TestServer, fixture};

#[tokio::test]
async fn sigkill_mid_upload_leaves_a_consistent_registry() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    let first = server.push("vad", "silero_vad.onnx", "").await;
    assert_eq!(first["version"], 1);

    // Start uploading version 2 and stop half-way, with the file partly staged.
    let model = std::fs::read(fixture("efficientnet_lite0.onnx")).unwrap();
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "POST /api/v1/models/vad/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        model.len()
    )
    .unwrap();
    stream.write_all(&model[..model.len() / 2]).unwrap();
    stream.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.files("staging").is_empty() {
        assert!(Instant::now() < deadline, "the upload never reached the staging area");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    drop(stream);

    let server = TestServer::start(dir.path(), &[]).await;
    let (status, versions) = server.get("/api/v1/models/vad/versions").await;
    assert_eq!(status, 200);
    let numbers: Vec<u64> = versions.as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1], "no half version");
    assert!(server.files("staging").is_empty(), "staging swept at start: {:?}", server.files("staging"));
    assert_eq!(server.files("sha256"), [first["sha256"].as_str().unwrap().to_string()]);

    // Version 1 still serves, and a new upload gets version 2.
    let body = serde_json::json!({"inputs": [
        {"name": "input", "shape": [1, 576], "datatype": "FP32", "data": vec![0.0f32; 576]},
        {"name": "h", "shape": [1, 1, 128], "datatype": "FP32", "data": vec![0.0f32; 128]},
        {"name": "c", "shape": [1, 1, 128], "datatype": "FP32", "data": vec![0.0f32; 128]},
    ]});
    let (status, answer) = server.post_json("/v2/models/vad/infer", &body).await;
    assert_eq!(status, 200, "{answer}");
    let second = server.push("vad", "silero_vad.onnx", "").await;
    assert_eq!(second["version"], 2);
    assert_eq!(server.files("sha256").len(), 1, "identical content is stored once");
    server.stop();
}
