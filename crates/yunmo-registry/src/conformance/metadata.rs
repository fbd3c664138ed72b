//! The metadata store's contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use yunmo_types::{Limits, Scope, Sharing, Signature, VersionConfig, VersionPolicy};

use crate::RegistryError;
use crate::metadata::{ArtifactWork, DesiredState, MetadataStore, UsageQuery};
use crate::records::{DriftBaselineRecord, ModelPatch, ModelRecord, NewModel, VersionRow};
use crate::tenancy::{AuditEntry, NewKey, UsageEvent, UsageGroup, UsageSubject};

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn row(model: &ModelRecord, version: Option<u64>, sha256: &str) -> VersionRow {
    VersionRow {
        model_id: model.id,
        version,
        format: "onnx".into(),
        sha256: sha256.into(),
        size: 42,
        signature: Signature::default(),
        config: VersionConfig::default(),
        tokenizer: None,
    }
}

/// Work that records that it ran.
fn work(ran: &Arc<AtomicBool>, result: std::io::Result<()>) -> ArtifactWork<'static> {
    let ran = ran.clone();
    Box::pin(async move {
        ran.store(true, Ordering::SeqCst);
        result
    })
}

fn model(name: &str, tenant: &str) -> NewModel {
    NewModel { name: name.into(), tenant: tenant.into(), description: format!("{name} of {tenant}"), ..NewModel::default() }
}

/// Checks `store` (new and empty, at its newest schema) against the [`MetadataStore`] contract.
pub async fn metadata(store: Arc<dyn MetadataStore>) {
    assert!(store.schema_version().await.expect("schema version") >= 2, "migrations ran");
    models(store.as_ref()).await;
    versions(store.clone()).await;
    tenants_and_keys(store.as_ref()).await;
    usage_and_audit(store.as_ref()).await;
}

async fn models(store: &dyn MetadataStore) {
    store.create_tenant("acme", &Limits::default()).await.expect("create tenant");
    let a = store.create_model(model("a", "default")).await.expect("create model");
    assert_eq!((a.name.as_str(), a.tenant.as_str(), a.description.as_str()), ("a", "default", "a of default"));
    let b = store.create_model(model("b", "acme")).await.expect("create model");
    assert_eq!(b.name, "acme/b", "another tenant's model is stored under its qualified name");
    let error = store.create_model(model("b", "acme")).await.expect_err("a taken name");
    assert!(matches!(error, RegistryError::AlreadyExists(_)), "{error}");
    store.create_model(model("b", "default")).await.expect("names are unique per tenant");

    let names: Vec<String> = store.list_models().await.expect("list").into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["a", "acme/b", "b"]);
    let named: Vec<String> = store.models_named("b").await.expect("models named").into_iter().map(|m| m.name).collect();
    assert_eq!(named, ["acme/b", "b"]);
    assert_eq!(store.get_model("acme/b").await.expect("get").id, b.id);
    assert!(matches!(store.get_model("nope").await, Err(RegistryError::NotFound(_))));

    // A patch that fails changes nothing; one that succeeds changes only what it names.
    let bad = ModelPatch {
        description: Some("changed".into()),
        version_policy: Some(VersionPolicy::Pinned { version: 9 }),
        ..ModelPatch::default()
    };
    assert!(matches!(store.update_model("a", bad).await, Err(RegistryError::Invalid(_))), "pinning a missing version");
    assert_eq!(store.get_model("a").await.expect("get").description, "a of default");
    let sharing = Sharing { public: false, tenants: vec!["acme".into()] };
    let patch = ModelPatch { task: Some("classification".into()), sharing: Some(sharing.clone()), ..ModelPatch::default() };
    let patched = store.update_model("a", patch).await.expect("update");
    assert_eq!((patched.task.as_str(), &patched.sharing, patched.description.as_str()), ("classification", &sharing, "a of default"));
    assert_eq!(store.get_model("a").await.expect("get").sharing, sharing);
    assert!(matches!(store.update_model("nope", ModelPatch::default()).await, Err(RegistryError::NotFound(_))));
}

async fn versions(store: Arc<dyn MetadataStore>) {
    let a = store.get_model("a").await.expect("get");
    let ran = Arc::new(AtomicBool::new(false));
    let v1 = store.insert_version(row(&a, None, &sha(1)), work(&ran, Ok(()))).await.expect("insert");
    assert!(ran.load(Ordering::SeqCst), "the publish work runs");
    assert_eq!((v1.model.as_str(), v1.version, v1.sha256.as_str(), v1.size_bytes), ("a", 1, sha(1).as_str(), 42));
    assert_eq!(store.insert_version(row(&a, Some(5), &sha(2)), work(&ran, Ok(()))).await.expect("insert").version, 5);
    assert_eq!(
        store.insert_version(row(&a, None, &sha(1)), work(&ran, Ok(()))).await.expect("insert").version,
        6,
        "next after the highest"
    );
    let error = store.insert_version(row(&a, Some(5), &sha(3)), work(&ran, Ok(()))).await.expect_err("a taken number");
    assert!(matches!(error, RegistryError::AlreadyExists(_)), "{error}");

    // A failed publish leaves no row, and its number is not used up.
    let failed = Arc::new(AtomicBool::new(false));
    let error = store.insert_version(row(&a, None, &sha(4)), work(&failed, Err(std::io::Error::other("disk full")))).await;
    assert!(failed.load(Ordering::SeqCst) && error.is_err(), "a failed publish fails the insert");
    let numbers: Vec<u64> = store.list_versions(&a).await.expect("list").iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 5, 6]);
    assert!(!store.referenced_artifacts().await.expect("referenced").contains(&sha(4)));
    assert_eq!(store.insert_version(row(&a, None, &sha(4)), work(&ran, Ok(()))).await.expect("insert").version, 7);

    assert_eq!(store.latest_version(&a).await.expect("latest").map(|v| v.version), Some(7));
    assert_eq!(store.get_version(&a, 5).await.expect("get").sha256, sha(2));
    assert!(matches!(store.get_version(&a, 4).await, Err(RegistryError::NotFound(_))));
    let b = store.get_model("b").await.expect("get");
    assert!(store.latest_version(&b).await.expect("latest").is_none(), "a model without versions has no latest");
    store.insert_version(row(&b, None, &sha(1)), work(&ran, Ok(()))).await.expect("insert");
    let all: Vec<(String, u64)> = store.all_versions().await.expect("all").into_iter().map(|v| (v.model, v.version)).collect();
    assert_eq!(all, [("a".into(), 1), ("a".into(), 5), ("a".into(), 6), ("a".into(), 7), ("b".into(), 1)]);

    // Config and tokenizer.
    let config = VersionConfig { max_batch_size: 8, ..VersionConfig::default() };
    assert_eq!(store.set_version_config(&a, 5, &config).await.expect("config").config, config);
    assert_eq!(store.get_version(&a, 5).await.expect("get").config, config);
    assert!(matches!(store.set_version_config(&a, 4, &config).await, Err(RegistryError::NotFound(_))));
    assert!(!store.get_version(&a, 5).await.expect("get").has_tokenizer);
    assert!(store.set_tokenizer(&a, 5, "{\"model\": {}}").await.expect("tokenizer").has_tokenizer);
    assert_eq!(store.tokenizer(&a, 5).await.expect("tokenizer").as_deref(), Some("{\"model\": {}}"));
    assert_eq!(store.tokenizer(&a, 1).await.expect("tokenizer"), None);
    assert!(matches!(store.tokenizer(&a, 4).await, Err(RegistryError::NotFound(_))));

    // The pinned version cannot be deleted; others can.
    let pin = ModelPatch { version_policy: Some(VersionPolicy::Pinned { version: 5 }), ..ModelPatch::default() };
    store.update_model("a", pin).await.expect("pin");
    assert!(matches!(store.delete_version(&a, 5).await, Err(RegistryError::Invalid(_))));
    // So are the versions a route names, shadow included; a route to a missing version is refused.
    let route = |versions: &[u64], shadow| {
        let weighted = versions.iter().map(|&version| yunmo_types::Weighted { version, weight: 50 }).collect();
        let route = yunmo_types::Route { versions: weighted, stable: 5, shadow, sticky: None, guard: None, since: 0 };
        ModelPatch { version_policy: Some(VersionPolicy::Routed(route)), ..ModelPatch::default() }
    };
    assert!(matches!(store.update_model("a", route(&[5, 9], None)).await, Err(RegistryError::Invalid(_))), "routing a missing version");
    store.update_model("a", route(&[5], Some(6))).await.expect("route");
    assert!(matches!(store.delete_version(&a, 6).await, Err(RegistryError::Invalid(_))), "deleting the shadow");
    store.update_model("a", route(&[5], None)).await.expect("route");
    assert_eq!(store.delete_version(&a, 6).await.expect("delete").version, 6);
    assert!(matches!(store.delete_version(&a, 6).await, Err(RegistryError::NotFound(_))));
    let referenced = store.referenced_artifacts().await.expect("referenced");
    assert!(referenced.contains(&sha(1)) && referenced.contains(&sha(2)) && referenced.contains(&sha(4)));

    // Removal runs only for a file no version refers to.
    let removed = Arc::new(AtomicBool::new(false));
    assert!(!store.remove_artifact_if_unreferenced(&sha(2), work(&removed, Ok(()))).await.expect("remove"));
    assert!(!removed.load(Ordering::SeqCst), "a referenced file is kept");
    assert!(store.remove_artifact_if_unreferenced(&sha(9), work(&removed, Ok(()))).await.expect("remove"));
    assert!(removed.load(Ordering::SeqCst), "an unreferenced file is removed");

    publish_and_remove_exclude_each_other(store.clone(), &a).await;

    // What the cluster keeps loaded or unloaded: set, replaced, cleared, gone with the version.
    assert!(store.desired_states().await.expect("desired").is_empty());
    store.set_desired_state(&a, 1, Some(DesiredState::Unloaded)).await.expect("desire");
    store.set_desired_state(&a, 5, Some(DesiredState::Loaded)).await.expect("desire");
    store.set_desired_state(&b, 1, Some(DesiredState::Loaded)).await.expect("desire");
    store.set_desired_state(&a, 5, Some(DesiredState::Unloaded)).await.expect("desire");
    store.set_desired_state(&b, 1, None).await.expect("clear");
    assert_eq!(
        store.desired_states().await.expect("desired"),
        [("a".to_string(), 1, DesiredState::Unloaded), ("a".to_string(), 5, DesiredState::Unloaded)]
    );
    assert!(matches!(store.set_desired_state(&a, 4, Some(DesiredState::Loaded)).await, Err(RegistryError::NotFound(_))));
    let lock = store.try_maintenance_lock().await.expect("maintenance lock");
    assert!(lock.is_some(), "a single process gets the maintenance lock");
    drop(lock);

    // Deleting a model returns its versions.
    let b_versions = store.delete_model("b").await.expect("delete");
    assert_eq!(b_versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1]);
    assert!(matches!(store.get_model("b").await, Err(RegistryError::NotFound(_))));
    assert!(matches!(store.delete_model("b").await, Err(RegistryError::NotFound(_))));
    store.delete_version(&a, 1).await.expect("delete");
    assert_eq!(store.desired_states().await.expect("desired"), [("a".to_string(), 5, DesiredState::Unloaded)]);
}

/// A removal of a file that a version being inserted refers to waits for the insert, then keeps the file.
async fn publish_and_remove_exclude_each_other(store: Arc<dyn MetadataStore>, a: &ModelRecord) {
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let (release, release_rx) = tokio::sync::oneshot::channel::<()>();
    let insert = {
        let (store, row) = (store.clone(), row(a, None, &sha(7)));
        tokio::spawn(async move {
            let publish: ArtifactWork<'static> = Box::pin(async move {
                let _ = entered_tx.send(());
                let _ = release_rx.await;
                Ok(())
            });
            store.insert_version(row, publish).await
        })
    };
    entered.await.expect("the publish work started");
    let removed = Arc::new(AtomicBool::new(false));
    let mut remove = {
        let (store, removed) = (store.clone(), removed.clone());
        tokio::spawn(async move { store.remove_artifact_if_unreferenced(&sha(7), work(&removed, Ok(()))).await })
    };
    // While the insert holds the lock, the removal must not get past it (a bounded check, not a wait).
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut remove).await.is_err(), "a removal ran while a publish held the lock");
    release.send(()).expect("release the publish");
    insert.await.expect("insert task").expect("insert");
    let ran = remove.await.expect("remove task").expect("remove");
    assert!(!ran && !removed.load(Ordering::SeqCst), "the removal saw the new version and kept its file");
}

async fn tenants_and_keys(store: &dyn MetadataStore) {
    let limits = Limits { requests_per_second: Some(5.0), ..Limits::default() };
    let globex = store.create_tenant("globex", &limits).await.expect("create tenant");
    assert_eq!(globex.limits, limits);
    assert!(matches!(store.create_tenant("globex", &Limits::default()).await, Err(RegistryError::AlreadyExists(_))));
    assert!(matches!(store.get_tenant("nope").await, Err(RegistryError::ResourceNotFound(_))));
    let names: Vec<String> = store.list_tenants().await.expect("list").into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["acme", "default", "globex"], "the default tenant exists from the start");
    let changed = Limits { monthly_requests: Some(10), ..Limits::default() };
    assert_eq!(store.set_tenant_limits("globex", &changed).await.expect("limits").limits, changed);
    assert!(matches!(store.set_tenant_limits("nope", &changed).await, Err(RegistryError::ResourceNotFound(_))));

    let key = |id: &str, tenant: &str| NewKey {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("{id} key"),
        hash: format!("hash-{id}"),
        scopes: vec![Scope::Infer],
        models: Some(vec!["a".into()]),
        limits: Limits::default(),
        expires_at: Some(4_000_000_000),
    };
    let k1 = store.insert_key(&key("k1", "globex")).await.expect("insert key");
    assert_eq!((k1.hash.as_str(), k1.tenant_limits), ("hash-k1", changed), "a key carries its tenant's limits");
    assert!(matches!(store.insert_key(&key("k1", "globex")).await, Err(RegistryError::AlreadyExists(_))));
    assert!(matches!(store.insert_key(&key("k9", "nope")).await, Err(RegistryError::ResourceNotFound(_))));
    store.insert_key(&key("k2", "acme")).await.expect("insert key");
    assert_eq!(store.get_key("k1").await.expect("get").map(|k| k.models), Some(Some(vec!["a".to_string()])));
    assert!(store.get_key("nope").await.expect("get").is_none());
    assert_eq!(store.list_keys(Some("globex")).await.expect("list").len(), 1);
    assert_eq!(store.list_keys(None).await.expect("list").len(), 2);
    assert_eq!(store.count_keys().await.expect("count"), 2);
    let revoked = store.revoke_key("k1").await.expect("revoke").revoked_at.expect("revoked");
    assert_eq!(store.revoke_key("k1").await.expect("revoke").revoked_at, Some(revoked), "revoking again keeps the first time");
    assert!(matches!(store.revoke_key("nope").await, Err(RegistryError::ResourceNotFound(_))));

    // A tenant that owns models is deleted only with them; its keys and its place in sharing go with it.
    store.create_model(model("owned", "globex")).await.expect("create model");
    let sharing = Sharing { public: false, tenants: vec!["acme".into(), "globex".into()] };
    store.update_model("a", ModelPatch { sharing: Some(sharing), ..ModelPatch::default() }).await.expect("share");
    let error = store.delete_tenant("globex", false).await.expect_err("owns a model");
    assert!(matches!(&error, RegistryError::AlreadyExists(message) if message.contains("owned")), "{error}");
    assert!(store.get_key("k1").await.expect("get").is_some(), "a refused delete changes nothing");
    store.delete_tenant("globex", true).await.expect("delete tenant");
    assert!(matches!(store.get_tenant("globex").await, Err(RegistryError::ResourceNotFound(_))));
    assert!(store.get_key("k1").await.expect("get").is_none());
    assert!(matches!(store.get_model("globex/owned").await, Err(RegistryError::NotFound(_))));
    assert_eq!(store.get_model("a").await.expect("get").sharing.tenants, ["acme"]);
    assert!(matches!(store.delete_tenant("globex", true).await, Err(RegistryError::ResourceNotFound(_))));
}

async fn usage_and_audit(store: &dyn MetadataStore) {
    let day = 86_400_000;
    let event = |at_ms: i64, key: &str, tenant: &str, outcome: &'static str| UsageEvent {
        at_ms,
        tenant: tenant.into(),
        key_id: key.into(),
        model: "a".into(),
        version: 1,
        protocol: "rest",
        outcome,
        input_tokens: 3,
        output_tokens: 4,
        compute_ms: 10,
        cost: 0.5,
        ..UsageEvent::default()
    };
    store.insert_usage(&[]).await.expect("nothing to insert");
    let events = [event(day + 1, "k1", "acme", "ok"), event(day + 2, "k1", "acme", "internal"), event(2 * day, "k2", "default", "ok")];
    store.insert_usage(&events).await.expect("insert usage");
    let query = UsageQuery { from_ms: 0, to_ms: 3 * day, tenant: None, group: UsageGroup::Key };
    let rows = store.usage_report(query).await.expect("report");
    let summary: Vec<(&str, &str, u64, u64, u64)> =
        rows.iter().map(|r| (r.tenant.as_str(), r.group.as_str(), r.requests, r.failed, r.input_tokens)).collect();
    assert_eq!(summary, [("acme", "k1", 2, 1, 6), ("default", "k2", 1, 0, 3)]);
    assert!((rows[0].cost - 1.0).abs() < 1e-9);
    let by_day = store.usage_report(UsageQuery { group: UsageGroup::Day, tenant: Some("acme"), ..query }).await.expect("report");
    assert_eq!(by_day.iter().map(|r| (r.group.as_str(), r.requests)).collect::<Vec<_>>(), [("1970-01-02", 2)]);
    let window = store.usage_report(UsageQuery { from_ms: 2 * day, ..query }).await.expect("report");
    assert_eq!(window.len(), 1, "from is inclusive, events before it are left out");
    let totals = store.usage_totals(UsageSubject::Key("k1"), 0).await.expect("totals");
    assert_eq!((totals.requests, totals.tokens, totals.compute_ms), (2, 14, 20));
    assert_eq!(store.usage_totals(UsageSubject::Tenant("default"), 2 * day + 1).await.expect("totals").requests, 0);
    // Drift baselines: the first stored wins unless replaced.
    let baseline = |text: &str, at: i64| DriftBaselineRecord {
        model: "a".into(),
        version: 1,
        settings: "s1".into(),
        baseline: text.into(),
        updated_at: at,
    };
    assert_eq!(store.get_drift_baseline("a", 1).await.expect("get"), None);
    assert_eq!(store.put_drift_baseline(&baseline("first", 1), false).await.expect("put"), baseline("first", 1));
    assert_eq!(store.put_drift_baseline(&baseline("second", 2), false).await.expect("put"), baseline("first", 1), "the first stays");
    assert_eq!(store.put_drift_baseline(&baseline("third", 3), true).await.expect("put"), baseline("third", 3), "replaced");
    assert_eq!(store.get_drift_baseline("a", 1).await.expect("get"), Some(baseline("third", 3)));
    assert_eq!(store.get_drift_baseline("a", 2).await.expect("get"), None);
    let hourly = store.usage_series("a", 0, 3_600_000).await.expect("series");
    let buckets: Vec<(i64, u64, u64, u64)> = hourly.iter().map(|b| (b.start_ms, b.requests, b.tokens, b.compute_ms)).collect();
    assert_eq!(buckets, [(day, 2, 14, 20), (2 * day, 1, 7, 10)], "summed per hour, empty hours left out");
    assert_eq!(store.usage_series("a", day + 2, 3_600_000).await.expect("series").iter().map(|b| b.requests).sum::<u64>(), 2);
    assert!(store.usage_series("other", 0, 3_600_000).await.expect("series").is_empty());

    for (n, tenant) in ["acme", "default", "acme"].into_iter().enumerate() {
        let entry = AuditEntry {
            at_ms: n as i64,
            key_id: format!("k{n}"),
            tenant: tenant.into(),
            action: "POST /x".into(),
            ..AuditEntry::default()
        };
        store.append_audit(&entry).await.expect("append audit");
    }
    let newest: Vec<String> = store.list_audit(None, 10).await.expect("audit").into_iter().map(|e| e.key_id).collect();
    assert_eq!(newest, ["k2", "k1", "k0"], "newest first");
    assert_eq!(store.list_audit(Some("acme"), 10).await.expect("audit").len(), 2);
    assert_eq!(store.list_audit(None, 1).await.expect("audit").len(), 1);
}
