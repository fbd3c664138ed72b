//! The staging area: where this machine writes an upload (and a sealed copy of it) before it is checked
//! and handed to the artifact store.
//!
//! A staged file is written while its sha256 is computed, then fsynced. With encryption on, uploads are
//! staged in anonymous memory (a memfd) so plaintext never reaches the disk. Every staging file on disk is
//! held under an exclusive `flock` by its writer for as long as it exists, so a sweep (by this process at
//! start, or by another process sharing the folder) removes only files whose writer is gone.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::artifacts::{LocalFile, blocking};

/// The folder staged files go to.
#[derive(Debug, Clone)]
pub struct Staging {
    root: PathBuf,
    in_memory: bool,
}

/// A file being written to the staging area. Dropped without [`StagingFile::finish`], it is deleted.
pub struct StagingFile {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    memory: bool,
    hasher: Sha256,
    size: u64,
}

/// A complete, fsynced staged file with its digest, not yet in the store. Deleted on drop unless stored.
#[derive(Debug)]
pub struct StagedArtifact {
    file: LocalFile,
    sha256: String,
}

impl Staging {
    /// The staging folder `root` (created if missing); with `in_memory`, uploads are staged in memory.
    pub async fn open(root: PathBuf, in_memory: bool) -> io::Result<Staging> {
        tokio::fs::create_dir_all(&root).await?;
        Ok(Staging { root, in_memory })
    }

    /// Starts a new staging file: on disk, or in anonymous memory when uploads must not reach the disk.
    pub async fn stage(&self) -> io::Result<StagingFile> {
        let (file, path) = if self.in_memory { memory_file()? } else { self.create("upload")? };
        Ok(StagingFile { file: Some(tokio::fs::File::from_std(file)), path, memory: self.in_memory, hasher: Sha256::new(), size: 0 })
    }

    /// Creates a new, locked file in the staging folder, for a store's own temporary copies.
    pub fn create(&self, purpose: &str) -> io::Result<(std::fs::File, PathBuf)> {
        // Between creating the file and locking it, another process's sweep may take the lock and unlink it:
        // then the path no longer names this file, and a new one is made.
        for _ in 0..8 {
            let path = self.root.join(format!("{purpose}-{}-{}", std::process::id(), unique_suffix()));
            let file = std::fs::OpenOptions::new().write(true).read(true).create_new(true).open(&path)?;
            if try_lock(&file)? && same_file(&file, &path)? {
                return Ok((file, path));
            }
        }
        Err(io::Error::other(format!("cannot create a staging file in {} that stays in place", self.root.display())))
    }

    /// Removes every staging file whose writer is gone (no one holds its lock); returns how many.
    pub async fn sweep(&self) -> io::Result<usize> {
        let root = self.root.clone();
        blocking(move || {
            let mut removed = 0;
            for entry in std::fs::read_dir(&root)? {
                let path = entry?.path();
                let file = match std::fs::OpenOptions::new().read(true).open(&path) {
                    Ok(file) => file,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                };
                if try_lock(&file)? {
                    match std::fs::remove_file(&path) {
                        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                        _ => removed += 1,
                    }
                }
            }
            Ok(removed)
        })
        .await
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
        let handle = file.into_std().await;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let path = std::mem::take(&mut self.path);
        Ok(StagedArtifact { file: LocalFile::owned(path, self.size, Some(handle)), sha256 })
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
    /// Where the staged file is (for checking it before it is stored).
    pub fn path(&self) -> &Path {
        self.file.path()
    }
    /// Hex sha256 of the content.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.file.size()
    }
    /// The file, for the artifact store to take.
    pub fn into_file(self) -> LocalFile {
        self.file
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &std::fs::File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Takes an exclusive lock on `file` without waiting; `false` when another open file holds it.
#[cfg(target_os = "linux")]
fn try_lock(file: &std::fs::File) -> io::Result<bool> {
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn try_lock(file: &std::fs::File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

/// An anonymous file in memory (never on disk), and the path this process opens it by.
#[cfg(target_os = "linux")]
pub(crate) fn memory_file() -> io::Result<(std::fs::File, PathBuf)> {
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::memfd_create("yunmo-model", rustix::fs::MemfdFlags::CLOEXEC)?;
    let file = std::fs::File::from(fd);
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok((file, path))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn memory_file() -> io::Result<(std::fs::File, PathBuf)> {
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

    #[tokio::test]
    async fn staged_files_are_named_by_content_and_swept_only_when_their_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::open(dir.path().to_path_buf(), false).await.unwrap();
        let mut file = staging.stage().await.unwrap();
        file.write(b"hello ").await.unwrap();
        file.write(b"world").await.unwrap();
        let staged = file.finish().await.unwrap();
        assert_eq!(staged.sha256(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(std::fs::read(staged.path()).unwrap(), b"hello world");

        // A file still held (here, or by another process sharing the folder) is not swept.
        let mut writing = staging.stage().await.unwrap();
        writing.write(b"partial").await.unwrap();
        assert_eq!(staging.sweep().await.unwrap(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        // Dropped without being stored, both are gone.
        drop(writing);
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // A file whose writer died (no lock held) is swept.
        std::fs::write(dir.path().join("upload-1-2-3"), b"left by a killed process").unwrap();
        assert_eq!(staging.sweep().await.unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
