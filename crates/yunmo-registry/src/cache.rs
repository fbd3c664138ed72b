//! A replica's disk cache of files it fetched from a remote artifact store.
//!
//! Files are named by their store name (the sha256 of the plaintext) in one folder. A download is streamed
//! to a temporary file in the folder, hashed as it is written, checked against the digest the store
//! recorded, fsynced and renamed into place: a reader never sees a partial or unverified file. Each use
//! touches the file's modification time, so the least recently used order survives a restart; when the
//! files exceed the budget, the least recently used ones are removed (a model that has one open keeps
//! reading it: the handle outlives the name).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::artifacts::{ReadableArtifact, blocking, check_name};

/// The cached files and how much room they may take.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    budget: u64,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    used: SystemTime,
}

impl DiskCache {
    /// The cache in `dir` (created if missing), holding at most `budget` bytes; files already there (from
    /// before a restart) are kept in their last-used order, leftovers of interrupted downloads removed.
    pub async fn open(dir: PathBuf, budget: u64) -> io::Result<DiskCache> {
        tokio::fs::create_dir_all(&dir).await?;
        let scan = dir.clone();
        let entries = blocking(move || {
            let mut entries = HashMap::new();
            for entry in std::fs::read_dir(&scan)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if check_name(&name).is_err() {
                    let _ = std::fs::remove_file(entry.path());
                    continue;
                }
                let metadata = entry.metadata()?;
                entries.insert(name, Entry { size: metadata.len(), used: metadata.modified()? });
            }
            Ok(entries)
        })
        .await?;
        let cache = DiskCache { dir, budget, entries: Mutex::new(entries) };
        cache.evict(None);
        Ok(cache)
    }

    /// Where the cached copy of `sha256` lives (whether or not it is there).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Total bytes cached.
    pub fn size(&self) -> u64 {
        self.entries.lock().expect("cache lock").values().map(|entry| entry.size).sum()
    }

    /// Whether `sha256` is cached.
    pub fn contains(&self, sha256: &str) -> bool {
        self.entries.lock().expect("cache lock").contains_key(sha256)
    }

    /// Opens the cached copy of `sha256`, marking it used; `None` when it is not cached. The path returned
    /// goes through the open handle, so evicting the file does not break a reader that holds it.
    pub async fn open_cached(&self, sha256: &str) -> io::Result<Option<ReadableArtifact>> {
        check_name(sha256)?;
        if !self.contains(sha256) {
            return Ok(None);
        }
        let path = self.path(sha256);
        let opened = blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(error),
            };
            let now = SystemTime::now();
            let _ = file.set_modified(now);
            Ok(Some(file))
        })
        .await?;
        match opened {
            Some(file) => {
                if let Some(entry) = self.entries.lock().expect("cache lock").get_mut(sha256) {
                    entry.used = SystemTime::now();
                }
                Ok(Some(held(file)))
            }
            None => {
                self.entries.lock().expect("cache lock").remove(sha256);
                Ok(None)
            }
        }
    }

    /// A temporary file in the cache folder for a download or a copy.
    pub fn temporary(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new().prefix(".part-").tempfile_in(&self.dir)
    }

    /// Puts a complete, verified file (in this folder, or on the same file system) in place as `sha256`
    /// and evicts what no longer fits, never `sha256` itself.
    pub async fn insert(&self, sha256: &str, file: &Path) -> io::Result<()> {
        check_name(sha256)?;
        let (from, to, dir) = (file.to_path_buf(), self.path(sha256), self.dir.clone());
        let size = blocking(move || {
            std::fs::File::open(&from)?.sync_all()?;
            std::fs::rename(&from, &to)?;
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(std::fs::metadata(&to)?.len())
        })
        .await?;
        self.entries.lock().expect("cache lock").insert(sha256.to_string(), Entry { size, used: SystemTime::now() });
        self.evict(Some(sha256));
        Ok(())
    }

    /// Removes the cached copy of `sha256`, if any.
    pub fn remove(&self, sha256: &str) {
        if self.entries.lock().expect("cache lock").remove(sha256).is_some() {
            let _ = std::fs::remove_file(self.path(sha256));
        }
    }

    /// Removes least recently used files until the rest fit the budget, keeping `keep`.
    fn evict(&self, keep: Option<&str>) {
        let mut entries = self.entries.lock().expect("cache lock");
        let mut total: u64 = entries.values().map(|entry| entry.size).sum();
        if total <= self.budget {
            return;
        }
        let mut order: Vec<(String, Entry)> = entries.iter().map(|(name, entry)| (name.clone(), *entry)).collect();
        order.sort_by_key(|(_, entry)| entry.used);
        for (name, entry) in order {
            if total <= self.budget {
                break;
            }
            if Some(name.as_str()) == keep {
                continue;
            }
            entries.remove(&name);
            let _ = std::fs::remove_file(self.dir.join(&name));
            total -= entry.size;
            tracing::info!(artifact = %name, bytes = entry.size, "Evicted a cached model file (least recently used).");
        }
    }
}

/// A readable artifact whose path is the open handle's (`/proc/self/fd/N`), valid while the value lives.
fn held(file: std::fs::File) -> ReadableArtifact {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        ReadableArtifact::new(path, Some(file))
    }
    #[cfg(not(target_os = "linux"))]
    {
        compile_error!("the artifact cache needs /proc/self/fd (Linux)");
    }
}
