//! Three replicas of the real binary on one PostgreSQL and one S3 bucket (real servers, started here):
//! started at once on an empty database; an upload through one serves from the others; a revoked key, a
//! changed limit and an unload through one apply on the others within a second; a replica restarted with
//! the bucket down serves from its cache.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yunmo_testkit::{Postgres, S3};

use crate::harness::TestServer;

pub(crate) const ADMIN: &str = "ym_cluster_bootstrap-admin-secret-0123456789abcdef";

pub(crate) fn cluster_env(postgres: &str, s3: &S3) -> Vec<(String, String)> {
    [
        ("YUNMO__AUTH__ENABLED", "true"),
        ("YUNMO__AUTH__BOOTSTRAP_KEY", ADMIN),
        // The key cache would keep a revoked key for this long without notifications: longer than the test.
        ("YUNMO__AUTH__KEY_CACHE_MS", "60000"),
        ("YUNMO__STORAGE__POSTGRES_URL", postgres),
        ("YUNMO__STORAGE__S3__BUCKET", s3.bucket()),
        ("YUNMO__STORAGE__S3__ENDPOINT", &s3.endpoint()),
        ("YUNMO__STORAGE__S3__ACCESS_KEY_ID", yunmo_testkit::S3_ACCESS_KEY),
        ("YUNMO__STORAGE__S3__SECRET_ACCESS_KEY", yunmo_testkit::S3_SECRET_KEY),
    ]
    .iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

pub(crate) async fn start(dir: &std::path::Path, env: &[(String, String)]) -> TestServer {
    std::fs::create_dir_all(dir).unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    TestServer::start(dir, &env).await
}

pub(crate) async fn call(server: &TestServer, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server.client.request(method, format!("{}{path}", server.url)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) fn iris() -> Value {
    json!({ "inputs": [{ "name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] }] })
}

/// Polls `probe` until it returns true; returns how long that took, failing after `limit`.
pub(crate) async fn within(limit: Duration, what: &str, mut probe: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if probe().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_models_keys_limits_and_load_state() {
    let postgres = Postgres::start();
    let url = postgres.create_database("cluster");
    let mut s3 = S3::start("models");
    let env = cluster_env(&url, &s3);
    let dir = tempfile::tempdir().unwrap();

    // Three replicas at once on an empty database all become ready.
    let dirs = ["a", "b", "c"].map(|name| dir.path().join(name));
    let (a, b, c) = tokio::join!(start(&dirs[0], &env), start(&dirs[1], &env), start(&dirs[2], &env));

    // Upload through A; B and C answer the same.
    let (status, body) = call(&a, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "iris"}))).await;
    assert_eq!(status, 201, "{body}");
    let bytes = std::fs::read(crate::harness::fixture("iris_mlp.onnx")).unwrap();
    let response = a.client.post(format!("{}/api/v1/models/iris/versions", a.url)).bearer_auth(ADMIN).body(bytes).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let (status, from_a) = call(&a, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(iris())).await;
    assert_eq!(status, 200, "{from_a}");
    for other in [&b, &c] {
        let (status, body) = call(other, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(iris())).await;
        assert_eq!((status, &body["outputs"]), (200, &from_a["outputs"]));
    }

    // A tenant's key made on A works on B; revoked on A, B and C refuse it within a second.
    let (status, _) = call(&a, reqwest::Method::POST, "/api/v1/tenants", ADMIN, Some(json!({"name": "acme"}))).await;
    assert_eq!(status, 201);
    let (status, made) =
        call(&a, reqwest::Method::POST, "/api/v1/keys", ADMIN, Some(json!({"tenant": "acme", "scopes": ["models:read", "infer"]}))).await;
    assert_eq!(status, 201, "{made}");
    let (key, id) = (made["key"].as_str().unwrap().to_string(), made["id"].as_str().unwrap().to_string());
    for server in [&b, &c] {
        assert_eq!(call(server, reqwest::Method::GET, "/api/v1/models", &key, None).await.0, 200, "the key works everywhere");
    }
    assert_eq!(call(&a, reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), ADMIN, None).await.0, 200);
    for server in [&b, &c] {
        within(Duration::from_secs(1), "a key revoked on A is refused", async || {
            call(server, reqwest::Method::GET, "/api/v1/models", &key, None).await.0 == 401
        })
        .await;
    }

    // A tenant limit changed on A applies on B (iris is public, so acme's key may call it).
    let (status, body) = call(&a, reqwest::Method::PUT, "/api/v1/models/iris/sharing", ADMIN, Some(json!({"public": true}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, made) =
        call(&a, reqwest::Method::POST, "/api/v1/keys", ADMIN, Some(json!({"tenant": "acme", "scopes": ["models:read", "infer"]}))).await;
    let key = made["key"].as_str().unwrap().to_string();
    // The sharing change reaches B within a second, like every change (B had iris cached as private).
    within(Duration::from_secs(1), "iris made public on A is public on B", async || {
        call(&b, reqwest::Method::POST, "/v2/models/iris/infer", &key, Some(iris())).await.0 == 200
    })
    .await;
    for _ in 0..2 {
        let (status, body) = call(&b, reqwest::Method::POST, "/v2/models/iris/infer", &key, Some(iris())).await;
        assert_eq!(status, 200, "B caches the key with no limit: {body}");
    }
    let limits = json!({"requests_per_second": 0.01, "requests_burst": 1});
    assert_eq!(call(&a, reqwest::Method::PUT, "/api/v1/tenants/acme/limits", ADMIN, Some(limits)).await.0, 200);
    within(Duration::from_secs(1), "a limit set on A applies on B", async || {
        call(&b, reqwest::Method::POST, "/v2/models/iris/infer", &key, Some(iris())).await.0 == 429
    })
    .await;

    // Unload through A: every replica refuses the version; load through A: every replica serves it.
    let (status, body) = call(&a, reqwest::Method::POST, "/v2/repository/models/iris/unload", ADMIN, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    for server in [&b, &c] {
        within(Duration::from_secs(1), "an unload through A applies on B and C", async || {
            call(server, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(iris())).await.0 == 503
        })
        .await;
    }
    assert_eq!(call(&a, reqwest::Method::POST, "/v2/repository/models/iris/load", ADMIN, Some(json!({}))).await.0, 200);
    for server in [&b, &c] {
        within(Duration::from_secs(5), "a load through A applies on B and C", async || {
            call(server, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(iris())).await.0 == 200
        })
        .await;
    }

    // C is killed; with the bucket down it restarts and serves from its cache.
    c.kill();
    s3.pause();
    let c = start(&dirs[2], &env).await;
    let (status, body) = call(&c, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(iris())).await;
    assert_eq!((status, &body["outputs"]), (200, &from_a["outputs"]), "served from the local cache, S3 down: {body}");
    s3.resume();
    for server in [a, b, c] {
        server.stop();
    }
}
