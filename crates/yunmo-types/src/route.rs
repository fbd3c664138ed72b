//! A model's traffic route: versions sharing its requests by weight (canary, A/B), optionally sticky per
//! caller, an optional shadow that gets a copy of each request, and an optional guard that rolls the other
//! versions back to the stable one when they fail or slow down.

use serde::{Deserialize, Serialize};

/// Most versions one route may weigh.
pub const MAX_ROUTED_VERSIONS: usize = 8;
/// Largest weight of one version.
pub const MAX_WEIGHT: u32 = 10_000;

/// Which versions serve requests that name none, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The versions and their weights: each gets a share of the requests in proportion to its weight.
    pub versions: Vec<Weighted>,
    /// The version the others are judged against and rolled back to: when not given, the one with the
    /// largest weight (the lowest such version on a tie).
    #[serde(default)]
    pub stable: u64,
    /// A version that gets a copy of every routed request; its answers are counted in its metrics and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<u64>,
    /// What keeps a caller on one version: `key` (the API key) or `header:NAME` (a request header's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    /// Rolls the other versions back to the stable one automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// Unix seconds when the route was set: the guard judges the requests served since then.
    #[serde(default)]
    pub since: i64,
}

/// A version and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weighted {
    /// The version.
    pub version: u64,
    /// Its weight (0 takes it out of the traffic).
    pub weight: u32,
}

/// When the guard rolls a version back: once it has served `min_requests` within the window, if its error
/// rate exceeds the stable version's by more than `max_error_rate_increase`, or its p99 latency exceeds
/// `max_p99_ratio` times the stable version's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guard {
    /// Requests a version must have served (in the window, since the route was set) before it is judged.
    pub min_requests: u64,
    /// Largest error rate above the stable version's (0.05: five percentage points).
    pub max_error_rate_increase: f64,
    /// Largest p99 latency as a multiple of the stable version's (none: latency is not judged).
    pub max_p99_ratio: Option<f64>,
    /// Seconds of recent requests judged (10 to 900).
    pub window_seconds: u64,
}

impl Default for Guard {
    fn default() -> Self {
        Guard { min_requests: 100, max_error_rate_increase: 0.05, max_p99_ratio: None, window_seconds: 300 }
    }
}

/// How a route keeps callers on one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky<'a> {
    /// By the caller's API key.
    Key,
    /// By the value of this request header (lower case).
    Header(&'a str),
}

impl Route {
    /// Checks the route on its own (the versions' existence is the registry's check) and fills in `stable`.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.versions.is_empty() || self.versions.len() > MAX_ROUTED_VERSIONS {
            return Err(format!("versions: a route weighs 1 to {MAX_ROUTED_VERSIONS} versions, got {}", self.versions.len()));
        }
        for (i, entry) in self.versions.iter().enumerate() {
            if entry.weight > MAX_WEIGHT {
                return Err(format!(
                    "versions: the weight of version {} must be at most {MAX_WEIGHT}, got {}",
                    entry.version, entry.weight
                ));
            }
            if self.versions[..i].iter().any(|other| other.version == entry.version) {
                return Err(format!("versions: version {} is named twice", entry.version));
            }
        }
        if self.total() == 0 {
            return Err("versions: at least one version needs a weight above 0".to_string());
        }
        if self.stable == 0 {
            let most = self.versions.iter().map(|entry| entry.weight).max().unwrap_or(0);
            self.stable = self.versions.iter().filter(|entry| entry.weight == most).map(|entry| entry.version).min().unwrap_or(0);
        } else if !self.versions.iter().any(|entry| entry.version == self.stable && entry.weight > 0) {
            return Err(format!("stable: version {} is not one of the route's versions with a weight above 0", self.stable));
        }
        if let Some(shadow) = self.shadow.filter(|shadow| self.versions.iter().any(|entry| entry.version == *shadow)) {
            return Err(format!("shadow: version {shadow} is already one of the route's versions"));
        }
        if let Some(sticky) = &self.sticky {
            self.sticky = Some(parse_sticky(sticky)?);
        }
        if let Some(guard) = &self.guard {
            guard.validate()?;
        }
        Ok(())
    }

    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.versions.iter().map(|entry| u64::from(entry.weight)).sum()
    }

    /// The version a draw in `0..u64::MAX` picks: versions own ranges in proportion to their weights.
    pub fn pick(&self, draw: u64) -> u64 {
        let mut point = draw % self.total().max(1);
        for entry in &self.versions {
            if point < u64::from(entry.weight) {
                return entry.version;
            }
            point -= u64::from(entry.weight);
        }
        self.stable
    }

    /// How the route keeps callers on one version, if it does.
    pub fn sticky(&self) -> Option<Sticky<'_>> {
        match self.sticky.as_deref()? {
            "key" => Some(Sticky::Key),
            other => other.strip_prefix("header:").map(Sticky::Header),
        }
    }

    /// Every version the route names (weighted, then the shadow).
    pub fn named_versions(&self) -> impl Iterator<Item = u64> + '_ {
        self.versions.iter().map(|entry| entry.version).chain(self.shadow)
    }

    /// The versions other than the stable one that still get requests (what a guard judges).
    pub fn canaries(&self) -> impl Iterator<Item = u64> + '_ {
        self.versions.iter().filter(|entry| entry.weight > 0 && entry.version != self.stable).map(|entry| entry.version)
    }

    /// The same route with every version but the stable one at weight 0.
    pub fn rolled_back(&self) -> Route {
        let mut route = self.clone();
        for entry in &mut route.versions {
            entry.weight = if entry.version == self.stable { entry.weight.max(1) } else { 0 };
        }
        route
    }
}

impl Guard {
    fn validate(&self) -> Result<(), String> {
        if self.min_requests == 0 {
            return Err("guard.min_requests must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.max_error_rate_increase) {
            return Err(format!("guard.max_error_rate_increase must be within 0 and 1, got {}", self.max_error_rate_increase));
        }
        if let Some(ratio) = self.max_p99_ratio.filter(|ratio| !(1.0..=1000.0).contains(ratio)) {
            return Err(format!("guard.max_p99_ratio must be within 1 and 1000, got {ratio}"));
        }
        if !(10..=900).contains(&self.window_seconds) {
            return Err(format!("guard.window_seconds must be within 10 and 900, got {}", self.window_seconds));
        }
        Ok(())
    }
}

/// `key`, or `header:NAME` with a valid header name (returned lower case).
fn parse_sticky(text: &str) -> Result<String, String> {
    if text == "key" {
        return Ok(text.to_string());
    }
    let valid =
        |name: &str| !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match text.strip_prefix("header:") {
        Some(name) if valid(name) => Ok(format!("header:{}", name.to_ascii_lowercase())),
        _ => Err(format!("sticky must be 'key' or 'header:NAME' with a header name of letters, digits, '-' and '_', got '{text}'")),
    }
}

/// A stable 64-bit hash of a sticky value (FNV-1a), the same on every replica and release.
pub fn sticky_hash(value: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short keys; a final avalanche (from splitmix64) spreads them.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(weights: &[(u64, u32)]) -> Route {
        Route {
            versions: weights.iter().map(|&(version, weight)| Weighted { version, weight }).collect(),
            stable: 0,
            shadow: None,
            sticky: None,
            guard: None,
            since: 0,
        }
    }

    #[test]
    fn picks_in_proportion_and_fills_in_the_stable_version() {
        let mut canary = route(&[(2, 90), (3, 10)]);
        canary.validate().unwrap();
        assert_eq!(canary.stable, 2);
        let picked: Vec<u64> = (0..100).map(|draw| canary.pick(draw)).collect();
        assert_eq!(picked.iter().filter(|v| **v == 3).count(), 10);
        assert_eq!(canary.canaries().collect::<Vec<_>>(), vec![3]);
        let back = canary.rolled_back();
        assert!((0..100).all(|draw| back.pick(draw) == 2));
    }

    #[test]
    fn refusals_name_the_field() {
        assert!(route(&[]).validate().unwrap_err().starts_with("versions:"));
        assert!(route(&[(1, 0)]).validate().unwrap_err().contains("above 0"));
        assert!(route(&[(1, 5), (1, 5)]).validate().unwrap_err().contains("twice"));
        let mut shadowed = route(&[(1, 5)]);
        shadowed.shadow = Some(1);
        assert!(shadowed.validate().unwrap_err().starts_with("shadow:"));
        let mut sticky = route(&[(1, 5)]);
        sticky.sticky = Some("cookie".into());
        assert!(sticky.validate().unwrap_err().starts_with("sticky"));
        sticky.sticky = Some("header:X-User".into());
        sticky.validate().unwrap();
        assert_eq!(sticky.sticky(), Some(Sticky::Header("x-user")));
        let mut guarded = route(&[(1, 5)]);
        guarded.guard = Some(Guard { window_seconds: 5, ..Guard::default() });
        assert!(guarded.validate().unwrap_err().starts_with("guard.window_seconds"));
    }

    #[test]
    fn sticky_hashes_spread_evenly() {
        let canary = route(&[(1, 50), (2, 50)]);
        let ones = (0..1000).filter(|i| canary.pick(sticky_hash(format!("user-{i}").as_bytes())) == 1).count();
        assert!((430..=570).contains(&ones), "{ones} of 1000 keys on version 1");
    }
}
