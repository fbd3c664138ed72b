//! How a version is watched: the server's `[drift]` defaults, overridden field by field by a version's
//! `drift` config.

use serde::{Deserialize, Serialize};

/// Drift settings of one version (the server's defaults with the version's overrides applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftSettings {
    /// Watch this version at all.
    pub enabled: bool,
    /// Share of requests sampled, in (0, 1]; every sampled request counts all its rows.
    pub sampling: f64,
    /// Rows that make the baseline when no reference sample is uploaded: the first this many, then frozen.
    pub baseline_rows: u64,
    /// Length of a tumbling window, seconds (windows start at multiples of it, UTC).
    pub window_s: u64,
    /// Rows a window needs before it is judged (smaller windows fire on noise).
    pub min_count: u64,
    /// Quantile bins of a numeric feature's baseline (plus below-range, above-range and non-finite bins).
    pub bins: usize,
    /// Most frequent values a categorical feature keeps (the rest count as "other").
    pub top_values: usize,
    /// Widest 2-D input whose columns are features of their own (wider ones, and other shapes, give one
    /// feature per tensor: each row's mean).
    pub max_columns: usize,
    /// Only these features (by name, as the drift report names them); `None`: all.
    pub features: Option<Vec<String>>,
    /// PSI at which a numeric feature warns.
    pub psi_warn: f64,
    /// PSI at which a numeric feature alerts.
    pub psi_alert: f64,
    /// Jensen-Shannon distance at which a categorical feature warns.
    pub js_warn: f64,
    /// Jensen-Shannon distance at which a categorical feature alerts.
    pub js_alert: f64,
    /// Cosine distance between mean embeddings at which an embedding model warns.
    pub cosine_warn: f64,
    /// Cosine distance between mean embeddings at which an embedding model alerts.
    pub cosine_alert: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            enabled: true,
            sampling: 1.0,
            baseline_rows: 2000,
            window_s: 3600,
            min_count: 1000,
            bins: 10,
            top_values: 10,
            max_columns: 64,
            features: None,
            psi_warn: 0.1,
            psi_alert: 0.25,
            js_warn: 0.1,
            js_alert: 0.2,
            cosine_warn: 0.05,
            cosine_alert: 0.15,
        }
    }
}

impl DriftSettings {
    /// Checks every bound; the message names the field, the bound and the value.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.sampling > 0.0 && self.sampling <= 1.0) {
            return Err(format!("drift.sampling must be in (0, 1], got {}", self.sampling));
        }
        let counts = [
            ("baseline_rows", self.baseline_rows, 10, 10_000_000),
            ("window_s", self.window_s, 1, 31 * 86_400),
            ("min_count", self.min_count, 1, u64::from(u32::MAX)),
            ("bins", self.bins as u64, 2, 100),
            ("top_values", self.top_values as u64, 1, 1000),
            ("max_columns", self.max_columns as u64, 1, 4096),
        ];
        for (name, value, low, high) in counts {
            if !(low..=high).contains(&value) {
                return Err(format!("drift.{name} must be between {low} and {high}, got {value}"));
            }
        }
        let pairs =
            [("psi", self.psi_warn, self.psi_alert), ("js", self.js_warn, self.js_alert), ("cosine", self.cosine_warn, self.cosine_alert)];
        for (name, warn, alert) in pairs {
            if !(warn.is_finite() && warn > 0.0 && alert.is_finite() && alert >= warn) {
                return Err(format!("drift.{name}_warn and drift.{name}_alert must satisfy 0 < warn <= alert, got {warn} and {alert}"));
            }
        }
        Ok(())
    }

    /// These settings with the fields of `overrides` (a version's `drift` config object) replacing
    /// theirs; an unknown field or a value out of bounds is refused, naming it.
    pub fn with_overrides(&self, overrides: &serde_json::Map<String, serde_json::Value>) -> Result<DriftSettings, String> {
        let mut merged = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err("drift settings could not be written as JSON".into()),
        };
        for (name, value) in overrides {
            merged.insert(name.clone(), value.clone());
        }
        let settings: DriftSettings =
            serde_json::from_value(serde_json::Value::Object(merged)).map_err(|error| format!("drift: {error}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Whether the feature named `name` is watched.
    pub fn watches(&self, name: &str) -> bool {
        self.features.as_ref().is_none_or(|features| features.iter().any(|feature| feature == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_overrides_apply_field_by_field() {
        let defaults = DriftSettings::default();
        assert_eq!(defaults.validate(), Ok(()));
        let overrides = serde_json::json!({ "min_count": 50, "features": ["X[2]"] });
        let merged = defaults.with_overrides(overrides.as_object().unwrap()).unwrap();
        assert_eq!((merged.min_count, merged.baseline_rows), (50, 2000));
        assert!(merged.watches("X[2]") && !merged.watches("X[0]"));
    }

    #[test]
    fn bad_overrides_name_the_field() {
        let defaults = DriftSettings::default();
        let refuse = |json: serde_json::Value| defaults.with_overrides(json.as_object().unwrap()).unwrap_err();
        assert!(refuse(serde_json::json!({ "sampling": 0 })).contains("drift.sampling must be in (0, 1], got 0"));
        assert!(refuse(serde_json::json!({ "bins": 1 })).contains("drift.bins must be between 2 and 100, got 1"));
        assert!(refuse(serde_json::json!({ "psi_alert": 0.05 })).contains("drift.psi_warn and drift.psi_alert"));
        assert!(refuse(serde_json::json!({ "windows": 3 })).contains("unknown field `windows`"));
    }
}
