//! volley-engine: the gateway. Thread-per-core on io_uring (monoio; epoll
//! where io_uring is refused), zero-copy.
//!
//! This file is the crate's map and its public names only; the code lives
//! in the modules below.
//!
//! Start-up and the process (private; their public items are re-exported here):
//! - `gateway`: [`start`] (checks the config, binds one `SO_REUSEPORT`
//!   listener per worker, starts the worker threads and the revocation
//!   feed), [`StartOptions`], [`StartError`], and the running [`Gateway`]
//!   (its `drain` on SIGTERM: connectors asked to move, sessions closed with
//!   1012 once their queries ended, within `shutdown_grace_seconds`).
//! - `shared`: [`Shared`], the process-wide state every worker reads.
//! - `worker_thread`: one worker thread's body — pinning, its runtime, the
//!   accept loop, the inbox loop, metrics publishing, shutdown drain, and
//!   the exit when a serving worker dies.
//! - `sweep`: a worker's timer over handshake deadlines and its browser
//!   sessions (token expiry, idle timeout, pings, query deadlines), dataset
//!   list pushes, and live subscriptions waiting for a connector
//!   (`browser/resume.rs`).
//! - `thp`: transparent huge pages off for the process (`prctl`).
//! - `clock`: [`unix_now`].
//!
//! Modules and the path of one frame through them:
//! - [`config`]: the YAML file and its limits.
//! - [`runtime`]: which driver the workers run on (io_uring, or epoll where
//!   it is refused) and fairness between a worker's tasks on epoll.
//! - [`worker`]: the per-worker state ([`worker::Worker`]): its local
//!   session tables, routing and delivery; one per thread and core.
//! - [`http`]: the request head, routing, upgrades, `/health`, `/metrics`, static files.
//! - `static_files`: the dashboard's files, read once by [`start`] within a
//!   memory budget and served from memory as ready-made responses.
//! - [`connector`]: a tunnel. Its reader decodes a binary frame with
//!   `volley_protocol::ws::FrameDecoder` (payload unmasked in place, frozen
//!   into `Bytes`), checks the level-2 header, wraps it in a
//!   [`frame::SharedFrame`] (WebSocket headers built once) and calls
//!   [`worker::Worker::route`] with the stream's destination-worker mask.
//! - [`worker`]: `route` hands the frame once to each destination worker
//!   (inline for its own, as a [`worker_msg::WorkerMsg`] through a
//!   [`mailbox::Mailbox`] inbox for others, its bytes counted by that
//!   inbox's [`inbox_bytes::InboxBytes`]);
//!   `deliver` pushes the same `Arc<SharedFrame>` into every local
//!   subscriber's [`conn::Ring`] under the flow/slow-reader policy.
//! - [`session`]: a browser session's state, which the worker delivers to.
//! - [`browser`]: a session's connection; its writer task drains the ring with
//!   `conn::write_all` over a [`conn::writev::WriteBatch`] (vectored,
//!   partial-write safe) and returns credit; its requests (`requests.rs`)
//!   and its live subscriptions' resumption after connector loss (`resume.rs`),
//!   its queries joining the admission queue (`queue.rs`).
//! - [`registry`]: lock-sharded tenant → connectors and stream tables, and
//!   each tenant's admission queue (`registry/queue.rs`; the worker's side,
//!   admission and deadlines, in `worker/admit.rs`).
//! - [`retained`]: the schema and dictionary frames and the window of newest
//!   record batches a live stream keeps for joiners, bounded per stream and
//!   counted gateway-wide.
//! - [`share_log`]: a shared query's log: identical queries read one
//!   upstream stream's frames from it, each at its own pace from the first
//!   frame (the worker's side, pulls and credit, in `worker/share.rs`).
//! - [`metrics`]: per-worker HDR histograms, merged on read.
//! - [`echo`]: test-only conformance echo route.
//! - [`task`]: how every connection task is spawned: a panic inside one
//!   ends that connection, never its worker.
//! - [`connection`]: the life every connection shares (writer task, control
//!   frames answered, a bounded end without polling), used by [`connector`],
//!   [`browser`] and [`echo`].
//! - [`conn`]: connection plumbing — the write batch, plain TCP halves,
//!   `wss://`, the kill switch, reader, ring and writer.
//!
//! Admission (before any of the above, off the hot path):
//! - [`admission`]: open connections per client IP (checked at accept) and
//!   browser sessions per tenant (checked when a session is admitted).
//! - [`revocation`]: the revoked set checked at admission and at connector
//!   `register`; [`revocation::feed`] is the Redis thread that fills it and
//!   tells the workers.
//! - [`cluster`]: with `cluster:`, this node in the cluster's directory in
//!   Redis: its connectors' leases (fenced by epoch), its heartbeat, the
//!   lookup of which nodes serve a tenant; a thread of its own, never on the
//!   frame path. No peer links yet.
//! - [`control_plane`]: optional HTTP validation of session ids, cached, on
//!   its own thread pool, with lookups per client limited by [`rate_limit`].
//! - [`refusal`]: every refusal of a request, a session or a `register`,
//!   each kind with its error code and its HTTP status or close code.
//!
//! The modules are private: outside the crate only the names re-exported
//! below exist. The map above is for people working on the engine, so its
//! links point at private modules; `cargo doc --document-private-items`
//! renders them (CI's `doc` step does, and checks every link).
#![allow(rustdoc::private_intra_doc_links)]
// Production code: a panic here is a bug, so errors are returned or handled
// with a reason. Unit tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod browser;
mod cluster;
pub mod config;
mod conn;
mod connection;
mod connector;
mod control_plane;
mod echo;
mod frame;
mod http;
mod inbox_bytes;
mod mailbox;
mod metrics;
mod rate_limit;
mod refusal;
mod registry;
mod retained;
mod revocation;
mod runtime;
mod session;
mod share_log;
mod task;
mod worker;
mod worker_msg;

mod clock;
mod gateway;
mod shared;
mod static_files;
mod sweep;
mod thp;
mod worker_thread;

pub use clock::unix_now;
// `volley cluster status` and the cluster tests read the directory with these.
pub use cluster::keys::{hash_tag, node as node_key, ConnectorKeys};
pub use cluster::lookup::Serving;
pub use cluster::status::{read_status, ClusterStatus, LeaseStatus, NodeStatus};
pub use config::GatewayConfig;
pub use gateway::{
    start, Gateway, StartError, StartOptions, DRAIN_MOVE_WAIT, DRAIN_TICK, INSECURE_DEV_SECRET_BYTES, LISTEN_BACKLOG,
};
pub use runtime::{probe_io_uring, RuntimeChoice, RuntimeKind, URING_ENTRIES};
// For the engine's own tests, which watch these from outside.
pub use connector::CONNECTOR_READ_CHUNK_BYTES;
pub use frame::SHARED_FRAMES_BUILT;
pub use refusal::{Answer, RefusalKind};
pub use revocation::feed::{REDIS_COMMAND_TIMEOUT, STOP_FLUSH_TIMEOUT};
pub use shared::Shared;
pub use worker::METRICS_PUBLISH_INTERVAL;
pub use worker_msg::WorkerMsg;
pub use worker_thread::{SHUTDOWN_CLOSE_GRACE, SHUTDOWN_DRAIN, WORKER_DIED_EXIT_CODE};
