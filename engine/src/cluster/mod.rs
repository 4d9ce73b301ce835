//! The cluster (`cluster:` in gateway.yaml): this gateway as one node of
//! several that share one Redis (`redis.url`) as their directory. This is
//! the first part of the cluster work (issue 15): the directory only. There
//! are no peer links yet — a browser is served by connectors on its own node
//! only, exactly as without a cluster; what exists is the record of who
//! serves which tenant's connectors, kept right under failures, and the
//! lookup later parts route with. docs/decisions/2026-12-07-cluster-directory.md
//! says why it is built this way; ARCHITECTURE.md ("Cluster") what is still
//! to come.
//!
//! - `keys`: the key names, each tenant's keys in one hash slot.
//! - `scripts`: the Lua scripts that register, renew (fenced by epoch) and
//!   release a lease, and the fencing rule in Rust.
//! - `leases`: the leases this node holds, sans IO: what to write, which
//!   tunnels to close.
//! - `thread`: the directory thread: reads the registry, talks to Redis,
//!   heartbeats this node, closes tunnels whose lease was lost.
//! - `lookup`: which nodes serve a tenant's connectors, cached.
//! - `stats`: counters for `/health` and `/metrics`.
//! - `status`: what `volley cluster status` prints, read from Redis.
//!
//! [`Directory`] is what the rest of the gateway holds (in
//! [`Shared`](crate::shared::Shared)); it sits below the shared state, the
//! thread above it.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod keys;
pub mod leases;
pub mod lookup;
pub mod scripts;
pub mod stats;
pub mod status;
pub mod thread;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::config::ClusterIdentity;
use lookup::{Lookup, Serving};
use stats::Stats;

/// Longest wait for one directory command; also the connect timeout. A
/// third of the lease at most, so a slow Redis cannot make a renewal late.
pub fn command_timeout(lease_seconds: u64) -> Duration {
    let third = Duration::from_millis(lease_seconds.saturating_mul(1000) / 3);
    third.clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// This node in the directory: its identity, its figures, the lookup, and
/// the wake-up of the directory thread.
pub struct Directory {
    /// Node id, advertised address, lease.
    pub identity: ClusterIdentity,
    /// This process: `<node_id>/<pid>-<random>`. The leases record it and
    /// the scripts compare it, so two gateways started with the same node id
    /// (two on one host with the default, the host name) still fence each
    /// other; each warns when it sees the other's heartbeat.
    pub instance: String,
    /// `redis.url`.
    pub(crate) redis_url: String,
    /// Counters for `/health` and `/metrics`.
    pub stats: Stats,
    lookup: Lookup,
    /// Holds at most one wake-up: a registration or a tunnel's end while
    /// one is already pending adds nothing (the thread reads the whole
    /// registry when it wakes).
    wake_tx: Sender<()>,
    pub(crate) wake_rx: Receiver<()>,
}

impl Directory {
    /// The directory of node `identity` on `redis_url`.
    pub fn new(identity: ClusterIdentity, redis_url: &str) -> Directory {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let lookup = Lookup::new(redis_url, command_timeout(identity.lease_seconds));
        let instance = format!("{}/{}-{:08x}", identity.node_id, std::process::id(), fastrand::u32(..));
        Directory {
            identity,
            instance,
            redis_url: redis_url.to_owned(),
            stats: Stats::default(),
            lookup,
            wake_tx,
            wake_rx,
        }
    }

    /// Tells the directory thread the registry changed (a tunnel registered
    /// or closed), so it writes the change now rather than at its next tick.
    /// Never blocks: when a wake-up is already pending, this one is dropped.
    pub fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    /// The nodes serving `tenant`'s connectors, one entry per connector
    /// lease, read from Redis once and then reused for
    /// [`lookup::LOOKUP_CACHE_TTL`] (invalidated by age only, for now: see
    /// `lookup.rs`). Blocking — one or two Redis round trips, each bounded by
    /// [`command_timeout`] —, so never call it on a worker: the slice that
    /// routes requests across nodes will run it on a thread of its own, as
    /// the control plane's lookups are.
    pub fn lookup(&self, tenant: &str) -> redis::RedisResult<Arc<Vec<Serving>>> {
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        if let Some(answer) = self.lookup.cached(tenant) {
            self.stats.lookup_cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(answer);
        }
        self.lookup.read(tenant).inspect_err(|_| {
            self.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// `/health`'s `cluster` object.
    pub fn health(&self) -> serde_json::Value {
        self.stats.health(&self.identity.node_id, &self.identity.advertise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_wait_at_most_a_third_of_the_lease() {
        assert_eq!(command_timeout(2), Duration::from_millis(666));
        assert_eq!(command_timeout(10), Duration::from_secs(2));
        assert_eq!(command_timeout(0), Duration::from_millis(200));
    }

    #[test]
    fn wake_ups_never_pile_up() {
        let identity = ClusterIdentity { node_id: "a".into(), advertise: "a:1".into(), lease_seconds: 10 };
        let directory = Directory::new(identity, "redis://127.0.0.1:1/");
        for _ in 0..100 {
            directory.wake();
        }
        assert_eq!(directory.wake_rx.len(), 1);
    }
}
