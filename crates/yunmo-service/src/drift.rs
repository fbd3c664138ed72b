//! Drift monitoring in the service: a [`Watch`] per version (its settings, sampler and [`Monitor`]), fed
//! off the request path by one thread that turns sampled requests into samples.
//!
//! A sampled request costs the clones of its tensors (reference-counted bytes) and a `try_send` on a bounded
//! channel; a full channel drops the sample and counts it, never blocking the request. The monitors live
//! in the [`DriftHub`], keyed by version, so unloading and reloading a version keeps its baseline; a change
//! of its drift settings starts a new one. Frozen baselines are stored in the metadata store and shared by
//! replicas and restarts ([`crate::drift_sync`]); windows are each replica's own traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use yunmo_drift::{DriftSettings, Monitor, Report, Sample};
use yunmo_types::{Tensor, VersionConfig};

use crate::VersionKey;

/// Samples the worker may hold before new ones are dropped.
const QUEUE: usize = 4096;

/// What the worker turns into a sample.
pub(crate) enum Job {
    /// A tensor request and its answer.
    Tensors { watch: Arc<Watch>, inputs: Vec<Tensor>, outputs: Vec<Tensor> },
    /// A sample made on the request path (generations, embeddings).
    Sample { watch: Arc<Watch>, sample: Sample },
}

/// One version's drift monitor, its settings and sampler.
pub(crate) struct Watch {
    pub(crate) key: VersionKey,
    /// What a stored baseline must have been made with to be used here: these settings and this file.
    pub(crate) made_with: String,
    /// `updated_at` of the stored baseline this watch last wrote or took (0: none).
    pub(crate) synced: AtomicI64,
    pub(crate) settings: DriftSettings,
    seen: AtomicU64,
    dropped: AtomicU64,
    pub(crate) monitor: Mutex<Monitor>,
    sender: flume::Sender<Job>,
}

impl Watch {
    /// Whether this request is sampled (`sampling` of them, spread evenly).
    pub(crate) fn sampled(&self) -> bool {
        let rate = self.settings.sampling;
        if rate >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }

    /// Hands a job to the worker, or drops it when the worker is behind.
    pub(crate) fn submit(&self, job: Job) {
        if self.sender.try_send(job).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a sample made on the request path to the worker.
    pub(crate) fn submit_sample(self: &Arc<Self>, sample: Sample) {
        self.submit(Job::Sample { watch: self.clone(), sample });
    }

    /// Counts a sample; true when it froze the baseline.
    fn observe(&self, sample: &Sample) -> bool {
        let now = crate::stats::unix_second();
        let mut monitor = self.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let was_frozen = monitor.is_frozen();
        monitor.observe(now, sample);
        !was_frozen && monitor.is_frozen()
    }

    pub(crate) fn report(&self, now: u64) -> Report {
        self.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).report(now)
    }
}

/// Every version's watch and the worker that feeds them.
pub(crate) struct DriftHub {
    defaults: DriftSettings,
    watches: Mutex<HashMap<VersionKey, Arc<Watch>>>,
    sender: flume::Sender<Job>,
    pub(crate) store: crate::drift_sync::BaselineStore,
}

/// A version's drift, as the API answers it.
pub struct DriftReport {
    /// Whether the version is watched (`drift.enabled`).
    pub enabled: bool,
    /// Share of requests sampled.
    pub sampling: f64,
    /// Samples dropped because the drift worker was behind.
    pub dropped: u64,
    /// The monitor's report (`None` when the version is not watched or has not been loaded since the
    /// server started).
    pub report: Option<Report>,
}

impl DriftHub {
    /// A hub with the server's default settings, and its worker thread.
    pub(crate) fn new(defaults: DriftSettings, registry: yunmo_registry::Registry) -> DriftHub {
        let (sender, receiver) = flume::bounded::<Job>(QUEUE);
        let store = crate::drift_sync::BaselineStore::new(registry);
        let worker_store = store.clone();
        let spawned = std::thread::Builder::new().name("yunmo-drift".into()).spawn(move || {
            // Ends when the hub and every watch (each holds a sender) are gone.
            for job in receiver.iter() {
                match job {
                    Job::Tensors { watch, inputs, outputs } => {
                        let sample = yunmo_drift::extract::request(&inputs, &outputs, watch.settings.max_columns);
                        if watch.observe(&sample) {
                            watch.store_later(&worker_store);
                        }
                    }
                    Job::Sample { watch, sample } => {
                        if watch.observe(&sample) {
                            watch.store_later(&worker_store);
                        }
                    }
                }
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "The drift worker could not start; drift monitoring is off.");
        }
        DriftHub { defaults, watches: Mutex::new(HashMap::new()), sender, store }
    }

    /// The settings of a version with `config` (the defaults with its `drift` overrides), or why they are
    /// refused.
    pub(crate) fn settings(&self, config: &VersionConfig) -> Result<DriftSettings, String> {
        match &config.drift {
            Some(overrides) => self.defaults.with_overrides(overrides),
            None => Ok(self.defaults.clone()),
        }
    }

    /// The watch of a version being loaded with `config` from the file `sha256`: the one it had when its
    /// settings are the same, else a new one; `None` when drift is off for it.
    pub(crate) fn watch(&self, key: &VersionKey, config: &VersionConfig, sha256: &str) -> Option<Arc<Watch>> {
        let settings = match self.settings(config) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::warn!(model = %key.0, version = key.1, %error, "Drift settings refused; this version is not watched.");
                return None;
            }
        };
        let mut watches = self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !settings.enabled {
            watches.remove(key);
            return None;
        }
        if let Some(existing) = watches.get(key).filter(|watch| watch.settings == settings) {
            return Some(existing.clone());
        }
        let made_with = crate::drift_sync::made_with(&settings, sha256);
        let watch = Arc::new(Watch {
            key: key.clone(),
            made_with,
            synced: AtomicI64::new(0),
            monitor: Mutex::new(Monitor::new(settings.clone())),
            settings,
            seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sender: self.sender.clone(),
        });
        watches.insert(key.clone(), watch.clone());
        Some(watch)
    }

    /// Every watch.
    pub(crate) fn all(&self) -> Vec<Arc<Watch>> {
        self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    pub(crate) fn get(&self, key: &VersionKey) -> Option<Arc<Watch>> {
        self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    /// The drift of a version with `config`.
    pub(crate) fn report(&self, key: &VersionKey, config: &VersionConfig) -> Result<DriftReport, String> {
        let settings = self.settings(config)?;
        let watch = self.get(key).filter(|watch| watch.settings == settings);
        let now = crate::stats::unix_second();
        Ok(DriftReport {
            enabled: settings.enabled,
            sampling: settings.sampling,
            dropped: watch.as_ref().map_or(0, |watch| watch.dropped.load(Ordering::Relaxed)),
            report: watch.map(|watch| watch.report(now)),
        })
    }

    /// Replaces a watched version's baseline with `samples` and stores it for the other replicas.
    pub(crate) async fn set_reference(&self, key: &VersionKey, samples: &[Sample]) {
        let Some(watch) = self.get(key) else { return };
        watch.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_reference(crate::stats::unix_second(), samples);
        watch.store_now(&self.store).await;
    }

    /// Starts a watched version's baseline over from its next requests, here and on the other replicas.
    pub(crate) async fn reset(&self, key: &VersionKey) {
        let Some(watch) = self.get(key) else { return };
        *watch.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Monitor::new(watch.settings.clone());
        watch.store_now(&self.store).await;
    }

    /// Sets the drift gauges of every watched version (at scrape time).
    pub(crate) fn refresh_gauges(&self) {
        let watches: Vec<(VersionKey, Arc<Watch>)> =
            self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(k, w)| (k.clone(), w.clone())).collect();
        let now = crate::stats::unix_second();
        for (key, watch) in watches {
            let report = watch.report(now);
            let version = key.1.to_string();
            let labels = [("model", key.0.clone()), ("version", version.clone())];
            ::metrics::gauge!(crate::metrics::DRIFT_WINDOW_ROWS, &labels).set(report.window.current.rows as f64);
            ::metrics::gauge!(crate::metrics::DRIFT_SAMPLES_DROPPED, &labels).set(watch.dropped.load(Ordering::Relaxed) as f64);
            for feature in &report.features {
                let labels = [("model", key.0.clone()), ("version", version.clone()), ("feature", feature.name.clone())];
                if let Some(value) = feature.value {
                    let with_statistic = [&labels[..], &[("statistic", feature.statistic.to_string())]].concat();
                    ::metrics::gauge!(crate::metrics::DRIFT_SCORE, &with_statistic).set(value);
                }
                let level = match feature.state {
                    yunmo_drift::State::Alert => 2.0,
                    yunmo_drift::State::Warn => 1.0,
                    yunmo_drift::State::Ok => 0.0,
                    yunmo_drift::State::CollectingBaseline | yunmo_drift::State::InsufficientData => -1.0,
                };
                ::metrics::gauge!(crate::metrics::DRIFT_STATE, &labels).set(level);
            }
        }
    }
}

impl crate::InferenceService {
    /// The drift of `version` of the target model (needs read access to it).
    pub async fn drift_report(&self, call: &crate::Call, target: &crate::Target, version: u64) -> Result<DriftReport, crate::ServiceError> {
        target.permits(call, yunmo_auth::Action::Read)?;
        let record = self.inner.registry.get_version(target.name(), version).await?;
        self.inner.drift.report(&(record.model, record.version), &record.config).map_err(crate::ServiceError::invalid)
    }

    /// Replaces the drift baseline of `version` with a reference sample: `input` is run through the version
    /// (so output features have their reference too) and its rows become the baseline, frozen at once; the
    /// windows start over. Needs write access; the version is loaded if it is not.
    pub async fn set_drift_reference(
        &self,
        call: &crate::Call,
        target: &crate::Target,
        version: u64,
        input: yunmo_types::InferInput,
    ) -> Result<DriftReport, crate::ServiceError> {
        target.permits(call, yunmo_auth::Action::Write)?;
        let record = self.inner.registry.get_version(target.name(), version).await?;
        let loaded = self.loaded(&record).await?;
        if loaded.drift.is_none() {
            return Err(crate::ServiceError::invalid(format!(
                "model '{}' version {version} is not watched for drift (its drift.enabled is false)",
                record.model
            )));
        }
        let inputs = input.inputs.clone();
        let deadline = std::time::Instant::now() + self.inner.request_timeout;
        let output = self.infer_loaded(&record, &loaded, input, deadline).await?;
        let settings = self.inner.drift.settings(&record.config).map_err(crate::ServiceError::invalid)?;
        let sample = yunmo_drift::extract::request(&inputs, &output.outputs, settings.max_columns);
        let key = (record.model.clone(), record.version);
        self.inner.drift.set_reference(&key, std::slice::from_ref(&sample)).await;
        self.inner.drift.report(&key, &record.config).map_err(crate::ServiceError::invalid)
    }

    /// Starts the drift baseline of `version` over from its next requests (after a deliberate change of the
    /// data it serves). Needs write access.
    pub async fn reset_drift(&self, call: &crate::Call, target: &crate::Target, version: u64) -> Result<DriftReport, crate::ServiceError> {
        target.permits(call, yunmo_auth::Action::Write)?;
        let record = self.inner.registry.get_version(target.name(), version).await?;
        let key = (record.model.clone(), record.version);
        self.inner.drift.reset(&key).await;
        self.inner.drift.report(&key, &record.config).map_err(crate::ServiceError::invalid)
    }
}

impl Watch {
    /// What to store: the frozen baseline, or an empty one (a reset) while it collects.
    fn record(&self) -> yunmo_registry::DriftBaselineRecord {
        let baseline = self.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).baseline();
        yunmo_registry::DriftBaselineRecord {
            model: self.key.0.clone(),
            version: self.key.1,
            settings: self.made_with.clone(),
            baseline: baseline.and_then(|baseline| serde_json::to_string(&baseline).ok()).unwrap_or_default(),
            updated_at: yunmo_types::calendar::now_ms(),
        }
    }

    /// Stores the baseline it just froze (on the runtime) and takes what ends up stored.
    fn store_later(self: &Arc<Self>, store: &crate::drift_sync::BaselineStore) {
        let watch = self.clone();
        store.store_later(self.record(), Box::new(move |stored| watch.take(&stored)));
    }

    /// Stores its baseline over whatever is stored (a reference sample, a reset) and takes the result.
    async fn store_now(&self, store: &crate::drift_sync::BaselineStore) {
        if let Some(stored) = store.store(&self.record(), true).await {
            self.take(&stored);
        }
    }

    /// Takes a stored baseline made with the same settings and file, when it is newer than the last one this
    /// watch wrote or took: adopts it, or starts over for an empty one.
    fn take(&self, stored: &yunmo_registry::DriftBaselineRecord) {
        if stored.settings != self.made_with || stored.updated_at <= self.synced.load(Ordering::Relaxed) {
            return;
        }
        self.synced.store(stored.updated_at, Ordering::Relaxed);
        let mut monitor = self.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Its own baseline, stored: nothing to take (JSON may move a bound by its last bit).
        if monitor.baseline().and_then(|own| serde_json::to_string(&own).ok()).is_some_and(|own| own == stored.baseline) {
            return;
        }
        if stored.baseline.is_empty() {
            if monitor.is_frozen() {
                *monitor = Monitor::new(self.settings.clone());
            }
        } else {
            match serde_json::from_str::<yunmo_drift::monitor::FrozenBaseline>(&stored.baseline) {
                Ok(baseline) => monitor.adopt(baseline),
                Err(error) => {
                    tracing::warn!(model = %self.key.0, version = self.key.1, %error, "A stored drift baseline could not be read.")
                }
            }
        }
    }

    /// Takes what is stored for its version, if anything newer is.
    async fn sync(&self, store: &crate::drift_sync::BaselineStore) {
        if let Some(stored) = store.stored(&self.key.0, self.key.1).await {
            self.take(&stored);
        }
    }
}

impl crate::InferenceService {
    /// The drift watch of a version being loaded, with the stored baseline taken when there is one.
    pub(crate) async fn drift_watch(&self, version: &yunmo_registry::VersionRecord) -> Option<Arc<Watch>> {
        let watch = self.inner.drift.watch(&(version.model.clone(), version.version), &version.config, &version.sha256)?;
        watch.sync(&self.inner.drift.store).await;
        Some(watch)
    }

    /// Takes the stored drift baselines of every watched version (after a change notice or a reconnect).
    pub(crate) async fn sync_drift_baselines(&self) {
        for watch in self.inner.drift.all() {
            watch.sync(&self.inner.drift.store).await;
        }
    }
}
