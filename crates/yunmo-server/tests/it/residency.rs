use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{TestServer, fixture};

/// State of every version in the repository index, by model name.
async fn states(server: &TestServer) -> BTreeMap<String, String> {
    let (status, body) = server.post_json("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["state"].as_str().unwrap().to_string())).collect()
}

async fn load(server: &TestServer, name: &str) {
    let (status, body) = server.post_json(&format!("/v2/repository/models/{name}/load"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_memory_budget_unloads_the_least_recently_used_model() {
    let size = |name: &str| std::fs::metadata(fixture(name)).unwrap().len();
    let (cnn, mlp, logreg) = (size("cnn.onnx"), size("iris_mlp.onnx"), size("iris_logreg.onnx"));
    // Room for the CNN and one iris model, not for all three.
    let budget = (cnn + mlp.max(logreg) + mlp.min(logreg) / 2).to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__SCHEDULER__MEMORY_BUDGET_BYTES", budget.as_str())]).await;
    server.push("cnn", "cnn.onnx", "").await;
    server.push("mlp", "iris_mlp.onnx", "").await;
    server.push("logreg", "iris_logreg.onnx", "").await;
    load(&server, "cnn").await;
    load(&server, "mlp").await;
    // Use the CNN, so that the MLP is now the least recently used.
    let (status, body) = server.get("/v2/models/cnn/ready").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.infer_iris("/v2/models/logreg/infer").await;
    assert_eq!(status, 200);
    let after = states(&server).await;
    assert_eq!(after["cnn"], "READY");
    assert_eq!(after["logreg"], "READY");
    assert_eq!(after["mlp"], "AVAILABLE", "the least recently used model makes room: {after:?}");
    // It loads again on its next request, evicting the least recently used (the CNN).
    let (status, _) = server.infer_iris("/v2/models/mlp/infer").await;
    assert_eq!(status, 200);
    let after = states(&server).await;
    assert_eq!((after["mlp"].as_str(), after["logreg"].as_str(), after["cnn"].as_str()), ("READY", "READY", "AVAILABLE"), "{after:?}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains("yunmo_model_evictions_total{reason=\"memory\"} 2"), "{metrics}");
    server.stop();
}

#[tokio::test]
async fn idle_models_are_unloaded_and_load_again_on_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__SCHEDULER__IDLE_UNLOAD_SECONDS", "1")]).await;
    server.push("mlp", "iris_mlp.onnx", "").await;
    let (status, _) = server.infer_iris("/v2/models/mlp/infer").await;
    assert_eq!(status, 200);
    assert_eq!(states(&server).await["mlp"], "READY");
    let deadline = Instant::now() + Duration::from_secs(10);
    while states(&server).await["mlp"] == "READY" {
        assert!(Instant::now() < deadline, "the idle model stayed loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states(&server).await["mlp"], "AVAILABLE");
    let (status, _) = server.infer_iris("/v2/models/mlp/infer").await;
    assert_eq!(status, 200, "an idle-unloaded model loads again lazily");
    server.stop();
}
