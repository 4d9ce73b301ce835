//! volley-engine: the gateway. Thread-per-core on io_uring (monoio; epoll
//! where io_uring is refused), zero-copy.
//!
//! Modules and the path of one frame through them:
//! - [`config`]: the YAML file and its limits.
//! - [`runtime`]: which driver the workers run on (io_uring, or epoll where
//!   it is refused) and fairness between a worker's tasks on epoll.
//! - [`worker`]: one thread + monoio runtime + `SO_REUSEPORT`
//!   listener per core; its inbox and its local session tables.
//! - [`http`]: the request head, routing, upgrades, `/health`, `/metrics`, static files.
//! - [`connector`]: a tunnel. Its reader decodes a binary frame with
//!   `volley_protocol::ws::FrameDecoder` (payload unmasked in place, frozen
//!   into `Bytes`), checks the level-2 header, wraps it in a
//!   [`frame::SharedFrame`] (WebSocket headers built once) and calls
//!   [`worker::Worker::route`] with the stream's destination-worker mask.
//! - [`worker`]: `route` hands the frame once to each destination worker
//!   (inline for its own, through a [`mailbox::Mailbox`] inbox for others,
//!   its bytes counted by that inbox's [`inbox_bytes::InboxBytes`]);
//!   `deliver` pushes the same `Arc<SharedFrame>` into every local
//!   subscriber's [`conn::Ring`] under the flow/slow-reader policy.
//! - [`browser`]: a session; its writer task drains the ring with
//!   [`writev::write_all`] (vectored, partial-write safe) and returns credit.
//! - [`registry`]: lock-sharded tenant → connectors and stream tables.
//! - [`retained`]: the schema and dictionary frames a live stream keeps for
//!   late joiners, bounded per stream and counted gateway-wide.
//! - [`metrics`]: per-worker HDR histograms, merged on read.
//! - [`echo`]: test-only conformance echo route.
//! - [`task`]: how every connection task is spawned: a panic inside one
//!   ends that connection, never its worker.
//!
//! Admission (before any of the above, off the hot path):
//! - [`admission`]: open connections per client IP (checked at accept) and
//!   browser sessions per tenant (checked when a session is admitted).
//! - [`revocation`]: the Redis revocation feed thread and the revoked set
//!   checked at admission and at connector `register`.
//! - [`control_plane`]: optional HTTP validation of session ids, cached, on
//!   its own thread pool, with lookups per client limited by [`rate_limit`].

pub mod admission;
pub mod browser;
pub mod config;
pub mod conn;
pub mod connector;
pub mod control_plane;
pub mod echo;
pub mod frame;
pub mod http;
pub mod inbox_bytes;
pub mod mailbox;
pub mod metrics;
pub mod rate_limit;
pub mod registry;
pub mod retained;
pub mod revocation;
pub mod runtime;
pub mod task;
pub mod tls;
pub mod transport;
pub mod worker;
pub mod writev;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use volley_protocol::ws::close_code;
use volley_protocol::Limits;

pub use config::GatewayConfig;

use crate::admission::Counter;
use crate::conn::RingTotals;
use crate::control_plane::ControlPlane;
use crate::inbox_bytes::InboxBytes;
use crate::mailbox::Mailbox;
use crate::metrics::{Gauges, MetricsHub};
use crate::registry::{ConnectorCmd, Registry};
use crate::revocation::Revocations;
use crate::runtime::{RuntimeKind, WorkerRuntime};
use crate::worker::{Worker, WorkerMsg, INBOX_BATCH_MAX, METRICS_PUBLISH_INTERVAL};

pub use runtime::URING_ENTRIES;
/// Bytes of the secret `--insecure-dev` takes from the operating system's
/// random source when no `tableros_secret_key` is set.
pub const INSECURE_DEV_SECRET_BYTES: usize = 32;
/// Listen backlog per worker.
pub const LISTEN_BACKLOG: i32 = 4096;
/// How long shutdown lets close frames drain.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_millis(300);
/// After the drain, how long the runtime keeps running so cancelled
/// connections finish and their sockets are closed.
pub const SHUTDOWN_CLOSE_GRACE: Duration = Duration::from_millis(100);

/// Process-wide state shared by all workers (read-mostly).
pub struct Shared {
    /// Configuration.
    pub config: GatewayConfig,
    /// Protocol limits derived from it.
    pub limits: Limits,
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
    /// Static files root.
    pub static_dir: PathBuf,
    /// Revoked sessions, users and tenants (fed by Redis).
    pub revocations: Revocations,
    /// The control-plane client, when `control_plane.url` is set.
    pub control_plane: Option<ControlPlane>,
    /// Open connections per client IP.
    pub ip_connections: Arc<Counter<IpAddr>>,
    /// Open browser sessions per tenant.
    pub tenant_sessions: Arc<Counter<String>>,
    /// TLS for the listener, when `tls.cert` and `tls.key` are set.
    pub tls: Option<Arc<tls::TlsAcceptor>>,
    /// Connection tasks ended by a panic ([`task::spawn`]), `volley_panics_total`.
    pub panics: AtomicU64,
    /// The driver start chose for the workers.
    pub runtime: RuntimeKind,
    /// The driver each worker runs on, once it runs (`/health`, `/metrics`).
    pub worker_runtimes: Vec<std::sync::OnceLock<RuntimeKind>>,
    started: Instant,
    next_id: AtomicU64,
    stopping: AtomicBool,
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
            runtimes: self.worker_runtimes.iter().map(|kind| kind.get().map(|kind| kind.name())).collect(),
        }
    }
}

/// Unix time, seconds.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// No secret and not `--insecure-dev`.
    #[error("tableros_secret_key is not set; refusing to start (use --insecure-dev only on a development machine)")]
    MissingSecret,
    /// `--insecure-dev` could not get a secret from the operating system.
    #[error("--insecure-dev: the operating system's random source failed ({0}); set tableros_secret_key instead")]
    Random(String),
    /// The port is taken by another process.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// `runtime: io_uring` was asked for and the kernel or the sandbox refuses it.
    #[error(
        "runtime: io_uring was asked for, but io_uring_setup failed: {0}. The kernel or a seccomp profile \
         (Docker 25+, containerd 2) refuses io_uring here: set `runtime: auto` (or `--runtime auto`) to run on \
         epoll instead, or allow io_uring in the container's seccomp profile"
    )]
    IoUringRefused(std::io::Error),
    /// A worker's runtime or thread failed to start.
    #[error("cannot start worker {index}: {message}")]
    Worker {
        /// Worker index.
        index: usize,
        /// Cause.
        message: String,
    },
    /// A helper thread (revocation feed, control-plane pool) failed to start.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// More workers than the destination mask holds.
    #[error("at most {max} workers are supported", max = registry::WORKERS_MAX)]
    TooManyWorkers,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    feed: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl Gateway {
    /// The address it listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shared state (tests and the demo read gauges from it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reads `tls.cert` and `tls.key` again (SIGHUP): new handshakes get the
    /// new pair, open sessions keep theirs; on error the old pair stays.
    /// `Ok(false)` when the gateway has no TLS.
    pub fn reload_tls(&self) -> Result<bool, tls::TlsError> {
        match &self.shared.tls {
            Some(acceptor) => acceptor.store().reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Closes every connection with 1001 and joins the workers.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        for inbox in &self.shared.inboxes {
            let _ = inbox.push(WorkerMsg::Shutdown);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(feed) = self.feed.take() {
            let _ = feed.join();
        }
    }

    /// Blocks until the workers exit (they exit on shutdown).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Options that are not in the file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Start without a secret (development only; logs a loud warning).
    pub insecure_dev: bool,
    /// Record metrics on the hot path (default true; the bench compares).
    pub metrics_disabled: bool,
}

/// Binds the port on every worker and starts them.
pub fn start(config: GatewayConfig, options: StartOptions) -> Result<Gateway, StartError> {
    config.validate()?;
    if !config.transparent_huge_pages {
        if let Err(e) = disable_transparent_huge_pages() {
            log::warn!("could not disable transparent huge pages ({e}); idle sessions will cost more memory");
        }
    }
    let mut secrets = config.secrets();
    if secrets.is_empty() {
        if !options.insecure_dev {
            return Err(StartError::MissingSecret);
        }
        log::warn!("!!! --insecure-dev: no tableros_secret_key; using a random secret: tokens from elsewhere will not verify !!!");
        let mut secret = vec![0u8; INSECURE_DEV_SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| StartError::Random(e.to_string()))?;
        secrets.push(secret);
    }
    let connector_secrets = config.connector_secrets().unwrap_or_else(|| secrets.clone());
    if config.tableros_secret_key.is_some() && connector_secrets.iter().any(|secret| secrets.contains(secret)) {
        log::warn!(
            "browser sessions and connector credentials are verified with the same secret: whoever can issue \
             session tokens can also mint connector credentials for any tenant. Set connector_secret_key to a \
             secret of its own and sign connector credentials with `volley token --connector --secret <it>`"
        );
    }
    let workers = config.worker_count();
    if workers > registry::WORKERS_MAX {
        return Err(StartError::TooManyWorkers);
    }
    let decision = runtime::decide(config.runtime).map_err(StartError::IoUringRefused)?;
    if let Some(reason) = &decision.fallback {
        log::warn!("{}", runtime::fallback_warning(reason));
    }
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::TlsAcceptor::new(cert, key)?)),
        _ => None,
    };
    let addr = config.listen_addr()?;
    let listeners = bind_all(addr, workers)?;
    let local_addr = listeners[0].local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let static_dir = config.static_dir.clone().unwrap_or_else(|| PathBuf::from("web/dist"));
    let leeway = i64::try_from(config.limits.token_leeway_seconds).unwrap_or(0);
    let control_plane = ControlPlane::start(&config.control_plane, leeway)
        .map_err(|source| StartError::Thread { what: "control-plane", source })?;
    let shared = Arc::new(Shared {
        limits: config.limits.protocol(),
        inboxes: (0..workers).map(|_| Arc::new(Mailbox::new(config.limits.inbox_max))).collect(),
        inbox_bytes: (0..workers).map(|_| InboxBytes::new(config.limits.inbox_bytes_max)).collect(),
        metrics: MetricsHub::new(workers, !options.metrics_disabled),
        secrets,
        connector_secrets,
        registry: Registry::new(),
        ring_totals: Arc::new(RingTotals::default()),
        connections: AtomicUsize::new(0),
        workers,
        static_dir,
        revocations: Revocations::new(config.redis.revocation_ttl_seconds, leeway, config.redis.url.is_some()),
        control_plane,
        ip_connections: Arc::new(Counter::default()),
        tenant_sessions: Arc::new(Counter::default()),
        tls,
        panics: AtomicU64::new(0),
        runtime: decision.kind,
        worker_runtimes: (0..workers).map(|_| std::sync::OnceLock::new()).collect(),
        started: Instant::now(),
        next_id: AtomicU64::new(1),
        stopping: AtomicBool::new(false),
        config,
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::with_capacity(workers);
    for (index, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let ready_tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("volley-worker-{index}"))
            .spawn(move || run_worker(index, shared, listener, ready_tx))
            .map_err(|e| StartError::Worker { index, message: e.to_string() })?;
        threads.push(thread);
    }
    drop(ready_tx);
    for index in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(StartError::Worker { index, message }),
            Err(_) => return Err(StartError::Worker { index, message: "worker thread died".into() }),
        }
    }
    let feed = match revocation::spawn_feed(shared.clone()) {
        Ok(feed) => feed,
        Err(source) => {
            let mut gateway = Gateway { shared, threads, feed: None, local_addr };
            gateway.stop();
            return Err(StartError::Thread { what: "revocation feed", source });
        }
    };
    log::info!("gateway listening on {local_addr} with {workers} {} workers", decision.kind);
    Ok(Gateway { shared, threads, feed, local_addr })
}

/// Probes the port without `SO_REUSEPORT` (so another gateway already on it
/// is an error, not a silent second member of its group), then binds one
/// `SO_REUSEPORT` listener per worker.
fn bind_all(addr: SocketAddr, workers: usize) -> Result<Vec<TcpListener>, StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let probe = TcpListener::bind(addr).map_err(bind_error)?;
    let actual = probe.local_addr().map_err(bind_error)?;
    drop(probe);
    (0..workers)
        .map(|_| reuse_port_listener(actual).map_err(|source| StartError::Bind { addr: actual, source }))
        .collect()
}

fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Turns transparent huge pages off for this process (all its mappings,
/// present and future): see `GatewayConfig::transparent_huge_pages`.
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() -> std::io::Result<()> {
    let on: libc::c_ulong = 1;
    let unused: libc::c_ulong = 0;
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only; no pointer
    // is passed, so no memory of ours is read or written. It sets a flag on
    // the process's address space. Exercised by every gateway start with the
    // default config; cli/tests/gateway_process.rs reads the flag back from
    // /proc/<pid>/status.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn run_worker(
    index: usize,
    shared: Arc<Shared>,
    listener: TcpListener,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if shared.config.pin_workers && shared.workers <= cores {
        let _ = monoio::utils::bind_to_cpu_set([index % cores]);
    }
    let kind = shared.runtime;
    let mut runtime = match WorkerRuntime::build(kind) {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot build its {kind} runtime: {e}")));
            return;
        }
    };
    let _ = shared.worker_runtimes[index].set(runtime.kind());
    // Set once the worker serves; from then on its thread ending before
    // shutdown ends the process (see `exit_if_worker_died`).
    let serving = Rc::new(std::cell::Cell::new(false));
    let serving_flag = serving.clone();
    let stopping_seen = shared.clone();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let listener = match monoio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = ready.send(Err(format!("listener: {e}")));
                    return;
                }
            };
            let worker = Worker::new(index, shared.clone());
            let _ = ready.send(Ok(()));
            serving_flag.set(true);
            let accept_canceller = monoio::io::Canceller::new();
            // The worker's own tasks are not contained: a panic in them ends
            // the worker, and the exit guard the process.
            #[allow(clippy::disallowed_methods)]
            let accept_task = monoio::spawn(accept_loop(worker.clone(), listener, accept_canceller.handle()));
            #[allow(clippy::disallowed_methods)]
            let metrics_task = monoio::spawn(publish_metrics(worker.clone()));
            #[allow(clippy::disallowed_methods)]
            let sweep_task = monoio::spawn(worker::sweep(worker.clone()));
            #[allow(clippy::disallowed_methods)]
            let turn_keeper = monoio::spawn(runtime::turn_keeper());
            inbox_loop(&worker).await;
            // Shutdown: stop accepting, close everything with 1001, let it drain.
            drop(accept_canceller.cancel());
            let sessions: Vec<_> = worker.local.borrow().sessions.values().cloned().collect();
            for session in sessions {
                session.close(close_code::GOING_AWAY, "gateway shutting down");
            }
            for connector in shared.registry.all_connectors() {
                if connector.worker == index {
                    let _ = connector.mailbox.push(ConnectorCmd::Close {
                        code: close_code::GOING_AWAY,
                        reason: "gateway shutting down".into(),
                    });
                }
            }
            monoio::time::sleep(SHUTDOWN_DRAIN).await;
            // A browser that is not reading never gets its close frame (it sits
            // behind queued frames): cancel its IO so the socket is closed (FIN)
            // while this runtime still runs — a runtime that is dropped with
            // sockets open never submits their close.
            let sessions: Vec<_> = worker.local.borrow().sessions.values().cloned().collect();
            for session in sessions {
                session.ctl.kill();
                session.ring.borrow_mut().wake();
            }
            monoio::time::sleep(SHUTDOWN_CLOSE_GRACE).await;
            let _ = accept_task.await;
            drop(metrics_task);
            drop(sweep_task);
            drop(turn_keeper);
        })
    }));
    if serving.get() {
        exit_if_worker_died(index, &stopping_seen, ran.is_err());
    }
}

async fn inbox_loop(worker: &Rc<Worker>) {
    let inbox = worker.shared.inboxes[worker.index].clone();
    let mut batch = Vec::with_capacity(INBOX_BATCH_MAX);
    loop {
        batch.clear();
        if inbox.recv_batch(&mut batch, INBOX_BATCH_MAX).await == 0 {
            return;
        }
        for msg in batch.drain(..) {
            if matches!(msg, WorkerMsg::Shutdown) {
                return;
            }
            worker.deliver_queued(msg);
        }
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: monoio::net::TcpListener, cancel: monoio::io::CancelHandle) {
    let connections_max = worker.shared.config.limits.connections_max;
    let per_ip_max = worker.shared.config.limits.connections_per_ip_max;
    loop {
        let (stream, peer) = match listener.cancelable_accept(cancel.clone()).await {
            Ok(accepted) => accepted,
            Err(e) => {
                if worker.shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                log::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let open = worker.shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let ip = peer.ip();
        let ip_slot = if open <= connections_max { worker.shared.ip_connections.guard(ip, per_ip_max) } else { None };
        let ip_counted = ip_slot.is_some();
        let worker = worker.clone();
        let slot = http::ConnSlot::new(worker.shared.clone(), ip_slot);
        task::spawn(&worker.clone(), "connection", async move {
            if ip_counted {
                http::serve(worker.clone(), stream, peer, slot).await;
            } else {
                let message = if open > connections_max {
                    "the gateway is at its connection limit".to_owned()
                } else {
                    log::info!("{peer}: refused, {ip} already has {per_ip_max} open connections");
                    format!("too many open connections from {ip} (at most {per_ip_max})")
                };
                let mut stream = stream;
                use monoio::io::AsyncWriteRentExt;
                let body = volley_protocol::handshake::http_error(503, "too_many_requests", &message);
                let _ = stream.write_all(body).await;
                drop(slot);
            }
        });
    }
}

/// Exit status of a gateway whose worker died (EX_SOFTWARE).
pub const WORKER_DIED_EXIT_CODE: i32 = 70;

/// Ends the process when a serving worker's runtime ended before shutdown
/// began — a panic outside any connection task unwound out of it. The
/// process must not stay up with a dead worker (its listener would still
/// accept connections nobody serves), so it exits non-zero at once and its
/// supervisor (systemd, Kubernetes) restarts it.
fn exit_if_worker_died(index: usize, shared: &Shared, panicked: bool) {
    if shared.is_stopping() {
        return;
    }
    let why = if panicked { "panicked" } else { "stopped" };
    log::error!(
        "worker {index} {why} outside any connection; exiting with status {WORKER_DIED_EXIT_CODE} so the supervisor restarts the gateway"
    );
    std::process::exit(WORKER_DIED_EXIT_CODE);
}

async fn publish_metrics(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(METRICS_PUBLISH_INTERVAL).await;
        worker.shared.metrics.publish(worker.index, &worker.metrics.borrow());
    }
}
