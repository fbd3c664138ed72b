//! `GET /api/v1/stats`: every request to a loaded version is counted once, in the second it ended, and a
//! tenant's key sees only the versions its tenant can see.

use serde_json::{Value, json};

use crate::cluster::{call, iris};
use crate::harness::TestServer;

const ADMIN: &str = "ym_stats_bootstrap-admin-secret-0123456789abcdef";

fn totals(stats: &Value, model: &str) -> Option<(u64, u64)> {
    let versions = stats["versions"].as_array()?;
    let entry = versions.iter().find(|entry| entry["model"] == model)?;
    Some((entry["totals"]["requests"].as_u64()?, entry["totals"]["failed"].as_u64()?))
}

async fn upload(server: &TestServer, key: &str, model: &str) {
    assert_eq!(call(server, reqwest::Method::POST, "/api/v1/models", key, Some(json!({"name": model}))).await.0, 201);
    let bytes = std::fs::read(crate::harness::fixture("iris_mlp.onnx")).unwrap();
    let url = format!("{}/api/v1/models/{model}/versions", server.url);
    assert_eq!(server.client.post(url).bearer_auth(key).body(bytes).send().await.unwrap().status(), 201);
}

#[tokio::test]
async fn live_stats_count_every_request_once_and_follow_what_a_key_can_see() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__AUTH__BOOTSTRAP_KEY", ADMIN)]).await;
    upload(&server, ADMIN, "iris").await;
    assert_eq!(call(&server, reqwest::Method::POST, "/api/v1/tenants", ADMIN, Some(json!({"name": "acme"}))).await.0, 201);
    let scopes = json!({"tenant": "acme", "scopes": ["models:read", "models:write", "infer"]});
    let (_, made) = call(&server, reqwest::Method::POST, "/api/v1/keys", ADMIN, Some(scopes)).await;
    let tenant_key = made["key"].as_str().unwrap().to_string();
    upload(&server, &tenant_key, "mine").await;

    let wrong_shape = json!({ "inputs": [{ "name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0] }] });
    for request in 0..28 {
        let body = if request % 10 == 9 { wrong_shape.clone() } else { iris() };
        let (status, _) = call(&server, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(body)).await;
        assert_eq!(status, if request % 10 == 9 { 400 } else { 200 });
    }
    for _ in 0..4 {
        assert_eq!(call(&server, reqwest::Method::POST, "/v2/models/mine/infer", &tenant_key, Some(iris())).await.0, 200);
    }

    let (status, stats) = call(&server, reqwest::Method::GET, "/api/v1/stats?seconds=120", ADMIN, None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(totals(&stats, "iris"), Some((28, 2)), "{stats}");
    assert_eq!(totals(&stats, "acme/mine"), Some((4, 0)), "the admin sees every tenant's versions, qualified: {stats}");
    let iris_entry = stats["versions"].as_array().unwrap().iter().find(|entry| entry["model"] == "iris").unwrap();
    let series = &iris_entry["series"];
    for column in ["t", "requests", "failed", "tokens", "p50_ms", "p99_ms"] {
        assert_eq!(series[column].as_array().unwrap().len(), 120, "{column}");
    }
    assert!(series["p99_ms"].as_array().unwrap().iter().any(Value::is_f64), "a latency where requests ended");
    let failures = series["failures"].as_object().unwrap();
    let kinds: Vec<&str> = failures.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["cancelled", "failed", "invalid", "overloaded", "timeout"]);
    let sum = |kind: &str| failures[kind].as_array().unwrap().iter().map(|count| count.as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("invalid"), 2, "the wrong shapes are the caller's mistakes: {series}");
    assert_eq!(kinds.iter().map(|kind| sum(kind)).sum::<u64>(), 2, "and the only failures");
    assert!(series.get("first_token_p50_ms").is_none(), "token timings are for LLMs");
    assert_eq!(iris_entry["queue_capacity"], 1024);

    let (status, own) = call(&server, reqwest::Method::GET, "/api/v1/stats?model=mine", &tenant_key, None).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(totals(&own, "mine"), Some((4, 0)), "a tenant names its own model without the prefix: {own}");
    assert_eq!(own["versions"].as_array().unwrap().len(), 1, "and sees nothing of the default tenant's private model: {own}");

    for bad in ["seconds=0", "seconds=901", "seconds=x", "window=60"] {
        let (status, body) = call(&server, reqwest::Method::GET, &format!("/api/v1/stats?{bad}"), ADMIN, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    server.stop();
}
