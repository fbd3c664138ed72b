use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;

fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{metrics}"))
}

async fn metrics(server: &TestServer) -> String {
    server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap()
}

fn digit_rows(seed: usize) -> Vec<f32> {
    (0..64).map(|i| ((i * 7 + seed * 13) % 17) as f32 / 16.0).collect()
}

/// Binary V2 request for `images` EfficientNet inputs (all zeros).
fn efficientnet_request(images: usize) -> (Vec<u8>, String) {
    let size = images * 3 * 224 * 224 * 4;
    let header = format!(
        r#"{{"inputs":[{{"name":"input","shape":[{images},3,224,224],"datatype":"FP32","parameters":{{"binary_data_size":{size}}}}}]}}"#
    );
    let mut body = header.clone().into_bytes();
    body.resize(header.len() + size, 0);
    (body, header.len().to_string())
}

#[tokio::test]
async fn concurrent_requests_are_merged_and_split_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    server.push("cnn", "cnn.onnx", "?config=%7B%22max_batch_size%22%3A16%2C%22max_queue_delay_us%22%3A50000%7D").await;

    // One at a time first: the reference answers.
    let mut expected = Vec::new();
    for seed in 0..8 {
        let body = json!({"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": digit_rows(seed)}]});
        let (status, answer) = server.post_json("/v2/models/cnn/infer", &body).await;
        assert_eq!(status, 200, "{answer}");
        expected.push(answer["outputs"][0]["data"].clone());
    }
    let before = metric(&metrics(&server).await, "yunmo_inference_batch_requests_count{");

    // Then all at once: they wait up to 50 ms for each other and go in fewer calls.
    let mut tasks = Vec::new();
    for seed in 0..8 {
        let client = server.client.clone();
        let url = format!("{}/v2/models/cnn/infer", server.url);
        let body = json!({"id": seed.to_string(), "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": digit_rows(seed)}]});
        tasks.push(tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }));
    }
    for (seed, task) in tasks.into_iter().enumerate() {
        let answer = task.await.unwrap();
        assert_eq!(answer["id"], seed.to_string());
        let got: Vec<f64> = answer["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let want: Vec<f64> = expected[seed].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(got.len(), 10);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "request {seed}: {got:?} != {want:?}");
        }
    }
    let text = metrics(&server).await;
    let calls = metric(&text, "yunmo_inference_batch_requests_count{") - before;
    assert!(calls < 8.0, "8 concurrent requests took {calls} runtime calls: no batching happened");
    server.stop();
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__SCHEDULER__QUEUE_CAPACITY", "2")]).await;
    server.push("effnet", "efficientnet_lite0.onnx", "").await;
    let (status, _) = server.get("/v2/models/effnet/ready").await;
    assert_eq!(status, 200);
    let (body, length) = efficientnet_request(2);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let request = server
            .client
            .post(format!("{}/v2/models/effnet/infer", server.url))
            .header("Inference-Header-Content-Length", length.clone())
            .body(body.clone());
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), retry_after)
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => ok += 1,
            (429, Some(retry)) => {
                assert_eq!(retry, "1");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(ok >= 1 && refused >= 1, "{ok} served, {refused} refused");
    assert!(ok <= 2 + 2, "at most one call in flight per instance plus queue_capacity waiting, got {ok} served");
    server.stop();
}

#[tokio::test]
async fn slow_requests_time_out_with_504_and_abandoned_ones_are_not_computed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__SCHEDULER__REQUEST_TIMEOUT_MS", "100")]).await;
    server.push("effnet", "efficientnet_lite0.onnx", "").await;
    let (status, _) = server.get("/v2/models/effnet/ready").await;
    assert_eq!(status, 200);
    let infer = |(body, length): (Vec<u8>, String)| {
        server
            .client
            .post(format!("{}/v2/models/effnet/infer", server.url))
            .header("Inference-Header-Content-Length", length)
            .body(body)
            .send()
    };
    // The first (32 images, about a second of compute on 2 cores) occupies the only instance; the second
    // (one image, sent well inside that second) waits behind it, times out, and is never computed.
    let first = tokio::spawn(infer(efficientnet_request(32)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = infer(efficientnet_request(1)).await.unwrap();
    assert_eq!(second.status().as_u16(), 504);
    let message: Value = second.json().await.unwrap();
    assert!(message["error"].as_str().unwrap().contains("request_timeout = 100 ms"), "{message}");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status().as_u16(), 504, "32 images take longer than 100 ms");
    // Let the instance finish the first call, then check the second was dropped unseen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(&server).await;
        if text.lines().any(|l| l.starts_with("yunmo_inference_dropped_total{") && l.ends_with(" 1")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the abandoned request was not dropped:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
}
