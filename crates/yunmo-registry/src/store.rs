//! Content-addressed artifact store on the local file system.
//!
//! Files live at `artifacts/sha256/<hex>`. A new file is written to `artifacts/staging/` while its sha256 is
//! computed, fsynced, then renamed into place and the directory fsynced: a reader never sees a partial file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Files named by the sha256 of their content.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// A file being written to the staging area. Dropped without [`StagingFile::finish`], it is deleted.
pub struct StagingFile {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

/// A complete, fsynced staged file with its digest, not yet in the store. Deleted on drop unless committed.
#[derive(Debug)]
pub struct StagedArtifact {
    path: PathBuf,
    sha256: String,
    size: u64,
    committed: bool,
}

impl ArtifactStore {
    /// Opens the store at `root`, creating its folders.
    pub async fn open(root: PathBuf) -> std::io::Result<ArtifactStore> {
        tokio::fs::create_dir_all(root.join("sha256")).await?;
        tokio::fs::create_dir_all(root.join("staging")).await?;
        Ok(ArtifactStore { root })
    }

    /// Where the file with this digest lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Starts a new staging file.
    pub async fn stage(&self) -> std::io::Result<StagingFile> {
        let name = format!("upload-{}-{}", std::process::id(), unique_suffix());
        let path = self.root.join("staging").join(name);
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(StagingFile { file: Some(file), path, hasher: Sha256::new(), size: 0 })
    }

    /// Moves a staged file into the store under its digest (a no-op if the same content is already there).
    pub async fn commit(&self, mut artifact: StagedArtifact) -> std::io::Result<()> {
        let target = self.path(&artifact.sha256);
        tokio::fs::rename(&artifact.path, &target).await?;
        artifact.committed = true;
        sync_dir(&self.root.join("sha256")).await
    }

    /// Removes a file from the store.
    pub async fn remove(&self, sha256: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Deletes every staging file and every stored file whose digest is not in `referenced`.
    pub async fn sweep(&self, referenced: &HashSet<String>) -> std::io::Result<usize> {
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
    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.as_mut().expect("a staging file is open until finish(). This is a bug.").write_all(chunk).await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and fsyncs the file and returns it with its digest.
    pub async fn finish(mut self) -> std::io::Result<StagedArtifact> {
        let mut file = self.file.take().expect("finish() is called once. This is a bug.");
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let path = std::mem::take(&mut self.path);
        Ok(StagedArtifact { path, sha256, size: self.size, committed: false })
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
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
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = tokio::fs::File::open(path).await?;
    dir.sync_all().await
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
    async fn staged_files_are_named_by_content_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_path_buf()).await.unwrap();
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
}
