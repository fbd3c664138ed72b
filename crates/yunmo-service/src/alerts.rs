//! The built-in alert rules, evaluated in the server every `alerts.interval_s` over what it already keeps
//! (each loaded version's live statistics and drift, the tenants' monthly usage), and the alerts they
//! fire, which the API and the console show and [`yunmo_alerts::webhook`] delivers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use yunmo_alerts::{Alert, Book, Condition, Severity};
use yunmo_registry::UsageSubject;
use yunmo_types::calendar;

use crate::{Call, InferenceService, ServiceError};

/// The rules' bounds (`[alerts]`).
#[derive(Debug, Clone)]
pub struct AlertRules {
    /// Window of the error-rate and latency rules, seconds (at most 900).
    pub window_s: u64,
    /// Requests a version needs in the window before those rules judge it.
    pub min_requests: u64,
    /// Share of requests failing for the server's reasons (failed, timeout, overloaded) that fires
    /// `YunmoHighErrorRate`.
    pub error_rate: f64,
    /// 99th percentile latency, milliseconds, that fires `YunmoLatencyObjective`.
    pub p99_ms: f64,
    /// Queue depth over capacity that fires `YunmoQueueSaturated`.
    pub queue_saturation: f64,
    /// How far ahead a monthly quota's run-out fires `YunmoQuotaRunningOut`, seconds.
    pub quota_horizon_s: u64,
    /// How far ahead forecast demand above capacity fires `YunmoCapacityForecast`, hours (1 to 24).
    pub capacity_horizon_h: usize,
    /// Changes kept in the history.
    pub history: usize,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            window_s: 300,
            min_requests: 20,
            error_rate: 0.05,
            p99_ms: 1000.0,
            queue_saturation: 0.8,
            quota_horizon_s: 3 * 86_400,
            capacity_horizon_h: 24,
            history: 500,
        }
    }
}

/// The rules and the book of what fired.
pub(crate) struct AlertState {
    pub rules: AlertRules,
    pub book: Mutex<Book>,
}

impl AlertState {
    pub(crate) fn new(rules: AlertRules) -> AlertState {
        let book = Mutex::new(Book::new(rules.history));
        AlertState { rules, book }
    }
}

fn labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.clone())).collect()
}

/// The tenant of a qualified model name.
fn tenant_of(model: &str) -> &str {
    model.split_once('/').map_or(yunmo_registry::DEFAULT_TENANT, |(tenant, _)| tenant)
}

/// When a monthly quota runs out at this month's pace: `used` of `quota` between the month's start and
/// `now` (`month` is start, now, end, Unix milliseconds); `now` when it is used up. `None` when that is not
/// within `horizon_ms` of now or not before the month ends (when the quota starts over).
fn run_out(used: f64, quota: f64, month: (i64, i64, i64), horizon_ms: i64) -> Option<i64> {
    let (start, now, end) = month;
    if used >= quota {
        return Some(now);
    }
    if used <= 0.0 {
        return None;
    }
    let at = start + (quota / used * (now - start).max(1) as f64) as i64;
    (at < end && at - now <= horizon_ms).then_some(at)
}

impl InferenceService {
    /// What the rules find true now, over the loaded versions and the tenants' quotas.
    pub async fn alert_conditions(&self) -> Vec<Condition> {
        let rules = &self.inner.alerts.rules;
        let now = crate::stats::unix_second();
        let mut found = Vec::new();
        for loaded in self.models().loaded() {
            let (model, version) = (loaded.key.0.clone(), loaded.key.1.to_string());
            let tenant = tenant_of(&model).to_string();
            let about = || labels(&[("model", model.clone()), ("version", version.clone()), ("tenant", tenant.clone())]);
            let summary = loaded.stats.summary(now, rules.window_s);
            if summary.requests >= rules.min_requests.max(1) {
                let rate = summary.server_failures() as f64 / summary.requests as f64;
                if rate >= rules.error_rate {
                    found.push(Condition {
                        name: "YunmoHighErrorRate",
                        labels: about(),
                        severity: Severity::Critical,
                        summary: format!("{model} v{version} fails {:.1}% of requests", 100.0 * rate),
                        description: format!(
                            "{} of {} requests failed (error, timeout or overload) in the last {} s; the bound is {:.1}%",
                            summary.server_failures(),
                            summary.requests,
                            rules.window_s,
                            100.0 * rules.error_rate
                        ),
                        value: rate,
                    });
                }
                if let Some(p99) = summary.p99_ms().filter(|p99| *p99 > rules.p99_ms) {
                    found.push(Condition {
                        name: "YunmoLatencyObjective",
                        labels: about(),
                        severity: Severity::Warning,
                        summary: format!("{model} v{version} p99 latency over {} ms", rules.p99_ms),
                        description: format!(
                            "p99 latency is up to {p99} ms over the last {} s (objective {} ms)",
                            rules.window_s, rules.p99_ms
                        ),
                        value: p99,
                    });
                }
            }
            let (depth, capacity) = loaded.queue();
            if let Some(capacity) = capacity.filter(|capacity| *capacity > 0) {
                let saturation = depth as f64 / capacity as f64;
                if saturation >= rules.queue_saturation {
                    found.push(Condition {
                        name: "YunmoQueueSaturated",
                        labels: about(),
                        severity: Severity::Warning,
                        summary: format!("{model} v{version} queue {:.0}% full", 100.0 * saturation),
                        description: format!("{depth} of {capacity} queue places taken (bound {:.0}%)", 100.0 * rules.queue_saturation),
                        value: saturation,
                    });
                }
            }
            if let Some(watch) = &loaded.drift {
                for feature in watch.report(now).features {
                    let severity = match feature.state {
                        yunmo_drift::State::Alert => Severity::Critical,
                        yunmo_drift::State::Warn => Severity::Warning,
                        _ => continue,
                    };
                    let mut labels = about();
                    labels.insert("feature".into(), feature.name.clone());
                    let value = feature.value.unwrap_or_default();
                    found.push(Condition {
                        name: "YunmoDrift",
                        labels,
                        severity,
                        summary: format!("{model} v{version}: {} drifts ({} {value:.3})", feature.name, feature.statistic),
                        description: format!(
                            "{} = {value:.3} on {} rows of the {} window (warn {}, alert {})",
                            feature.statistic, feature.window_count, feature.window, feature.threshold.warn, feature.threshold.alert
                        ),
                        value,
                    });
                }
            }
        }
        found.extend(self.quota_conditions(now).await);
        self.refresh_forecasts(now).await;
        for report in self.forecasts_over_capacity(rules.capacity_horizon_h) {
            let (Some(capacity), Some(at)) = (&report.capacity, report.exceeds_at) else { continue };
            let peak = report.requests.values.iter().copied().fold(0.0, f64::max);
            found.push(Condition {
                name: "YunmoCapacityForecast",
                labels: labels(&[
                    ("model", report.model.clone()),
                    ("version", capacity.version.to_string()),
                    ("tenant", tenant_of(&report.model).to_string()),
                ]),
                severity: Severity::Warning,
                summary: format!("{} demand is forecast past capacity at {}", report.model, calendar::format_utc(at)),
                description: format!(
                    "forecast peak {peak:.0} requests/hour against a measured capacity of {:.0} ({} parallel, {:.1} ms per request)",
                    capacity.requests_per_hour, capacity.parallel, capacity.mean_compute_ms
                ),
                value: peak / capacity.requests_per_hour,
            });
        }
        found
    }

    /// Monthly quotas used up, or running out within the horizon at this month's pace.
    async fn quota_conditions(&self, now: u64) -> Vec<Condition> {
        let Ok(tenants) = self.inner.registry.list_tenants().await else { return Vec::new() };
        let now_ms = now as i64 * 1000;
        let start = calendar::month_start_ms(now_ms);
        let end = calendar::next_month_start_ms(now_ms);
        let mut found = Vec::new();
        for tenant in tenants {
            let limits = tenant.limits;
            let quotas = [
                ("monthly_requests", limits.monthly_requests.map(|quota| quota as f64)),
                ("monthly_tokens", limits.monthly_tokens.map(|quota| quota as f64)),
                ("monthly_compute_seconds", limits.monthly_compute_seconds),
            ];
            if quotas.iter().all(|(_, quota)| quota.is_none()) {
                continue;
            }
            let Ok(totals) = self.inner.registry.usage_totals(UsageSubject::Tenant(&tenant.name), start).await else { continue };
            let used = [totals.requests as f64, totals.tokens as f64, totals.compute_ms as f64 / 1000.0];
            for ((quota_name, quota), used) in quotas.into_iter().zip(used) {
                let Some(quota) = quota.filter(|quota| *quota > 0.0) else { continue };
                let horizon = self.inner.alerts.rules.quota_horizon_s as i64 * 1000;
                let Some(run_out_ms) = run_out(used, quota, (start, now_ms, end), horizon) else { continue };
                let severity = if used >= quota { Severity::Critical } else { Severity::Warning };
                found.push(Condition {
                    name: "YunmoQuotaRunningOut",
                    labels: labels(&[("tenant", tenant.name.clone()), ("quota", quota_name.to_string())]),
                    severity,
                    summary: if used >= quota {
                        format!("tenant {}: {quota_name} is used up", tenant.name)
                    } else {
                        format!("tenant {}: {quota_name} runs out {}", tenant.name, &calendar::format_utc(run_out_ms)[..10])
                    },
                    description: format!(
                        "{used:.0} of {quota:.0} used this month; at this month's pace it runs out {}",
                        calendar::format_utc(run_out_ms)
                    ),
                    value: used / quota,
                });
            }
        }
        found
    }

    /// Evaluates the rules once and records what changed; returns the changes (for delivery).
    pub async fn evaluate_alerts(&self) -> Vec<Alert> {
        let conditions = self.alert_conditions().await;
        let now = crate::stats::unix_second();
        self.inner.alerts.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner).apply(now, conditions)
    }

    /// The alerts the caller may see, firing now, and the history (newest first, at most `limit`): admins
    /// every alert; others those about models their tenant can see or about their own tenant.
    pub async fn alerts(&self, call: &Call, limit: usize) -> Result<(Vec<Alert>, Vec<Alert>), ServiceError> {
        let principal = &call.principal;
        let visible: Option<std::collections::HashSet<String>> = if principal.is_admin() {
            None
        } else {
            principal.tenant_filter(None)?;
            Some(self.visible_models(call).await?.into_iter().map(|model| model.name).collect())
        };
        let shows = |alert: &Alert| match &visible {
            None => true,
            Some(models) => match alert.labels.get("model") {
                Some(model) => models.contains(model),
                None => alert.labels.get("tenant") == Some(&principal.tenant),
            },
        };
        let book = self.inner.alerts.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let firing = book.firing().filter(|alert| shows(alert)).cloned().collect();
        let history = book.history().rev().filter(|alert| shows(alert)).take(limit).cloned().collect();
        Ok((firing, history))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_quota_runs_out_at_this_months_pace_within_the_horizon() {
        // 8 of 10 after 2 days: 10 at 2.5 days, half a day from now.
        assert_eq!(run_out(8.0, 10.0, (0, 2 * DAY, 31 * DAY), 3 * DAY), Some(5 * DAY / 2));
        assert_eq!(run_out(10.0, 10.0, (0, 2 * DAY, 31 * DAY), 3 * DAY), Some(2 * DAY), "used up: now");
        assert_eq!(run_out(2.0, 10.0, (0, 2 * DAY, 31 * DAY), 3 * DAY), None, "10 days away: past the horizon");
        assert_eq!(run_out(9.0, 10.0, (0, 28 * DAY, 30 * DAY), 3 * DAY), None, "after the month ends, when it starts over");
        assert_eq!(run_out(0.0, 10.0, (0, 2 * DAY, 31 * DAY), 3 * DAY), None);
    }
}
