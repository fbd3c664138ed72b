//! The stores a cluster shares, against real servers: PostgreSQL (Debian's) as the metadata store and an
//! S3 server (SeaweedFS) as the artifact store, with each replica's disk cache in front of it.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use yunmo_registry::{
    ArtifactStore, DiskCache, EncryptionKey, MetadataStore, PgStore, PgStoreOptions, S3Artifacts, S3Options, SealedArtifacts, Staging,
    conformance,
};
use yunmo_testkit::{Postgres, S3};

fn s3_options(server: &S3) -> S3Options {
    S3Options {
        bucket: server.bucket().to_string(),
        prefix: "models/".to_string(),
        endpoint: Some(server.endpoint()),
        region: None,
        access_key_id: Some(yunmo_testkit::S3_ACCESS_KEY.to_string()),
        secret_access_key: Some(yunmo_testkit::S3_SECRET_KEY.to_string()),
        path_style: true,
    }
}

async fn s3_store(server: &S3, cache_dir: &std::path::Path, budget: u64) -> S3Artifacts {
    let cache = Arc::new(DiskCache::open(cache_dir.to_path_buf(), budget).await.unwrap());
    S3Artifacts::new(&s3_options(server), cache).unwrap()
}

async fn put(store: &dyn ArtifactStore, staging: &Staging, content: &[u8]) -> String {
    let mut file = staging.stage().await.unwrap();
    file.write(content).await.unwrap();
    let staged = file.finish().await.unwrap();
    let sha = staged.sha256().to_string();
    store.put(&sha, staged.into_file()).await.unwrap();
    sha
}

fn megabytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n * 1024 * 1024).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn postgres_passes_the_metadata_conformance_suite() {
    let server = Postgres::start();
    let url = server.create_database("conformance");
    conformance::metadata(Arc::new(PgStore::connect(&PgStoreOptions::new(url)).await.unwrap())).await;
}

#[tokio::test]
async fn postgres_passes_the_responses_conformance_suite() {
    let server = Postgres::start();
    let url = server.create_database("responses");
    conformance::responses(Arc::new(PgStore::connect(&PgStoreOptions::new(url)).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_jobs_conformance_suite() {
    let server = Postgres::start();
    let url = server.create_database("jobs");
    conformance::jobs(Arc::new(PgStore::connect(&PgStoreOptions::new(url)).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_on_an_empty_database_all_come_up() {
    let server = Postgres::start();
    let url = server.create_database("empty");
    let starts = (0..3).map(|_| {
        let options = PgStoreOptions::new(url.clone());
        tokio::spawn(async move { PgStore::connect(&options).await })
    });
    for start in futures::future::join_all(starts).await {
        let store = start.unwrap().expect("every replica migrates or finds the schema migrated");
        assert_eq!(store.schema_version().await.unwrap(), 7);
    }
    let store = PgStore::connect(&PgStoreOptions::new(url)).await.unwrap();
    assert_eq!(store.list_tenants().await.unwrap().len(), 1, "the default tenant was inserted once");
}

#[tokio::test]
async fn s3_passes_the_artifact_conformance_suite_plain_and_sealed() {
    let server = S3::start("conformance");
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::open(dir.path().join("staging"), false).await.unwrap();
    let store = s3_store(&server, &dir.path().join("cache"), 1 << 30).await;
    conformance::artifacts(Arc::new(store), &staging).await;

    let mut options = s3_options(&server);
    options.prefix = "sealed".to_string();
    let cache = Arc::new(DiskCache::open(dir.path().join("sealed-cache"), 1 << 30).await.unwrap());
    let inner: Arc<dyn ArtifactStore> = Arc::new(S3Artifacts::new(&options, cache).unwrap());
    let key = Arc::new(EncryptionKey::from_bytes(&[7; 32]));
    let sealed_staging = Staging::open(dir.path().join("sealed-staging"), true).await.unwrap();
    conformance::artifacts(Arc::new(SealedArtifacts::new(inner, key, sealed_staging.clone())), &sealed_staging).await;
}

#[tokio::test]
async fn with_encryption_the_bucket_and_the_cache_hold_only_sealed_bytes() {
    let server = S3::start("sealed");
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(DiskCache::open(dir.path().join("cache"), 1 << 30).await.unwrap());
    let inner: Arc<dyn ArtifactStore> = Arc::new(S3Artifacts::new(&s3_options(&server), cache.clone()).unwrap());
    let staging = Staging::open(dir.path().join("staging"), true).await.unwrap();
    let sealed = SealedArtifacts::new(inner.clone(), Arc::new(EncryptionKey::from_bytes(&[3; 32])), staging.clone());
    let secret = b"plaintext weights that must never reach the bucket".repeat(1000);
    let sha = put(&sealed, &staging, &secret).await;
    // What the bucket holds, read back raw through a second replica's cache.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = s3_store(&server, raw_dir.path(), 1 << 30).await;
    let stored = std::fs::read(raw.get(&sha).await.unwrap().path()).unwrap();
    let needle = &secret[..40];
    assert!(!stored.windows(needle.len()).any(|window| window == needle), "the bucket holds plaintext");
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(needle.len()).any(|window| window == needle), "the cache holds plaintext");
    }
    assert_eq!(std::fs::read(sealed.get(&sha).await.unwrap().path()).unwrap(), secret);
}

#[tokio::test]
async fn a_restarted_replica_reads_its_cache_without_the_bucket() {
    let mut server = S3::start("cache");
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::open(dir.path().join("staging"), false).await.unwrap();
    let uploader = s3_store(&server, &dir.path().join("uploader-cache"), 1 << 30).await;
    let content = megabytes(3, 1);
    let sha = put(&uploader, &staging, &content).await;
    assert!(uploader.cache().contains(&sha), "the uploading replica keeps what it uploaded");

    let cache_dir = dir.path().join("replica-cache");
    let replica = s3_store(&server, &cache_dir, 1 << 30).await;
    assert!(!replica.cache().contains(&sha));
    assert_eq!(std::fs::read(replica.get(&sha).await.unwrap().path()).unwrap(), content, "downloaded once");
    drop(replica);

    server.pause();
    let restarted = s3_store(&server, &cache_dir, 1 << 30).await;
    assert_eq!(std::fs::read(restarted.get(&sha).await.unwrap().path()).unwrap(), content, "served from the cache with S3 down");
    let other = hex::encode(Sha256::digest(b"not cached anywhere"));
    let error = restarted.get(&other).await.expect_err("a file not cached needs the bucket");
    assert_ne!(error.kind(), std::io::ErrorKind::NotFound, "S3 down is not 'no such file': {error}");
    server.resume();
    let error = restarted.get(&other).await.expect_err("a missing file");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
}

#[tokio::test]
async fn the_cache_keeps_the_most_recently_used_files_within_its_budget() {
    let server = S3::start("budget");
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::open(dir.path().join("staging"), false).await.unwrap();
    let uploader = s3_store(&server, &dir.path().join("uploader"), 1 << 30).await;
    let files: Vec<(String, Vec<u8>)> =
        (0..3u8).map(|seed| megabytes(1, seed)).map(|content| (hex::encode(Sha256::digest(&content)), content)).collect();
    for (_, content) in &files {
        put(&uploader, &staging, content).await;
    }
    let budget = 2 * 1024 * 1024 + 512 * 1024;
    let replica = s3_store(&server, &dir.path().join("replica"), budget).await;
    let (a, b, c) = (&files[0].0, &files[1].0, &files[2].0);
    let held_a = replica.get(a).await.unwrap();
    replica.get(b).await.unwrap();
    replica.get(a).await.unwrap(); // a is now more recently used than b
    replica.get(c).await.unwrap();
    assert!(replica.cache().contains(a) && replica.cache().contains(c), "the two most recently used stay");
    assert!(!replica.cache().contains(b), "the least recently used one went");
    assert!(replica.cache().size() <= budget);
    assert_eq!(std::fs::read(held_a.path()).unwrap(), files[0].1, "a reader holding a file keeps reading it");

    drop(replica);
    let reopened = s3_store(&server, &dir.path().join("replica"), budget).await;
    assert!(reopened.cache().contains(a) && reopened.cache().contains(c), "the cache survives a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_replica_reach_the_others_and_a_lost_listener_resyncs() {
    use yunmo_registry::Change;
    let mut server = Postgres::start();
    let url = server.create_database("changes");
    let a = PgStore::connect(&PgStoreOptions::new(url.clone())).await.unwrap();
    let b = PgStore::connect(&PgStoreOptions::new(url.clone())).await.unwrap();
    let mut changes = b.changes().expect("a shared store reports changes");
    // The listener connects in the background: wait until a change is seen at all.
    let next = |changes: &mut tokio::sync::broadcast::Receiver<Change>| {
        let mut changes = changes.resubscribe();
        async move { tokio::time::timeout(std::time::Duration::from_secs(1), changes.recv()).await }
    };
    let mut seen = false;
    for attempt in 0..50 {
        let waiting = next(&mut changes);
        a.create_tenant(&format!("warmup{attempt}"), &Default::default()).await.unwrap();
        if let Ok(Ok(change)) = waiting.await {
            assert_eq!(change, Change::Keys);
            seen = true;
            break;
        }
    }
    assert!(seen, "replica B never heard of a change made through A");
    let waiting = next(&mut changes);
    a.create_model(yunmo_registry::NewModel {
        name: "m".into(),
        tenant: "default".into(),
        description: String::new(),
        task: String::new(),
        labels: Default::default(),
        metadata: serde_json::Value::Null,
        version_policy: Default::default(),
        sharing: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(waiting.await.expect("within a second").unwrap(), Change::Models);

    // One replica sweeps at a time.
    let held = a.try_maintenance_lock().await.unwrap();
    assert!(held.is_some());
    assert!(b.try_maintenance_lock().await.unwrap().is_none(), "the lock is held by A");
    drop(held);
    let mut taken = None;
    for _ in 0..50 {
        taken = b.try_maintenance_lock().await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(taken.is_some(), "released when dropped");
    drop(taken);

    // PostgreSQL restarts: once B listens again it says to drop every cache (not before: while the database
    // is down the caches serve), and hears changes again afterwards.
    let mut resync = changes.resubscribe();
    server.pause();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        matches!(resync.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)),
        "no Resync while PostgreSQL is down: the caches keep serving"
    );
    server.resume();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut resyncs = 0;
    while resyncs < 1 && std::time::Instant::now() < deadline {
        if let Ok(Ok(Change::Resync)) = tokio::time::timeout(std::time::Duration::from_secs(1), resync.recv()).await {
            resyncs += 1;
        }
    }
    assert_eq!(resyncs, 1, "one Resync, when it listens again");
    let waiting = next(&mut changes);
    let mut revoked = false;
    for _ in 0..50 {
        if a.create_tenant("after", &Default::default()).await.is_ok() {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(revoked, "A writes again once PostgreSQL is back");
    assert_eq!(waiting.await.expect("within a second").unwrap(), Change::Keys);
}

/// A server that cannot be reached is `NotConnected` (the service answers 503 and Retry-After: it may come
/// back); a server that answers with a refusal is another error (500: retrying will not help).
#[tokio::test]
async fn an_unreachable_store_is_told_apart_from_one_that_refuses() {
    // An HTTP server that refuses every request with 400, as S3 does a malformed or misdirected one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let sha = "a".repeat(64);
    let options = |endpoint: String| S3Options {
        bucket: "models".into(),
        prefix: "models/".into(),
        endpoint: Some(endpoint),
        region: None,
        access_key_id: Some("id".into()),
        secret_access_key: Some("secret".into()),
        path_style: true,
    };
    let cache = Arc::new(DiskCache::open(dir.path().join("a"), 1 << 20).await.unwrap());
    let refused = S3Artifacts::new(&options(format!("http://{refusing}")), cache).unwrap().get(&sha).await.unwrap_err();
    assert_ne!(refused.kind(), std::io::ErrorKind::NotConnected, "{refused}");
    let cache = Arc::new(DiskCache::open(dir.path().join("b"), 1 << 20).await.unwrap());
    let nobody = options(format!("http://127.0.0.1:{}", yunmo_testkit::free_port()));
    let unreachable = S3Artifacts::new(&nobody, cache).unwrap().get(&sha).await.unwrap_err();
    assert_eq!(unreachable.kind(), std::io::ErrorKind::NotConnected, "{unreachable}");
}
