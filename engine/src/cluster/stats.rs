//! The directory's counters and state, for `/health` and `/metrics`: written
//! by the directory thread and by lookups, read by the HTTP answers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use serde_json::{json, Value};

/// See the module doc. Relaxed atomics: figures for people, not for decisions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Registrations written (each a new epoch).
    pub registrations: AtomicU64,
    /// Lease renewals that kept or restored a lease.
    pub renewals: AtomicU64,
    /// Leases lost to a newer registration.
    pub lost_leases: AtomicU64,
    /// Leases restored after they had expired (Redis restarted or was
    /// unreachable for longer than a lease).
    pub restored_leases: AtomicU64,
    /// Lookups asked ([`super::Directory::lookup`]).
    pub lookups: AtomicU64,
    /// Of those, answered from the cache.
    pub lookup_cache_hits: AtomicU64,
    /// Redis commands that failed (connection lost, timeout, refused).
    pub redis_errors: AtomicU64,
    /// Leases this node holds now.
    pub leases_held: AtomicUsize,
    /// The directory thread's last command reached Redis.
    pub redis_up: AtomicBool,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Stats {
    /// `/health`'s `cluster` object.
    pub fn health(&self, node_id: &str, advertise: &str) -> Value {
        json!({
            "node_id": node_id,
            "advertise": advertise,
            "redis": if self.redis_up.load(Ordering::Relaxed) { "reachable" } else { "unreachable" },
            "leases_held": self.leases_held.load(Ordering::Relaxed),
            "lost_leases": get(&self.lost_leases),
            "peer_links": "not built yet",
        })
    }

    /// The directory's lines of `/metrics` (Prometheus text format).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, help: &str, kind: &str, value: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        };
        line(
            "volley_cluster_redis_up",
            "1 when the cluster directory's last Redis command succeeded.",
            "gauge",
            u64::from(self.redis_up.load(Ordering::Relaxed)),
        );
        line(
            "volley_cluster_leases",
            "Connector leases this node holds in the directory.",
            "gauge",
            self.leases_held.load(Ordering::Relaxed) as u64,
        );
        line(
            "volley_cluster_registrations_total",
            "Connector registrations written to the directory (each a new epoch).",
            "counter",
            get(&self.registrations),
        );
        line("volley_cluster_renewals_total", "Lease renewals that kept the lease.", "counter", get(&self.renewals));
        line(
            "volley_cluster_restored_leases_total",
            "Leases written again after they had expired (Redis restarted or unreachable).",
            "counter",
            get(&self.restored_leases),
        );
        line(
            "volley_cluster_lost_leases_total",
            "Leases lost to a newer registration on another node (their tunnels closed here).",
            "counter",
            get(&self.lost_leases),
        );
        line("volley_cluster_lookups_total", "Directory lookups.", "counter", get(&self.lookups));
        line(
            "volley_cluster_lookup_cache_hits_total",
            "Directory lookups answered from the cache.",
            "counter",
            get(&self.lookup_cache_hits),
        );
        line(
            "volley_cluster_redis_errors_total",
            "Directory Redis commands that failed.",
            "counter",
            get(&self.redis_errors),
        );
        out
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn health_and_metrics_name_the_figures() {
        let stats = Stats::default();
        stats.lost_leases.fetch_add(2, Ordering::Relaxed);
        stats.redis_up.store(true, Ordering::Relaxed);
        let health = stats.health("gw-1", "10.0.0.1:7071");
        assert_eq!(health["node_id"], "gw-1");
        assert_eq!(health["redis"], "reachable");
        assert_eq!(health["lost_leases"], 2);
        let text = stats.prometheus();
        for name in [
            "volley_cluster_registrations_total 0",
            "volley_cluster_renewals_total 0",
            "volley_cluster_lost_leases_total 2",
            "volley_cluster_lookups_total 0",
            "volley_cluster_redis_errors_total 0",
            "volley_cluster_redis_up 1",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
