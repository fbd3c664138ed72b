//! The table of loaded versions: lazy and explicit loading, unloading, the memory budget (least recently
//! used first) and idle unloading.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::loaded::{LoadSpec, LoadedModel, WorkerConfig};
use crate::{ServiceError, VersionKey, metrics};

#[derive(Default)]
struct Slot {
    cell: OnceCell<Arc<LoadedModel>>,
}

/// The table of loaded versions.
pub struct ModelManager {
    config: WorkerConfig,
    slots: Mutex<HashMap<VersionKey, Arc<Slot>>>,
    unloaded: Mutex<HashSet<VersionKey>>,
    epoch: Instant,
    uses: AtomicU64,
}

impl ModelManager {
    /// An empty table.
    pub fn new(config: WorkerConfig) -> Self {
        ModelManager { config, slots: Mutex::default(), unloaded: Mutex::default(), epoch: Instant::now(), uses: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self, loaded: &LoadedModel) {
        loaded.touch(self.now_ms(), self.uses.fetch_add(1, Ordering::Relaxed) + 1);
    }

    /// The loaded version, if it is loaded now (and marks it used).
    pub fn get(&self, key: &VersionKey) -> Option<Arc<LoadedModel>> {
        let slot = self.slots.lock().expect("model table lock").get(key).cloned()?;
        let loaded = slot.cell.get().cloned()?;
        self.touch(&loaded);
        Some(loaded)
    }

    /// Whether the version is loaded now (without marking it used).
    pub fn is_loaded(&self, key: &VersionKey) -> bool {
        let slot = self.slots.lock().expect("model table lock").get(key).cloned();
        slot.is_some_and(|slot| slot.cell.initialized())
    }

    /// Every loaded version.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        let slots: Vec<Arc<Slot>> = self.slots.lock().expect("model table lock").values().cloned().collect();
        slots.iter().filter_map(|slot| slot.cell.get().cloned()).collect()
    }

    /// Unloads least recently used versions (never `keep`) until `incoming` more bytes fit the memory budget.
    /// Returns the versions unloaded.
    fn make_room(&self, keep: &VersionKey, incoming: u64) -> Vec<VersionKey> {
        let budget = self.config.memory_budget_bytes;
        let mut evicted = Vec::new();
        if budget == 0 {
            return evicted;
        }
        let mut loaded: Vec<Arc<LoadedModel>> = self.loaded().into_iter().filter(|model| &model.key != keep).collect();
        loaded.sort_by_key(|model| model.last_used_order.load(Ordering::Relaxed));
        let mut total: u64 = loaded.iter().map(|model| model.memory_bytes).sum::<u64>() + incoming;
        for model in loaded {
            if total <= budget {
                break;
            }
            total -= model.memory_bytes;
            tracing::info!(model = %model.key.0, version = model.key.1, bytes = model.memory_bytes, budget, "Unloading the least recently used model to stay within the memory budget.");
            ::metrics::counter!(metrics::MODEL_EVICTIONS_TOTAL, "reason" => "memory").increment(1);
            self.forget(&model.key);
            evicted.push(model.key.clone());
        }
        evicted
    }

    /// Unloads versions unused for longer than `idle_unload` and not serving a request now.
    pub fn unload_idle(&self) -> Vec<VersionKey> {
        let idle = self.config.idle_unload;
        if idle.is_zero() {
            return Vec::new();
        }
        let now = self.now_ms();
        let mut unloaded = Vec::new();
        for model in self.loaded() {
            let unused_for = now.saturating_sub(model.last_used_ms.load(Ordering::Relaxed));
            // Two handles: the table's and ours; more means a request holds it.
            if unused_for >= idle.as_millis() as u64 && Arc::strong_count(&model) <= 2 {
                tracing::info!(model = %model.key.0, version = model.key.1, idle_seconds = unused_for / 1000, "Unloading an idle model.");
                ::metrics::counter!(metrics::MODEL_EVICTIONS_TOTAL, "reason" => "idle").increment(1);
                self.forget(&model.key);
                unloaded.push(model.key.clone());
            }
        }
        unloaded
    }

    /// How often [`ModelManager::unload_idle`] should run (`None`: never).
    pub fn idle_check_interval(&self) -> Option<Duration> {
        let idle = self.config.idle_unload;
        (!idle.is_zero()).then(|| (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)))
    }

    /// Replaces the set of explicitly unloaded versions (with the store's, which another process may have
    /// changed) and unloads those of them that are loaded here. Returns the versions unloaded.
    pub fn set_unloaded(&self, keys: HashSet<VersionKey>) -> Vec<VersionKey> {
        let unloaded: Vec<VersionKey> = keys.iter().filter(|key| self.forget(key)).cloned().collect();
        *self.unloaded.lock().expect("unloaded set lock") = keys;
        unloaded
    }

    /// Whether the version was explicitly unloaded (and so is not loaded lazily).
    pub fn is_unloaded(&self, key: &VersionKey) -> bool {
        self.unloaded.lock().expect("unloaded set lock").contains(key)
    }

    /// Returns the loaded version, loading it first if needed. Concurrent callers share one load; a failed
    /// load is not remembered, so the next call tries again.
    pub async fn get_or_load(&self, spec: LoadSpec) -> Result<Arc<LoadedModel>, ServiceError> {
        let key = spec.key.clone();
        self.unloaded.lock().expect("unloaded set lock").remove(&key);
        let slot = self.slots.lock().expect("model table lock").entry(key.clone()).or_default().clone();
        let result = slot
            .cell
            .get_or_try_init(|| async {
                self.make_room(&key, spec.size_bytes);
                let loaded = crate::load::load(spec, self.config.clone(), self.now_ms()).await?;
                self.make_room(&key, loaded.memory_bytes);
                Ok(loaded)
            })
            .await
            .cloned();
        if let Ok(loaded) = &result {
            self.touch(loaded);
        }
        if result.is_err() {
            let mut slots = self.slots.lock().expect("model table lock");
            if slots.get(&key).is_some_and(|current| Arc::ptr_eq(current, &slot)) {
                slots.remove(&key);
            }
        }
        result
    }

    /// Unloads a version: new requests no longer reach it, and it is not loaded lazily until loaded again.
    /// Returns whether it was loaded.
    pub fn unload(&self, key: &VersionKey) -> bool {
        self.unloaded.lock().expect("unloaded set lock").insert(key.clone());
        self.forget(key)
    }

    /// Drops `loaded` from the table if it is still the loaded instance of its version (an engine that
    /// died): the next request loads the version again.
    pub fn forget_instance(&self, loaded: &Arc<LoadedModel>) {
        let mut slots = self.slots.lock().expect("model table lock");
        if slots.get(&loaded.key).and_then(|slot| slot.cell.get()).is_some_and(|current| Arc::ptr_eq(current, loaded)) {
            tracing::warn!(model = %loaded.key.0, version = loaded.key.1, "The model's engine has stopped; the next request loads it again.");
            slots.remove(&loaded.key);
        }
    }

    /// Drops a version from the table without blocking lazy loads (after its config changed or it was deleted).
    pub fn forget(&self, key: &VersionKey) -> bool {
        let slot = self.slots.lock().expect("model table lock").remove(key);
        slot.is_some_and(|slot| slot.cell.initialized())
    }
}
