//! Drift baselines shared through the metadata store: a replica that freezes a baseline stores it (the first
//! one stored wins, the others take it), a reference sample or a reset replaces it, and every replica takes
//! what is stored when it starts watching a version and when the store announces a change
//! ([`yunmo_registry::Change::Drift`]; with PostgreSQL). A reset is stored as an empty baseline, so that the
//! replicas start over too and the next one to freeze stores the new baseline. This module reads and writes
//! the records; `drift` decides what a watch takes from them.

use yunmo_drift::DriftSettings;
use yunmo_registry::{DriftBaselineRecord, Registry};

/// What a stored baseline must have been made with to be used: the settings and the file (FNV-1a of both).
pub(crate) fn made_with(settings: &DriftSettings, sha256: &str) -> String {
    let text = format!("{}\u{0}{sha256}", serde_json::to_string(settings).unwrap_or_default());
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// What to do with the record stored after a write (the watch takes it).
pub(crate) type Then = Box<dyn FnOnce(DriftBaselineRecord) + Send>;

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

    /// Stores a baseline the drift thread just froze, on the runtime, then hands what is stored to `then`.
    pub(crate) fn store_later(&self, record: DriftBaselineRecord, then: Then) {
        let Some(runtime) = &self.runtime else { return };
        let store = self.clone();
        runtime.spawn(async move {
            if let Some(stored) = store.store(&record, false).await {
                then(stored);
            }
        });
    }

    /// Stores `record`: with `replace`, over whatever is stored (a reference sample, a reset); without,
    /// only where nothing usable is stored (no row, another file's or settings', or a reset). Returns what is
    /// stored afterwards (another replica's, when it froze first).
    pub(crate) async fn store(&self, record: &DriftBaselineRecord, replace: bool) -> Option<DriftBaselineRecord> {
        let mut written = self.registry.put_drift_baseline(record, replace).await;
        if let Ok(stored) = &written
            && !replace
            && (stored.baseline.is_empty() || stored.settings != record.settings)
        {
            written = self.registry.put_drift_baseline(record, true).await;
        }
        match written {
            Ok(stored) => Some(stored),
            Err(error) => {
                tracing::warn!(model = %record.model, version = record.version, error = %error, "The drift baseline could not be stored; this replica keeps its own.");
                None
            }
        }
    }

    /// What is stored for a version.
    pub(crate) async fn stored(&self, model: &str, version: u64) -> Option<DriftBaselineRecord> {
        match self.registry.get_drift_baseline(model, version).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::debug!(model, version, error = %error, "The drift baseline could not be read.");
                None
            }
        }
    }
}
