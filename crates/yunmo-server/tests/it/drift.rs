//! Drift through the real server: two versions get the same baseline; then one gets a window shifted by
//! half a standard deviation on one feature, the other an unshifted window of the same size. Only that
//! feature of the shifted version drifts, in the API and in `/metrics`. Bad drift settings are refused,
//! naming the field; a reference sample replaces the baseline.

use std::time::Duration;

use serde_json::{Value, json};
use yunmo_drift::draws::Normal;

use crate::cluster::{call, within};
use crate::harness::{TestServer, fixture};

const ADMIN: &str = "ym_drift_bootstrap-admin-secret-0123456789abcdef";
/// Iris-like feature means and standard deviations.
const MEANS: [f64; 4] = [5.8, 3.0, 3.8, 1.2];
const SDS: [f64; 4] = [0.8, 0.4, 1.8, 0.8];

/// A V2 body of `rows` rows; feature 2 shifted by `shift` standard deviations.
fn body(normal: &mut Normal, rows: usize, shift: f64) -> Value {
    let mut data = Vec::with_capacity(rows * 4);
    for _ in 0..rows {
        for j in 0..4 {
            let offset = if j == 2 { shift * SDS[j] } else { 0.0 };
            data.push(MEANS[j] + offset + SDS[j] * normal.next_normal());
        }
    }
    json!({ "inputs": [{ "name": "X", "shape": [rows, 4], "datatype": "FP32", "data": data }] })
}

async fn send(server: &TestServer, version: u64, normal: &mut Normal, requests: usize, shift: f64) {
    for _ in 0..requests {
        let (status, answer) = call(
            server,
            reqwest::Method::POST,
            &format!("/v2/models/iris/versions/{version}/infer"),
            ADMIN,
            Some(body(normal, 100, shift)),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
}

async fn drift(server: &TestServer, version: u64) -> Value {
    let (status, report) = call(server, reqwest::Method::GET, &format!("/api/v1/models/iris/versions/{version}/drift"), ADMIN, None).await;
    assert_eq!(status, 200, "{report}");
    report
}

fn feature<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["features"].as_array().unwrap().iter().find(|feature| feature["name"] == name).unwrap_or_else(|| panic!("{name} in {report}"))
}

#[tokio::test]
async fn a_half_sd_shift_on_one_feature_drifts_that_feature_only() {
    let dir = tempfile::tempdir().unwrap();
    // Windows are aligned to the clock (multiples of window_s since 1970): with hourly ones, a full hour
    // falling between the sends split the counted rows. 31 days (the longest allowed) makes that rare.
    let env = [("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__AUTH__BOOTSTRAP_KEY", ADMIN), ("YUNMO__DRIFT__WINDOW_S", "2678400")];
    let server = TestServer::start(dir.path(), &env).await;
    assert_eq!(call(&server, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "iris"}))).await.0, 201);
    let bytes = std::fs::read(fixture("iris_mlp.onnx")).unwrap();
    for _ in 0..2 {
        let url = format!("{}/api/v1/models/iris/versions", server.url);
        assert_eq!(server.client.post(url).bearer_auth(ADMIN).body(bytes.clone()).send().await.unwrap().status(), 201);
    }
    assert_eq!(drift(&server, 1).await["state"], "not_loaded");
    let mut normal = Normal::new(0x9e37_79b9_7f4a_7c15);
    // The same baseline distribution for both: 2,000 rows freeze it.
    for version in [1, 2] {
        send(&server, version, &mut normal, 20, 0.0).await;
    }
    // Then a window of 2,000 rows each: unshifted for v1, feature 2 shifted by 0.5 sd for v2.
    send(&server, 1, &mut normal, 20, 0.0).await;
    send(&server, 2, &mut normal, 20, 0.5).await;
    // The drift worker counts off the request path: wait for it.
    for version in [1, 2] {
        within(Duration::from_secs(10), "the drift worker counts the windows", async || {
            let report = drift(&server, version).await;
            report["features"].as_array().is_some_and(|features| features.iter().all(|feature| feature["window_count"] == 2000))
        })
        .await;
    }
    let unshifted = drift(&server, 1).await;
    let shifted = drift(&server, 2).await;
    assert!(unshifted["baseline"]["frozen_at"].is_u64(), "{unshifted}");
    assert_eq!(unshifted["state"], "ok", "{unshifted}");
    for name in ["X[0]", "X[1]", "X[2]", "X[3]"] {
        let (calm, moved) = (feature(&unshifted, name), feature(&shifted, name));
        assert_eq!(
            (calm["state"].as_str(), calm["statistic"].as_str(), calm["warn"].as_f64()),
            (Some("ok"), Some("psi"), Some(0.1)),
            "{calm}"
        );
        let psi = moved["value"].as_f64().unwrap();
        if name == "X[2]" {
            assert!(matches!(moved["state"].as_str(), Some("warn" | "alert")), "{moved}");
            assert!((0.15..0.4).contains(&psi), "a 0.5 sd shift scores about 0.24: {moved}");
        } else {
            assert_eq!(moved["state"], "ok", "{moved}");
        }
    }
    assert_eq!(feature(&shifted, "probabilities.class")["kind"], "categorical", "the answers are watched too");
    // The same verdicts reach Prometheus.
    let metrics = server.client.get(format!("{}/metrics", server.url)).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    let state_of = |version: &str, name: &str| {
        let prefix = format!("yunmo_drift_state{{model=\"iris\",version=\"{version}\",feature=\"{name}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix)).map(|value| value.parse::<f64>().unwrap())
    };
    assert!(state_of("2", "X[2]").is_some_and(|level| level >= 1.0), "{metrics}");
    assert_eq!(state_of("2", "X[0]"), Some(0.0));
    assert_eq!(state_of("1", "X[2]"), Some(0.0));

    // A reference sample from the shifted distribution: v2's window now matches its baseline on X[2].
    let (status, reference) =
        call(&server, reqwest::Method::PUT, "/api/v1/models/iris/versions/2/drift/baseline", ADMIN, Some(body(&mut normal, 1000, 0.5)))
            .await;
    assert_eq!(status, 200, "{reference}");
    assert_eq!((reference["baseline"]["source"].as_str(), reference["baseline"]["rows"].as_u64()), (Some("reference"), Some(1000)));
    send(&server, 2, &mut normal, 10, 0.5).await;
    within(Duration::from_secs(10), "the new window is counted", async || {
        feature(&drift(&server, 2).await, "X[2]")["window_count"] == 1000
    })
    .await;
    assert_eq!(feature(&drift(&server, 2).await, "X[2]")["state"], "ok");

    // Settings out of bounds are refused, naming the field; turning drift off is reported as such.
    let bad = json!({ "drift": { "bins": 1 } });
    let (status, answer) = call(&server, reqwest::Method::PUT, "/api/v1/models/iris/versions/1/config", ADMIN, Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("drift.bins must be between 2 and 100, got 1"), "{answer}");
    let off = json!({ "drift": { "enabled": false } });
    assert_eq!(call(&server, reqwest::Method::PUT, "/api/v1/models/iris/versions/1/config", ADMIN, Some(off)).await.0, 200);
    assert_eq!(drift(&server, 1).await["state"], "not_watched");
}
