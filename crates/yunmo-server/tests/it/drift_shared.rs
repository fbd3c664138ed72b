//! Drift baselines are state the replicas share: a baseline frozen on one replica is the one every replica
//! judges against (stored in PostgreSQL, announced by the change feed), a reset on one starts them all over,
//! and a restart keeps it (SQLite too).

use std::time::Duration;

use serde_json::{Value, json};
use yunmo_drift::draws::Normal;
use yunmo_testkit::{Postgres, S3};

use crate::cluster::{ADMIN, call, cluster_env, start, within};
use crate::harness::{TestServer, fixture};

fn rows(normal: &mut Normal, rows: usize) -> Value {
    let data: Vec<f64> = (0..rows * 4).map(|_| 3.0 + normal.next_normal()).collect();
    json!({ "inputs": [{ "name": "X", "shape": [rows, 4], "datatype": "FP32", "data": data }] })
}

async fn drift(server: &TestServer) -> Value {
    let (status, report) = call(server, reqwest::Method::GET, "/api/v1/models/iris/versions/1/drift", ADMIN, None).await;
    assert_eq!(status, 200, "{report}");
    report
}

async fn push_iris(server: &TestServer) {
    assert_eq!(call(server, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "iris"}))).await.0, 201);
    let bytes = std::fs::read(fixture("iris_mlp.onnx")).unwrap();
    let url = format!("{}/api/v1/models/iris/versions", server.url);
    let response = server.client.post(url).bearer_auth(ADMIN).body(bytes).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{body}\nthe end of the server's log:\n{}", server.log_tail(30));
}

#[tokio::test]
async fn replicas_share_one_baseline_and_a_reset() {
    let postgres = Postgres::start();
    let url = postgres.create_database("drift");
    let s3 = S3::start("models");
    let env = cluster_env(&url, &s3);
    let dir = tempfile::tempdir().unwrap();
    let dirs = [dir.path().join("a"), dir.path().join("b")];
    let (a, b) = tokio::join!(start(&dirs[0], &env), start(&dirs[1], &env));
    push_iris(&a).await;
    let mut normal = Normal::new(5);
    // 2,000 rows through A freeze its baseline, which it stores.
    for _ in 0..20 {
        assert_eq!(call(&a, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(rows(&mut normal, 100))).await.0, 200);
    }
    within(Duration::from_secs(10), "A froze its baseline", async || drift(&a).await["baseline"]["frozen_at"].is_u64()).await;
    let frozen = drift(&a).await["baseline"].clone();
    // B never saw those rows: loading the version takes the stored baseline.
    assert_eq!(call(&b, reqwest::Method::POST, "/api/v1/models/iris/versions/1/load", ADMIN, None).await.0, 200);
    within(Duration::from_secs(5), "B takes A's baseline", async || drift(&b).await["baseline"] == frozen).await;
    assert_eq!(drift(&b).await["state"], "insufficient_data", "frozen, with no window rows of its own yet");
    // A reset through A starts both over.
    assert_eq!(call(&a, reqwest::Method::DELETE, "/api/v1/models/iris/versions/1/drift/baseline", ADMIN, None).await.0, 200);
    within(Duration::from_secs(5), "B starts over after A's reset", async || drift(&b).await["state"] == "collecting_baseline").await;
    assert_eq!(drift(&a).await["state"], "collecting_baseline");
    // The next baseline frozen (now on B) is stored over the reset, and A takes it.
    for _ in 0..20 {
        assert_eq!(call(&b, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(rows(&mut normal, 100))).await.0, 200);
    }
    within(Duration::from_secs(10), "B froze a new baseline", async || drift(&b).await["baseline"]["frozen_at"].is_u64()).await;
    let refrozen = drift(&b).await["baseline"].clone();
    within(Duration::from_secs(5), "A takes B's new baseline", async || drift(&a).await["baseline"] == refrozen).await;
}

#[tokio::test]
async fn a_restart_keeps_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__AUTH__BOOTSTRAP_KEY", ADMIN)];
    let server = TestServer::start(dir.path(), &env).await;
    push_iris(&server).await;
    let mut normal = Normal::new(6);
    for _ in 0..20 {
        assert_eq!(call(&server, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(rows(&mut normal, 100))).await.0, 200);
    }
    within(Duration::from_secs(10), "the baseline froze", async || drift(&server).await["baseline"]["frozen_at"].is_u64()).await;
    // The store write follows the freeze on the runtime (one row): give it a second before stopping.
    let frozen = drift(&server).await["baseline"].clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.stop();
    let server = TestServer::start(dir.path(), &env).await;
    assert_eq!(call(&server, reqwest::Method::POST, "/api/v1/models/iris/versions/1/load", ADMIN, None).await.0, 200);
    assert_eq!(drift(&server).await["baseline"], frozen, "the same baseline after the restart, without new rows");
}
