//! Which alerts fire, and what fired and resolved before.

use std::collections::{BTreeMap, VecDeque};

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Look soon.
    Warning,
    /// Look now.
    Critical,
}

impl Severity {
    /// The `severity` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its condition holds.
    Firing,
    /// Its condition no longer holds.
    Resolved,
}

impl Status {
    /// Alertmanager's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// A condition a rule found true at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The rule (`alertname`): `YunmoHighErrorRate`, `YunmoLatencyObjective`, ...
    pub name: &'static str,
    /// What it is about: `model`, `version`, `tenant`, `feature`, ... (besides `alertname` and `severity`).
    pub labels: BTreeMap<String, String>,
    /// How bad.
    pub severity: Severity,
    /// One line for people.
    pub summary: String,
    /// The measured value and the bound it passed.
    pub description: String,
    /// The measured value.
    pub value: f64,
}

/// An alert, firing or resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Its labels, `alertname` and `severity` included.
    pub labels: BTreeMap<String, String>,
    /// One line for people.
    pub summary: String,
    /// The measured value and the bound, at the last evaluation that found it true.
    pub description: String,
    /// The measured value then.
    pub value: f64,
    /// Firing or resolved.
    pub status: Status,
    /// When it started firing, Unix seconds.
    pub starts_at: u64,
    /// When it resolved, Unix seconds.
    pub ends_at: Option<u64>,
    /// A stable id of its labels (16 hex digits), as Alertmanager gives one.
    pub fingerprint: String,
}

impl Alert {
    /// Its rule's name.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// FNV-1a of the labels, sorted (a `BTreeMap` iterates in order).
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for (name, value) in labels {
        for byte in name.bytes().chain([0xff]).chain(value.bytes()).chain([0xfe]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The alerts firing now and the history of changes (newest last, at most `history_limit`).
#[derive(Debug, Clone)]
pub struct Book {
    firing: BTreeMap<String, Alert>,
    history: VecDeque<Alert>,
    history_limit: usize,
}

impl Book {
    /// An empty book keeping the last `history_limit` changes.
    pub fn new(history_limit: usize) -> Book {
        Book { firing: BTreeMap::new(), history: VecDeque::new(), history_limit: history_limit.max(1) }
    }

    /// Applies one evaluation's `conditions` (everything the rules found true at `now`, Unix seconds):
    /// a new condition fires, one that is gone resolves, one that holds stays firing (with its latest value).
    /// Returns the changes (fired and resolved alerts), for delivery.
    pub fn apply(&mut self, now: u64, conditions: Vec<Condition>) -> Vec<Alert> {
        let mut changes = Vec::new();
        let mut seen = BTreeMap::new();
        for condition in conditions {
            let mut labels = condition.labels;
            labels.insert("alertname".into(), condition.name.to_string());
            labels.insert("severity".into(), condition.severity.as_str().to_string());
            let id = fingerprint(&labels);
            if let Some(firing) = self.firing.get_mut(&id) {
                firing.description = condition.description;
                firing.value = condition.value;
            } else {
                let alert = Alert {
                    labels,
                    summary: condition.summary,
                    description: condition.description,
                    value: condition.value,
                    status: Status::Firing,
                    starts_at: now,
                    ends_at: None,
                    fingerprint: id.clone(),
                };
                self.firing.insert(id.clone(), alert.clone());
                changes.push(alert);
            }
            seen.insert(id, ());
        }
        let gone: Vec<String> = self.firing.keys().filter(|id| !seen.contains_key(*id)).cloned().collect();
        for id in gone {
            if let Some(mut alert) = self.firing.remove(&id) {
                alert.status = Status::Resolved;
                alert.ends_at = Some(now);
                changes.push(alert);
            }
        }
        for change in &changes {
            self.history.push_back(change.clone());
            if self.history.len() > self.history_limit {
                self.history.pop_front();
            }
        }
        changes
    }

    /// The alerts firing now.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.firing.values()
    }

    /// The changes so far, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Alert> {
        self.history.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(model: &str, value: f64) -> Condition {
        Condition {
            name: "YunmoHighErrorRate",
            labels: BTreeMap::from([("model".to_string(), model.to_string())]),
            severity: Severity::Critical,
            summary: format!("{model} fails"),
            description: format!("{value}"),
            value,
        }
    }

    #[test]
    fn a_condition_fires_once_stays_firing_and_resolves_when_gone() {
        let mut book = Book::new(10);
        let fired = book.apply(100, vec![condition("iris", 0.2)]);
        assert_eq!((fired.len(), fired[0].status, fired[0].starts_at), (1, Status::Firing, 100));
        assert_eq!(fired[0].labels["alertname"], "YunmoHighErrorRate");
        assert!(book.apply(115, vec![condition("iris", 0.3)]).is_empty(), "still firing: no change to deliver");
        assert_eq!(book.firing().next().unwrap().value, 0.3, "with its latest value");
        let resolved = book.apply(130, vec![]);
        assert_eq!((resolved[0].status, resolved[0].starts_at, resolved[0].ends_at), (Status::Resolved, 100, Some(130)));
        assert_eq!(resolved[0].fingerprint, fired[0].fingerprint);
        assert_eq!(book.firing().count(), 0);
        assert_eq!(book.history().count(), 2);
    }

    #[test]
    fn history_is_bounded_and_labels_tell_alerts_apart() {
        let mut book = Book::new(3);
        for round in 0..4u64 {
            book.apply(round * 2, vec![condition("a", 1.0), condition("b", 1.0)]);
            book.apply(round * 2 + 1, vec![]);
        }
        assert_eq!(book.history().count(), 3);
        let fired = Book::new(3).apply(0, vec![condition("a", 1.0), condition("b", 1.0)]);
        assert_ne!(fired[0].fingerprint, fired[1].fingerprint);
    }
}
