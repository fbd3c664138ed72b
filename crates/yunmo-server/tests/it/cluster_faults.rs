//! What three replicas do while their stores go down and come back (real PostgreSQL, S3 and Redis, started
//! and stopped here), and when a replica is killed mid-upload: loaded models keep serving known callers,
//! what needs the missing store answers 503 with Retry-After, and everything recovers without a restart.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use yunmo_testkit::{Postgres, Redis, S3};

use crate::cluster::{ADMIN, call, cluster_env, iris, start, within};
use crate::harness::TestServer;

async fn upload(server: &TestServer, model: &str, fixture: &str) -> reqwest::Response {
    let bytes = std::fs::read(crate::harness::fixture(fixture)).unwrap();
    let url = format!("{}/api/v1/models/{model}/versions", server.url);
    server.client.post(url).bearer_auth(ADMIN).body(bytes).send().await.unwrap()
}

fn assert_unavailable(response: &reqwest::Response, what: &str) {
    assert_eq!(response.status(), 503, "{what}");
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{what}: Retry-After {retry}");
}

async fn infer_response(server: &TestServer, model: &str, key: &str) -> reqwest::Response {
    let url = format!("{}/v2/models/{model}/infer", server.url);
    server.client.post(url).bearer_auth(key).json(&iris()).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ride_out_each_store_going_down_and_recover_without_a_restart() {
    let mut postgres = Postgres::start();
    let url = postgres.create_database("faults");
    let mut s3 = S3::start("models");
    let mut redis = Redis::start();
    let mut env = cluster_env(&url, &s3);
    env.extend(
        [
            ("YUNMO__LIMITS__STORE", "redis".to_string()),
            ("YUNMO__LIMITS__REDIS_URL", redis.url()),
            // Cached keys go stale after 300 ms; the outage allowance keeps known ones working.
            ("YUNMO__AUTH__KEY_CACHE_MS", "300".into()),
        ]
        .map(|(key, value)| (key.to_string(), value)),
    );
    let dir = tempfile::tempdir().unwrap();
    let dirs = ["a", "b", "c"].map(|name| dir.path().join(name));
    let (a, b, c) = tokio::join!(start(&dirs[0], &env), start(&dirs[1], &env), start(&dirs[2], &env));

    for (model, file) in [("iris", "iris_mlp.onnx"), ("spare", "iris_logreg.onnx"), ("other", "diabetes_linreg.onnx")] {
        assert_eq!(call(&a, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": model}))).await.0, 201);
        assert_eq!(upload(&a, model, file).await.status(), 201);
    }
    let (_, made) =
        call(&a, reqwest::Method::POST, "/api/v1/tenants", ADMIN, Some(json!({"name": "acme", "limits": {"requests_per_second": 1000.0}})))
            .await;
    assert!(made.is_object());
    assert_eq!(call(&a, reqwest::Method::PUT, "/api/v1/models/iris/sharing", ADMIN, Some(json!({"public": true}))).await.0, 200);
    let (_, made) = call(&a, reqwest::Method::POST, "/api/v1/keys", ADMIN, Some(json!({"tenant": "acme", "scopes": ["infer"]}))).await;
    let tenant_key = made["key"].as_str().unwrap().to_string();
    for server in [&b, &c] {
        assert_eq!(infer_response(server, "iris", ADMIN).await.status(), 200);
        assert_eq!(infer_response(server, "iris", &tenant_key).await.status(), 200);
    }

    // PostgreSQL down: the loaded model serves known callers (past the key cache's 300 ms); writes get 503.
    postgres.pause();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for server in [&b, &c] {
        assert_eq!(infer_response(server, "iris", ADMIN).await.status(), 200, "serving with the database down");
        assert_eq!(infer_response(server, "iris", &tenant_key).await.status(), 200, "a known tenant key too");
        // Once a lookup found the database down, known keys are answered without waiting for it.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = std::time::Instant::now();
            assert_eq!(infer_response(server, "iris", &tenant_key).await.status(), 200);
            assert!(started.elapsed() < Duration::from_millis(1000), "a request took {:?} with the database down", started.elapsed());
        }
    }
    let response = b.client.post(format!("{}/api/v1/models", b.url)).bearer_auth(ADMIN).json(&json!({"name": "new"})).send().await.unwrap();
    assert_unavailable(&response, "a write with PostgreSQL down");
    postgres.resume();
    within(Duration::from_secs(20), "writes work again once PostgreSQL is back", async || {
        call(&b, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "new"}))).await.0 == 201
    })
    .await;
    // Changes reach the other replicas again: a key revoked on B is refused on C within a second.
    let (_, made) = call(&b, reqwest::Method::POST, "/api/v1/keys", ADMIN, Some(json!({"tenant": "acme", "scopes": ["infer"]}))).await;
    let (key, id) = (made["key"].as_str().unwrap().to_string(), made["id"].as_str().unwrap().to_string());
    assert_eq!(infer_response(&c, "iris", &key).await.status(), 200);
    assert_eq!(call(&b, reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), ADMIN, None).await.0, 200);
    within(Duration::from_secs(1), "a revocation after the restart reaches C", async || {
        infer_response(&c, "iris", &key).await.status() == 401
    })
    .await;

    // S3 down: what is loaded serves; an upload and a cold load (spare was never loaded on C) get 503.
    s3.pause();
    assert_eq!(infer_response(&c, "iris", ADMIN).await.status(), 200, "serving with S3 down");
    assert_unavailable(&upload(&a, "other", "cnn.onnx").await, "an upload with S3 down");
    assert_unavailable(&infer_response(&c, "spare", ADMIN).await, "a cold load with S3 down");
    s3.resume();
    within(Duration::from_secs(20), "a cold load works once S3 is back", async || infer_response(&c, "spare", ADMIN).await.status() == 200)
        .await;
    assert_eq!(upload(&a, "other", "cnn.onnx").await.status(), 201, "uploads work again");

    // Redis down: limited callers get 503 (limits.on_store_failure = deny), unlimited ones are served.
    redis.pause();
    assert_unavailable(&infer_response(&b, "iris", &tenant_key).await, "a limited caller with Redis down");
    assert_eq!(infer_response(&b, "iris", ADMIN).await.status(), 200, "an unlimited caller never touches Redis");
    redis.resume();
    within(Duration::from_secs(10), "limits work again once Redis is back", async || {
        infer_response(&b, "iris", &tenant_key).await.status() == 200
    })
    .await;

    // C is killed in the middle of an upload: no half version anywhere, A and B serve on, and C restarts.
    let model = std::fs::read(crate::harness::fixture("efficientnet_lite0.onnx")).unwrap();
    let mut stream = std::net::TcpStream::connect(&c.address).unwrap();
    write!(
        stream,
        "POST /api/v1/models/spare/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        model.len()
    )
    .unwrap();
    stream.write_all(&model[..model.len() / 2]).unwrap();
    stream.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill();
    drop(stream);
    for server in [&a, &b] {
        let (status, versions) = call(server, reqwest::Method::GET, "/api/v1/models/spare/versions", ADMIN, None).await;
        assert_eq!(status, 200);
        assert_eq!(versions.as_array().unwrap().len(), 1, "no half version: {versions}");
        assert_eq!(infer_response(server, "iris", ADMIN).await.status(), 200, "the others serve on");
    }
    let c = start(&dirs[2], &env).await;
    assert_eq!(infer_response(&c, "spare", ADMIN).await.status(), 200, "C serves again");

    // C is killed in the middle of a load (of a file it has yet to download): A and B serve on, C's cache
    // holds no partial file under a file's name, and once restarted C loads it.
    assert_eq!(call(&a, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "big"}))).await.0, 201);
    assert_eq!(upload(&a, "big", "efficientnet_lite0.onnx").await.status(), 201);
    let load = {
        let (client, url) = (c.client.clone(), format!("{}/v2/repository/models/big/load", c.url));
        tokio::spawn(async move { client.post(url).bearer_auth(ADMIN).json(&json!({})).send().await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.kill();
    let _ = load.await;
    for server in [&a, &b] {
        assert_eq!(infer_response(server, "iris", ADMIN).await.status(), 200, "the others serve on");
    }
    let cache = dirs[2].join("data").join("cache");
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let output = std::process::Command::new("sha256sum").arg(&path).output().unwrap();
            assert!(String::from_utf8_lossy(&output.stdout).starts_with(&name), "{name} in the cache holds other bytes");
        }
    }
    let c = start(&dirs[2], &env).await;
    let (status, body) = call(&c, reqwest::Method::POST, "/v2/repository/models/big/load", ADMIN, Some(json!({}))).await;
    assert_eq!(status, 200, "C loads `big` after its restart: {body}");
    for server in [a, b, c] {
        server.stop();
    }
}
