//! Demand forecasts through the real server: two weeks of hourly usage with a daily pattern (written to the
//! registry before the server starts, as the meter would have), then `GET /api/v1/models/{m}/forecast`
//! forecasts the pattern with Holt-Winters, reports its back-test and the measured capacity, and the
//! capacity alert fires when the forecast passes it.

use std::time::Duration;

use serde_json::json;

use crate::cluster::{call, within};
use crate::harness::{TestServer, fixture};

const ADMIN: &str = "ym_forecast_bootstrap-admin-secret-0123456789abcd";
const HOUR: i64 = 3_600_000;

/// Requests in hour `t` (hours since the epoch): a daily peak in the afternoon.
fn demand(t: i64) -> u64 {
    let hour = (t % 24) as f64;
    (60.0 + 50.0 * (std::f64::consts::PI * (hour - 8.0) / 12.0).sin().max(-0.6)).round() as u64
}

#[tokio::test]
async fn two_weeks_of_a_daily_pattern_are_forecast_and_past_capacity_alert() {
    let dir = tempfile::tempdir().unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let this_hour = now_ms / HOUR;
    {
        let registry = yunmo_registry::Registry::open(&yunmo_registry::RegistryConfig::new(dir.path().join("data"))).await.unwrap();
        let mut events = Vec::new();
        for t in this_hour - 14 * 24..this_hour {
            for i in 0..demand(t) {
                events.push(yunmo_registry::UsageEvent {
                    at_ms: t * HOUR + i as i64 * 1000,
                    tenant: "default".into(),
                    key_id: "backfill".into(),
                    model: "busy".into(),
                    version: 1,
                    protocol: "rest",
                    outcome: "ok",
                    // 40 s of compute per request: one instance takes 90 requests an hour, below the daily
                    // peak of 110.
                    compute_ms: 40_000,
                    ..yunmo_registry::UsageEvent::default()
                });
            }
        }
        registry.insert_usage(&events).await.unwrap();
    }
    let env = [("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__AUTH__BOOTSTRAP_KEY", ADMIN), ("YUNMO__ALERTS__INTERVAL_S", "1")];
    let server = TestServer::start(dir.path(), &env).await;
    assert_eq!(call(&server, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "busy"}))).await.0, 201);
    let bytes = std::fs::read(fixture("iris_mlp.onnx")).unwrap();
    let url = format!("{}/api/v1/models/busy/versions", server.url);
    assert_eq!(server.client.post(url).bearer_auth(ADMIN).body(bytes).send().await.unwrap().status(), 201);
    assert_eq!(call(&server, reqwest::Method::POST, "/api/v1/models/busy/versions/1/load", ADMIN, None).await.0, 200);

    let (status, forecast) = call(&server, reqwest::Method::GET, "/api/v1/models/busy/forecast?hours=24", ADMIN, None).await;
    assert_eq!(status, 200, "{forecast}");
    assert_eq!(forecast["method"], "holt_winters", "{forecast}");
    assert_eq!(forecast["history"]["t"].as_array().unwrap().len(), 14 * 24);
    let ahead = forecast["forecast"]["requests"].as_array().unwrap();
    assert_eq!(ahead.len(), 24);
    // Each forecast hour is close to the pattern's value for that hour.
    let mut error = 0.0;
    for (i, value) in ahead.iter().enumerate() {
        let truth = demand(this_hour + i as i64) as f64;
        error += (value.as_f64().unwrap() - truth).abs() / truth;
    }
    assert!(error / 24.0 < 0.1, "mean error {:.3}: {forecast}", error / 24.0);
    let backtest = &forecast["backtest"];
    assert!(backtest["mape"].as_f64().unwrap() < 0.1, "{backtest}");
    let capacity = &forecast["capacity"];
    assert_eq!((capacity["version"].as_u64(), capacity["parallel"].as_u64()), (Some(1), Some(1)), "{capacity}");
    assert!((capacity["requests_per_hour"].as_f64().unwrap() - 90.0).abs() < 1e-6, "{capacity}");
    // The afternoon peak passes it within the day.
    let at = forecast["exceeds_capacity_at"].as_i64().expect("the forecast passes capacity");
    assert!(at >= this_hour * 3600 && at < (this_hour + 24) * 3600, "{forecast}");
    let hour = (at / 3600) % 24;
    assert!((9..=19).contains(&hour), "it is the daytime hours that pass: {hour}");

    // The alert loop reaches the same verdict, and the gauges show it.
    within(Duration::from_secs(10), "YunmoCapacityForecast fires", async || {
        let (_, alerts) = call(&server, reqwest::Method::GET, "/api/v1/alerts", ADMIN, None).await;
        alerts["firing"]
            .as_array()
            .is_some_and(|firing| firing.iter().any(|alert| alert["name"] == "YunmoCapacityForecast" && alert["labels"]["model"] == "busy"))
    })
    .await;
    let metrics = server.client.get(format!("{}/metrics", server.url)).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("yunmo_capacity_requests_per_hour{model=\"busy\",version=\"1\"} 90"), "{metrics}");
    assert!(metrics.contains("yunmo_forecast_peak_requests_per_hour{model=\"busy\"} 1"), "a peak above 100: {metrics}");

    // A model without history says so; the horizon is bounded.
    assert_eq!(call(&server, reqwest::Method::POST, "/api/v1/models", ADMIN, Some(json!({"name": "quiet"}))).await.0, 201);
    let (status, quiet) = call(&server, reqwest::Method::GET, "/api/v1/models/quiet/forecast", ADMIN, None).await;
    assert_eq!((status, quiet["method"].as_str()), (200, Some("no_history")), "{quiet}");
    let (status, refused) = call(&server, reqwest::Method::GET, "/api/v1/models/busy/forecast?hours=500", ADMIN, None).await;
    assert_eq!(status, 400);
    assert!(refused["error"]["message"].as_str().unwrap().contains("hours must be between 1 and 168, got 500"));
}
