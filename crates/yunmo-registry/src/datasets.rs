//! Dataset files (`/api/v1/files`) and the job store, on the registry facade: a file's bytes live in the
//! artifact store under their sha256 like model files (sealed when encryption is on), its record in the
//! metadata store; the sweep keeps every file a record names.

use crate::jobs::{FileRecord, JobStore};
use crate::{ReadableArtifact, Registry, RegistryError, StagedArtifact};

/// A new random id: `prefix` and 24 hex characters (96 bits).
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the system random source works");
    format!("{prefix}{}", hex::encode(bytes))
}

impl Registry {
    /// The job store (the metadata store's jobs, events and files).
    pub fn jobs(&self) -> &dyn JobStore {
        self.meta.as_ref()
    }

    /// The stored responses of the Responses API.
    pub fn responses(&self) -> &dyn crate::ResponseStore {
        self.meta.as_ref()
    }

    /// Stores a dataset file's bytes, then its record (`record.sha256` and `record.bytes` are taken from
    /// the staged file). The bytes are stored first: a failure in between leaves an unreferenced file the
    /// sweep removes after its grace period, never a record without bytes.
    pub async fn add_file(&self, mut record: FileRecord, artifact: StagedArtifact) -> Result<FileRecord, RegistryError> {
        record.sha256 = artifact.sha256().to_string();
        record.bytes = artifact.size();
        self.artifacts.put(&record.sha256, artifact.into_file()).await?;
        self.meta.insert_file(&record).await
    }

    /// A dataset file's bytes in plaintext.
    pub async fn file_bytes(&self, record: &FileRecord) -> Result<ReadableArtifact, RegistryError> {
        Ok(self.artifacts.get(&record.sha256).await?)
    }

    /// Removes a file's record, then its bytes unless a version or another file record refers to them.
    pub async fn delete_file(&self, id: &str) -> Result<FileRecord, RegistryError> {
        let record = self.meta.delete_file(id).await?;
        if let Err(error) = self.remove_if_unreferenced(&record.sha256).await {
            tracing::warn!(sha = %record.sha256, %error, "Could not remove a deleted file's bytes; a later sweep removes them.");
        }
        Ok(record)
    }
}
