//! Management of models and versions (create, change, upload, configure, load, unload, delete) through
//! the same pipeline as inference: every method that names a model takes the [`Call`] and the [`Target`]
//! the access check made, and every registry write drops the model's cached records.

use tokio::io::AsyncReadExt;
use yunmo_auth::Action;
use yunmo_registry::{ModelPatch, ModelRecord, NewModel, StagedArtifact, StagingFile, VersionRecord};
use yunmo_types::{Code, Scope, ServiceError, VersionConfig};

use crate::{Call, IndexEntry, InferenceService, Target, UploadOptions, check_tokenizer};

impl InferenceService {
    /// Creates a model (its name is unique within its tenant) in the caller's tenant, or, for an admin, in
    /// `model.tenant` (which must exist). Needs `models:write`.
    pub async fn create_model(&self, call: &Call, mut model: NewModel) -> Result<ModelRecord, ServiceError> {
        let principal = &call.principal;
        principal.require(Scope::ModelsWrite)?;
        if model.tenant.is_empty() {
            model.tenant = principal.tenant.clone();
        } else if model.tenant != principal.tenant {
            principal.require(Scope::Admin)?;
            self.check_tenant(&model.tenant, "tenant").await?;
        }
        if let Some(version) = model.version_policy.named_versions().first() {
            return Err(ServiceError::invalid(format!(
                "version_policy: a new model has no versions, so it cannot pin or route version {version}; create it with 'latest'"
            )));
        }
        let qualified = yunmo_registry::qualified_name(&model.tenant, &model.name);
        let result = self.inner.registry.create_model(model).await;
        self.invalidate(&qualified);
        let record = result?;
        tracing::info!(model = %record.name, "Model created.");
        Ok(record)
    }

    /// Changes a model's description, task, labels, metadata, version policy or sharing (every tenant it
    /// is shared with must exist).
    pub async fn update_model(&self, call: &Call, target: &Target, patch: ModelPatch) -> Result<ModelRecord, ServiceError> {
        target.permits(call, Action::Write)?;
        if let Some(sharing) = &patch.sharing {
            for tenant in &sharing.tenants {
                self.check_tenant(tenant, "tenants").await?;
            }
        }
        let mut patch = patch;
        if let Some(yunmo_types::VersionPolicy::Routed(route)) = &mut patch.version_policy {
            self.check_route(target, route).await?;
        }
        let name = target.name();
        let result = self.inner.registry.update_model(name, patch).await;
        self.invalidate(name);
        Ok(result?)
    }

    /// Every version of the model.
    pub async fn list_versions(&self, call: &Call, target: &Target) -> Result<Vec<VersionRecord>, ServiceError> {
        target.permits(call, Action::Read)?;
        Ok(self.inner.registry.list_versions(target.name()).await?)
    }

    /// Every model the caller can see, each with its versions (lowest first): two registry reads, whatever
    /// the number of models. Needs `models:read` or `models:write`.
    pub async fn models_with_versions(&self, call: &Call) -> Result<Vec<(ModelRecord, Vec<VersionRecord>)>, ServiceError> {
        if !call.principal.has_any(&[Scope::ModelsRead, Scope::ModelsWrite]) {
            return Err(call.principal.lacks(Scope::ModelsRead));
        }
        let models = self.visible_models(call).await?;
        let mut versions: std::collections::HashMap<String, Vec<VersionRecord>> = std::collections::HashMap::new();
        for version in self.inner.registry.all_versions().await? {
            versions.entry(version.model.clone()).or_default().push(version);
        }
        Ok(models
            .into_iter()
            .map(|model| {
                let listed = versions.remove(&model.name).unwrap_or_default();
                (model, listed)
            })
            .collect())
    }

    /// One version of the model.
    pub async fn get_version(&self, call: &Call, target: &Target, version: u64) -> Result<VersionRecord, ServiceError> {
        target.permits(call, Action::Read)?;
        Ok(self.inner.registry.get_version(target.name(), version).await?)
    }

    /// A staging file for an upload to the model (see [`InferenceService::add_version`]).
    pub async fn stage_upload(&self, call: &Call, target: &Target) -> Result<StagingFile, ServiceError> {
        target.permits(call, Action::Write)?;
        self.inner.registry.stage().await.map_err(|error| ServiceError::internal(format!("cannot stage the upload: {error}")))
    }

    /// Stores the `tokenizer.json` of a version (checked by parsing it); a loaded version reloads with it.
    pub async fn set_tokenizer(
        &self,
        call: &Call,
        target: &Target,
        version: u64,
        tokenizer: String,
    ) -> Result<VersionRecord, ServiceError> {
        target.permits(call, Action::Write)?;
        check_tokenizer(&tokenizer)?;
        let name = target.name();
        let result = self.inner.registry.set_tokenizer(name, version, &tokenizer).await;
        self.invalidate(name);
        let record = result?;
        self.inner.models.forget(&(name.to_string(), version));
        Ok(record)
    }

    /// Fails unless tenant `tenant`, named in request field `field`, exists (a 400 naming the field).
    pub(crate) async fn check_tenant(&self, tenant: &str, field: &str) -> Result<(), ServiceError> {
        match self.inner.registry.get_tenant(tenant).await {
            Ok(_) => Ok(()),
            Err(yunmo_registry::RegistryError::ResourceNotFound(_)) => {
                Err(ServiceError::invalid(format!("{field}: there is no tenant '{tenant}'")))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Loads a version (the policy's choice when `version` is `None`).
    pub async fn load(&self, call: &Call, target: &Target) -> Result<VersionRecord, ServiceError> {
        target.permits(call, Action::Write)?;
        let version = self.resolve(target.name(), target.version()).await?;
        self.load_version(&version).await?;
        // Every process sharing the store loads it too, and a restarted one loads it at start.
        self.inner.registry.set_desired_state(&version.model, version.version, Some(yunmo_registry::DesiredState::Loaded)).await?;
        Ok((*version).clone())
    }

    /// Unloads one version, or every loaded version of the model when `version` is `None`.
    /// Returns the versions unloaded.
    pub async fn unload(&self, call: &Call, target: &Target) -> Result<Vec<u64>, ServiceError> {
        target.permits(call, Action::Write)?;
        let name = target.name();
        let versions = match target.version() {
            Some(version) => vec![self.inner.registry.get_version(name, version).await?],
            None => self.inner.registry.list_versions(name).await?,
        };
        let mut unloaded = Vec::new();
        for record in versions {
            // Recorded first: if the store cannot take it, nothing is unloaded here either.
            self.inner.registry.set_desired_state(&record.model, record.version, Some(yunmo_registry::DesiredState::Unloaded)).await?;
            if self.inner.models.unload(&(record.model.clone(), record.version)) {
                unloaded.push(record.version);
            }
        }
        Ok(unloaded)
    }

    /// Every version the caller can see, with its state.
    pub async fn repository_index(&self, call: &Call) -> Result<Vec<IndexEntry>, ServiceError> {
        let visible: std::collections::HashSet<String> = self.visible_models(call).await?.into_iter().map(|model| model.name).collect();
        let versions = self.inner.registry.all_versions().await?;
        Ok(versions
            .into_iter()
            .filter(|record| visible.contains(&record.model))
            .map(|record| {
                let key = (record.model.clone(), record.version);
                let (state, reason) = if self.inner.models.is_loaded(&key) {
                    ("READY", "")
                } else if self.inner.models.is_unloaded(&key) {
                    ("UNAVAILABLE", "unloaded")
                } else {
                    ("AVAILABLE", "loads on first request")
                };
                IndexEntry { name: record.model, version: record.version, state, reason: reason.to_string() }
            })
            .collect())
    }

    /// Checks an uploaded file and adds it as a new version. The file is inspected by the runtime for its
    /// format (read from its first bytes) before anything is stored; on any error nothing is stored.
    pub async fn add_version(
        &self,
        call: &Call,
        target: &Target,
        artifact: StagedArtifact,
        options: UploadOptions,
    ) -> Result<VersionRecord, ServiceError> {
        target.permits(call, Action::Write)?;
        let name = target.name();
        options.config.validate().map_err(ServiceError::invalid)?;
        self.inner.drift.settings(&options.config).map_err(ServiceError::invalid)?;
        if let Some(tokenizer) = &options.tokenizer {
            check_tokenizer(tokenizer)?;
        }
        // Fail early on an unknown model, before spending time on inspection.
        self.inner.registry.get_model(name).await?;
        if artifact.size() == 0 {
            return Err(ServiceError::invalid("the uploaded model file is empty"));
        }
        let mut head = [0u8; 16];
        let mut file = tokio::fs::File::open(artifact.path()).await.map_err(|e| ServiceError::internal(e.to_string()))?;
        let n = file.read(&mut head).await.map_err(|e| ServiceError::internal(e.to_string()))?;
        if crate::pipeline::is_declaration(&head[..n]) {
            return self.add_pipeline_version(call, target, artifact, options).await;
        }
        let factory = self.inner.factories.iter().find(|factory| factory.sniff(&head[..n])).cloned().ok_or_else(|| {
            let formats: Vec<&str> = self.inner.factories.iter().map(|f| f.format()).collect();
            ServiceError::invalid(format!(
                "the uploaded file is not a model in a supported format ({}): its first bytes are {:02x?}",
                formats.join(", "),
                &head[..n.min(8)]
            ))
        })?;
        let path = artifact.path().to_path_buf();
        let inspect_factory = factory.clone();
        let signature = tokio::task::spawn_blocking(move || inspect_factory.inspect(&path))
            .await
            .map_err(|error| ServiceError::internal(format!("model inspection panicked: {error}")))?
            .map_err(|error| ServiceError::invalid(format!("the uploaded file was rejected: {error}")))?;
        let mut options = options;
        if factory.kind() == yunmo_backend::RuntimeKind::Generate {
            encoder_config(&mut options.config, yunmo_backend::text_signature_task(&signature));
        }
        self.store_version(name, factory.format(), signature, artifact, options).await
    }

    /// Stores a checked version and forgets cached resolutions of its model.
    async fn store_version(
        &self,
        name: &str,
        format: &str,
        signature: yunmo_types::Signature,
        artifact: StagedArtifact,
        options: UploadOptions,
    ) -> Result<VersionRecord, ServiceError> {
        let new_version = yunmo_registry::NewVersion {
            version: options.version,
            format: format.to_string(),
            signature,
            config: options.config,
            artifact,
            tokenizer: options.tokenizer,
        };
        let result = self.inner.registry.add_version(name, new_version).await;
        self.invalidate(name);
        let record = result?;
        tracing::info!(model = %name, version = record.version, format, sha256 = %record.sha256, "Model version added.");
        Ok(record)
    }

    /// Adds a pipeline version: the declaration is checked against the models it names (which `call` must
    /// be allowed to call) and stored with their names and versions pinned.
    async fn add_pipeline_version(
        &self,
        call: &Call,
        target: &Target,
        artifact: StagedArtifact,
        options: UploadOptions,
    ) -> Result<VersionRecord, ServiceError> {
        let io = |error: std::io::Error| ServiceError::internal(format!("reading the declaration: {error}"));
        if artifact.size() > crate::pipeline::MAX_DECLARATION_BYTES as u64 {
            return Err(ServiceError::invalid(format!(
                "pipeline: the declaration is {} bytes, more than {}",
                artifact.size(),
                crate::pipeline::MAX_DECLARATION_BYTES
            )));
        }
        let bytes = tokio::fs::read(artifact.path()).await.map_err(io)?;
        let (declaration, signature) = self.check_declaration(call, &bytes, options.tokenizer.is_some()).await?;
        drop(artifact);
        let mut staging = self.inner.registry.stage().await.map_err(io)?;
        staging.write(&declaration).await.map_err(io)?;
        let artifact = staging.finish().await.map_err(io)?;
        self.store_version(target.name(), crate::pipeline::FORMAT, signature, artifact, options).await
    }

    /// Fails unless `name` exists and `version` (if given) is free: lets transports refuse an upload
    /// before reading its body.
    pub async fn check_new_version(&self, call: &Call, target: &Target, version: Option<u64>) -> Result<(), ServiceError> {
        target.permits(call, Action::Write)?;
        let name = target.name();
        self.inner.registry.get_model(name).await?;
        if let Some(version) = version
            && self.inner.registry.get_version(name, version).await.is_ok()
        {
            return Err(ServiceError::new(Code::Conflict, format!("model '{name}' already has version {version}")));
        }
        Ok(())
    }

    /// Replaces a version's serving options; a loaded version is reloaded with them on its next request.
    /// The version's provenance (set by the job that made it) is kept: it is not a serving option.
    pub async fn set_version_config(
        &self,
        call: &Call,
        target: &Target,
        version: u64,
        mut config: VersionConfig,
    ) -> Result<VersionRecord, ServiceError> {
        target.permits(call, Action::Write)?;
        self.inner.drift.settings(&config).map_err(ServiceError::invalid)?;
        let name = target.name();
        let record = self.inner.registry.get_version(name, version).await?;
        config.provenance = record.config.provenance;
        if self.factory(&record.format).is_ok_and(|factory| factory.kind() == yunmo_backend::RuntimeKind::Generate) {
            encoder_config(&mut config, yunmo_backend::text_signature_task(&record.signature));
        }
        let result = self.inner.registry.set_version_config(name, version, config).await;
        self.invalidate(name);
        let record = result?;
        self.inner.models.forget(&(name.to_string(), version));
        Ok(record)
    }

    /// Deletes a version and unloads it.
    pub async fn delete_version(&self, call: &Call, target: &Target, version: u64) -> Result<VersionRecord, ServiceError> {
        target.permits(call, Action::Write)?;
        let name = target.name();
        let result = self.inner.registry.delete_version(name, version).await;
        self.invalidate(name);
        let record = result?;
        self.inner.models.forget(&(name.to_string(), version));
        Ok(record)
    }

    /// Deletes a tenant with its keys and, with `with_models`, its models (unloading them).
    pub(crate) async fn remove_tenant(&self, name: &str, with_models: bool) -> Result<(), ServiceError> {
        let versions = self.inner.registry.delete_tenant(name, with_models).await?;
        self.invalidate_all();
        for record in versions {
            self.inner.models.forget(&(record.model, record.version));
        }
        Ok(())
    }

    /// Forgets every cached resolution and record (a change that touches many models).
    pub(crate) fn invalidate_all(&self) {
        let mut resolved = self.inner.resolved.write().expect("resolve cache lock");
        let mut records = self.inner.records.write().expect("record cache lock");
        let mut named = self.inner.named.write().expect("name cache lock");
        self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        resolved.clear();
        records.clear();
        named.clear();
    }

    /// Deletes a model with all its versions and unloads them.
    pub async fn delete_model(&self, call: &Call, target: &Target) -> Result<(), ServiceError> {
        target.permits(call, Action::Write)?;
        let name = target.name();
        let result = self.inner.registry.delete_model(name).await;
        self.invalidate(name);
        let versions = result?;
        for record in versions {
            self.inner.models.forget(&(record.model, record.version));
        }
        Ok(())
    }
}

/// A file that holds an encoder (`task`, from its format's own marks) serves as one without being told:
/// when `config` has no `embedding`, it gets the defaults (the file's own pooling, unit vectors, the default
/// input bounds) for that task.
fn encoder_config(config: &mut VersionConfig, task: Option<yunmo_types::EncoderTask>) {
    if let (Some(task), None) = (task, &config.embedding) {
        config.embedding = Some(yunmo_types::EmbeddingConfig { task, ..Default::default() });
    }
}
