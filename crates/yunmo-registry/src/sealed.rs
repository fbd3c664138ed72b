//! Encryption at rest around any artifact store: what the inner store holds is sealed ([`crate::seal`]).
//!
//! Plaintext never reaches the disk: uploads are staged in anonymous memory (a memfd), sealed into a
//! staging file before publishing, and a file is decrypted into anonymous memory for loading. Runtimes open
//! it by its `/proc/self/fd/N` path like any other file.

use std::io;
use std::sync::Arc;

use crate::artifacts::{ArtifactStore, LocalFile, Prepared, ReadableArtifact, StoredObject, blocking};
use crate::seal::{self, EncryptionKey};
use crate::staging::{Staging, memory_file};

/// An artifact store whose files are sealed with a key.
#[derive(Debug, Clone)]
pub struct SealedArtifacts {
    inner: Arc<dyn ArtifactStore>,
    key: Arc<EncryptionKey>,
    staging: Staging,
}

impl SealedArtifacts {
    /// Seals what goes into `inner` with `key`; sealed copies are written in `staging`.
    pub fn new(inner: Arc<dyn ArtifactStore>, key: Arc<EncryptionKey>, staging: Staging) -> SealedArtifacts {
        SealedArtifacts { inner, key, staging }
    }

    /// Seals `file` (the plaintext of `sha256`) into a new staging file.
    async fn seal(&self, sha256: &str, file: LocalFile) -> io::Result<LocalFile> {
        let (out, path) = self.staging.create("sealed")?;
        let (key, source, sha) = (self.key.clone(), file.path().to_path_buf(), sha256.to_string());
        let size = file.size();
        let sealed = blocking(move || seal_into(&key, &source, size, &sha, out)).await;
        drop(file);
        match sealed {
            Ok((handle, sealed_size)) => Ok(LocalFile::owned(path, sealed_size, Some(handle))),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(error)
            }
        }
    }

    /// Brings every stored file under the current key: a file still in plaintext (stored before encryption
    /// was turned on) is sealed, and a file sealed with one of `previous` (key rotation) is decrypted into
    /// memory, checked and re-sealed, one at a time, each replacing the old one by a publish. A file sealed
    /// with a key that is neither is left alone (loading it fails, naming that key). Returns how many changed.
    pub async fn seal_under_current_key(&self, previous: &[Arc<EncryptionKey>]) -> io::Result<usize> {
        let mut changed = 0;
        for object in self.inner.list().await? {
            let stored = match self.inner.get(&object.sha256).await {
                Ok(stored) => stored,
                // Deleted (by another process) since it was listed: nothing to re-seal.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            let path = stored.path().to_path_buf();
            let head = blocking(move || read_head(&mut std::fs::File::open(path)?)).await?;
            let plaintext = !seal::is_sealed(&head);
            // A sealed file needs re-sealing when a previous key (not the current one) sealed it; a truncated
            // header (no key id) is left for loading to report.
            let previous_key = match seal::sealed_key_id(&head) {
                Some(id) if id != self.key.id() => {
                    let found = previous.iter().find(|old| old.id() == id).cloned();
                    if found.is_none() {
                        tracing::warn!(file = %object.sha256, key = %id, "A model file is sealed with a key that is not configured; it cannot be loaded.");
                    }
                    found
                }
                _ => None,
            };
            let source = match (plaintext, previous_key) {
                (true, _) => LocalFile::borrowed(stored.path().to_path_buf(), std::fs::metadata(stored.path())?.len(), None),
                (false, Some(old)) => {
                    let (path, sha) = (stored.path().to_path_buf(), object.sha256.clone());
                    let (memory, memory_path) = blocking(move || decrypt_to_memory(&old, std::fs::File::open(path)?, &sha)).await?;
                    LocalFile::borrowed(memory_path, memory.metadata()?.len(), Some(memory))
                }
                (false, None) => continue,
            };
            let sealed = self.seal(&object.sha256, source).await?;
            drop(stored);
            self.inner.put(&object.sha256, sealed).await?;
            changed += 1;
        }
        if changed > 0 {
            tracing::info!(files = changed, key = %self.key.id(), "Encrypted model files under the current key.");
        }
        Ok(changed)
    }
}

#[async_trait::async_trait]
impl ArtifactStore for SealedArtifacts {
    async fn prepare(&self, sha256: &str, file: LocalFile) -> io::Result<Prepared> {
        let sealed = self.seal(sha256, file).await?;
        self.inner.prepare(sha256, sealed).await
    }

    async fn publish(&self, prepared: Prepared) -> io::Result<()> {
        self.inner.publish(prepared).await
    }

    /// The file in plaintext: decrypted into memory (and its digest checked). A file stored before encryption
    /// was turned on and not yet sealed is returned as it is.
    async fn get(&self, sha256: &str) -> io::Result<ReadableArtifact> {
        let stored = self.inner.get(sha256).await?;
        let (key, path, sha256) = (self.key.clone(), stored.path().to_path_buf(), sha256.to_string());
        let opened = blocking(move || {
            let mut file = std::fs::File::open(&path)?;
            if !seal::is_sealed(&read_head(&mut file)?) {
                return Ok(None);
            }
            let file = std::fs::File::open(&path)?;
            decrypt_to_memory(&key, file, &sha256).map(Some)
        })
        .await?;
        Ok(match opened {
            Some((memory, memory_path)) => ReadableArtifact::new(memory_path, Some(memory)),
            None => stored,
        })
    }

    async fn exists(&self, sha256: &str) -> io::Result<bool> {
        self.inner.exists(sha256).await
    }

    async fn delete(&self, sha256: &str) -> io::Result<()> {
        self.inner.delete(sha256).await
    }

    async fn list(&self) -> io::Result<Vec<StoredObject>> {
        self.inner.list().await
    }
    async fn sweep_incomplete(&self) -> io::Result<usize> {
        self.inner.sweep_incomplete().await
    }
}

/// The store's files as they are, without a key: loading a sealed one fails with a message that says what
/// to configure, instead of handing ciphertext to a runtime.
#[derive(Debug, Clone)]
pub struct RefuseSealed(pub Arc<dyn ArtifactStore>);

#[async_trait::async_trait]
impl ArtifactStore for RefuseSealed {
    async fn prepare(&self, sha256: &str, file: LocalFile) -> io::Result<Prepared> {
        self.0.prepare(sha256, file).await
    }

    async fn publish(&self, prepared: Prepared) -> io::Result<()> {
        self.0.publish(prepared).await
    }

    async fn get(&self, sha256: &str) -> io::Result<ReadableArtifact> {
        let stored = self.0.get(sha256).await?;
        let path = stored.path().to_path_buf();
        let head = blocking(move || read_head(&mut std::fs::File::open(path)?)).await?;
        if seal::is_sealed(&head) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the stored model file {sha256} is encrypted; set storage.encryption_key_file to the key it was written with"),
            ));
        }
        Ok(stored)
    }

    async fn exists(&self, sha256: &str) -> io::Result<bool> {
        self.0.exists(sha256).await
    }

    async fn delete(&self, sha256: &str) -> io::Result<()> {
        self.0.delete(sha256).await
    }

    async fn list(&self) -> io::Result<Vec<StoredObject>> {
        self.0.list().await
    }
    async fn sweep_incomplete(&self) -> io::Result<usize> {
        self.0.sweep_incomplete().await
    }
}

/// Seals `source` (plaintext, `size` bytes) into `out` and fsyncs it; returns `out` and the sealed size.
fn seal_into(
    key: &EncryptionKey,
    source: &std::path::Path,
    size: u64,
    sha256: &str,
    out: std::fs::File,
) -> io::Result<(std::fs::File, u64)> {
    let mut plain = io::BufReader::with_capacity(1 << 20, std::fs::File::open(source)?);
    let mut writer = io::BufWriter::with_capacity(1 << 20, out);
    seal::seal(key, &mut plain, size, sha256, &mut writer)?;
    let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    let sealed_size = file.metadata()?.len();
    Ok((file, sealed_size))
}

/// Decrypts the sealed `file` named `sha256` into a new anonymous memory file; returns it and its path.
fn decrypt_to_memory(key: &EncryptionKey, mut file: std::fs::File, sha256: &str) -> io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::io::Write;
    let len = file.metadata()?.len();
    let (memory, memory_path) = memory_file()?;
    let mut writer = io::BufWriter::with_capacity(1 << 20, &memory);
    seal::open(key, &mut io::BufReader::with_capacity(1 << 20, &mut file), len, sha256, &mut writer)?;
    writer.flush()?;
    drop(writer);
    Ok((memory, memory_path))
}

/// The first bytes of a file (up to a sealed header's length).
fn read_head(file: &mut std::fs::File) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0u8; seal::HEAD_LEN];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    Ok(head)
}
