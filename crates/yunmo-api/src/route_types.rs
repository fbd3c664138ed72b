//! The wire shapes of a model's route (`version_policy` of kind `routed`), shared by the management API's
//! model answers (`admin`) and the route's own endpoints (`route`), so that neither imports the other.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunmo_types::{Guard, Route, Weighted};

/// A route: which versions serve requests that name none, and how.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDto {
    /// Versions and their weights (each gets requests in proportion to its weight; 1 to 8 versions, weights 0 to 10000).
    pub versions: Vec<WeightedDto>,
    /// The version the others are judged against and rolled back to (default: the largest weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<u64>,
    /// A version that gets a copy of every routed request; its answers are counted and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<u64>,
    /// `key` (the caller's API key) or `header:NAME` (a request header's value) keeps a caller on one version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    /// Rolls the canaries back to 0% when they fail or slow down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardDto>,
    /// Unix seconds when the route was set (answers only).
    #[serde(default, skip_deserializing)]
    pub since: i64,
}

/// A version and its weight.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedDto {
    /// The version.
    pub version: u64,
    /// Its weight (0 takes it out of the traffic).
    pub weight: u32,
}

/// When the guard rolls canaries back.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GuardDto {
    /// Requests a canary must have served since the route was set, within the window, before it is judged (default 100).
    pub min_requests: u64,
    /// Largest error rate above the stable version's, 0 to 1 (default 0.05).
    pub max_error_rate_increase: f64,
    /// Largest p99 latency as a multiple of the stable version's (default: latency not judged).
    pub max_p99_ratio: Option<f64>,
    /// Seconds of recent requests judged, 10 to 900 (default 300).
    pub window_seconds: u64,
}

impl Default for GuardDto {
    fn default() -> Self {
        Guard::default().into()
    }
}

impl From<Guard> for GuardDto {
    fn from(guard: Guard) -> Self {
        let Guard { min_requests, max_error_rate_increase, max_p99_ratio, window_seconds } = guard;
        GuardDto { min_requests, max_error_rate_increase, max_p99_ratio, window_seconds }
    }
}

impl From<RouteDto> for Route {
    fn from(route: RouteDto) -> Self {
        Route {
            versions: route.versions.into_iter().map(|entry| Weighted { version: entry.version, weight: entry.weight }).collect(),
            stable: route.stable.unwrap_or(0),
            shadow: route.shadow,
            sticky: route.sticky,
            guard: route.guard.map(|guard| Guard {
                min_requests: guard.min_requests,
                max_error_rate_increase: guard.max_error_rate_increase,
                max_p99_ratio: guard.max_p99_ratio,
                window_seconds: guard.window_seconds,
            }),
            since: 0,
        }
    }
}

impl From<Route> for RouteDto {
    fn from(route: Route) -> Self {
        RouteDto {
            versions: route.versions.into_iter().map(|entry| WeightedDto { version: entry.version, weight: entry.weight }).collect(),
            stable: Some(route.stable),
            shadow: route.shadow,
            sticky: route.sticky,
            guard: route.guard.map(GuardDto::from),
            since: route.since,
        }
    }
}
