//! The storage implementations against the conformance suite, and what is particular to each: SQLite's
//! migrations, sealing at rest, and the start sweep's grace period.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use yunmo_registry::{
    ArtifactStore, EncryptionKey, LocalArtifacts, Registry, RegistryConfig, RegistryError, SealedArtifacts, SqliteStore, Staging,
    conformance,
};

async fn local(dir: &Path, in_memory: bool) -> (Arc<dyn ArtifactStore>, Staging) {
    let staging = Staging::open(dir.join("staging"), in_memory).await.unwrap();
    (Arc::new(LocalArtifacts::open(dir.join("sha256"), staging.clone()).await.unwrap()), staging)
}

async fn put(store: &dyn ArtifactStore, staging: &Staging, content: &[u8]) -> String {
    let mut file = staging.stage().await.unwrap();
    file.write(content).await.unwrap();
    let staged = file.finish().await.unwrap();
    let sha = staged.sha256().to_string();
    store.put(&sha, staged.into_file()).await.unwrap();
    sha
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn sqlite_passes_the_metadata_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::metadata(Arc::new(SqliteStore::open(&dir.path().join("yunmo.db")).await.unwrap())).await;
}

#[tokio::test]
async fn sqlite_passes_the_responses_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::responses(Arc::new(SqliteStore::open(&dir.path().join("yunmo.db")).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_jobs_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::jobs(Arc::new(SqliteStore::open(&dir.path().join("yunmo.db")).await.unwrap())).await;
}

#[tokio::test]
async fn a_local_folder_passes_the_artifact_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, staging) = local(dir.path(), false).await;
    conformance::artifacts(store, &staging).await;
    assert!(files(&dir.path().join("staging")).is_empty(), "nothing left in staging");
}

#[tokio::test]
async fn a_sealed_local_folder_passes_the_artifact_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, staging) = local(dir.path(), true).await;
    let key = Arc::new(EncryptionKey::from_bytes(&[9; 32]));
    conformance::artifacts(Arc::new(SealedArtifacts::new(inner, key, staging.clone())), &staging).await;
    assert!(files(&dir.path().join("staging")).is_empty(), "nothing left in staging");
}

#[tokio::test]
async fn migrations_are_numbered_recorded_and_refused_when_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yunmo.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let version = yunmo_registry::MetadataStore::schema_version(&store).await.unwrap();
    assert_eq!(version, 7);
    store.close().await;
    // Opening again applies nothing and keeps the data.
    let store = SqliteStore::open(&path).await.unwrap();
    yunmo_registry::MetadataStore::create_tenant(&store, "acme", &Default::default()).await.unwrap();
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(yunmo_registry::MetadataStore::list_tenants(&store).await.unwrap().len(), 2);
    store.close().await;

    // A database a newer Yunmo migrated is refused, naming the versions.
    sqlite(&path, "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (8, 'future', 'x', 0)");
    let error = SqliteStore::open(&path).await.err().expect("a newer schema is refused");
    assert!(
        matches!(&error, RegistryError::Schema(message) if message.contains("schema version 8") && message.contains("up to 7")),
        "{error}"
    );
    sqlite(&path, "DELETE FROM schema_migrations WHERE version = 4");
    // A recorded migration whose text differs is refused too.
    sqlite(&path, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2");
    let error = SqliteStore::open(&path).await.err().expect("an edited migration is refused");
    assert!(error.to_string().contains("migration 2 (tenancy)"), "{error}");
}

/// Runs SQL on a database file on its own connection (no store has it open).
fn sqlite(path: &Path, sql: &str) {
    let path = path.to_path_buf();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            use sqlx::Connection;
            let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await.unwrap();
            connection.close().await.unwrap();
        })
    })
    .join()
    .unwrap();
}

#[tokio::test]
async fn a_database_from_before_numbered_migrations_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yunmo.db");
    std::fs::File::create(&path).unwrap();
    // The first schema Yunmo shipped: no tenants, no tokenizers.
    sqlite(
        &path,
        "CREATE TABLE models (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL, \
         task TEXT NOT NULL, labels TEXT NOT NULL, metadata TEXT NOT NULL, version_policy TEXT NOT NULL, next_version INTEGER NOT NULL, \
         created_at INTEGER NOT NULL); \
         CREATE TABLE versions (model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, version INTEGER NOT NULL, \
         format TEXT NOT NULL, sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, signature TEXT NOT NULL, config TEXT NOT NULL, \
         created_at INTEGER NOT NULL, PRIMARY KEY (model_id, version)); \
         CREATE INDEX versions_sha256 ON versions(sha256); \
         INSERT INTO models VALUES (1, 'old', '', '', '{}', 'null', '{\"kind\":\"latest\"}', 2, 0); \
         INSERT INTO versions VALUES (1, 1, 'onnx', 'abc', 3, '{\"inputs\":[],\"outputs\":[]}', '{}', 0);",
    );
    let store = SqliteStore::open(&path).await.unwrap();
    use yunmo_registry::MetadataStore;
    assert_eq!(store.schema_version().await.unwrap(), 7);
    let model = store.get_model("old").await.unwrap();
    assert_eq!(model.tenant, "default");
    let versions = store.list_versions(&model).await.unwrap();
    assert_eq!((versions.len(), versions[0].has_tokenizer), (1, false));
    assert_eq!(store.list_tenants().await.unwrap().len(), 1, "the tenancy migration ran");
}

#[tokio::test]
async fn sealed_files_hold_no_plaintext_and_move_to_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, staging) = local(dir.path(), true).await;
    let plain = b"secret weights ".repeat(100_000);
    let old_key = Arc::new(EncryptionKey::from_bytes(&[9; 32]));
    let sealed = SealedArtifacts::new(inner.clone(), old_key.clone(), staging.clone());
    let sha = put(&sealed, &staging, &plain).await;
    let stored = std::fs::read(dir.path().join("sha256").join(&sha)).unwrap();
    assert!(!stored.windows(14).any(|w| w == b"secret weights"), "the stored file holds plaintext");
    let readable = sealed.get(&sha).await.unwrap();
    assert!(readable.path().starts_with("/proc/self/fd"), "decrypted into memory: {}", readable.path().display());

    // A plaintext file stored before encryption is sealed at the next start; a rotated key re-seals.
    let (plain_store, plain_staging) = local(dir.path(), false).await;
    let before = put(plain_store.as_ref(), &plain_staging, b"stored before encryption").await;
    let new_key = Arc::new(EncryptionKey::from_bytes(&[7; 32]));
    let rotated = SealedArtifacts::new(inner.clone(), new_key, staging.clone());
    assert!(rotated.get(&sha).await.is_err(), "not yet re-sealed");
    assert_eq!(rotated.seal_under_current_key(&[old_key]).await.unwrap(), 2);
    assert_eq!(std::fs::read(rotated.get(&sha).await.unwrap().path()).unwrap(), plain);
    assert_eq!(std::fs::read(rotated.get(&before).await.unwrap().path()).unwrap(), b"stored before encryption");
    assert!(sealed.get(&sha).await.is_err(), "the old key no longer opens it");
    assert_eq!(rotated.seal_under_current_key(&[]).await.unwrap(), 0, "nothing left to re-seal");

    // Without a key, a sealed file is refused with what to do; an altered one is refused with the key.
    let error = yunmo_registry::RefuseSealed(inner.clone()).get(&sha).await.unwrap_err();
    assert!(error.to_string().contains("storage.encryption_key_file"), "{error}");
    let path = dir.path().join("sha256").join(&sha);
    let mut altered = std::fs::read(&path).unwrap();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x80;
    std::fs::write(&path, altered).unwrap();
    assert!(rotated.get(&sha).await.is_err(), "an altered file is refused, not served");
    assert!(files(&dir.path().join("staging")).is_empty());
}

#[tokio::test]
async fn the_sweep_keeps_what_another_process_may_still_be_writing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&RegistryConfig::new(dir.path())).await.unwrap();
    let artifacts = dir.path().join("artifacts");
    let (store, staging) = local(&artifacts, false).await;

    // An upload in progress (its writer holds the staging file's lock) and a file just stored whose version
    // is not recorded yet: both kept by a sweep, by this process or another.
    let mut writing = staging.stage().await.unwrap();
    writing.write(b"half an upload").await.unwrap();
    let fresh = put(store.as_ref(), &staging, b"stored a moment ago").await;
    let swept = registry.sweep(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((swept.staging, swept.artifacts), (0, 0));
    let reopened = Registry::open(&RegistryConfig::new(dir.path())).await.unwrap();
    assert_eq!(files(&artifacts.join("staging")).len(), 1, "the upload in progress survives another process's start");
    assert_eq!(files(&artifacts.join("sha256")), std::slice::from_ref(&fresh));

    // Once its writer is gone, the staging file goes; once older than the grace period, so does the file.
    drop(writing);
    std::fs::write(artifacts.join("staging").join("upload-from-a-killed-process"), b"x").unwrap();
    let old = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(artifacts.join("sha256").join(&fresh)).unwrap().set_modified(old).unwrap();
    let swept = reopened.sweep(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((swept.staging, swept.artifacts), (1, 1));
    assert!(files(&artifacts.join("staging")).is_empty());
    assert!(files(&artifacts.join("sha256")).is_empty());
    assert_eq!(hex::encode(Sha256::digest(b"stored a moment ago")), fresh);
}
