//! Jobs are state the replicas share (PostgreSQL): every replica's workers claim from one queue, each job
//! runs exactly once and makes one version, and a cancel through a replica that does not run the job
//! stops it on the one that does.

use std::time::Duration;

use serde_json::{Value, json};
use yunmo_testkit::{Postgres, S3};

use crate::cluster::{ADMIN, call, cluster_env, start, within};
use crate::harness::TestServer;

/// A CSV of `rows` rows: eight features and a noisy linear target.
fn dataset(rows: usize) -> String {
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut csv = String::from("x0,x1,x2,x3,x4,x5,x6,x7,y\n");
    for _ in 0..rows {
        let x: Vec<f64> = (0..8).map(|_| next()).collect();
        let y: f64 = x.iter().enumerate().map(|(i, v)| v * (i as f64 - 3.5)).sum::<f64>() + 0.1 * next();
        let cells: Vec<String> = x.iter().chain(std::iter::once(&y)).map(|v| format!("{v:.5}")).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    csv
}

async fn job(server: &TestServer, id: &str) -> Value {
    let (status, body) = call(server, reqwest::Method::GET, &format!("/api/v1/jobs/{id}"), ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The owner named by the job's "Attempt N started on OWNER." events.
async fn runners(server: &TestServer, id: &str) -> Vec<String> {
    let (status, body) = call(server, reqwest::Method::GET, &format!("/api/v1/jobs/{id}/events"), ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| {
            event["message"].as_str()?.strip_prefix("Attempt 1 started on ").map(|owner| owner.trim_end_matches('.').to_string())
        })
        .collect()
}

async fn create(server: &TestServer, model: &str, file: &str, epochs: u32) -> String {
    let body = json!({ "kind": "train", "model": model, "training_file": file,
        "params": { "family": "mlp_regressor", "target": "y", "hidden_layers": [64], "epochs": epochs } });
    let (status, body) = call(server, reqwest::Method::POST, "/api/v1/jobs", ADMIN, Some(body)).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn replicas_share_the_queue_run_each_job_once_and_cancel_across_replicas() {
    let postgres = Postgres::start();
    let url = postgres.create_database("jobs");
    let s3 = S3::start("models");
    let env = cluster_env(&url, &s3);
    let dir = tempfile::tempdir().unwrap();
    let dirs = [dir.path().join("a"), dir.path().join("b")];
    let (a, b) = tokio::join!(start(&dirs[0], &env), start(&dirs[1], &env));
    let upload = a.client.post(format!("{}/api/v1/files?filename=linear.csv", a.url)).bearer_auth(ADMIN).body(dataset(3000));
    let file: Value = upload.send().await.unwrap().json().await.unwrap();
    let file = file["id"].as_str().unwrap().to_string();
    // Four jobs of about two seconds each, all queued through A: B's worker takes its share from the database.
    let mut ids = Vec::new();
    for index in 0..4 {
        ids.push(create(&a, &format!("shared{index}"), &file, 300).await);
    }
    for id in &ids {
        within(Duration::from_secs(120), "every job ends", async || {
            job(&b, id).await["status"] != "queued" && job(&b, id).await["status"] != "running"
        })
        .await;
    }
    let mut owners = std::collections::BTreeSet::new();
    for (index, id) in ids.iter().enumerate() {
        let record = job(&b, id).await;
        assert_eq!((record["status"].as_str(), record["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{record}");
        let ran = runners(&a, id).await;
        assert_eq!(ran.len(), 1, "one run of {id}: {ran:?}");
        owners.insert(ran[0].rsplit_once(':').map(|(host_pid_addr, _)| host_pid_addr.to_string()).unwrap_or_default());
        let (status, versions) = call(&b, reqwest::Method::GET, &format!("/api/v1/models/shared{index}/versions"), ADMIN, None).await;
        assert_eq!((status, versions.as_array().map(Vec::len)), (200, Some(1)), "one version: {versions}");
    }
    assert_eq!(owners.len(), 2, "both replicas ran jobs: {owners:?}");
    // A long job, cancelled through the replica that does not run it.
    let long = create(&a, "cancelled", &file, 100_000).await;
    // A job is running from its claim; its "started on" event is written just after, so wait for both.
    within(Duration::from_secs(30), "the long job runs and its start is recorded", async || {
        job(&a, &long).await["status"] == "running" && !runners(&a, &long).await.is_empty()
    })
    .await;
    let owner = runners(&a, &long).await.pop().unwrap();
    let other = if owner.contains(&a.url.trim_start_matches("http://").to_string()) { &b } else { &a };
    assert_eq!(call(other, reqwest::Method::POST, &format!("/api/v1/jobs/{long}/cancel"), ADMIN, None).await.0, 200);
    within(Duration::from_secs(10), "the running replica stops it", async || job(&a, &long).await["status"] == "cancelled").await;
    assert_eq!(call(&a, reqwest::Method::GET, "/api/v1/models/cancelled", ADMIN, None).await.0, 404, "a cancelled job makes no model");
}
