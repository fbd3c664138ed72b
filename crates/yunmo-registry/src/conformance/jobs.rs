//! The contract of the job and dataset-file store ([`JobStore`], which every [`MetadataStore`] is).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::RegistryError;
use crate::jobs::{FileRecord, JobEnd, JobEvent, JobFilter, JobRecord, JobStatus, NewJob};
use crate::metadata::{ArtifactWork, MetadataStore};

fn new_job(id: &str, tenant: &str, created_at: i64) -> NewJob {
    NewJob {
        id: id.into(),
        tenant: tenant.into(),
        kind: "fine_tune".into(),
        model: "base".into(),
        params: "{\"epochs\":3}".into(),
        training_file: Some("file-1".into()),
        parent_version: Some(2),
        created_at,
    }
}

fn job_ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|job| job.id.as_str()).collect()
}

fn sequence_numbers(events: &[JobEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

fn dataset_file(id: &str, tenant: &str, created_at: i64, sha256: &str) -> FileRecord {
    FileRecord {
        id: id.into(),
        tenant: tenant.into(),
        filename: format!("{id}.jsonl"),
        purpose: "fine-tune".into(),
        bytes: 1 << 40,
        sha256: sha256.into(),
        rows: 12_345,
        columns: "[\"text\",\"label\"]".into(),
        created_at,
    }
}

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// Removal work that records that it ran.
fn removal(ran: &Arc<AtomicBool>) -> ArtifactWork<'static> {
    let ran = ran.clone();
    Box::pin(async move {
        ran.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// Checks `store` (new and empty, at its newest schema) against the [`JobStore`] contract.
pub async fn jobs(store: Arc<dyn MetadataStore>) {
    records(store.as_ref()).await;
    claims_and_leases(store.as_ref()).await;
    cancellation(store.as_ref()).await;
    events(store.as_ref()).await;
    files(store.as_ref()).await;
    concurrent_claims(store).await;
}

async fn records(store: &dyn MetadataStore) {
    assert!(store.claim_job("w0", 0, 1).await.expect("claim").is_none(), "nothing to claim in an empty store");
    let inserted = store.insert_job(&new_job("j1", "acme", 100)).await.expect("insert job");
    let expected = JobRecord {
        id: "j1".into(),
        tenant: "acme".into(),
        kind: "fine_tune".into(),
        model: "base".into(),
        params: "{\"epochs\":3}".into(),
        training_file: Some("file-1".into()),
        parent_version: Some(2),
        status: JobStatus::Queued,
        progress: 0.0,
        result_version: None,
        metrics: "{}".into(),
        error: None,
        cancel_requested: false,
        attempts: 0,
        lease_owner: None,
        lease_until: None,
        created_at: 100,
        started_at: None,
        finished_at: None,
    };
    assert_eq!(inserted, expected);
    assert_eq!(store.get_job("j1").await.expect("get job"), Some(expected));
    assert_eq!(store.get_job("nope").await.expect("get job"), None);
    let error = store.insert_job(&new_job("j1", "globex", 150)).await.expect_err("a taken id");
    assert!(matches!(error, RegistryError::AlreadyExists(_)), "{error}");
    let plain = NewJob { training_file: None, parent_version: None, ..new_job("j2", "globex", 200) };
    let inserted = store.insert_job(&plain).await.expect("insert job");
    assert_eq!((inserted.training_file, inserted.parent_version), (None, None));
    store.insert_job(&new_job("j3", "acme", 300)).await.expect("insert job");
    store.insert_job(&new_job("j4", "acme", 300)).await.expect("insert job");

    let all = store.list_jobs(JobFilter::default()).await.expect("list jobs");
    assert_eq!(job_ids(&all), ["j4", "j3", "j2", "j1"], "newest first, then by id, descending");
    let acme = store.list_jobs(JobFilter { tenant: Some("acme"), ..JobFilter::default() }).await.expect("list jobs");
    assert_eq!(job_ids(&acme), ["j4", "j3", "j1"]);
    let queued = store.list_jobs(JobFilter { status: Some(JobStatus::Queued), ..JobFilter::default() }).await.expect("list jobs");
    assert_eq!(queued.len(), 4);
    let running = store.list_jobs(JobFilter { status: Some(JobStatus::Running), ..JobFilter::default() }).await.expect("list jobs");
    assert!(running.is_empty());
    let limited = store.list_jobs(JobFilter { limit: 2, ..JobFilter::default() }).await.expect("list jobs");
    assert_eq!(job_ids(&limited), ["j4", "j3"]);
    let both = JobFilter { tenant: Some("globex"), status: Some(JobStatus::Queued), limit: 0 };
    assert_eq!(job_ids(&store.list_jobs(both).await.expect("list jobs")), ["j2"]);
}

async fn claims_and_leases(store: &dyn MetadataStore) {
    // The oldest first (by creation, then id); a claim counts an attempt and sets when the job started.
    let j1 = store.claim_job("w1", 1000, 2000).await.expect("claim").expect("a queued job");
    assert_eq!((j1.id.as_str(), j1.status, j1.attempts), ("j1", JobStatus::Running, 1));
    assert_eq!((j1.lease_owner.as_deref(), j1.lease_until, j1.started_at), (Some("w1"), Some(2000), Some(1000)));
    let mut order = Vec::new();
    for owner in ["w1", "w2", "w2"] {
        order.push(store.claim_job(owner, 1000, 2000).await.expect("claim").expect("a queued job").id);
    }
    assert_eq!(order, ["j2", "j3", "j4"]);
    assert!(store.claim_job("w3", 1000, 2000).await.expect("claim").is_none(), "every job is held");
    let running = store.list_jobs(JobFilter { status: Some(JobStatus::Running), ..JobFilter::default() }).await.expect("list jobs");
    assert_eq!(running.len(), 4);

    // Only the holder renews: progress and lease.
    let renewed = store.renew_job("j1", "w1", 0.5, 3000).await.expect("renew").expect("w1 holds j1");
    assert_eq!((renewed.progress, renewed.lease_until, renewed.cancel_requested), (0.5, Some(3000), false));
    assert!(store.renew_job("j1", "w2", 0.9, 9000).await.expect("renew").is_none(), "w2 does not hold j1");
    assert_eq!(store.get_job("j1").await.expect("get job").expect("j1").progress, 0.5);

    // A lease that ended is taken by the next claim, as another attempt; its old holder can then neither
    // renew nor end the job.
    let retaken = store.claim_job("w3", 2500, 4000).await.expect("claim").expect("an ended lease");
    assert_eq!((retaken.id.as_str(), retaken.attempts, retaken.lease_owner.as_deref()), ("j2", 2, Some("w3")));
    assert_eq!(retaken.started_at, Some(1000), "started when first claimed");
    assert!(store.renew_job("j2", "w1", 0.7, 5000).await.expect("renew").is_none(), "w1 lost its lease");
    assert!(!store.finish_job("j2", "w1", &JobEnd::Cancelled, 2600).await.expect("finish"), "w1 lost its lease");
    assert_eq!(store.get_job("j2").await.expect("get job"), Some(retaken), "the old holder changed nothing");
    for expected in ["j3", "j4"] {
        let job = store.claim_job("w3", 2500, 4000).await.expect("claim").expect("an ended lease");
        assert_eq!((job.id.as_str(), job.attempts), (expected, 2));
    }
    assert!(store.claim_job("w4", 2500, 4000).await.expect("claim").is_none(), "j1's lease runs until 3000");

    // A job handed back (the server stops) is claimed at once by the next worker, the run not counted.
    assert!(!store.release_job("j4", "w1").await.expect("release"), "w1 does not hold j4");
    assert!(store.release_job("j4", "w3").await.expect("release"));
    let again = store.claim_job("w3", 2500, 4000).await.expect("claim").expect("a handed-back job");
    assert_eq!((again.id.as_str(), again.attempts, again.lease_owner.as_deref()), ("j4", 2, Some("w3")));

    // Each end stores what it has and clears the lease; an ended job is held by no one and never claimed.
    let succeeded = JobEnd::Succeeded { result_version: Some(7), metrics: "{\"loss\":0.25}".into() };
    assert!(store.finish_job("j1", "w1", &succeeded, 2600).await.expect("finish"));
    let j1 = store.get_job("j1").await.expect("get job").expect("j1");
    assert_eq!((j1.status, j1.progress, j1.result_version), (JobStatus::Succeeded, 1.0, Some(7)));
    assert_eq!((j1.metrics.as_str(), j1.error.as_deref(), j1.finished_at), ("{\"loss\":0.25}", None, Some(2600)));
    assert_eq!((j1.lease_owner.as_deref(), j1.lease_until), (None, None));
    assert!(!store.finish_job("j1", "w1", &succeeded, 2700).await.expect("finish"), "an ended job is held by no one");

    let failed = JobEnd::Failed { error: "out of memory".into() };
    assert!(store.finish_job("j2", "w3", &failed, 2700).await.expect("finish"));
    let j2 = store.get_job("j2").await.expect("get job").expect("j2");
    assert_eq!((j2.status, j2.error.as_deref(), j2.result_version), (JobStatus::Failed, Some("out of memory"), None));
    assert_eq!((j2.metrics.as_str(), j2.progress, j2.finished_at, j2.lease_owner.as_deref()), ("{}", 0.0, Some(2700), None));

    assert!(store.finish_job("j3", "w3", &JobEnd::Cancelled, 2800).await.expect("finish"));
    let j3 = store.get_job("j3").await.expect("get job").expect("j3");
    assert_eq!((j3.status, j3.finished_at, j3.error.as_deref(), j3.lease_owner.as_deref()), (JobStatus::Cancelled, Some(2800), None, None));

    let without_version = JobEnd::Succeeded { result_version: None, metrics: "{}".into() };
    assert!(store.finish_job("j4", "w3", &without_version, 2900).await.expect("finish"));
    let j4 = store.get_job("j4").await.expect("get job").expect("j4");
    assert_eq!((j4.status, j4.result_version, j4.progress), (JobStatus::Succeeded, None, 1.0));
    assert!(store.claim_job("w4", 1_000_000, 2_000_000).await.expect("claim").is_none(), "ended jobs are never claimed");
    let ended = store.list_jobs(JobFilter::default()).await.expect("list jobs");
    assert!(ended.iter().all(|job| job.status.is_final()), "{ended:?}");
}

async fn cancellation(store: &dyn MetadataStore) {
    // A queued job is cancelled at once, and never claimed.
    store.insert_job(&new_job("c1", "acme", 10_000)).await.expect("insert job");
    let c1 = store.cancel_job("c1", 10_100).await.expect("cancel");
    assert_eq!((c1.status, c1.finished_at, c1.cancel_requested), (JobStatus::Cancelled, Some(10_100), false));
    assert!(store.claim_job("w5", 10_200, 10_300).await.expect("claim").is_none(), "a cancelled job is not claimable");

    // A running job is asked to stop: its worker learns it when it renews, and ends the job.
    store.insert_job(&new_job("c2", "acme", 10_001)).await.expect("insert job");
    assert_eq!(store.claim_job("w5", 10_200, 10_400).await.expect("claim").expect("a queued job").id, "c2");
    let asked = store.cancel_job("c2", 10_250).await.expect("cancel");
    assert_eq!((asked.status, asked.cancel_requested, asked.finished_at), (JobStatus::Running, true, None));
    let renewed = store.renew_job("c2", "w5", 0.3, 10_400).await.expect("renew").expect("w5 still holds c2");
    assert!(renewed.cancel_requested, "the worker learns of the cancellation when it renews");
    assert!(store.finish_job("c2", "w5", &JobEnd::Cancelled, 10_300).await.expect("finish"));
    assert_eq!(store.get_job("c2").await.expect("get job").expect("c2").status, JobStatus::Cancelled);

    // When its worker is gone, the first claim after the lease ends the job as cancelled instead of taking it.
    store.insert_job(&new_job("c3", "acme", 10_002)).await.expect("insert job");
    assert_eq!(store.claim_job("w6", 10_500, 10_600).await.expect("claim").expect("a queued job").id, "c3");
    store.cancel_job("c3", 10_550).await.expect("cancel");
    assert!(store.claim_job("w7", 10_590, 11_000).await.expect("claim").is_none(), "nothing else to claim");
    assert_eq!(store.get_job("c3").await.expect("get job").expect("c3").status, JobStatus::Running, "held until the lease ends");
    assert!(store.claim_job("w7", 10_700, 11_000).await.expect("claim").is_none(), "a job asked to stop is not taken");
    let c3 = store.get_job("c3").await.expect("get job").expect("c3");
    assert_eq!((c3.status, c3.finished_at, c3.attempts), (JobStatus::Cancelled, Some(10_700), 1));
    assert_eq!((c3.lease_owner.as_deref(), c3.lease_until), (None, None));
    assert!(!store.finish_job("c3", "w6", &JobEnd::Cancelled, 10_800).await.expect("finish"), "w6 lost its lease");

    // An ended job stays as it is; a missing one is not found.
    let before = store.get_job("j1").await.expect("get job").expect("j1");
    assert_eq!(store.cancel_job("j1", 10_900).await.expect("cancel"), before);
    assert_eq!(store.cancel_job("c1", 10_900).await.expect("cancel"), c1);
    let error = store.cancel_job("nope", 10_900).await.expect_err("no such job");
    assert!(matches!(error, RegistryError::ResourceNotFound(_)), "{error}");
}

async fn events(store: &dyn MetadataStore) {
    let first = store.append_job_event("j1", 1, "info", "started", "").await.expect("append event");
    let second = store.append_job_event("j1", 2, "info", "step", "{\"step\":1}").await.expect("append event");
    let other = store.append_job_event("j2", 3, "error", "failed", "").await.expect("append event");
    let third = store.append_job_event("j1", 4, "warning", "slow", "").await.expect("append event");
    assert!(first < second && second < other && other < third, "one increasing sequence: {first} {second} {other} {third}");

    let all = store.job_events("j1", 0, 0).await.expect("job events");
    assert_eq!(sequence_numbers(&all), [first, second, third]);
    let step = JobEvent { job: "j1".into(), seq: second, at: 2, level: "info".into(), message: "step".into(), data: "{\"step\":1}".into() };
    assert_eq!(all[1], step);
    assert_eq!(all[0].data, "", "no data is stored as empty");
    assert_eq!(sequence_numbers(&store.job_events("j1", first, 0).await.expect("job events")), [second, third]);
    assert_eq!(sequence_numbers(&store.job_events("j1", 0, 2).await.expect("job events")), [first, second]);
    assert!(store.job_events("j1", third, 0).await.expect("job events").is_empty());
    assert_eq!(sequence_numbers(&store.job_events("j2", 0, 0).await.expect("job events")), [other]);
    assert!(store.job_events("nope", 0, 0).await.expect("job events").is_empty());
}

async fn files(store: &dyn MetadataStore) {
    let f1 = dataset_file("f1", "acme", 100, &sha(0xa1));
    assert_eq!(store.insert_file(&f1).await.expect("insert file"), f1);
    let f2 = dataset_file("f2", "globex", 200, &sha(0xa2));
    store.insert_file(&f2).await.expect("insert file");
    // The same content as f1, uploaded again.
    store.insert_file(&dataset_file("f3", "acme", 300, &sha(0xa1))).await.expect("insert file");
    let error = store.insert_file(&dataset_file("f1", "globex", 400, &sha(0xa3))).await.expect_err("a taken id");
    assert!(matches!(error, RegistryError::AlreadyExists(_)), "{error}");
    assert_eq!(store.get_file("f1").await.expect("get file"), Some(f1.clone()));
    assert_eq!(store.get_file("nope").await.expect("get file"), None);
    let file_ids = |files: Vec<FileRecord>| files.into_iter().map(|file| file.id).collect::<Vec<_>>();
    assert_eq!(file_ids(store.list_files(None).await.expect("list files")), ["f3", "f2", "f1"], "newest first");
    assert_eq!(file_ids(store.list_files(Some("acme")).await.expect("list files")), ["f3", "f1"]);

    // A dataset file's content is kept by the sweep while a file row refers to it.
    let referenced = store.referenced_artifacts().await.expect("referenced artifacts");
    assert!(referenced.contains(&sha(0xa1)) && referenced.contains(&sha(0xa2)), "dataset files are referenced: {referenced:?}");
    let removed = Arc::new(AtomicBool::new(false));
    assert!(!store.remove_artifact_if_unreferenced(&sha(0xa2), removal(&removed)).await.expect("remove"));
    assert!(!removed.load(Ordering::SeqCst), "a dataset file's content is kept");

    assert_eq!(store.delete_file("f2").await.expect("delete file"), f2);
    assert_eq!(store.get_file("f2").await.expect("get file"), None);
    let error = store.delete_file("f2").await.expect_err("already deleted");
    assert!(matches!(error, RegistryError::ResourceNotFound(_)), "{error}");
    assert!(!store.referenced_artifacts().await.expect("referenced artifacts").contains(&sha(0xa2)), "no row refers to it");
    assert!(store.remove_artifact_if_unreferenced(&sha(0xa2), removal(&removed)).await.expect("remove"));
    assert!(removed.load(Ordering::SeqCst), "content no row refers to is removed");
    // Content that two files share stays while either refers to it.
    assert_eq!(store.delete_file("f1").await.expect("delete file"), f1);
    assert!(store.referenced_artifacts().await.expect("referenced artifacts").contains(&sha(0xa1)), "f3 still refers to it");
}

/// Claims racing on a few queued jobs take each exactly once.
async fn concurrent_claims(store: Arc<dyn MetadataStore>) {
    for (n, id) in ["q1", "q2", "q3"].into_iter().enumerate() {
        store.insert_job(&new_job(id, "acme", 20_000 + n as i64)).await.expect("insert job");
    }
    let claims = (0..8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_job(&format!("racer{n}"), 20_100, 30_000).await })
    });
    let mut taken = Vec::new();
    for claim in futures::future::join_all(claims).await {
        if let Some(job) = claim.expect("claim task").expect("claim") {
            taken.push(job.id);
        }
    }
    taken.sort();
    assert_eq!(taken, ["q1", "q2", "q3"], "each job is taken exactly once");
    assert!(store.claim_job("late", 20_100, 30_000).await.expect("claim").is_none(), "all three are held");
}
