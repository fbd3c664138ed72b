//! The artifact store in a local folder: `artifacts/sha256/<hex>`.
//!
//! A file is published by renaming a complete, fsynced staging file into place and fsyncing the folder, so
//! a reader never sees a partial file and a published file survives a crash.

use std::io;
use std::path::{Path, PathBuf};

use crate::artifacts::{ArtifactStore, LocalFile, Prepared, ReadableArtifact, StoredObject, blocking, check_name};
use crate::staging::Staging;

/// Model files in a folder of this machine.
#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    root: PathBuf,
    staging: Staging,
}

impl LocalArtifacts {
    /// The store in `root` (created if missing); copies of files it may not move go through `staging`,
    /// which must be on the same file system.
    pub async fn open(root: PathBuf, staging: Staging) -> io::Result<LocalArtifacts> {
        tokio::fs::create_dir_all(&root).await?;
        Ok(LocalArtifacts { root, staging })
    }

    fn path(&self, sha256: &str) -> io::Result<PathBuf> {
        check_name(sha256)?;
        Ok(self.root.join(sha256))
    }
}

#[async_trait::async_trait]
impl ArtifactStore for LocalArtifacts {
    async fn prepare(&self, sha256: &str, file: LocalFile) -> io::Result<Prepared> {
        check_name(sha256)?;
        if file.can_move() {
            return Ok(Prepared { sha256: sha256.to_string(), file, remote: None });
        }
        let (copy, path) = self.staging.create("copy")?;
        let source = file.path().to_path_buf();
        let copy = blocking(move || {
            let mut reader = std::fs::File::open(&source)?;
            let mut writer = io::BufWriter::with_capacity(1 << 20, copy);
            let size = io::copy(&mut reader, &mut writer)?;
            let copy = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
            copy.sync_all()?;
            Ok((copy, size))
        })
        .await;
        match copy {
            Ok((handle, size)) => {
                Ok(Prepared { sha256: sha256.to_string(), file: LocalFile::owned(path, size, Some(handle)), remote: None })
            }
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(error)
            }
        }
    }

    async fn publish(&self, prepared: Prepared) -> io::Result<()> {
        let target = self.path(&prepared.sha256)?;
        tokio::fs::rename(prepared.file.path(), &target).await?;
        prepared.file.taken();
        sync_dir(&self.root).await
    }

    async fn get(&self, sha256: &str) -> io::Result<ReadableArtifact> {
        let path = self.path(sha256)?;
        tokio::fs::metadata(&path).await?;
        Ok(ReadableArtifact::new(path, None))
    }

    async fn exists(&self, sha256: &str) -> io::Result<bool> {
        tokio::fs::try_exists(self.path(sha256)?).await
    }

    async fn delete(&self, sha256: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(sha256)?).await {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> io::Result<Vec<StoredObject>> {
        let mut entries = tokio::fs::read_dir(&self.root).await?;
        let mut objects = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let sha256 = entry.file_name().to_string_lossy().into_owned();
            if check_name(&sha256).is_err() {
                continue;
            }
            let metadata = match entry.metadata().await {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            objects.push(StoredObject { sha256, size: metadata.len(), modified: metadata.modified()? });
        }
        objects.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(objects)
    }
}

async fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = tokio::fs::File::open(path).await?;
    dir.sync_all().await
}
