//! The same rules in both stores: every test runs on the in-memory store and on a real Redis.

use super::*;

/// What a limiter under test needs kept alive.
struct Held {
    _dir: tempfile::TempDir,
    _redis: Option<yunmo_testkit::Redis>,
    registry: Registry,
}

fn redis_store(redis: &yunmo_testkit::Redis, on_failure: OnFailure) -> LimitStore {
    LimitStore::Redis(RedisLimits { url: redis.url(), timeout: Duration::from_millis(500), on_failure })
}

/// A local limiter and a Redis one, each on its own database.
async fn limiters() -> Vec<(&'static str, Limiter, Held)> {
    let mut made = Vec::new();
    for name in ["local", "redis"] {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
        let redis = (name == "redis").then(yunmo_testkit::Redis::start);
        let store = redis.as_ref().map_or(LimitStore::Local, |redis| redis_store(redis, OnFailure::Deny));
        made.push((name, Limiter::new(registry.clone(), &store).unwrap(), Held { _dir: dir, _redis: redis, registry }));
    }
    made
}

fn principal(key: Limits, tenant: Limits) -> Principal {
    Principal { key_limits: key, tenant_limits: tenant, ..Principal::local() }
}

/// Admits until refused (charges to Redis land a moment after the request ends), at most 3 s.
async fn refused_soon(limiter: &Limiter, caller: &Principal) -> ServiceError {
    for _ in 0..300 {
        match limiter.admit(caller).await {
            Err(error) => return error,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("still admitted after 3 s");
}

#[tokio::test]
async fn burst_then_refusal_with_retry_after() {
    for (name, limiter, _held) in limiters().await {
        let caller = principal(Limits { requests_per_second: Some(0.5), requests_burst: Some(3), ..Limits::default() }, Limits::default());
        for _ in 0..3 {
            limiter.admit(&caller).await.unwrap();
        }
        let error = limiter.admit(&caller).await.unwrap_err();
        assert_eq!(error.code, Code::RateLimited, "{name}");
        assert!(error.message.contains("requests_per_second") && error.message.contains("burst 3"), "{name}: {}", error.message);
        assert_eq!(error.retry_after, Some(2), "{name}");
    }
}

#[tokio::test]
async fn tenant_quota_counts_every_key_and_names_the_reset() {
    for (name, limiter, _held) in limiters().await {
        let tenant = Limits { monthly_requests: Some(2), ..Limits::default() };
        let a = Principal { key_id: "a".into(), ..principal(Limits::default(), tenant) };
        let b = Principal { key_id: "b".into(), ..principal(Limits::default(), tenant) };
        limiter.admit(&a).await.unwrap();
        limiter.admit(&b).await.unwrap();
        let error = limiter.admit(&a).await.unwrap_err();
        assert_eq!(error.code, Code::QuotaExceeded, "{name}");
        assert!(error.message.contains("monthly_requests") && error.message.contains("resets at"), "{name}: {}", error.message);
    }
}

#[tokio::test]
async fn tokens_are_charged_when_a_request_ends() {
    for (name, limiter, _held) in limiters().await {
        let caller = principal(Limits { tokens_per_minute: Some(100), monthly_tokens: Some(150), ..Limits::default() }, Limits::default());
        let admission = limiter.admit(&caller).await.unwrap();
        limiter.charge(&admission, 120, 5);
        let error = refused_soon(&limiter, &caller).await;
        assert_eq!(error.code, Code::RateLimited, "{name}: {}", error.message);
        assert!(error.message.contains("tokens_per_minute limit of 100"), "{name}: {}", error.message);
    }
}

#[tokio::test]
async fn monthly_counters_start_from_the_databases_usage_totals() {
    for (name, limiter, held) in limiters().await {
        let event = yunmo_registry::UsageEvent {
            at_ms: calendar::now_ms(),
            tenant: "default".into(),
            key_id: "k".into(),
            protocol: "kserve",
            outcome: "ok",
            ..yunmo_registry::UsageEvent::default()
        };
        held.registry.insert_usage(&[event.clone(), event.clone(), event]).await.unwrap();
        let caller =
            Principal { key_id: "k".into(), ..principal(Limits { monthly_requests: Some(4), ..Limits::default() }, Limits::default()) };
        limiter.admit(&caller).await.unwrap();
        let error = limiter.admit(&caller).await.unwrap_err();
        assert_eq!(error.code, Code::QuotaExceeded, "{name}: 3 recorded + 1 admitted = 4");
        assert!(error.message.contains("(4 used)"), "{name}: {}", error.message);
    }
}

#[tokio::test]
async fn replicas_sharing_redis_share_one_limit_and_a_lost_counter_is_read_again() {
    let redis = yunmo_testkit::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
    let replicas: Vec<Limiter> = (0..3).map(|_| Limiter::new(registry.clone(), &redis_store(&redis, OnFailure::Deny)).unwrap()).collect();
    let caller = principal(Limits::default(), Limits { requests_per_second: Some(0.01), requests_burst: Some(5), ..Limits::default() });
    let mut admitted = 0;
    for _ in 0..4 {
        for replica in &replicas {
            admitted += usize::from(replica.admit(&caller).await.is_ok());
        }
    }
    assert_eq!(admitted, 5, "a burst of 5 across three replicas, not 5 each");

    // A monthly quota of 7 with 5 requests already in the database: 2 more across the replicas.
    let event = yunmo_registry::UsageEvent {
        at_ms: calendar::now_ms(),
        tenant: "quota".into(),
        key_id: "q".into(),
        protocol: "kserve",
        outcome: "ok",
        ..yunmo_registry::UsageEvent::default()
    };
    registry.insert_usage(&vec![event; 5]).await.unwrap();
    let quota = Principal {
        tenant: "quota".into(),
        key_id: "q".into(),
        ..principal(Limits::default(), Limits { monthly_requests: Some(7), ..Limits::default() })
    };
    let count = async || {
        let mut admitted = 0;
        for replica in &replicas {
            for _ in 0..2 {
                admitted += usize::from(replica.admit(&quota).await.is_ok());
            }
        }
        admitted
    };
    assert_eq!(count().await, 2, "5 recorded + 2 admitted = the quota of 7");

    // Redis loses everything: the quota counter is read from the database again (still 5 there: these
    // admissions were never metered), and the bucket starts full.
    let mut redis = redis;
    redis.pause();
    redis.resume();
    assert_eq!(count().await, 2, "after Redis restarted empty, the counter starts again from the database's 5");
    let mut admitted = 0;
    for replica in &replicas {
        for _ in 0..3 {
            admitted += usize::from(replica.admit(&caller).await.is_ok());
        }
    }
    assert_eq!(admitted, 5, "after Redis restarted empty, the burst holds across replicas again");
}

#[tokio::test]
async fn a_store_that_is_down_denies_or_allows_as_configured_and_recovers() {
    let mut redis = yunmo_testkit::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
    let deny = Limiter::new(registry.clone(), &redis_store(&redis, OnFailure::Deny)).unwrap();
    let allow = Limiter::new(registry, &redis_store(&redis, OnFailure::Allow)).unwrap();
    let caller = principal(Limits { requests_per_second: Some(1000.0), ..Limits::default() }, Limits::default());
    deny.admit(&caller).await.unwrap();
    allow.admit(&caller).await.unwrap();
    redis.pause();
    let error = deny.admit(&caller).await.unwrap_err();
    assert_eq!(error.code, Code::Unavailable);
    assert_eq!(error.retry_after, Some(1));
    assert!(error.message.contains("on_store_failure"), "{}", error.message);
    allow.admit(&caller).await.expect("allow admits while the store is down");
    redis.resume();
    let mut recovered = false;
    for _ in 0..50 {
        if deny.admit(&caller).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the limiter reconnects to Redis without a restart");
}

#[tokio::test]
async fn a_malformed_redis_url_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
    let store = LimitStore::Redis(RedisLimits {
        url: "http://:hunter2@nowhere".into(),
        timeout: Duration::from_secs(1),
        on_failure: OnFailure::Deny,
    });
    let Err(error) = Limiter::new(registry, &store) else { panic!("accepted a URL that is not redis://") };
    assert!(error.message.contains("limits.redis_url") && !error.message.contains("hunter2"), "{}", error.message);
}

#[tokio::test]
async fn a_token_debt_in_redis_outlives_two_idle_minutes() {
    let redis = yunmo_testkit::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
    let limiter = Limiter::new(registry, &redis_store(&redis, OnFailure::Deny)).unwrap();
    let caller =
        Principal { key_id: "debt".into(), ..principal(Limits { tokens_per_minute: Some(1000), ..Limits::default() }, Limits::default()) };
    let admission = limiter.admit(&caller).await.unwrap();
    limiter.charge(&admission, 10_000, 0);
    refused_soon(&limiter, &caller).await;
    // 9,000 tokens in debt refill in 9 minutes at 1,000 a minute: the bucket must live that long, or an
    // idle caller would come back to a full bucket after two minutes.
    let mut connection = ::redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let ttl_ms: i64 = ::redis::cmd("PTTL").arg("yunmo:{limits}:k:debt:tok").query_async(&mut connection).await.unwrap();
    assert!(ttl_ms > 9 * 60 * 1000, "the token bucket expires in {ttl_ms} ms");
}
