//! The drift monitor of one version: a baseline per feature (collected from the first rows, or set from a
//! reference sample), then tumbling windows counted into the baseline's bins and judged against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::feature::{Collecting, Frozen, Tally, Values};
use crate::settings::DriftSettings;

/// Where a feature's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A request's input tensor.
    Input,
    /// The model's answer.
    Output,
    /// An LLM generation (token counts, finish reason).
    Generation,
    /// An embedding model's vectors.
    Embedding,
}

impl Source {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Input => "input",
            Source::Output => "output",
            Source::Generation => "generation",
            Source::Embedding => "embedding",
        }
    }
}

/// One feature's values in one sampled request.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The feature's name (`X[2]`, `probabilities.class`, `completion_tokens`).
    pub feature: String,
    /// Where it comes from.
    pub source: Source,
    /// Its values, one per row.
    pub values: Values,
}

/// What one sampled request showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Rows in the request (its batch size; 1 for a generation).
    pub rows: u64,
    /// Its features.
    pub observations: Vec<Observation>,
}

/// Where the baseline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineSource {
    /// The version's first requests.
    FirstRequests,
    /// A reference sample uploaded for it.
    Reference,
}

/// A frozen baseline as it is stored and shared: every feature's bins, how many rows made it, where they
/// came from and when it froze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenBaseline {
    /// Rows in it.
    pub rows: u64,
    /// Whether it is an uploaded reference sample (else the first requests).
    pub reference: bool,
    /// When it froze, Unix seconds.
    pub frozen_at: u64,
    /// Each feature: where it comes from and its bins.
    pub features: BTreeMap<String, (Source, Frozen)>,
}

/// One window's tallies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// Its index: start / window_s.
    pub index: u64,
    /// Rows seen.
    pub rows: u64,
    /// Tallies by feature.
    pub tallies: BTreeMap<String, Tally>,
}

/// A watched feature.
#[derive(Debug, Clone)]
pub(crate) struct Feature {
    pub source: Source,
    pub collecting: Option<Collecting>,
    pub frozen: Option<Frozen>,
}

/// The monitor of one version.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub(crate) settings: DriftSettings,
    pub(crate) features: BTreeMap<String, Feature>,
    pub(crate) baseline_rows: u64,
    pub(crate) baseline_source: BaselineSource,
    pub(crate) frozen_at: Option<u64>,
    pub(crate) current: Window,
    pub(crate) last: Option<Window>,
}

impl Monitor {
    /// A monitor that collects its baseline from the first `settings.baseline_rows` rows.
    pub fn new(settings: DriftSettings) -> Monitor {
        Monitor {
            settings,
            features: BTreeMap::new(),
            baseline_rows: 0,
            baseline_source: BaselineSource::FirstRequests,
            frozen_at: None,
            current: Window::default(),
            last: None,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &DriftSettings {
        &self.settings
    }

    /// Whether the baseline is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen_at.is_some()
    }

    /// The frozen baseline, to store (`None` while it collects).
    pub fn baseline(&self) -> Option<FrozenBaseline> {
        let frozen_at = self.frozen_at?;
        let features = self
            .features
            .iter()
            .filter_map(|(name, feature)| feature.frozen.clone().map(|frozen| (name.clone(), (feature.source, frozen))))
            .collect();
        Some(FrozenBaseline { rows: self.baseline_rows, reference: self.baseline_source == BaselineSource::Reference, frozen_at, features })
    }

    /// Takes `baseline` (one stored by another replica, or before a restart) as its own, unless it holds it
    /// already; the windows start over when it changes.
    pub fn adopt(&mut self, baseline: FrozenBaseline) {
        if self.frozen_at == Some(baseline.frozen_at) && self.baseline().is_some_and(|own| own == baseline) {
            return;
        }
        self.features = baseline
            .features
            .into_iter()
            .map(|(name, (source, frozen))| (name, Feature { source, collecting: None, frozen: Some(frozen) }))
            .collect();
        self.baseline_rows = baseline.rows;
        self.baseline_source = if baseline.reference { BaselineSource::Reference } else { BaselineSource::FirstRequests };
        self.frozen_at = Some(baseline.frozen_at);
        self.current = Window { index: baseline.frozen_at / self.settings.window_s, ..Window::default() };
        self.last = None;
    }

    /// Counts a sampled request seen at `now` (Unix seconds): into the baseline until it is frozen, then into
    /// the current window.
    pub fn observe(&mut self, now: u64, sample: &Sample) {
        if self.is_frozen() {
            self.roll(now);
            self.count(sample);
        } else {
            self.collect(sample);
            if self.baseline_rows >= self.settings.baseline_rows {
                self.freeze(now, BaselineSource::FirstRequests);
            }
        }
    }

    /// Replaces the baseline with `samples` (a reference sample), frozen at once, and starts the windows over.
    pub fn set_reference(&mut self, now: u64, samples: &[Sample]) {
        self.features.clear();
        self.baseline_rows = 0;
        self.current = Window::default();
        self.last = None;
        for sample in samples {
            self.collect(sample);
        }
        self.freeze(now, BaselineSource::Reference);
    }

    fn collect(&mut self, sample: &Sample) {
        self.baseline_rows += sample.rows;
        for observation in &sample.observations {
            if !self.settings.watches(&observation.feature) {
                continue;
            }
            let feature = self.features.entry(observation.feature.clone()).or_insert_with(|| Feature {
                source: observation.source,
                collecting: Some(Collecting::for_values(&observation.values)),
                frozen: None,
            });
            if let Some(collecting) = &mut feature.collecting {
                collecting.add(&observation.values);
            }
        }
    }

    fn freeze(&mut self, now: u64, source: BaselineSource) {
        for feature in self.features.values_mut() {
            if let Some(collecting) = feature.collecting.take() {
                feature.frozen = Some(collecting.freeze(self.settings.bins, self.settings.top_values));
            }
        }
        self.baseline_source = source;
        self.frozen_at = Some(now);
        self.current = Window { index: now / self.settings.window_s, ..Window::default() };
    }

    /// Closes the current window when `now` is past it.
    fn roll(&mut self, now: u64) {
        let index = now / self.settings.window_s;
        if index != self.current.index {
            let ended = std::mem::replace(&mut self.current, Window { index, ..Window::default() });
            self.last = Some(ended);
        }
    }

    fn count(&mut self, sample: &Sample) {
        self.current.rows += sample.rows;
        for observation in &sample.observations {
            // A feature first seen after the baseline froze has no baseline to compare with.
            let Some(frozen) = self.features.get(&observation.feature).and_then(|feature| feature.frozen.as_ref()) else { continue };
            let tally = self.current.tallies.entry(observation.feature.clone()).or_insert_with(|| frozen.empty_tally());
            frozen.count(tally, &observation.values);
        }
    }
}
