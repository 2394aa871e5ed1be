//! A bounded cache of whole encoded answers, so that a question asked again of the same
//! model version costs a lookup instead of a search, explanations and JSON encoding.
//!
//! Only the common question is cached: one known user's `/predict` or `/recommend` with
//! `k` and no filters. The answer to that depends on nothing but the model version, the
//! route, the handle, `k` and the deployment's disclosure (fixed for a process), so an
//! entry is exact, never stale: entries are kept per model version and every entry of a
//! shard is dropped once an answer of another version is stored in it. Errors are not
//! cached. The cache holds nothing the model does not: answers are derived from it and
//! served only to callers that passed the same checks (keys, rate) as any other request.
//!
//! Memory is bounded by a byte budget split across shards. Each shard keeps two
//! generations: new answers go into the young one; when it is full it becomes the old
//! one (the previous old one is dropped) and a hit in the old generation moves the
//! answer back into the young one. Answers asked for again survive; the rest age out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;

use super::request::{Ask, Filters, Query, Subject};
use super::settings::Disclosure;

/// Default budget of the answer cache (MiB).
pub const DEFAULT_ANSWER_CACHE_MB: u64 = 64;

/// Bytes counted per entry on top of its answer: the map's slot with its spare capacity,
/// the `Bytes` handle and the allocator's own overhead (an estimate: about 100 to 170).
const ENTRY_OVERHEAD: usize = 160;

/// Shards: locks held for a lookup are independent across them.
const SHARDS: usize = 16;

/// A question whose answer may be cached: one user's handle on a route, with `k`, at a
/// disclosure level (fixed for a router, but part of the key so that no two routers
/// sharing a cache can ever see each other's answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    route: Ask,
    handle: u64,
    k: u32,
    disclosure: Disclosure,
}

impl AnswerKey {
    /// The key of `query` on `route`, answered at `disclosure`, when its answer may be
    /// cached: one handle, no filters.
    pub fn of(route: Ask, query: &Query, disclosure: Disclosure) -> Option<AnswerKey> {
        match query.subject {
            Subject::Handle(handle) if query.filters == Filters::default() => Some(AnswerKey {
                route,
                handle,
                k: query.k,
                disclosure,
            }),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Shard {
    /// The model version every entry of this shard answers for.
    version: String,
    young: HashMap<AnswerKey, Bytes>,
    old: HashMap<AnswerKey, Bytes>,
    young_bytes: usize,
    old_bytes: usize,
}

impl Shard {
    fn clear(&mut self, version: &str) {
        self.version.clear();
        self.version.push_str(version);
        self.young = HashMap::new();
        self.old = HashMap::new();
        self.young_bytes = 0;
        self.old_bytes = 0;
    }

    /// Adds an entry to the young generation, aging it first when the entry would not
    /// fit in `half` bytes.
    fn put(&mut self, key: AnswerKey, body: Bytes, half: usize) {
        let cost = body.len() + ENTRY_OVERHEAD;
        if self.young_bytes + cost > half {
            self.old = std::mem::take(&mut self.young);
            self.old_bytes = std::mem::take(&mut self.young_bytes);
        }
        if let Some(previous) = self.young.insert(key, body) {
            self.young_bytes -= previous.len() + ENTRY_OVERHEAD;
        }
        self.young_bytes += cost;
    }
}

/// Counters of an [`AnswerCache`], for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerCacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Cacheable questions not found in the cache (answered from the model, or an error
    /// such as an unknown user).
    pub misses: u64,
    /// Bytes the cache holds now, entry overheads included.
    pub bytes: u64,
    /// The cache's budget in bytes (0: off).
    pub budget: u64,
}

/// Whether a cacheable question was answered from the [`AnswerCache`]: set as an
/// extension of its response, so the request's metrics can count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Answered with stored bytes.
    Hit,
    /// Not found: answered from the model (or an error, such as an unknown user).
    Miss,
}

/// Encoded answers by model version, route, handle and `k`, within a byte budget.
pub struct AnswerCache {
    shards: Box<[Mutex<Shard>]>,
    /// Bytes each generation of a shard may hold (half a shard's share of the budget).
    half: usize,
    budget: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("budget", &self.budget)
            .finish()
    }
}

impl Default for AnswerCache {
    /// A cache of [`DEFAULT_ANSWER_CACHE_MB`].
    fn default() -> Self {
        AnswerCache::with_budget(DEFAULT_ANSWER_CACHE_MB << 20)
    }
}

impl AnswerCache {
    /// A cache holding at most about `budget` bytes of answers; 0 turns it off.
    pub fn with_budget(budget: u64) -> Self {
        let half = usize::try_from(budget / (2 * SHARDS as u64)).unwrap_or(usize::MAX);
        AnswerCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            half,
            budget,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether answers are cached at all.
    pub fn is_on(&self) -> bool {
        self.half > 0
    }

    fn shard(&self, key: &AnswerKey) -> std::sync::MutexGuard<'_, Shard> {
        // Fibonacci hashing of handle and k: neighbouring handles land in different shards.
        let mixed = (key.handle ^ (u64::from(key.k) << 48)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let i = (mixed >> 60) as usize % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer stored for this question of model `version`, counted as a hit or a miss.
    pub fn get(&self, version: &str, key: AnswerKey) -> Option<Bytes> {
        if !self.is_on() {
            return None;
        }
        let found = {
            let mut shard = self.shard(&key);
            if shard.version != version {
                None
            } else if let Some(body) = shard.young.get(&key) {
                Some(body.clone())
            } else if let Some(body) = shard.old.remove(&key) {
                shard.old_bytes -= body.len() + ENTRY_OVERHEAD;
                let half = self.half;
                shard.put(key, body.clone(), half);
                Some(body)
            } else {
                None
            }
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores a copy of `body`, the answer to this question of model `version`. Entries of
    /// other versions in the same shard are dropped; an answer larger than a shard's
    /// generation is not kept.
    pub fn put(&self, version: &str, key: AnswerKey, body: &[u8]) {
        if !self.is_on() || body.len() + ENTRY_OVERHEAD > self.half {
            return;
        }
        // A copy of exactly its length: an encoder's buffer has grown past it, and the
        // budget counts the length.
        let body = Bytes::copy_from_slice(body);
        let mut shard = self.shard(&key);
        if shard.version != version {
            shard.clear(version);
        }
        let half = self.half;
        shard.put(key, body, half);
    }

    /// Hits, misses, bytes held and the budget.
    pub fn stats(&self) -> AnswerCacheStats {
        let bytes = self
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                (s.young_bytes + s.old_bytes) as u64
            })
            .sum();
        AnswerCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes,
            budget: self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: Ask, handle: u64, k: u32) -> AnswerKey {
        AnswerKey {
            route,
            handle,
            k,
            disclosure: Disclosure::Reasons,
        }
    }

    fn body(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn only_one_handle_without_filters_is_cacheable() {
        let q = |body: &str| {
            super::super::request::parse_for(
                Ask::Predict,
                &axum::http::HeaderMap::new(),
                body.as_bytes(),
            )
            .unwrap()
        };
        let of = |route, body: &str| AnswerKey::of(route, &q(body), Disclosure::Reasons);
        assert_eq!(
            of(Ask::Predict, r#"{"user_handle": 3, "k": 5}"#),
            Some(key(Ask::Predict, 3, 5))
        );
        assert_eq!(
            of(Ask::Recommend, r#"{"user_handle": "3"}"#),
            Some(key(Ask::Recommend, 3, 10))
        );
        assert_eq!(
            of(Ask::Predict, r#"{"user_handle": 3, "exclude": [4]}"#),
            None
        );
        assert_eq!(
            of(Ask::Predict, r#"{"user_handle": 3, "min_similarity": 0.5}"#),
            None
        );
        assert_eq!(of(Ask::Predict, r#"{"user_handles": [3]}"#), None);
        // Each disclosure level has its own entries.
        let body = q(r#"{"user_handle": 3}"#);
        let keys: std::collections::HashSet<_> = Disclosure::ALL
            .into_iter()
            .map(|d| AnswerKey::of(Ask::Predict, &body, d))
            .collect();
        assert_eq!(keys.len(), Disclosure::ALL.len());
    }

    #[test]
    fn an_answer_is_found_again_only_for_its_version_route_handle_and_k() {
        let cache = AnswerCache::with_budget(1 << 20);
        cache.put("v1", key(Ask::Predict, 7, 10), &body(100, 1));
        assert_eq!(
            cache.get("v1", key(Ask::Predict, 7, 10)),
            Some(body(100, 1))
        );
        assert_eq!(cache.get("v2", key(Ask::Predict, 7, 10)), None);
        assert_eq!(cache.get("v1", key(Ask::Recommend, 7, 10)), None);
        assert_eq!(cache.get("v1", key(Ask::Predict, 8, 10)), None);
        assert_eq!(cache.get("v1", key(Ask::Predict, 7, 11)), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 4));
        assert_eq!(stats.bytes, (100 + ENTRY_OVERHEAD) as u64);
    }

    #[test]
    fn an_answer_of_a_new_version_drops_the_old_versions_entries() {
        let cache = AnswerCache::with_budget(1 << 20);
        for h in 0..200 {
            cache.put("v1", key(Ask::Predict, h, 10), &body(10, 1));
        }
        for h in 0..200 {
            cache.put("v2", key(Ask::Predict, h, 10), &body(10, 2));
        }
        assert_eq!(cache.stats().bytes, 200 * (10 + ENTRY_OVERHEAD) as u64);
        assert!((0..200).all(|h| cache.get("v2", key(Ask::Predict, h, 10)) == Some(body(10, 2))));
        assert!((0..200).all(|h| cache.get("v1", key(Ask::Predict, h, 10)).is_none()));
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_what_is_asked_again() {
        let budget = 64 * 1024;
        let cache = AnswerCache::with_budget(budget);
        // One answer asked over and over while 10,000 others pass through once each.
        let hot = 1_000_000;
        cache.put("v", key(Ask::Predict, hot, 10), &body(500, 9));
        for h in 0..10_000 {
            cache.put("v", key(Ask::Predict, h, 10), &body(500, 1));
            assert!(cache.stats().bytes <= budget);
            if h % 8 == 0 {
                assert_eq!(
                    cache.get("v", key(Ask::Predict, hot, 10)),
                    Some(body(500, 9))
                );
            }
        }
        // Most of the passing answers have aged out; the latest ones are still there.
        let kept = (0..10_000)
            .filter(|&h| cache.get("v", key(Ask::Predict, h, 10)).is_some())
            .count();
        assert!(kept > 0 && kept < 200, "kept {kept}");
        assert!(cache.get("v", key(Ask::Predict, 9_999, 10)).is_some());
    }

    #[test]
    fn a_cache_without_budget_keeps_nothing_and_counts_nothing() {
        let cache = AnswerCache::with_budget(0);
        assert!(!cache.is_on());
        cache.put("v", key(Ask::Predict, 1, 10), &body(10, 1));
        assert_eq!(cache.get("v", key(Ask::Predict, 1, 10)), None);
        assert_eq!(cache.stats(), AnswerCacheStats::default());
    }

    #[test]
    fn an_answer_replaced_under_the_same_key_is_counted_once() {
        let cache = AnswerCache::with_budget(1 << 20);
        cache.put("v", key(Ask::Recommend, 3, 5), &body(100, 1));
        cache.put("v", key(Ask::Recommend, 3, 5), &body(300, 2));
        assert_eq!(cache.stats().bytes, (300 + ENTRY_OVERHEAD) as u64);
        assert_eq!(
            cache.get("v", key(Ask::Recommend, 3, 5)),
            Some(body(300, 2))
        );
    }
}
