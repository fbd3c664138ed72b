//! The alert loop: evaluates the built-in rules every `alerts.interval_s` and hands the changes to the
//! webhook deliverer (a task of its own: a slow receiver delays nothing here or on the request path).

use std::net::SocketAddr;
use std::time::Duration;

use yunmo_alerts::webhook::{Deliverer, WebhookConfig};
use yunmo_service::InferenceService;

use crate::settings::AlertSettings;

/// The service's alert rules from `[alerts]`.
pub fn rules(settings: &AlertSettings) -> yunmo_service::alerts::AlertRules {
    yunmo_service::alerts::AlertRules {
        window_s: settings.window_s,
        min_requests: settings.min_requests,
        error_rate: settings.error_rate,
        p99_ms: settings.p99_ms,
        queue_saturation: settings.queue_saturation,
        quota_horizon_s: settings.quota_horizon_s,
        capacity_horizon_h: settings.capacity_horizon_h,
        history: settings.history,
    }
}

/// Starts the loop (when `alerts.enabled`); `http` and `https` give the default external URL.
pub fn start(settings: &AlertSettings, service: InferenceService, http: SocketAddr, https: bool) {
    if !settings.enabled {
        return;
    }
    let external_url = if settings.external_url.is_empty() {
        format!("{}://{http}", if https { "https" } else { "http" })
    } else {
        settings.external_url.trim_end_matches('/').to_string()
    };
    let deliverer = Deliverer::start(WebhookConfig {
        urls: settings.webhooks.iter().map(|url| url.expose().to_string()).collect(),
        external_url,
        timeout: Duration::from_millis(settings.webhook_timeout_ms),
        max_attempts: settings.webhook_attempts,
        first_backoff: Duration::from_millis(500),
    });
    let interval = Duration::from_secs(settings.interval_s);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let changes = service.evaluate_alerts().await;
            for change in &changes {
                tracing::info!(alert = change.name(), status = change.status.as_str(), labels = ?change.labels, "{}", change.summary);
            }
            deliverer.deliver(changes);
        }
    });
}
