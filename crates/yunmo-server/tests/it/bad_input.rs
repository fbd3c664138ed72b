use std::io::{Read, Write};

use serde_json::json;

use crate::harness::TestServer;

fn expect_error(status: u16, body: &serde_json::Value, want_status: u16, want_text: &str) {
    assert_eq!(status, want_status, "body: {body}");
    let message = body["error"].as_str().or_else(|| body["error"]["message"].as_str()).unwrap_or_default();
    assert!(message.contains(want_text), "message {message:?} should contain {want_text:?}");
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_4xx_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        &[("YUNMO__SERVER__MAX_BODY_BYTES", "4096"), ("YUNMO__SERVER__MAX_HEADERS", "20"), ("YUNMO__SERVER__MAX_HEADER_BYTES", "2048")],
    )
    .await;
    server.push("iris", "iris_mlp.onnx", "").await;
    let infer = "/v2/models/iris/infer";

    let (status, body) = server.post_bytes(infer, b"{\"inputs\": [".to_vec(), &[]).await;
    expect_error(status, &body, 400, "malformed inference request JSON");

    let wrong_shape = json!({"inputs": [{"name": "X", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]});
    let (status, body) = server.post_json(infer, &wrong_shape).await;
    expect_error(status, &body, 400, "input 'X': expected shape [-1, 4] (-1 is any size), got [1, 5]");

    let wrong_type = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]});
    let (status, body) = server.post_json(infer, &wrong_type).await;
    expect_error(status, &body, 400, "input 'X': expected datatype FP32, got INT64");

    let wrong_count = json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let (status, body) = server.post_json(infer, &wrong_count).await;
    expect_error(status, &body, 400, "input 'X': shape calls for 8 elements, 'data' has 4");

    let short_binary = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let mut body_bytes = short_binary.as_bytes().to_vec();
    body_bytes.extend_from_slice(&[0u8; 8]);
    let length = short_binary.len().to_string();
    let (status, body) = server.post_bytes(infer, body_bytes, &[("Inference-Header-Content-Length", &length)]).await;
    expect_error(status, &body, 400, "input 'X': binary_data_size 16 runs past the end of the body");

    let (status, body) = server.post_bytes(infer, b"{}".to_vec(), &[("Inference-Header-Content-Length", "x")]).await;
    expect_error(status, &body, 400, "Inference-Header-Content-Length must be a non-negative integer");

    let (status, body) = server.infer_iris("/v2/models/nope/infer").await;
    expect_error(status, &body, 404, "model 'nope' not found");
    let (status, body) = server.infer_iris("/v2/models/iris/versions/9/infer").await;
    expect_error(status, &body, 404, "model 'iris' has no version 9");
    let (status, body) = server.infer_iris("/v2/models/iris/versions/abc/infer").await;
    expect_error(status, &body, 400, "version must be a positive integer, got 'abc'");

    let (status, body) = server.post_bytes(infer, vec![b' '; 5000], &[]).await;
    expect_error(status, &body, 413, "larger than server.max_body_bytes = 4096");

    // Headers past max_headers or max_header_bytes: 431 in each route group's own error shape.
    let many: Vec<(String, String)> = (0..25).map(|i| (format!("x-extra-{i}"), "1".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, body) = server.post_bytes(infer, b"{}".to_vec(), &many).await;
    expect_error(status, &body, 431, "more than max_headers = 20");
    let big = "x".repeat(3000);
    for path in [infer, "/v1/chat/completions", "/api/v1/models"] {
        let (status, body) = server.post_bytes(path, b"{}".to_vec(), &[("x-big", &big)]).await;
        expect_error(status, &body, 431, "more than max_header_bytes = 2048");
        let shape_ok = match path {
            "/v1/chat/completions" => body["error"]["type"] == "invalid_request_error" && body["error"]["code"] == "headers_too_large",
            "/api/v1/models" => body["error"]["code"] == "headers_too_large",
            _ => body["error"].is_string(),
        };
        assert!(shape_ok, "{path}: {body}");
    }

    // Uploads: garbage, a truncated protobuf, an empty file. None is stored.
    let uploads = "/api/v1/models/iris/versions";
    let (status, body) = server.post_bytes(uploads, b"definitely not a model".to_vec(), &[]).await;
    expect_error(status, &body, 400, "not a model in a supported format");
    let mut truncated = std::fs::read(crate::harness::fixture("iris_mlp.onnx")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let (status, body) = server.post_bytes(uploads, truncated, &[]).await;
    expect_error(status, &body, 400, "the uploaded file was rejected");
    let (status, body) = server.post_bytes(uploads, Vec::new(), &[]).await;
    expect_error(status, &body, 400, "the uploaded model file is empty");
    let (status, body) = server.post_bytes("/api/v1/models/ghost/versions", b"x".to_vec(), &[]).await;
    expect_error(status, &body, 404, "model 'ghost' not found");
    let (status, body) = server.post_bytes(&format!("{uploads}?config=%7B%22instance_count%22%3A0%7D"), b"x".to_vec(), &[]).await;
    expect_error(status, &body, 400, "instance_count must be between 1 and 64, got 0");
    let (status, body) = server.post_json("/api/v1/models", &json!({"name": "bad name!"})).await;
    expect_error(status, &body, 400, "name must be 1 to 128 characters");
    let (status, body) = server.post_json("/api/v1/models", &json!({"name": "iris"})).await;
    expect_error(status, &body, 409, "model 'iris' already exists");
    let (status, body) = server.post_bytes("/api/v1/models", b"{not json".to_vec(), &[("content-type", "application/json")]).await;
    expect_error(status, &body, 400, "");

    // An upload cut off mid-way: the client promises 100000 bytes, sends 1000 and hangs up.
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(stream, "POST {uploads} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    stream.write_all(&[0x08; 1000]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    drop(stream);

    // Still exactly one version, one stored file, and nothing left in staging.
    let (status, versions) = server.get("/api/v1/models/iris/versions").await;
    assert_eq!(status, 200);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert_eq!(server.files("sha256").len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.files("staging").is_empty() {
        assert!(std::time::Instant::now() < deadline, "staging not cleaned: {:?}", server.files("staging"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A valid request the runtime fails on is a 500 naming the failure.
    server.push("fails", "fails.onnx", "").await;
    let fails = json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
    let (status, body) = server.post_json("/v2/models/fails/infer", &fails).await;
    expect_error(status, &body, 500, "inference failed");
    // The body says no more: the runtime's own message (its source paths, C++ signatures) is in the log.
    let message = body["error"].as_str().unwrap();
    assert!(!message.contains(".cc") && !message.contains("onnxruntime") && !message.contains("::"), "{message}");

    // And the server still serves.
    let (status, body) = server.infer_iris(infer).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["name"], "label");

    // Every outcome that reached the service was counted (requests refused while decoding count in the
    // HTTP metrics), with request, queue and compute times, loads and load time.
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"yunmo_inference_requests_total{model="iris",version="1",outcome="ok"} 1"#,
        r#"yunmo_inference_requests_total{model="iris",version="1",outcome="invalid_request"} 2"#,
        r#"yunmo_inference_requests_total{model="fails",version="1",outcome="inference_failed"} 1"#,
        r#"yunmo_inference_requests_total{model="",version="",outcome="model_not_found"} 2"#,
        r#"yunmo_inference_request_duration_seconds_count{model="iris",version="1"} 3"#,
        r#"yunmo_inference_queue_duration_seconds_count{model="iris",version="1"} 1"#,
        r#"yunmo_inference_compute_duration_seconds_count{model="iris",version="1"} 1"#,
        r#"yunmo_model_load_duration_seconds_count{model="iris"} 1"#,
        "yunmo_models_loaded 2",
        r#"yunmo_http_requests_total{route="/v2/models/{name}/infer",method="POST",status="4xx"} 10"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "metrics lack {line}:\n{metrics}");
    }
    server.stop();
}

/// Values the declared type cannot hold and empty tensors are 400s naming the input; every route group
/// answers unknown routes, wrong methods and bad query strings in its own error shape; an Open Inference
/// Protocol body may name its model, which must be the path's.
#[tokio::test]
async fn protocol_errors_answer_in_each_route_groups_own_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    server.push("iris", "iris_mlp.onnx", "").await;
    let infer = "/v2/models/iris/infer";
    let huge = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1.5e40, 1, 1, 1]}]});
    let (status, body) = server.post_json(infer, &huge).await;
    expect_error(status, &body, 400, "input 'X': element 0: value 1.5e40 is out of range for FP32");
    let empty = json!({"inputs": [{"name": "X", "shape": [0, 4], "datatype": "FP32", "data": []}]});
    let (status, body) = server.post_json(infer, &empty).await;
    expect_error(status, &body, 400, "input 'X': shape [0, 4] holds no elements");

    // The KServe SDK sends model_name (and model_version) in the body.
    let named = |name: &str, version: &str| {
        json!({"model_name": name, "model_version": version,
            "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    };
    let (status, body) = server.post_json(infer, &named("iris", "")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post_json(infer, &named("iris", "1")).await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("1")), "{body}");
    let (status, body) = server.post_json(infer, &named("other", "")).await;
    expect_error(status, &body, 400, "model_name 'other' in the body does not match the model 'iris' in the path");
    let (status, body) = server.post_json("/v2/models/iris/versions/1/infer", &named("iris", "2")).await;
    expect_error(status, &body, 400, "model_version '2' in the body does not match version 1 in the path");

    // Unknown routes, wrong methods, bad query strings: each group's own shape and status.
    let (status, body) = server.get("/v1/nothing").await;
    assert_eq!(
        (status, body["error"]["type"].as_str(), body["error"]["code"].as_str()),
        (404, Some("invalid_request_error"), Some("not_found")),
        "{body}"
    );
    let (status, body) = server.get("/api/v1/nothing").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = server.get("/v2/nothing").await;
    assert!(status == 404 && body["error"].is_string(), "{body}");
    let response = server.client.delete(format!("{}/v1/chat/completions", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let response = server.client.put(format!("{}/api/v1/models", server.url)).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let (status, body) = server.get("/api/v1/usage?bogus=1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("invalid query string"), "{body}");
    let (status, body) = server
        .client
        .put(format!("{}/api/v1/models/iris/sharing", server.url))
        .json(&json!({"tenants": ["ghost"]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!(status, 400, "an unknown tenant in a sharing call is not a missing model {body:?}");
    let (status, body) = server.post_bytes("/api/v1/models", br#"{"name": "x"}"#.to_vec(), &[("content-type", "text/plain")]).await;
    expect_error(status, &body, 415, "Content-Type: application/json");
    server.stop();
}
