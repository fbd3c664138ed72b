//! Drift baselines shared through the metadata store: a replica that freezes a baseline stores it (the first
//! one stored wins, the others take it), a reference sample or a reset replaces it, and every replica takes
//! what is stored when it starts watching a version and when the store announces a change
//! ([`yunmo_registry::Change::Drift`]; with PostgreSQL). A reset is stored as an empty baseline, so that the
//! replicas start over too and the next one to freeze stores the new baseline.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use yunmo_drift::monitor::FrozenBaseline;
use yunmo_drift::{DriftSettings, Monitor};
use yunmo_registry::{DriftBaselineRecord, Registry};

use crate::drift::Watch;

/// What a stored baseline must have been made with to be used: the settings and the file (FNV-1a of both).
pub(crate) fn made_with(settings: &DriftSettings, sha256: &str) -> String {
    let text = format!("{}\u{0}{sha256}", serde_json::to_string(settings).unwrap_or_default());
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

fn now_ms() -> i64 {
    yunmo_types::calendar::now_ms()
}

impl Watch {
    /// What to store: the frozen baseline, or an empty one (a reset) while it collects.
    fn record(&self) -> DriftBaselineRecord {
        let baseline = self.monitor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).baseline();
        DriftBaselineRecord {
            model: self.key.0.clone(),
            version: self.key.1,
            settings: self.made_with.clone(),
            baseline: baseline.and_then(|baseline| serde_json::to_string(&baseline).ok()).unwrap_or_default(),
            updated_at: now_ms(),
        }
    }

    /// Takes a stored baseline made with the same settings and file, when it is newer than the last one this
    /// watch wrote or took: adopts it, or starts over for an empty one.
    fn take(&self, stored: &DriftBaselineRecord) {
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
            match serde_json::from_str::<FrozenBaseline>(&stored.baseline) {
                Ok(baseline) => monitor.adopt(baseline),
                Err(error) => {
                    tracing::warn!(model = %self.key.0, version = self.key.1, %error, "A stored drift baseline could not be read.")
                }
            }
        }
    }
}

/// Reads and writes the stored baselines.
#[derive(Clone)]
pub(crate) struct BaselineStore {
    registry: Registry,
    /// The runtime the drift thread hands its writes to (`None` outside one: nothing is stored).
    runtime: Option<tokio::runtime::Handle>,
}

impl BaselineStore {
    pub(crate) fn new(registry: Registry) -> BaselineStore {
        BaselineStore { registry, runtime: tokio::runtime::Handle::try_current().ok() }
    }

    /// Stores a baseline the drift thread just froze, on the runtime.
    pub(crate) fn store_later(&self, watch: Arc<Watch>) {
        let Some(runtime) = &self.runtime else { return };
        let store = self.clone();
        runtime.spawn(async move { store.store(&watch, false).await });
    }

    /// Stores the watch's baseline: with `replace`, over whatever is stored (a reference sample, a reset);
    /// without, only where nothing usable is stored (no row, another file's or settings', or a reset), else it
    /// takes the stored one (another replica froze first).
    pub(crate) async fn store(&self, watch: &Watch, replace: bool) {
        let record = watch.record();
        let mut written = self.registry.put_drift_baseline(&record, replace).await;
        if let Ok(stored) = &written
            && !replace
            && (stored.baseline.is_empty() || stored.settings != record.settings)
        {
            written = self.registry.put_drift_baseline(&record, true).await;
        }
        match written {
            Ok(stored) => watch.take(&stored),
            Err(error) => {
                tracing::warn!(model = %watch.key.0, version = watch.key.1, error = %error, "The drift baseline could not be stored; this replica keeps its own.");
            }
        }
    }

    /// Takes what is stored for the watch's version, if anything newer is.
    pub(crate) async fn sync(&self, watch: &Watch) {
        match self.registry.get_drift_baseline(&watch.key.0, watch.key.1).await {
            Ok(Some(stored)) => watch.take(&stored),
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(model = %watch.key.0, version = watch.key.1, error = %error, "The drift baseline could not be read.")
            }
        }
    }
}

impl crate::InferenceService {
    /// The drift watch of a version being loaded, with the stored baseline taken when there is one.
    pub(crate) async fn drift_watch(&self, version: &yunmo_registry::VersionRecord) -> Option<Arc<Watch>> {
        let watch = self.inner.drift.watch(&(version.model.clone(), version.version), &version.config, &version.sha256)?;
        self.inner.drift.store.sync(&watch).await;
        Some(watch)
    }

    /// Takes the stored drift baselines of every watched version (after a change notice or a reconnect).
    pub(crate) async fn sync_drift_baselines(&self) {
        for watch in self.inner.drift.all() {
            self.inner.drift.store.sync(&watch).await;
        }
    }
}
