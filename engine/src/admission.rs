//! Admission counters: open connections per client IP
//! (`limits.connections_per_ip_max`, checked at accept) and open browser
//! sessions per tenant (`limits.sessions_per_tenant_max`, checked when a
//! session is admitted). Over a limit the request is answered HTTP 503
//! `too_many_requests` and closed.
//!
//! Lock-sharded maps ([`ADMISSION_SHARDS`] `parking_lot` mutexes chosen by
//! hash) touched once when a connection opens and once when it ends, never
//! per frame; a key whose count falls to zero is removed, so the maps hold
//! only keys with open connections.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use parking_lot::Mutex;

/// Shards per counter map.
pub const ADMISSION_SHARDS: usize = 16;

/// Counts open things per key, each key bounded.
pub struct Counter<K> {
    shards: [Mutex<HashMap<K, usize>>; ADMISSION_SHARDS],
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone> Default for Counter<K> {
    fn default() -> Self {
        Counter { shards: std::array::from_fn(|_| Mutex::new(HashMap::new())), hasher: RandomState::new() }
    }
}

impl<K: Hash + Eq + Clone> Counter<K> {
    // The index is a remainder of ADMISSION_SHARDS and `shards` is an array
    // of exactly ADMISSION_SHARDS, so it is in bounds.
    #[allow(clippy::indexing_slicing)]
    fn shard(&self, key: &K) -> &Mutex<HashMap<K, usize>> {
        let index = usize::try_from(self.hasher.hash_one(key) % ADMISSION_SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// Counts one more for `key` unless it already has `max`; true when counted.
    pub fn try_acquire(&self, key: &K, max: usize) -> bool {
        let mut shard = self.shard(key).lock();
        let count = shard.entry(key.clone()).or_insert(0);
        if *count >= max {
            if *count == 0 {
                shard.remove(key);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// Gives back one counted by [`Counter::try_acquire`].
    pub fn release(&self, key: &K) {
        let mut shard = self.shard(key).lock();
        debug_assert!(shard.contains_key(key), "released a count never acquired");
        if let Some(count) = shard.get_mut(key) {
            debug_assert!(*count > 0, "a zero count is removed, never kept");
            *count = count.saturating_sub(1);
            if *count == 0 {
                shard.remove(key);
            }
        }
    }

    /// Open now for `key`.
    pub fn get(&self, key: &K) -> usize {
        self.shard(key).lock().get(key).copied().unwrap_or(0)
    }

    /// Counts one for `key` until the guard drops; `None` when `key` is at
    /// `max`. The guard owns its counter, so it can travel with a connection
    /// into whichever task ends it.
    pub fn guard(self: &Arc<Self>, key: K, max: usize) -> Option<CounterGuard<K>> {
        self.try_acquire(&key, max).then(|| CounterGuard { counter: self.clone(), key })
    }
}

/// One counted thing; released on drop.
pub struct CounterGuard<K: Hash + Eq + Clone> {
    counter: Arc<Counter<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for CounterGuard<K> {
    fn drop(&mut self) {
        self.counter.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_forgets_idle_keys() {
        let counter: Arc<Counter<String>> = Arc::new(Counter::default());
        let key = "acme".to_owned();
        assert!(counter.try_acquire(&key, 2));
        assert!(counter.try_acquire(&key, 2));
        assert!(!counter.try_acquire(&key, 2));
        counter.release(&key);
        {
            let guard = counter.guard(key.clone(), 2);
            assert!(guard.is_some());
            assert!(counter.guard(key.clone(), 2).is_none());
        }
        assert_eq!(counter.get(&key), 1);
        counter.release(&key);
        assert_eq!(counter.get(&key), 0);
        assert!(counter.shards.iter().all(|s| s.lock().is_empty()), "idle keys are removed");
        assert!(!counter.try_acquire(&key, 0));
        assert!(counter.shards.iter().all(|s| s.lock().is_empty()));
    }
}
