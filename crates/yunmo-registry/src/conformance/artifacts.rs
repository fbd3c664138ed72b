//! The artifact store's contract.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::artifacts::{ArtifactStore, LocalFile};
use crate::staging::Staging;

/// A staged file holding `content`, as an upload would leave it.
async fn staged(staging: &Staging, content: &[u8]) -> (String, LocalFile) {
    let mut file = staging.stage().await.expect("staging a file");
    for part in content.chunks(256 * 1024) {
        file.write(part).await.expect("writing a staged file");
    }
    let staged = file.finish().await.expect("finishing a staged file");
    (staged.sha256().to_string(), staged.into_file())
}

async fn read(store: &dyn ArtifactStore, sha256: &str) -> Vec<u8> {
    let readable = store.get(sha256).await.unwrap_or_else(|error| panic!("get {sha256}: {error}"));
    std::fs::read(readable.path()).expect("reading what get returned")
}

/// Checks `store` (new and empty) against the [`ArtifactStore`] contract; `staging` makes the files to put.
pub async fn artifacts(store: Arc<dyn ArtifactStore>, staging: &Staging) {
    let store = store.as_ref();
    assert!(store.list().await.expect("list").is_empty(), "a new store lists nothing");

    // Put, then get exactly the bytes put, under the sha256 of the plaintext; three chunks of sealing.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i * 31 % 251) as u8).collect();
    let (big_sha, file) = staged(staging, &big).await;
    assert_eq!(big_sha, hex::encode(Sha256::digest(&big)));
    let before = SystemTime::now() - Duration::from_secs(5);
    store.put(&big_sha, file).await.expect("put");
    assert!(store.exists(&big_sha).await.expect("exists"));
    assert_eq!(read(store, &big_sha).await, big, "get returns the bytes put");

    let (small_sha, file) = staged(staging, b"a small model").await;
    store.put(&small_sha, file).await.expect("put");
    let listed = store.list().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|object| object.sha256.as_str()).collect();
    let mut expected = vec![big_sha.as_str(), small_sha.as_str()];
    expected.sort();
    assert_eq!(names, expected, "list names every stored file, by name");
    for object in &listed {
        assert!(object.size > 0, "list reports sizes: {object:?}");
        assert!(object.modified >= before, "list reports when a file was written: {object:?}");
    }

    // Putting a name again replaces it (same content: names are digests); the file stays whole.
    let (again, file) = staged(staging, &big).await;
    store.put(&again, file).await.expect("put again");
    assert_eq!(read(store, &big_sha).await, big);
    assert_eq!(store.list().await.expect("list").len(), 2);

    // A prepared file that is never published leaves nothing.
    let (unpublished, file) = staged(staging, b"never published").await;
    let prepared = store.prepare(&unpublished, file).await.expect("prepare");
    drop(prepared);
    assert!(!store.exists(&unpublished).await.expect("exists"), "prepare alone stores nothing");
    assert_eq!(store.list().await.expect("list").len(), 2);

    // Missing names: get is NotFound, exists is false, delete succeeds.
    let missing = hex::encode(Sha256::digest(b"never stored"));
    let error = store.get(&missing).await.expect_err("get of a missing file");
    assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
    assert!(!store.exists(&missing).await.expect("exists"));
    store.delete(&missing).await.expect("delete of a missing file succeeds");

    // A name that is not a sha256 is refused, never used as a path.
    for bad in ["../escape", "", "ABCDEF"] {
        let error = store.get(bad).await.expect_err("a name that is not a digest");
        assert!(matches!(error.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::NotFound), "{bad}: {error}");
    }

    // Delete removes exactly one file.
    store.delete(&big_sha).await.expect("delete");
    assert!(!store.exists(&big_sha).await.expect("exists"));
    assert!(store.exists(&small_sha).await.expect("exists"));
    assert_eq!(read(store, &small_sha).await, b"a small model");
    store.delete(&small_sha).await.expect("delete");
    assert!(store.list().await.expect("list").is_empty());
}
