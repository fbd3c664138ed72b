//! What the registry stores: models, versions and their names. Shared by every metadata store.

use std::collections::BTreeMap;

use serde::Serialize;
use yunmo_types::{Sharing, Signature, VersionConfig, VersionPolicy};

use crate::RegistryError;

#[derive(Debug, Clone)]
pub struct NewModel {
    /// Name, unique within its tenant.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What the model does (`classification`, `regression`, `embedding`, …): free text.
    pub task: String,
    /// String key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Free-form JSON.
    pub metadata: serde_json::Value,
    /// Which version serves requests without one.
    pub version_policy: VersionPolicy,
    /// Owning tenant.
    pub tenant: String,
    /// Who else may see and call it.
    pub sharing: Sharing,
}

impl Default for NewModel {
    fn default() -> Self {
        NewModel {
            name: String::new(),
            description: String::new(),
            task: String::new(),
            labels: BTreeMap::new(),
            metadata: serde_json::Value::Null,
            version_policy: VersionPolicy::default(),
            tenant: DEFAULT_TENANT.to_string(),
            sharing: Sharing::default(),
        }
    }
}

/// The tenant that owns models when auth is off, and the bootstrap admin key's tenant.
pub const DEFAULT_TENANT: &str = "default";

/// Changes to a model; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ModelPatch {
    /// New description.
    pub description: Option<String>,
    /// New task.
    pub task: Option<String>,
    /// New labels (replacing all).
    pub labels: Option<BTreeMap<String, String>>,
    /// New metadata (replacing all).
    pub metadata: Option<serde_json::Value>,
    /// New version policy.
    pub version_policy: Option<VersionPolicy>,
    /// New sharing.
    pub sharing: Option<Sharing>,
}

impl ModelPatch {
    /// Sets the fields the patch names on `model`.
    pub fn apply(self, model: &mut ModelRecord) {
        if let Some(description) = self.description {
            model.description = description;
        }
        if let Some(task) = self.task {
            model.task = task;
        }
        if let Some(labels) = self.labels {
            model.labels = labels;
        }
        if let Some(metadata) = self.metadata {
            model.metadata = metadata;
        }
        if let Some(policy) = self.version_policy {
            model.version_policy = policy;
        }
        if let Some(sharing) = self.sharing {
            model.sharing = sharing;
        }
    }
}

/// The name a model is stored and served under, unique across tenants: its own name for a model of the
/// `default` tenant, `tenant/name` for any other. Names are unique per tenant, so one tenant's name can
/// never tell another that a model exists.
pub fn qualified_name(tenant: &str, name: &str) -> String {
    if tenant == DEFAULT_TENANT { name.to_string() } else { format!("{tenant}/{name}") }
}

/// A qualified model name as a caller of `tenant` calls it: without the prefix when it is `tenant`'s own.
pub fn name_for<'a>(qualified: &'a str, tenant: &str) -> &'a str {
    qualified.strip_prefix(tenant).and_then(|rest| rest.strip_prefix('/')).unwrap_or(qualified)
}

/// A version's stored drift baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftBaselineRecord {
    /// The model (qualified name).
    pub model: String,
    /// The version.
    pub version: u64,
    /// What it was made with (drift settings and file): a baseline made otherwise is not used.
    pub settings: String,
    /// The frozen baseline as JSON; empty after a reset.
    pub baseline: String,
    /// When it was stored, Unix milliseconds.
    pub updated_at: i64,
}

/// A stored model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRecord {
    /// The metadata store's id for the model (never shown to callers).
    #[serde(skip)]
    pub id: i64,
    /// The qualified name ([`qualified_name`]): unique, and what every other part of Yunmo calls the model.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What the model does.
    pub task: String,
    /// String key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Free-form JSON.
    pub metadata: serde_json::Value,
    /// Which version serves requests without one.
    pub version_policy: VersionPolicy,
    /// Owning tenant.
    pub tenant: String,
    /// Who else may see and call it.
    pub sharing: Sharing,
    /// Unix seconds.
    pub created_at: i64,
}

impl ModelRecord {
    /// The name within its tenant (what its owner created it as).
    pub fn short_name(&self) -> &str {
        name_for(&self.name, &self.tenant)
    }

    /// The name as a caller of `tenant` calls it: the short name for its owner, the qualified name for others.
    pub fn name_for(&self, tenant: &str) -> &str {
        name_for(&self.name, tenant)
    }

    /// A record that was never stored (for access-rule tests).
    #[doc(hidden)]
    pub fn for_tests(model: NewModel) -> ModelRecord {
        ModelRecord {
            id: 0,
            name: qualified_name(&model.tenant, &model.name),
            description: model.description,
            task: model.task,
            labels: model.labels,
            metadata: model.metadata,
            version_policy: model.version_policy,
            tenant: model.tenant,
            sharing: model.sharing,
            created_at: 0,
        }
    }
}

/// A stored model version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    /// Model name.
    pub model: String,
    /// Version number (from 1).
    pub version: u64,
    /// Artifact format.
    pub format: String,
    /// Hex sha256 of the artifact.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size_bytes: u64,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Serving options.
    pub config: VersionConfig,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether a `tokenizer.json` is stored with the version.
    pub has_tokenizer: bool,
}

/// A version row to insert ([`crate::MetadataStore::insert_version`]).
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// The model's store id.
    pub model_id: i64,
    /// Requested number; `None` takes the model's next one.
    pub version: Option<u64>,
    /// Artifact format.
    pub format: String,
    /// Hex sha256 of the artifact's plaintext.
    pub sha256: String,
    /// Artifact size in bytes (plaintext).
    pub size: u64,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Serving options.
    pub config: VersionConfig,
    /// A `tokenizer.json` stored with the version.
    pub tokenizer: Option<String>,
}

/// Model names go into URLs: 1–128 characters from `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || name.len() > 128 || !valid_chars || !valid_start {
        return Err(RegistryError::Invalid(format!(
            "name must be 1 to 128 characters from [A-Za-z0-9._-] starting with a letter, digit or '_', got '{name}'"
        )));
    }
    Ok(())
}

/// Tenant names follow model names' rules.
pub(crate) fn validate_tenant(name: &str) -> Result<(), RegistryError> {
    validate_name(name)
        .map_err(|_| RegistryError::Invalid(format!("tenant name must be 1 to 128 characters from [A-Za-z0-9._-], got '{name}'")))
}
