//! Key records recently read from the database, so that an authenticated request does not query SQLite.
//!
//! Correctness rests on two rules: every change to a key or a tenant's limits made through this process goes
//! through the [`crate::Gate`], which drops the affected entries before it answers (so a revocation is
//! refused on the very next request); and an entry is used for at most `ttl`, which bounds how long a change
//! made by another process sharing the database goes unseen. The presented secret is verified against the
//! cached hash on every request, and expiry is checked against the clock, so neither is cached.
//! A lookup that read the database before an invalidation does not store its (possibly stale) answer: a
//! generation counter, bumped by every invalidation, must be unchanged between the read and the store.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use yunmo_registry::KeyRecord;

use crate::Principal;

/// Most keys held; past it the cache is emptied (a crude but bounded policy: keys are few and created by
/// admins, and an entry costs one database read to refill).
const MAX_ENTRIES: usize = 100_000;

pub(crate) struct KeyCache {
    ttl: Duration,
    /// Keep entries even with a zero `ttl`, for [`KeyCache::stale`] (answers while the database is down).
    keep: bool,
    /// `None`: the database has no key with this id. Unknown ids are answered from here too, so that a
    /// made-up id costs no database read (no timing signal, no cheap load on the database).
    entries: RwLock<HashMap<String, Entry>>,
    generation: AtomicU64,
}

/// A key id's answer (`None`: no such key) and when it was read.
type Entry = (Option<Arc<KnownKey>>, Instant);

/// What the cache knows of a key id.
pub(crate) enum Cached {
    /// Nothing fresh: read the database.
    Miss,
    /// No such key.
    Unknown,
    /// The key's record.
    Known(Arc<KnownKey>),
}

/// A key read from the database, with the caller it stands for (built once, shared by its requests).
pub(crate) struct KnownKey {
    pub(crate) record: KeyRecord,
    pub(crate) principal: Arc<Principal>,
}

impl KnownKey {
    pub(crate) fn new(record: KeyRecord) -> KnownKey {
        KnownKey { principal: Arc::new(Principal::from_key(record.clone())), record }
    }
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration, keep: bool) -> KeyCache {
        KeyCache { ttl, keep, entries: RwLock::new(HashMap::new()), generation: AtomicU64::new(0) }
    }

    /// What is cached of key `id`, if fresh.
    pub(crate) fn get(&self, id: &str) -> Cached {
        if self.ttl.is_zero() {
            return Cached::Miss;
        }
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match entries.get(id) {
            Some((record, fetched)) if fetched.elapsed() < self.ttl => match record {
                Some(known) => Cached::Known(known.clone()),
                None => Cached::Unknown,
            },
            _ => Cached::Miss,
        }
    }

    /// What was cached of key `id` less than `max_age` ago, fresh or not: for when the database cannot be
    /// reached. An unknown id is not answered from here (it is refused either way).
    pub(crate) fn stale(&self, id: &str, max_age: Duration) -> Option<Arc<KnownKey>> {
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(id).filter(|(_, fetched)| fetched.elapsed() < max_age).and_then(|(known, _)| known.clone())
    }

    /// The generation to pass to [`KeyCache::insert`] for a read that starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores what the database said of key `id` (`None`: no such key), unless an invalidation happened
    /// since `generation`.
    pub(crate) fn insert(&self, id: &str, known: Option<Arc<KnownKey>>, generation: u64) {
        if self.ttl.is_zero() && !self.keep {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id.to_string(), (known, Instant::now()));
    }

    /// Makes every entry `by` older (tests of the TTL, without waiting for it).
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, fetched) in entries.values_mut() {
            *fetched = fetched.checked_sub(by).expect("the monotonic clock started long enough ago");
        }
    }

    /// Drops one key.
    pub(crate) fn forget(&self, id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(id);
    }

    /// Drops every key (a tenant's limits changed: they are part of each of its keys' records).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}
