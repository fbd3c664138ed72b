//! The artifact store in an S3-compatible bucket, with this replica's disk cache in front of it.
//!
//! Objects are `<prefix><sha256>`, as files are named in a local folder. `prepare` uploads to a temporary
//! key under `<prefix>uploads/` (multipart for large files) before the metadata lock is taken; `publish`,
//! under the lock, copies it to its name unless an object of that name is already there (content
//! addressed: same name, same bytes), and re-uploads from the local file where the server cannot copy
//! (over 5 GiB). Every object carries the sha256 of its stored bytes (`x-amz-meta-yunmo-sha256`), which a
//! download is checked against before the file enters the cache: with encryption on, the bucket holds
//! only sealed files and the cache only sealed copies. `get` serves from the cache and downloads (once)
//! what is missing.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::artifacts::{ArtifactStore, LocalFile, Prepared, ReadableArtifact, StoredObject, check_name};
use crate::cache::DiskCache;

/// The object metadata that holds the sha256 of an object's bytes.
const DIGEST_METADATA: &str = "yunmo-sha256";
/// Uploads larger than this go in parts of this size.
const PART_BYTES: usize = 16 * 1024 * 1024;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// The largest object S3's CopyObject copies.
const MAX_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// How old an abandoned temporary upload must be before a sweep removes it.
const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// How to reach the bucket. Credentials left out come from the standard `AWS_*` variables.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (`""`, or ending in `/`).
    pub prefix: String,
    /// Endpoint URL for S3-compatible servers (MinIO, SeaweedFS, Ceph); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when unset and not in `AWS_REGION`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "***"))
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Model files in an S3 bucket, cached on this machine.
#[derive(Debug, Clone)]
pub struct S3Artifacts {
    store: Arc<AmazonS3>,
    prefix: String,
    cache: Arc<DiskCache>,
    /// One download per file at a time: a second `get` of a file being downloaded waits for the first.
    downloads: Arc<tokio::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// An object store error as an I/O error: a missing object is `NotFound`, refused credentials are
/// `PermissionDenied` (a configuration error); a server that could not be reached (connecting, sending or
/// waiting failed after the retries) is `NotConnected`, which the service answers with 503 and Retry-After;
/// anything the server answered otherwise (a wrong region or bucket, a refusal) is `Other`, a server error.
/// The message is the store's, which names no secret.
fn io_error(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, error.to_string()),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            io::Error::new(io::ErrorKind::PermissionDenied, format!("S3: {error}"))
        }
        other if unreachable(&other) => io::Error::new(io::ErrorKind::NotConnected, format!("S3: {other}")),
        other => io::Error::other(format!("S3: {other}")),
    }
}

/// Whether the error comes from the transport (no answer from the server), not from an answer.
fn unreachable(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            );
        }
        source = current.source();
    }
    false
}

impl S3Artifacts {
    /// Connects (lazily: nothing is sent until the first call) with `options`, caching in `cache`.
    pub fn new(options: &S3Options, cache: Arc<DiskCache>) -> io::Result<S3Artifacts> {
        // reqwest is built without a TLS provider of its own: the process uses ring (as the server does).
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&options.bucket);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        if let Some(id) = &options.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let retry = RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..RetryConfig::default() };
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout_disabled()
            .with_allow_http(options.endpoint.as_deref().is_some_and(|endpoint| endpoint.starts_with("http://")));
        let store = builder
            .with_virtual_hosted_style_request(!options.path_style)
            .with_retry(retry)
            .with_client_options(client)
            .build()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, format!("storage.s3: {error}")))?;
        let prefix = match options.prefix.as_str() {
            "" => String::new(),
            prefix if prefix.ends_with('/') => prefix.to_string(),
            prefix => format!("{prefix}/"),
        };
        Ok(S3Artifacts { store: Arc::new(store), prefix, cache, downloads: Arc::default() })
    }

    /// The cache in front of the bucket.
    pub fn cache(&self) -> &DiskCache {
        &self.cache
    }

    fn key(&self, sha256: &str) -> io::Result<ObjectPath> {
        check_name(sha256)?;
        Ok(ObjectPath::from(format!("{}{sha256}", self.prefix)))
    }

    fn uploads(&self) -> ObjectPath {
        ObjectPath::from(format!("{}uploads", self.prefix))
    }

    /// Uploads a local file to `key` with the digest of its bytes; returns that digest.
    async fn upload(&self, key: &ObjectPath, file: &LocalFile) -> io::Result<()> {
        let digest = digest_of(file.path()).await?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::Metadata(DIGEST_METADATA.into()), digest.into());
        let options = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
        let upload = self.store.put_multipart_opts(key, options).await.map_err(io_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut source = tokio::fs::File::open(file.path()).await?;
        let mut buffer = vec![0u8; PART_BYTES];
        loop {
            let read = source.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(io_error(error));
            }
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(io_error)?;
        Ok(())
    }

    /// Downloads `sha256` into the cache, checking its bytes against the digest stored with it.
    async fn download(&self, sha256: &str) -> io::Result<()> {
        let key = self.key(sha256)?;
        let result = self.store.get(&key).await.map_err(io_error)?;
        let expected = result.attributes.get(&Attribute::Metadata(DIGEST_METADATA.into())).map(|value| value.to_string());
        let temporary = self.cache.temporary()?;
        let (file, path) = temporary.keep().map_err(|error| error.error)?;
        let written = async {
            let mut out = tokio::fs::File::from_std(file);
            let mut hasher = Sha256::new();
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(io_error)?;
                hasher.update(&chunk);
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            let actual = hex::encode(hasher.finalize());
            match expected {
                Some(expected) if expected == actual => Ok(()),
                Some(expected) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("S3 object {key} has sha256 {actual}, not the {expected} recorded when it was stored"),
                )),
                None => Err(io::Error::new(io::ErrorKind::InvalidData, format!("S3 object {key} has no {DIGEST_METADATA} metadata"))),
            }
        }
        .await;
        match written {
            Ok(()) => self.cache.insert(sha256, &path).await,
            Err(error) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(error)
            }
        }
    }

    /// Removes temporary uploads older than a day (a replica that died mid-upload leaves one).
    async fn sweep_uploads(&self) -> io::Result<usize> {
        let now = chrono_now();
        let mut removed = 0;
        let mut listing = self.store.list(Some(&self.uploads()));
        while let Some(object) = listing.next().await {
            let object = object.map_err(io_error)?;
            let age = now.saturating_sub(object.last_modified.timestamp().max(0) as u64);
            if age >= ABANDONED_UPLOAD_AGE.as_secs() {
                self.store.delete(&object.location).await.map_err(io_error)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The hex sha256 of a file's bytes, read off the async runtime.
async fn digest_of(path: &std::path::Path) -> io::Result<String> {
    let path = path.to_path_buf();
    crate::artifacts::blocking(move || {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
}

#[async_trait::async_trait]
impl ArtifactStore for S3Artifacts {
    async fn prepare(&self, sha256: &str, file: LocalFile) -> io::Result<Prepared> {
        check_name(sha256)?;
        let temporary = ObjectPath::from(format!("{}uploads/{sha256}.{:016x}", self.prefix, rand_suffix()));
        self.upload(&temporary, &file).await?;
        Ok(Prepared { sha256: sha256.to_string(), file, remote: Some(temporary.to_string()) })
    }

    async fn publish(&self, prepared: Prepared) -> io::Result<()> {
        let key = self.key(&prepared.sha256)?;
        let temporary = prepared.remote.clone().map(ObjectPath::from);
        let present = match self.store.head(&key).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(error) => return Err(io_error(error)),
        };
        if !present {
            match &temporary {
                Some(temporary) if prepared.file.size() <= MAX_COPY_BYTES => self.store.copy(temporary, &key).await.map_err(io_error)?,
                _ => self.upload(&key, &prepared.file).await?,
            }
        }
        if let Some(temporary) = &temporary {
            let _ = self.store.delete(temporary).await;
        }
        // The replica that uploaded a file usually loads it next: keep it rather than download it again.
        if prepared.file.can_move() && !self.cache.contains(&prepared.sha256) {
            let path = prepared.file.path().to_path_buf();
            if self.cache.insert(&prepared.sha256, &path).await.is_ok() {
                prepared.file.taken();
            }
        }
        Ok(())
    }

    async fn get(&self, sha256: &str) -> io::Result<ReadableArtifact> {
        check_name(sha256)?;
        if let Some(cached) = self.cache.open_cached(sha256).await? {
            return Ok(cached);
        }
        let lock = self.downloads.lock().await.entry(sha256.to_string()).or_default().clone();
        let _downloading = lock.lock().await;
        if let Some(cached) = self.cache.open_cached(sha256).await? {
            return Ok(cached);
        }
        let started = std::time::Instant::now();
        let result = self.download(sha256).await;
        self.downloads.lock().await.remove(sha256);
        result?;
        tracing::info!(artifact = %sha256, seconds = started.elapsed().as_secs_f64(), "Downloaded a model file into the cache.");
        self.cache.open_cached(sha256).await?.ok_or_else(|| io::Error::other("a downloaded file left the cache at once (budget too small)"))
    }

    async fn exists(&self, sha256: &str) -> io::Result<bool> {
        match self.store.head(&self.key(sha256)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(io_error(error)),
        }
    }

    async fn delete(&self, sha256: &str) -> io::Result<()> {
        let key = self.key(sha256)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(io_error(error)),
        }
        self.cache.remove(sha256);
        Ok(())
    }

    async fn list(&self) -> io::Result<Vec<StoredObject>> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.trim_end_matches('/')));
        let mut listing = self.store.list(prefix.as_ref());
        let mut objects = Vec::new();
        while let Some(object) = listing.next().await {
            let object = object.map_err(io_error)?;
            let Some(name) = object.location.as_ref().strip_prefix(self.prefix.as_str()) else { continue };
            if check_name(name).is_err() {
                continue;
            }
            let modified = std::time::UNIX_EPOCH + Duration::from_millis(object.last_modified.timestamp_millis().max(0) as u64);
            objects.push(StoredObject { sha256: name.to_string(), size: object.size, modified });
        }
        objects.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(objects)
    }

    async fn sweep_incomplete(&self) -> io::Result<usize> {
        self.sweep_uploads().await
    }
}

/// A random suffix for temporary keys (two replicas uploading one file use two keys).
fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the system random source works");
    u64::from_le_bytes(bytes)
}
