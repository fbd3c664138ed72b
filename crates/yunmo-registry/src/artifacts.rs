//! The artifact store: model files named by the sha256 of their plaintext.
//!
//! A local folder ([`crate::LocalArtifacts`]) is the embedded default; [`crate::SealedArtifacts`] encrypts any
//! store at rest. Every implementation must pass [`crate::conformance::artifacts`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file on this machine that a store may take: renamed into place when it is the store's to take (a staged
/// upload, a sealed copy), read otherwise. Removed on drop while it is still owned and was not taken.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    size: u64,
    owned: bool,
    /// Keeps the anonymous memory behind a `/proc/self/fd` path, or the staging lock, alive.
    _handle: Option<std::fs::File>,
}

impl LocalFile {
    /// A file this value owns: deleted when dropped unless a store takes it.
    pub fn owned(path: PathBuf, size: u64, handle: Option<std::fs::File>) -> LocalFile {
        LocalFile { path, size, owned: true, _handle: handle }
    }

    /// A file that stays where it is (a store copies it).
    pub fn borrowed(path: PathBuf, size: u64, handle: Option<std::fs::File>) -> LocalFile {
        LocalFile { path, size, owned: false, _handle: handle }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether a store may rename it instead of copying it (an owned file on disk, not in memory).
    pub fn can_move(&self) -> bool {
        self.owned && !self.path.starts_with("/proc/self/fd")
    }

    /// Marks the file as taken: it is no longer removed on drop.
    pub fn taken(mut self) {
        self.owned = false;
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.owned && !self.path.starts_with("/proc/self/fd") {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A stored file in plaintext, ready to be opened by path: the stored file itself, a cached copy, or its
/// decrypted copy in anonymous memory, which lives as long as this value (and any memory map of it).
#[derive(Debug)]
pub struct ReadableArtifact {
    path: PathBuf,
    _memory: Option<std::fs::File>,
}

impl ReadableArtifact {
    /// A file readable at `path`; `memory` keeps an anonymous file behind it alive.
    pub fn new(path: PathBuf, memory: Option<std::fs::File>) -> ReadableArtifact {
        ReadableArtifact { path, _memory: memory }
    }

    /// The path a runtime opens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One stored file, as [`ArtifactStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its name: the hex sha256 of its plaintext.
    pub sha256: String,
    /// Stored size in bytes (sealed files are larger than their plaintext).
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// A file readied by [`ArtifactStore::prepare`] for [`ArtifactStore::publish`].
#[derive(Debug)]
pub struct Prepared {
    /// The name it will have.
    pub sha256: String,
    /// The file in its stored form.
    pub file: LocalFile,
    /// Where a remote store put it meanwhile (its temporary key), if anywhere.
    pub remote: Option<String>,
}

/// Model files named by the sha256 of their plaintext.
///
/// Contract (checked by [`crate::conformance::artifacts`]): a published file is durable and whole under its
/// name (a reader never sees part of one); publishing a name again replaces it; `delete` of a missing name
/// succeeds; `get` of a missing name is `io::ErrorKind::NotFound`.
#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync + std::fmt::Debug + 'static {
    /// Readies `file` (the plaintext of `sha256`) for [`ArtifactStore::publish`]: the slow part (sealing,
    /// uploading to a temporary name), done before the metadata lock is taken.
    async fn prepare(&self, sha256: &str, file: LocalFile) -> io::Result<Prepared>;
    /// Puts a prepared file under its name, durably. Cheap: it runs under the metadata lock.
    async fn publish(&self, prepared: Prepared) -> io::Result<()>;
    /// The bytes put under `sha256`, readable by path (a store that seals returns them decrypted).
    async fn get(&self, sha256: &str) -> io::Result<ReadableArtifact>;
    /// Whether a file with this name is stored.
    async fn exists(&self, sha256: &str) -> io::Result<bool>;
    /// Removes a stored file; a missing one is not an error.
    async fn delete(&self, sha256: &str) -> io::Result<()>;
    /// Every stored file.
    async fn list(&self) -> io::Result<Vec<StoredObject>>;
    /// Removes what interrupted uploads left in the store itself (not stored files); returns how many.
    async fn sweep_incomplete(&self) -> io::Result<usize> {
        Ok(0)
    }

    /// Prepares and publishes in one step (no lock between them).
    async fn put(&self, sha256: &str, file: LocalFile) -> io::Result<()> {
        let prepared = self.prepare(sha256, file).await?;
        self.publish(prepared).await
    }
}

/// A digest that is not 64 lowercase hex characters cannot name a file (it would be a path).
pub(crate) fn check_name(sha256: &str) -> io::Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("artifact name must be a hex sha256, got '{sha256}'")))
    }
}

/// Runs blocking file work (reading, encrypting, fsync) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| io::Error::other(format!("artifact file work panicked: {error}")))?
}
