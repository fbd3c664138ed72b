//! Delivery of alert changes to webhooks, in Alertmanager's webhook format (version 4), so that anything
//! that takes Alertmanager's notifications (a chat bridge, an incident tool, Alertmanager-compatible
//! receivers) takes Yunmo's.
//!
//! Changes are queued (bounded; a full queue drops the batch and logs it) and sent by one task: each
//! receiver is tried up to `max_attempts` times with doubling backoff; a 4xx other than 408/429 is not
//! retried. Nothing on the request path waits for it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use yunmo_types::calendar::format_utc;

use crate::book::{Alert, Status};

/// Where and how alerts are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Receivers' URLs.
    pub urls: Vec<String>,
    /// This server's address as people reach it, for `externalURL` and each alert's `generatorURL`.
    pub external_url: String,
    /// Longest wait for one delivery.
    pub timeout: Duration,
    /// Tries per receiver and batch.
    pub max_attempts: u32,
    /// Wait before the first retry (doubling after each).
    pub first_backoff: Duration,
}

/// Batches of changes waiting for delivery before new ones are dropped.
const QUEUE: usize = 256;
/// Alertmanager's "no end yet".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Labels every alert of `alerts` has with the same value.
fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = maps.split_first() else { return BTreeMap::new() };
    first
        .iter()
        .filter(|(name, value)| rest.iter().all(|map| map.get(*name) == Some(*value)))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn annotations(alert: &Alert) -> BTreeMap<String, String> {
    BTreeMap::from([("summary".to_string(), alert.summary.clone()), ("description".to_string(), alert.description.clone())])
}

/// One notification: `alerts` (all of one rule and one status) in Alertmanager's webhook JSON.
pub fn payload(alerts: &[Alert], external_url: &str) -> Value {
    let status = if alerts.iter().any(|alert| alert.status == Status::Firing) { Status::Firing } else { Status::Resolved };
    let labels: Vec<&BTreeMap<String, String>> = alerts.iter().map(|alert| &alert.labels).collect();
    let notes: Vec<BTreeMap<String, String>> = alerts.iter().map(annotations).collect();
    let group_labels: BTreeMap<String, String> =
        alerts.first().map(|alert| BTreeMap::from([("alertname".to_string(), alert.name().to_string())])).unwrap_or_default();
    let group_key =
        format!("{{}}:{{{}}}", group_labels.iter().map(|(name, value)| format!("{name}={value:?}")).collect::<Vec<_>>().join(","));
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status.as_str(),
        "receiver": "yunmo",
        "groupLabels": group_labels,
        "commonLabels": common(&labels),
        "commonAnnotations": common(&notes.iter().collect::<Vec<_>>()),
        "externalURL": external_url,
        "alerts": alerts.iter().map(|alert| json!({
            "status": alert.status.as_str(),
            "labels": alert.labels,
            "annotations": annotations(alert),
            "startsAt": format_utc(alert.starts_at as i64 * 1000),
            "endsAt": alert.ends_at.map_or_else(|| ZERO_TIME.to_string(), |end| format_utc(end as i64 * 1000)),
            "generatorURL": format!("{external_url}/ui/#/alerts"),
            "fingerprint": alert.fingerprint,
        })).collect::<Vec<_>>(),
    })
}

/// Groups changes into notifications: one per rule and status, in the order they came.
pub fn group(changes: Vec<Alert>) -> Vec<Vec<Alert>> {
    let mut groups: Vec<Vec<Alert>> = Vec::new();
    for alert in changes {
        match groups.iter_mut().find(|group| group[0].name() == alert.name() && group[0].status == alert.status) {
            Some(group) => group.push(alert),
            None => groups.push(vec![alert]),
        }
    }
    groups
}

/// The queue to the delivery task.
#[derive(Clone)]
pub struct Deliverer {
    sender: Option<tokio::sync::mpsc::Sender<Vec<Alert>>>,
}

impl Deliverer {
    /// Starts the delivery task (on the current Tokio runtime); with no receivers, deliveries are dropped.
    pub fn start(config: WebhookConfig) -> Deliverer {
        if config.urls.is_empty() {
            return Deliverer { sender: None };
        }
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let client = match reqwest::Client::builder().timeout(config.timeout).build() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "The alert webhook client could not be built; alerts are not delivered.");
                return Deliverer { sender: None };
            }
        };
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<Alert>>(QUEUE);
        tokio::spawn(async move {
            while let Some(changes) = receiver.recv().await {
                for notification in group(changes) {
                    let body = payload(&notification, &config.external_url);
                    for url in &config.urls {
                        send(&client, url, &body, &config).await;
                    }
                }
            }
        });
        Deliverer { sender: Some(sender) }
    }

    /// Queues `changes` for delivery; never waits.
    pub fn deliver(&self, changes: Vec<Alert>) {
        let (Some(sender), false) = (&self.sender, changes.is_empty()) else { return };
        if sender.try_send(changes).is_err() {
            tracing::warn!("Alert notifications are queued past capacity; this batch is dropped.");
        }
    }
}

/// Sends one notification to one receiver, retrying as the module says.
async fn send(client: &reqwest::Client, url: &str, body: &Value, config: &WebhookConfig) {
    let mut backoff = config.first_backoff;
    for attempt in 1..=config.max_attempts.max(1) {
        let outcome = client.post(url).json(body).send().await;
        let retry = match &outcome {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                let status = response.status();
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
            }
            Err(_) => true,
        };
        // The URL may hold a token: only its host is logged.
        let host = reqwest::Url::parse(url).ok().and_then(|url| url.host_str().map(str::to_string)).unwrap_or_default();
        let why = match outcome {
            Ok(response) => format!("answered {}", response.status()),
            Err(error) => format!("unreachable ({})", if error.is_timeout() { "timeout" } else { "connection" }),
        };
        if !retry || attempt == config.max_attempts.max(1) {
            tracing::warn!(receiver = %host, attempts = attempt, why = %why, "An alert notification was not delivered.");
            return;
        }
        tracing::debug!(receiver = %host, attempt, why = %why, "Alert notification failed; retrying.");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{Book, Condition, Severity};

    #[test]
    fn the_payload_is_alertmanagers() {
        let mut book = Book::new(10);
        let condition = |model: &str| Condition {
            name: "YunmoQueueSaturated",
            labels: BTreeMap::from([("model".to_string(), model.to_string()), ("version".to_string(), "1".to_string())]),
            severity: Severity::Warning,
            summary: "queue nearly full".into(),
            description: "90% of 1024".into(),
            value: 0.9,
        };
        let fired = book.apply(1_764_000_000, vec![condition("a"), condition("b")]);
        let body = payload(&fired, "http://yunmo:8080");
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["groupLabels"], json!({"alertname": "YunmoQueueSaturated"}));
        assert_eq!(body["groupKey"], "{}:{alertname=\"YunmoQueueSaturated\"}");
        assert_eq!(body["commonLabels"], json!({"alertname": "YunmoQueueSaturated", "severity": "warning", "version": "1"}));
        assert_eq!(body["alerts"][0]["startsAt"], "2025-11-24T16:00:00Z");
        assert_eq!(body["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(body["alerts"][1]["labels"]["model"], "b");
        let resolved = book.apply(1_764_000_060, vec![]);
        let body = payload(&resolved, "http://yunmo:8080");
        assert_eq!((body["status"].as_str(), body["alerts"][0]["endsAt"].as_str()), (Some("resolved"), Some("2025-11-24T16:01:00Z")));
        assert_eq!(group(resolved).len(), 1);
    }
}
