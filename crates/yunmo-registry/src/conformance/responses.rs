//! The contract of the stored-response store ([`ResponseStore`], which every [`MetadataStore`] is).

use std::sync::Arc;

use crate::RegistryError;
use crate::metadata::MetadataStore;
use crate::responses::StoredResponse;

fn response(id: &str, tenant: &str, created_at: i64, expires_at: i64) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        tenant: tenant.into(),
        model: "chat".into(),
        // Non-ASCII and a large body survive as written.
        body: format!("{{\"id\":\"{id}\",\"text\":\"云模 {}\"}}", "x".repeat(100_000)),
        input: "[{\"role\":\"user\",\"content\":\"hi\"}]".into(),
        created_at,
        expires_at,
    }
}

/// Checks `store` (new and empty, at its newest schema) against the [`crate::ResponseStore`] contract.
pub async fn responses(store: Arc<dyn MetadataStore>) {
    let a = response("resp_a", "acme", 1_000, 10_000);
    store.put_response(&a, 1_000).await.expect("put");
    assert_eq!(store.get_response("acme", "resp_a", 2_000).await.expect("get"), Some(a.clone()), "read back whole");
    assert_eq!(store.get_response("globex", "resp_a", 2_000).await.expect("get"), None, "another tenant's is not found");
    assert_eq!(store.get_response("acme", "resp_b", 2_000).await.expect("get"), None, "an unknown id is not found");
    assert_eq!(store.get_response("acme", "resp_a", 10_000).await.expect("get"), None, "expired at expires_at");
    assert!(matches!(store.put_response(&a, 1_000).await, Err(RegistryError::AlreadyExists(_))), "a taken id is AlreadyExists");

    // Deleting: only by its tenant, once.
    assert!(!store.delete_response("globex", "resp_a", 2_000).await.expect("delete"), "another tenant deletes nothing");
    assert!(store.get_response("acme", "resp_a", 2_000).await.expect("get").is_some(), "still there");
    assert!(store.delete_response("acme", "resp_a", 2_000).await.expect("delete"), "deleted");
    assert!(!store.delete_response("acme", "resp_a", 2_000).await.expect("delete"), "deleted once");
    assert_eq!(store.get_response("acme", "resp_a", 2_000).await.expect("get"), None, "gone");

    // Expired responses are removed by a purge, and by the next put; live ones stay.
    store.put_response(&response("resp_old", "acme", 1_000, 5_000), 1_000).await.expect("put");
    store.put_response(&response("resp_live", "acme", 1_000, 50_000), 1_000).await.expect("put");
    assert_eq!(store.purge_responses(6_000).await.expect("purge"), 1, "one expired");
    assert_eq!(store.purge_responses(6_000).await.expect("purge"), 0, "purged once");
    store.put_response(&response("resp_soon", "acme", 6_000, 7_000), 6_000).await.expect("put");
    store.put_response(&response("resp_next", "acme", 8_000, 60_000), 8_000).await.expect("put");
    assert_eq!(store.purge_responses(8_000).await.expect("purge"), 0, "the put at 8000 removed what had expired");
    assert!(store.get_response("acme", "resp_live", 8_000).await.expect("get").is_some(), "a live response stays");
    assert!(store.get_response("acme", "resp_next", 8_000).await.expect("get").is_some());
}
