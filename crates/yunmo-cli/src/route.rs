//! `yunmo models route` and `yunmo models promote`: canary, A/B and shadow routing between versions.

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Client;
use serde_json::{Value, json};

use crate::check;

/// `yunmo models route`
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Model name.
    pub name: String,
    /// Versions and weights, e.g. `v2=90 v3=10` (the largest weight is the stable version). Without any,
    /// the current route and how its versions compare are shown.
    pub weights: Vec<String>,
    /// A version that gets a copy of every routed request; its answers are counted and dropped (e.g. `v4`).
    #[arg(long)]
    pub shadow: Option<String>,
    /// Keep each caller on one version: `key` (its API key) or `header:NAME` (e.g. `header:x-user`).
    #[arg(long)]
    pub sticky: Option<String>,
    /// The version others are judged against and rolled back to (default: the largest weight).
    #[arg(long)]
    pub stable: Option<String>,
    /// Roll the canaries back to 0% automatically when they fail or slow down (see the --guard-* options).
    #[arg(long)]
    pub guard: bool,
    /// Requests a canary must serve before the guard judges it.
    #[arg(long, default_value_t = 100, requires = "guard")]
    pub guard_min_requests: u64,
    /// Largest error rate above the stable version's (0.05: five points).
    #[arg(long, default_value_t = 0.05, requires = "guard")]
    pub guard_error_margin: f64,
    /// Largest p99 latency as a multiple of the stable version's (default: latency not judged).
    #[arg(long, requires = "guard")]
    pub guard_p99_ratio: Option<f64>,
    /// Seconds of recent requests the guard judges.
    #[arg(long, default_value_t = 300, requires = "guard")]
    pub guard_window: u64,
}

/// A version given as `v3` or `3`.
fn version(text: &str) -> anyhow::Result<u64> {
    let digits = text.strip_prefix('v').or_else(|| text.strip_prefix('V')).unwrap_or(text);
    digits.parse::<u64>().ok().filter(|v| *v > 0).with_context(|| format!("'{text}' is not a version (e.g. v3 or 3)"))
}

/// `v2=90` as (2, 90).
fn weight(text: &str) -> anyhow::Result<(u64, u32)> {
    let Some((name, weight)) = text.split_once('=') else { bail!("'{text}' is not VERSION=WEIGHT (e.g. v2=90)") };
    let weight = weight.parse::<u32>().with_context(|| format!("the weight in '{text}' is not a whole number"))?;
    Ok((version(name)?, weight))
}

/// Sets or shows a model's route.
pub async fn route(client: &Client, url: &str, args: RouteArgs) -> anyhow::Result<()> {
    let path = format!("{url}/api/v1/models/{}/route", args.name);
    if args.weights.is_empty() {
        if args.shadow.is_some() || args.sticky.is_some() || args.guard || args.stable.is_some() {
            bail!("give the versions and weights (e.g. v2=90 v3=10) with --shadow, --sticky, --stable or --guard");
        }
        let body: Value = check(client.get(&path).send().await?).await?.json().await?;
        return print_status(&args.name, &body);
    }
    let versions = args
        .weights
        .iter()
        .map(|text| weight(text).map(|(version, weight)| json!({"version": version, "weight": weight})))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut body = json!({ "versions": versions });
    if let Some(shadow) = &args.shadow {
        body["shadow"] = json!(version(shadow)?);
    }
    if let Some(stable) = &args.stable {
        body["stable"] = json!(version(stable)?);
    }
    if let Some(sticky) = &args.sticky {
        body["sticky"] = json!(sticky);
    }
    if args.guard {
        body["guard"] = json!({
            "min_requests": args.guard_min_requests,
            "max_error_rate_increase": args.guard_error_margin,
            "max_p99_ratio": args.guard_p99_ratio,
            "window_seconds": args.guard_window,
        });
    }
    let status: Value = check(client.put(&path).json(&body).send().await?).await?.json().await?;
    print_status(&args.name, &status)
}

/// Sends every request of a model to one version.
pub async fn promote(client: &Client, url: &str, name: &str, to: &str) -> anyhow::Result<()> {
    let body = json!({ "version": version(to)? });
    check(client.post(format!("{url}/api/v1/models/{name}/route/promote")).json(&body).send().await?).await?;
    outln!("Model {name}: every request now goes to version {}.", version(to)?);
    Ok(())
}

fn print_status(name: &str, status: &Value) -> anyhow::Result<()> {
    let policy = &status["version_policy"];
    match policy["kind"].as_str() {
        Some("routed") => {}
        Some("pinned") => {
            outln!("Model {name} is not routed: every request goes to version {}.", policy["version"]);
            return Ok(());
        }
        _ => {
            outln!("Model {name} is not routed: requests go to its latest version.");
            return Ok(());
        }
    }
    let mut extras = Vec::new();
    if let Some(sticky) = policy["sticky"].as_str() {
        extras.push(format!("sticky by {sticky}"));
    }
    if policy["guard"].is_object() {
        let guard = &policy["guard"];
        extras.push(format!(
            "guarded (after {} requests: error rate +{} or p99 x{})",
            guard["min_requests"],
            guard["max_error_rate_increase"],
            guard["max_p99_ratio"].as_f64().map_or("-".to_string(), |ratio| ratio.to_string())
        ));
    }
    outln!("Model {name} is routed{}{}.", if extras.is_empty() { "" } else { ": " }, extras.join(", "));
    outln!("{:<8} {:<8} {:>7} {:>9} {:>7} {:>7} {:>9}", "VERSION", "ROLE", "WEIGHT", "REQUESTS", "FAILED", "ERRORS", "P99 MS");
    for entry in status["versions"].as_array().into_iter().flatten() {
        outln!(
            "{:<8} {:<8} {:>7} {:>9} {:>7} {:>6.1}% {:>9}",
            format!("v{}", entry["version"]),
            entry["role"].as_str().unwrap_or("-"),
            entry["weight"],
            entry["requests"],
            entry["failed"],
            100.0 * entry["error_rate"].as_f64().unwrap_or(0.0),
            entry["p99_ms"].as_f64().map_or("-".to_string(), |ms| format!("{ms}"))
        );
    }
    outln!("(requests, failures and p99 are this server's since the route was set)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_versions_parse_or_name_the_mistake() {
        assert_eq!(weight("v2=90").unwrap(), (2, 90));
        assert_eq!(weight("3=10").unwrap(), (3, 10));
        assert!(weight("v2").unwrap_err().to_string().contains("VERSION=WEIGHT"));
        assert!(weight("v2=ten").unwrap_err().to_string().contains("whole number"));
        assert!(version("v0").is_err());
        assert!(version("latest").unwrap_err().to_string().contains("not a version"));
    }
}
