//! Cluster-wide limits and metering: three replicas on one PostgreSQL, one S3 bucket and one Redis (real
//! servers, started here). A tenant limited to 50 requests/s driven through all three for 10 s gets 500 in
//! all, not 500 per replica; a monthly quota holds exactly across replicas; 10,000 requests from 16 clients
//! spread over the replicas, some failing on purpose, are metered and priced exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yunmo_testkit::{Postgres, Redis, S3};

use crate::cluster::{ADMIN, call, cluster_env, iris, start};
use crate::harness::TestServer;

/// What one tenant's usage report sums to.
#[derive(Debug, PartialEq)]
struct Totals {
    requests: u64,
    failed: u64,
    cost: f64,
}

async fn totals(server: &TestServer, tenant: &str) -> Totals {
    let (status, report) = call(server, reqwest::Method::GET, &format!("/api/v1/usage?tenant={tenant}"), ADMIN, None).await;
    assert_eq!(status, 200, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let sum = |field: &str| rows.iter().map(|row| row[field].as_u64().unwrap_or(0)).sum::<u64>();
    Totals { requests: sum("requests"), failed: sum("failed"), cost: rows.iter().map(|row| row["cost"].as_f64().unwrap_or(0.0)).sum() }
}

async fn new_key(server: &TestServer, tenant: &str, limits: Value) -> String {
    let (status, body) =
        call(server, reqwest::Method::POST, "/api/v1/tenants", ADMIN, Some(json!({"name": tenant, "limits": limits}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, made) =
        call(server, reqwest::Method::POST, "/api/v1/keys", ADMIN, Some(json!({"tenant": tenant, "scopes": ["models:read", "infer"]})))
            .await;
    assert_eq!(status, 201, "{made}");
    made["key"].as_str().unwrap().to_string()
}

/// Sends iris requests with `key` through `servers` from `clients` tasks until `stop`; counts answers by status.
async fn drive(servers: &[Arc<TestServer>], key: &str, clients: usize, until: Instant) -> std::collections::BTreeMap<u16, usize> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let server = servers[client % servers.len()].clone();
        let key = key.to_string();
        tasks.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::new();
            while Instant::now() < until {
                let (status, _) = call(&server, reqwest::Method::POST, "/v2/models/iris/infer", &key, Some(iris())).await;
                *seen.entry(status).or_insert(0) += 1;
            }
            seen
        }));
    }
    let mut all = std::collections::BTreeMap::new();
    for task in tasks {
        for (status, count) in task.await.unwrap() {
            *all.entry(status).or_insert(0) += count;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_quotas_and_metering_hold_across_replicas() {
    let postgres = Postgres::start();
    let url = postgres.create_database("limits");
    let s3 = S3::start("models");
    let redis = Redis::start();
    let mut env = cluster_env(&url, &s3);
    env.extend(
        [
            ("YUNMO__LIMITS__STORE", "redis".to_string()),
            ("YUNMO__LIMITS__REDIS_URL", redis.url()),
            ("YUNMO__AUTH__USAGE_FLUSH_MS", "200".into()),
            // Three replicas, PostgreSQL, Redis and S3 share two cores here: an answer from Redis can take longer
            // than the default 250 ms, which (on_store_failure = "deny") would refuse a request with 503. This
            // test is about counting across replicas; Redis outages are cluster_faults' subject.
            ("YUNMO__LIMITS__STORE_TIMEOUT_MS", "3000".into()),
        ]
        .map(|(key, value)| (key.to_string(), value)),
    );
    let dir = tempfile::tempdir().unwrap();
    let dirs = ["a", "b", "c"].map(|name| dir.path().join(name));
    let (a, b, c) = tokio::join!(start(&dirs[0], &env), start(&dirs[1], &env), start(&dirs[2], &env));
    let servers = [Arc::new(a), Arc::new(b), Arc::new(c)];

    // iris, public, priced at 0.5 a request (a binary fraction: sums are exact).
    let (status, body) = call(&servers[0], reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "iris"}))).await;
    assert_eq!(status, 201, "{body}");
    let bytes = std::fs::read(crate::harness::fixture("iris_mlp.onnx")).unwrap();
    let config = "%7B%22price%22%3A%7B%22per_request%22%3A0.5%7D%7D";
    let upload = servers[0].client.post(format!("{}/api/v1/models/iris/versions?config={config}", servers[0].url));
    assert_eq!(upload.bearer_auth(ADMIN).body(bytes).send().await.unwrap().status(), 201);
    let (status, _) = call(&servers[0], reqwest::Method::PUT, "/api/v1/models/iris/sharing", ADMIN, Some(json!({"public": true}))).await;
    assert_eq!(status, 200);
    for server in &servers {
        assert_eq!(call(server, reqwest::Method::POST, "/v2/models/iris/infer", ADMIN, Some(iris())).await.0, 200, "warm every replica");
    }

    // 50 requests/s for the tenant, driven through three replicas for 10 s: 500 (+ the burst of 1) in all.
    let key = new_key(&servers[0], "limited", json!({"requests_per_second": 50.0, "requests_burst": 1})).await;
    let seen = drive(&servers, &key, 6, Instant::now() + Duration::from_secs(10)).await;
    let admitted = seen.get(&200).copied().unwrap_or(0);
    assert!((450..=550).contains(&admitted), "admitted {admitted} in 10 s at 50/s through 3 replicas: {seen:?}");
    assert!(seen.get(&429).copied().unwrap_or(0) > admitted, "the replicas were driven past the limit: {seen:?}");
    if seen.keys().copied().collect::<Vec<_>>() != [200, 429] {
        // Say whether the limit store timed out (its failures are counted) or something else answered.
        let mut failures = Vec::new();
        for server in &servers {
            let metrics = server.client.get(format!("{}/metrics", server.url)).bearer_auth(ADMIN);
            let text = metrics.send().await.unwrap().text().await.unwrap();
            failures.extend(text.lines().filter(|line| line.starts_with("yunmo_limit_store_failures_total")).map(String::from));
        }
        panic!("only 200 and 429 expected: {seen:?}; limit store failures: {failures:?}");
    }

    // A monthly quota of 40 requests, asked 90 times at once through three replicas: exactly 40 pass.
    let key = new_key(&servers[0], "quota", json!({"monthly_requests": 40})).await;
    let passed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for index in 0..90 {
        let (server, key, passed) = (servers[index % 3].clone(), key.clone(), passed.clone());
        tasks.push(tokio::spawn(async move {
            if call(&server, reqwest::Method::POST, "/v2/models/iris/infer", &key, Some(iris())).await.0 == 200 {
                passed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(passed.load(Ordering::Relaxed), 40, "the quota holds across replicas");

    // 10,000 requests from 16 clients over three replicas, every 8th with a wrong shape (400): metered exactly.
    let key = new_key(&servers[0], "metered", json!({})).await;
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::new();
    for client in 0..16 {
        let (server, key, counts) = (servers[client % 3].clone(), key.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            for request in 0..625 {
                let body = if request % 8 == 0 {
                    json!({ "inputs": [{ "name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0] }] })
                } else {
                    iris()
                };
                let bad = request % 8 == 0;
                let (status, answer) = call(&server, reqwest::Method::POST, "/v2/models/iris/infer", &key, Some(body)).await;
                assert_eq!(status == 400, bad, "{answer}");
                match status {
                    200 => counts[0].fetch_add(1, Ordering::Relaxed),
                    400 => counts[1].fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected {other}: {answer}"),
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (ok, failed) = (counts[0].load(Ordering::Relaxed) as u64, counts[1].load(Ordering::Relaxed) as u64);
    let sent_bad = 16 * (0..625u64).filter(|request| request % 8 == 0).count() as u64;
    assert_eq!((ok, failed), (10_000 - sent_bad, sent_bad));
    // Each replica writes its events every 200 ms; wait until all have, then check nothing more arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while totals(&servers[1], "metered").await.requests < 10_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metered = totals(&servers[2], "metered").await;
    let cost = ok as f64 * 0.5;
    assert_eq!(metered, Totals { requests: 10_000, failed: sent_bad, cost }, "answered requests are priced at 0.5, refused ones are free");

    for server in servers {
        Arc::try_unwrap(server).ok().expect("no task holds a replica").stop();
    }
}
