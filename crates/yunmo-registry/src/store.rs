//! Content-addressed artifact store on the local file system.
//!
//! Files live at `artifacts/sha256/<hex>`, named by the sha256 of their plaintext. A new file is written to
//! `artifacts/staging/` while its sha256 is computed, fsynced, then renamed into place and the directory
//! fsynced: a reader never sees a partial file.
//!
//! With an [`EncryptionKey`], stored files are sealed ([`crate::seal`]) and plaintext never reaches the disk:
//! uploads are staged in anonymous memory (a memfd), sealed into `staging/` on commit, and a file is
//! decrypted into anonymous memory for loading ([`ArtifactStore::readable`]). Runtimes open it by its
//! `/proc/self/fd/N` path like any other file.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::seal::{self, EncryptionKey};

/// Files named by the sha256 of their content.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    key: Option<Arc<EncryptionKey>>,
}

/// A file being written to the staging area. Dropped without [`StagingFile::finish`], it is deleted.
pub struct StagingFile {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    memory: bool,
    hasher: Sha256,
    size: u64,
}

/// A complete, fsynced staged file with its digest, not yet in the store. Deleted on drop unless committed.
#[derive(Debug)]
pub struct StagedArtifact {
    path: PathBuf,
    /// The anonymous memory file holding the upload when the store is encrypted.
    memory: Option<std::fs::File>,
    sha256: String,
    size: u64,
    committed: bool,
}

/// A staged file in its stored form (sealed when the store is encrypted), ready to be published under its
/// digest. Deleted on drop unless published.
#[derive(Debug)]
pub struct PreparedArtifact {
    path: PathBuf,
    sha256: String,
    published: bool,
}

impl Drop for PreparedArtifact {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A stored file in plaintext, ready to be opened by path: the stored file itself, or its decrypted copy
/// in anonymous memory, which lives as long as this value (and any memory map of it).
#[derive(Debug)]
pub struct ReadableArtifact {
    path: PathBuf,
    _memory: Option<std::fs::File>,
}

impl ReadableArtifact {
    /// The path a runtime opens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ArtifactStore {
    /// Opens the store at `root`, creating its folders.
    pub async fn open(root: PathBuf, key: Option<Arc<EncryptionKey>>) -> io::Result<ArtifactStore> {
        tokio::fs::create_dir_all(root.join("sha256")).await?;
        tokio::fs::create_dir_all(root.join("staging")).await?;
        Ok(ArtifactStore { root, key })
    }

    /// Where the file with this digest lives (sealed when the store is encrypted).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Starts a new staging file: on disk, or in anonymous memory when the store is encrypted.
    pub async fn stage(&self) -> io::Result<StagingFile> {
        if self.key.is_some() {
            let (file, path) = memory_file()?;
            return Ok(StagingFile { file: Some(tokio::fs::File::from_std(file)), path, memory: true, hasher: Sha256::new(), size: 0 });
        }
        let path = self.staging_path("upload");
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(StagingFile { file: Some(file), path, memory: false, hasher: Sha256::new(), size: 0 })
    }

    /// Readies a staged file for [`ArtifactStore::publish`]: with a key, seals it into a new staging file
    /// (the slow part, done before any lock is taken); without one, the staged file is already final.
    pub async fn prepare(&self, mut artifact: StagedArtifact) -> io::Result<PreparedArtifact> {
        let path = match &self.key {
            Some(key) => {
                let (key, source, sha256, size) = (key.clone(), artifact.path.clone(), artifact.sha256.clone(), artifact.size);
                let sealed = self.staging_path("sealed");
                let target = sealed.clone();
                blocking(move || seal_file(&key, &source, size, &sha256, &target)).await?;
                sealed
            }
            None => {
                artifact.committed = true;
                artifact.path.clone()
            }
        };
        Ok(PreparedArtifact { path, sha256: artifact.sha256.clone(), published: false })
    }

    /// Moves a prepared file into the store under its digest (replacing a file with the same content) and
    /// fsyncs the folder. Cheap: callers hold the registry's write lock around it and the row that refers
    /// to the file, so that no concurrent removal of the same content can come between them.
    pub async fn publish(&self, mut prepared: PreparedArtifact) -> io::Result<()> {
        tokio::fs::rename(&prepared.path, self.path(&prepared.sha256)).await?;
        prepared.published = true;
        sync_dir(&self.root.join("sha256")).await
    }

    /// The stored file with this digest in plaintext, decrypting it into memory when the store is encrypted
    /// (and checking its digest). A sealed file with no key configured is an error that says so.
    pub async fn readable(&self, sha256: &str) -> io::Result<ReadableArtifact> {
        let path = self.path(sha256);
        let key = self.key.clone();
        let sha256 = sha256.to_string();
        blocking(move || {
            use std::io::Seek;
            let mut file = std::fs::File::open(&path)?;
            let mut head = [0u8; 8];
            let n = read_head(&mut file, &mut head)?;
            if !seal::is_sealed(&head[..n]) {
                return Ok(ReadableArtifact { path, _memory: None });
            }
            let Some(key) = key else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the stored model file {sha256} is encrypted; set storage.encryption_key_file to the key it was written with"),
                ));
            };
            file.seek(io::SeekFrom::Start(0))?;
            let (memory, memory_path) = decrypt_to_memory(&key, file, &sha256)?;
            Ok(ReadableArtifact { path: memory_path, _memory: Some(memory) })
        })
        .await
    }

    fn staging_path(&self, purpose: &str) -> PathBuf {
        self.root.join("staging").join(format!("{purpose}-{}-{}", std::process::id(), unique_suffix()))
    }

    /// With a key, brings every stored file under it: a file still in plaintext (stored before encryption was
    /// turned on) is sealed, and a file sealed with one of `previous` (key rotation) is decrypted into
    /// memory, checked and re-sealed. Each is written to staging, fsynced and renamed over the old file, one
    /// at a time. A file sealed with a key that is neither is left alone (loading it fails, naming that key).
    /// Without a key, does nothing.
    pub async fn seal_under_current_key(&self, previous: &[Arc<EncryptionKey>]) -> io::Result<()> {
        let Some(key) = self.key.clone() else { return Ok(()) };
        let mut entries = tokio::fs::read_dir(self.root.join("sha256")).await?;
        let mut changed = 0;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            let sha256 = entry.file_name().to_string_lossy().into_owned();
            let mut head = [0u8; seal::HEAD_LEN];
            let n = read_head(&mut std::fs::File::open(&path)?, &mut head)?;
            let plaintext = !seal::is_sealed(&head[..n]);
            // A sealed file needs re-sealing when a previous key (not the current one) sealed it; a truncated
            // header (no key id) is left for loading to report.
            let previous_key = match seal::sealed_key_id(&head[..n]) {
                Some(id) if id != key.id() => {
                    let found = previous.iter().find(|old| old.id() == id).cloned();
                    if found.is_none() {
                        tracing::warn!(file = %sha256, key = %id, "A model file is sealed with a key that is not configured; it cannot be loaded.");
                    }
                    found
                }
                _ => None,
            };
            if !plaintext && previous_key.is_none() {
                continue;
            }
            let (key, staging) = (key.clone(), self.staging_path("sealed"));
            blocking(move || match previous_key {
                None => {
                    seal_file(&key, &path, std::fs::metadata(&path)?.len(), &sha256, &staging)?;
                    std::fs::rename(&staging, &path)
                }
                Some(old) => {
                    let (memory, memory_path) = decrypt_to_memory(&old, std::fs::File::open(&path)?, &sha256)?;
                    seal_file(&key, &memory_path, memory.metadata()?.len(), &sha256, &staging)?;
                    std::fs::rename(&staging, &path)
                }
            })
            .await?;
            changed += 1;
        }
        if changed > 0 {
            sync_dir(&self.root.join("sha256")).await?;
            tracing::info!(files = changed, key = %key.id(), "Encrypted model files under the current key.");
        }
        Ok(())
    }

    /// Removes a file from the store.
    pub async fn remove(&self, sha256: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Deletes every staging file and every stored file whose digest is not in `referenced`.
    pub async fn sweep(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for (folder, keep_referenced) in [("staging", false), ("sha256", true)] {
            let mut entries = tokio::fs::read_dir(self.root.join(folder)).await?;
            while let Some(entry) = entries.next_entry().await? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep_referenced && referenced.contains(&name) {
                    continue;
                }
                tokio::fs::remove_file(entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl StagingFile {
    /// Appends bytes, updating the digest.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.as_mut().expect("a staging file is open until finish(). This is a bug.").write_all(chunk).await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and fsyncs the file and returns it with its digest.
    pub async fn finish(mut self) -> io::Result<StagedArtifact> {
        let mut file = self.file.take().expect("finish() is called once. This is a bug.");
        file.flush().await?;
        file.sync_all().await?;
        let memory = if self.memory { Some(file.into_std().await) } else { None };
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let path = std::mem::take(&mut self.path);
        Ok(StagedArtifact { path, memory, sha256, size: self.size, committed: false })
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.memory && !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl StagedArtifact {
    /// Where the staged file is (for checking it before commit).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Hex sha256 of the content.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for StagedArtifact {
    fn drop(&mut self) {
        if !self.committed && self.memory.is_none() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = tokio::fs::File::open(path).await?;
    dir.sync_all().await
}

/// Runs blocking file work (reading, encrypting, fsync) off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| io::Error::other(format!("artifact file work panicked: {error}")))?
}

/// Seals `source` (plaintext, `size` bytes) into `staging` and fsyncs it; on error the staging file is removed.
fn seal_file(key: &EncryptionKey, source: &Path, size: u64, sha256: &str, staging: &Path) -> io::Result<()> {
    let result = (|| {
        let mut plain = io::BufReader::with_capacity(1 << 20, std::fs::File::open(source)?);
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(staging)?;
        let mut out = io::BufWriter::with_capacity(1 << 20, file);
        seal::seal(key, &mut plain, size, sha256, &mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(staging);
    }
    result
}

/// Decrypts the sealed `file` named `sha256` into a new anonymous memory file; returns it and its path.
fn decrypt_to_memory(key: &EncryptionKey, mut file: std::fs::File, sha256: &str) -> io::Result<(std::fs::File, PathBuf)> {
    use std::io::Write;
    let len = file.metadata()?.len();
    let (memory, memory_path) = memory_file()?;
    let mut writer = io::BufWriter::with_capacity(1 << 20, &memory);
    seal::open(key, &mut io::BufReader::with_capacity(1 << 20, &mut file), len, sha256, &mut writer)?;
    writer.flush()?;
    drop(writer);
    Ok((memory, memory_path))
}

/// Reads up to `head.len()` bytes from the start of a file.
fn read_head(file: &mut std::fs::File, head: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// An anonymous file in memory (never on disk), and the path this process opens it by.
#[cfg(target_os = "linux")]
fn memory_file() -> io::Result<(std::fs::File, PathBuf)> {
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::memfd_create("yunmo-model", rustix::fs::MemfdFlags::CLOEXEC)?;
    let file = std::fs::File::from(fd);
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok((file, path))
}

#[cfg(not(target_os = "linux"))]
fn memory_file() -> io::Result<(std::fs::File, PathBuf)> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "encrypted model storage needs Linux (memfd) on this version"))
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ArtifactStore {
        async fn commit(&self, staged: StagedArtifact) -> io::Result<()> {
            self.publish(self.prepare(staged).await?).await
        }
    }

    #[tokio::test]
    async fn staged_files_are_named_by_content_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_path_buf(), None).await.unwrap();
        let mut staging = store.stage().await.unwrap();
        staging.write(b"hello ").await.unwrap();
        staging.write(b"world").await.unwrap();
        let staged = staging.finish().await.unwrap();
        assert_eq!(staged.sha256(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        let sha = staged.sha256().to_string();
        store.commit(staged).await.unwrap();
        assert_eq!(std::fs::read(store.path(&sha)).unwrap(), b"hello world");

        // An abandoned upload leaves nothing behind.
        let mut abandoned = store.stage().await.unwrap();
        abandoned.write(b"partial").await.unwrap();
        drop(abandoned);
        assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);

        // Sweeping keeps referenced files only.
        let referenced: HashSet<String> = HashSet::new();
        assert_eq!(store.sweep(&referenced).await.unwrap(), 1);
        assert!(!store.path(&sha).exists());
    }

    #[tokio::test]
    async fn an_encrypted_store_keeps_plaintext_off_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(EncryptionKey::from_bytes(&[9; 32]));
        let plain = b"secret weights ".repeat(100_000); // 1.5 MB: two chunks
        let sha = hex::encode(Sha256::digest(&plain));

        // A plaintext file stored before encryption was turned on is sealed when the store opens with a key.
        let plain_store = ArtifactStore::open(dir.path().to_path_buf(), None).await.unwrap();
        let mut staging = plain_store.stage().await.unwrap();
        staging.write(b"stored before encryption").await.unwrap();
        let old = staging.finish().await.unwrap();
        let old_sha = old.sha256().to_string();
        plain_store.commit(old).await.unwrap();

        let store = ArtifactStore::open(dir.path().to_path_buf(), Some(key)).await.unwrap();
        store.seal_under_current_key(&[]).await.unwrap();
        assert!(seal::is_sealed(&std::fs::read(store.path(&old_sha)).unwrap()));
        assert_eq!(std::fs::read(store.readable(&old_sha).await.unwrap().path()).unwrap(), b"stored before encryption");

        let mut staging = store.stage().await.unwrap();
        for part in plain.chunks(100_000) {
            staging.write(part).await.unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0, "an upload is staged in memory");
        let staged = staging.finish().await.unwrap();
        assert_eq!(staged.sha256(), sha);
        assert_eq!(std::fs::read(staged.path()).unwrap(), plain, "the staged upload can be inspected by path");
        store.commit(staged).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);

        let stored = std::fs::read(store.path(&sha)).unwrap();
        assert!(seal::is_sealed(&stored));
        assert!(!stored.windows(14).any(|w| w == b"secret weights"), "the stored file holds plaintext");
        let readable = store.readable(&sha).await.unwrap();
        assert!(readable.path().starts_with("/proc/self/fd"), "{}", readable.path().display());
        assert_eq!(std::fs::read(readable.path()).unwrap(), plain);

        // Without the key, or with another, the file is refused with a message that says what to do.
        let no_key = ArtifactStore::open(dir.path().to_path_buf(), None).await.unwrap();
        let error = no_key.readable(&sha).await.unwrap_err();
        assert!(error.to_string().contains("storage.encryption_key_file"), "{error}");
        let other = ArtifactStore::open(dir.path().to_path_buf(), Some(Arc::new(EncryptionKey::from_bytes(&[8; 32])))).await.unwrap();
        let error = other.readable(&sha).await.unwrap_err();
        assert!(error.to_string().contains("not with the configured key"), "{error}");

        // Key rotation: the new key re-seals what the old one sealed, and then the old one is refused.
        let new_key = Arc::new(EncryptionKey::from_bytes(&[7; 32]));
        let rotated = ArtifactStore::open(dir.path().to_path_buf(), Some(new_key.clone())).await.unwrap();
        assert!(rotated.readable(&sha).await.is_err(), "not yet re-sealed");
        rotated.seal_under_current_key(&[Arc::new(EncryptionKey::from_bytes(&[9; 32]))]).await.unwrap();
        assert_eq!(seal::sealed_key_id(&std::fs::read(store.path(&sha)).unwrap()), Some(new_key.id()));
        assert_eq!(std::fs::read(rotated.readable(&sha).await.unwrap().path()).unwrap(), plain);
        assert_eq!(std::fs::read(rotated.readable(&old_sha).await.unwrap().path()).unwrap(), b"stored before encryption");
        assert!(store.readable(&sha).await.is_err(), "the old key no longer opens it");
        assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
        let stored = std::fs::read(store.path(&sha)).unwrap();
        let store = rotated;

        // A file altered on disk is refused, not served.
        let mut altered = stored.clone();
        let middle = altered.len() / 2;
        altered[middle] ^= 0x80;
        std::fs::write(store.path(&sha), altered).unwrap();
        assert!(store.readable(&sha).await.is_err());
    }
}
