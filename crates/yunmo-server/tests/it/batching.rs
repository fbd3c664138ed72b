use std::time::Duration;

use serde_json::{Value, json};

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
        let body =
            json!({"id": seed.to_string(), "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": digit_rows(seed)}]});
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

/// A request for the `slow` fixture with `rows` rows: about 1.6 ms of one core per row, a few bytes each.
fn slow_request(rows: usize) -> Value {
    json!({"inputs": [{"name": "x", "shape": [rows, 1], "datatype": "FP32", "data": vec![1.0f32; rows]}]})
}

/// Starts a server whose `slow` model runs on one ONNX Runtime thread, so a 1,024-row request keeps the
/// only instance busy for well over a second while other requests arrive.
async fn slow_server(dir: &std::path::Path, env: &[(&str, &str)]) -> TestServer {
    let mut all = vec![("YUNMO__BACKENDS__ONNX__INTRA_OP_THREADS", "1")];
    all.extend_from_slice(env);
    let server = TestServer::start(dir, &all).await;
    server.push("slow", "slow.onnx", "").await;
    let (status, _) = server.get("/v2/models/slow/ready").await;
    assert_eq!(status, 200);
    server
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = slow_server(dir.path(), &[("YUNMO__SCHEDULER__QUEUE_CAPACITY", "2")]).await;
    let send = |body: Value| {
        let request = server.client.post(format!("{}/v2/models/slow/infer", server.url)).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), retry_after)
        }
    };
    // The long request holds the only instance; meanwhile ten small ones arrive: two fit in the queue,
    // eight are refused.
    let long = tokio::spawn(send(slow_request(1024)));
    // The batching task has handed the long request to the instance once it has recorded a batch.
    server.wait_for_metric_value("yunmo_inference_batch_size_count{model=\"slow\"", |batches| batches >= 1.0).await;
    let small: Vec<_> = (0..10).map(|_| tokio::spawn(send(slow_request(1)))).collect();
    let mut ok = 0;
    let mut refused = 0;
    for task in small {
        match task.await.unwrap() {
            (200, _) => ok += 1,
            (429, Some(retry)) => {
                assert_eq!(retry, "1");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(long.await.unwrap().0, 200);
    assert_eq!((ok, refused), (2, 8), "queue_capacity 2 behind one busy instance");
    server.stop();
}

#[tokio::test]
async fn slow_requests_time_out_with_504_and_abandoned_ones_are_not_computed() {
    let dir = tempfile::tempdir().unwrap();
    let server = slow_server(dir.path(), &[("YUNMO__SCHEDULER__REQUEST_TIMEOUT_MS", "100")]).await;
    let infer = |body: Value| server.client.post(format!("{}/v2/models/slow/infer", server.url)).json(&body).send();
    // The first occupies the only instance for over a second; the second waits behind it, times out,
    // and is never computed.
    let first = tokio::spawn(infer(slow_request(1024)));
    server.wait_for_metric_value("yunmo_inference_batch_size_count{model=\"slow\"", |batches| batches >= 1.0).await;
    let second = infer(slow_request(1)).await.unwrap();
    assert_eq!(second.status().as_u16(), 504);
    let message: Value = second.json().await.unwrap();
    assert!(message["error"].as_str().unwrap().contains("request_timeout = 100 ms"), "{message}");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status().as_u16(), 504, "1,024 rows take longer than 100 ms");
    // Once the instance finishes the first call, the second is dropped unseen.
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
