//! Keeping one process in line with a metadata store that others share: what they changed reaches this
//! process's caches and loaded models, and load/unload through any of them applies to all.

use std::collections::HashSet;

use yunmo_registry::{Change, DesiredState, RegistryError};

use crate::{InferenceService, ServiceError, VersionKey};

impl InferenceService {
    /// Applies a change another process committed: models and versions drop the resolve caches, unload
    /// what was deleted, reconfigured or given a new tokenizer, and apply what should be loaded or unloaded;
    /// keys and tenants drop the key cache; a resync does both. What the store says is read first, and
    /// nothing is dropped unless that worked: while the store cannot be reached, the caches are what serves.
    pub async fn apply_change(&self, change: Change) -> Result<(), ServiceError> {
        let models = matches!(change, Change::Models | Change::Resync);
        let fresh = match models {
            true => Some((self.stale_versions().await?, self.inner.registry.desired_states().await?)),
            false => None,
        };
        if matches!(change, Change::Keys | Change::Resync) {
            self.inner.gate.forget_keys();
        }
        if matches!(change, Change::Drift | Change::Resync) {
            self.sync_drift_baselines().await;
        }
        if let Some((stale, states)) = fresh {
            self.invalidate_all();
            for key in stale {
                if self.inner.models.forget(&key) {
                    tracing::info!(model = %key.0, version = key.1, "Unloaded a version that another replica deleted or reconfigured.");
                }
            }
            self.apply_states(states);
        }
        Ok(())
    }

    /// Loaded versions that were deleted, or whose serving options or tokenizer changed, elsewhere: the next
    /// request loads the stored version again.
    async fn stale_versions(&self) -> Result<Vec<VersionKey>, ServiceError> {
        let mut stale = Vec::new();
        for loaded in self.inner.models.loaded() {
            let (name, version) = &loaded.key;
            let changed = match self.inner.registry.get_version(name, *version).await {
                Ok(record) => record.config != loaded.config || self.tokenizer_digest(&record).await? != loaded.tokenizer_digest,
                Err(RegistryError::NotFound(_)) => true,
                Err(error) => return Err(error.into()),
            };
            if changed {
                stale.push(loaded.key.clone());
            }
        }
        Ok(stale)
    }

    /// The digest of the tokenizer a load of `record` would use (as `load_version` reads it).
    async fn tokenizer_digest(&self, record: &yunmo_registry::VersionRecord) -> Result<Option<u64>, ServiceError> {
        if !(record.has_tokenizer && record.config.embedding.is_some()) {
            return Ok(None);
        }
        let text = self.inner.registry.tokenizer(&record.model, record.version).await?;
        Ok(text.as_deref().map(crate::loaded::tokenizer_digest))
    }

    /// Makes this process hold what the store says the cluster keeps loaded or unloaded: unloaded versions
    /// are refused (and unloaded here), loaded ones are loaded in the background if they are not yet.
    pub async fn apply_desired_states(&self) -> Result<(), ServiceError> {
        let states = self.inner.registry.desired_states().await?;
        self.apply_states(states);
        Ok(())
    }

    fn apply_states(&self, states: Vec<(String, u64, DesiredState)>) {
        let unloaded: HashSet<VersionKey> = states
            .iter()
            .filter(|(_, _, state)| *state == DesiredState::Unloaded)
            .map(|(name, version, _)| (name.clone(), *version))
            .collect();
        for (name, version) in self.inner.models.set_unloaded(unloaded) {
            tracing::info!(model = %name, version, "Unloaded a version the cluster keeps unloaded.");
        }
        for (name, version, state) in states {
            if state != DesiredState::Loaded || self.inner.models.is_loaded(&(name.clone(), version)) {
                continue;
            }
            let service = self.clone();
            tokio::spawn(async move {
                let loaded = match service.inner.registry.get_version(&name, version).await {
                    Ok(record) => service.load_version(&record).await.map(|_| ()),
                    Err(error) => Err(error.into()),
                };
                if let Err(error) = loaded {
                    tracing::warn!(model = %name, version, error = %error.message, "Could not load a version the cluster keeps loaded.");
                    return;
                }
                // An unload committed while this load ran (a download takes a while) was applied to a version
                // not loaded yet here: apply it now.
                let now_unloaded =
                    service.inner.registry.desired_states().await.is_ok_and(|states| {
                        states.iter().any(|(n, v, state)| *n == name && *v == version && *state == DesiredState::Unloaded)
                    });
                if now_unloaded && service.inner.models.unload(&(name.clone(), version)) {
                    tracing::info!(model = %name, version, "Unloaded a version the cluster unloaded while it was loading here.");
                }
            });
        }
    }
}
