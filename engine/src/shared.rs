//! [`Shared`]: the process-wide state every worker reads (configuration,
//! secrets, the registry, the inboxes, the gauges), built once by
//! [`crate::start`] and held in an `Arc` by each worker.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::Counter;
use crate::cluster::Directory;
use crate::config::GatewayConfig;
use crate::conn::tls;
use crate::conn::RingTotals;
use crate::control_plane::ControlPlane;
use crate::inbox_bytes::InboxBytes;
use crate::mailbox::Mailbox;
use crate::metrics::{Gauges, MetricsHub};
use crate::registry::Registry;
use crate::revocation::Revocations;
use crate::runtime::RuntimeKind;
use crate::static_files::StaticFiles;
use crate::worker_msg::WorkerMsg;

/// Process-wide state shared by all workers (read-mostly).
pub struct Shared {
    /// Configuration.
    pub config: GatewayConfig,
    /// Browser session secrets, current first.
    pub secrets: Vec<Vec<u8>>,
    /// Connector credential secrets, current first: `connector_secret_key`,
    /// else the same as `secrets`.
    pub connector_secrets: Vec<Vec<u8>>,
    /// Tenants, connectors, streams.
    pub registry: Registry,
    /// One inbox per worker.
    pub inboxes: Vec<Arc<Mailbox<WorkerMsg>>>,
    /// Bytes waiting in each worker's inbox, bounded by `limits.inbox_bytes_max`.
    pub inbox_bytes: Vec<InboxBytes>,
    /// Published metrics.
    pub metrics: MetricsHub,
    /// Bytes queued in all rings, data and control apart.
    pub ring_totals: Arc<RingTotals>,
    /// Open TCP connections.
    pub connections: AtomicUsize,
    /// Worker count.
    pub workers: usize,
    /// The dashboard's files, read from `static_dir` at start and served
    /// from memory.
    pub(crate) static_files: StaticFiles,
    /// Revoked sessions, users and tenants (fed by Redis).
    pub revocations: Revocations,
    /// This node in the cluster's directory, when `cluster:` is set.
    pub cluster: Option<Directory>,
    /// The control-plane client, when `control_plane.url` is set.
    pub control_plane: Option<ControlPlane>,
    /// Open connections per client IP.
    pub ip_connections: Arc<Counter<IpAddr>>,
    /// Open browser sessions per tenant.
    pub tenant_sessions: Arc<Counter<String>>,
    /// TLS for the listener, when `tls.cert` and `tls.key` are set.
    pub tls: Option<Arc<tls::TlsAcceptor>>,
    /// Connection tasks ended by a panic ([`crate::task::spawn`]), `volley_panics_total`.
    pub panics: AtomicU64,
    /// The driver every worker runs on: start chooses it once, and a worker
    /// that cannot build it fails the start (`/health`, `/metrics`).
    pub runtime: RuntimeKind,
    pub(crate) started: Instant,
    pub(crate) next_id: AtomicU64,
    pub(crate) stopping: AtomicBool,
    /// Set when a drain began (SIGTERM, [`crate::Gateway::drain`]): nothing
    /// new is accepted, tunnels are asked to move, sessions close with 1012
    /// once their queries ended.
    pub(crate) draining: AtomicBool,
    /// Per worker: its browser sessions still open at its last drain pass
    /// (1 until its first: unknown counts as busy).
    pub(crate) drain_busy: Vec<AtomicUsize>,
}

impl Shared {
    /// A fresh process-unique id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// True once shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// True once a drain began (it ends in shutdown).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Bytes queued in all rings, data and control.
    pub fn ring_bytes(&self) -> usize {
        self.ring_totals.data.load(Ordering::Relaxed) + self.ring_totals.control.load(Ordering::Relaxed)
    }

    /// Data bytes queued in rings plus bytes live streams keep for late
    /// joiners: what `rings.total_bytes_max` bounds (control output is
    /// bounded per connection instead).
    pub fn held_bytes(&self) -> usize {
        self.ring_totals
            .data
            .load(Ordering::Relaxed)
            .saturating_add(self.registry.retained_bytes.load(Ordering::Relaxed))
    }

    /// Gauges for the metrics endpoints.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            workers: self.workers,
            connectors: self.registry.connectors_online.load(Ordering::Relaxed),
            sessions: self.registry.sessions_online.load(Ordering::Relaxed),
            ring_bytes: self.ring_bytes(),
            control_bytes: self.ring_totals.control.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            retained_bytes: self.registry.retained_bytes.load(Ordering::Relaxed),
            inbox_bytes: self.inbox_bytes.iter().map(InboxBytes::held).sum(),
            runtime: self.runtime.name(),
            queued_queries: self.registry.queued_queries.load(Ordering::Relaxed),
            queries_queued_total: self.registry.queries_queued_total.load(Ordering::Relaxed),
            share_log_bytes: self.registry.share.held.load(Ordering::Relaxed),
            share_reserved_bytes: self.registry.share.reserved.load(Ordering::Relaxed),
            shared_joins_total: self.registry.share.joins.load(Ordering::Relaxed),
            shared_reuses_total: self.registry.share.reuses.load(Ordering::Relaxed),
            share_refused_total: self.registry.share.refused.load(Ordering::Relaxed),
        }
    }
}
