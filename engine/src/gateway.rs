//! Start and stop: [`start`] checks the configuration, binds one
//! `SO_REUSEPORT` listener per worker, builds [`Shared`], starts the worker
//! threads ([`crate::worker_thread`]) and the revocation feed; [`Gateway`]
//! is the running gateway, which closes every connection and joins its
//! threads when shut down or dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::admission::Counter;
use crate::cluster::{self, Directory};
use crate::config::{self, GatewayConfig};
use crate::conn::tls;
use crate::conn::RingTotals;
use crate::control_plane::ControlPlane;
use crate::inbox_bytes::InboxBytes;
use crate::mailbox::Mailbox;
use crate::metrics::MetricsHub;
use crate::registry::{self, Registry};
use crate::revocation::{self, Revocations};
use crate::runtime;
use crate::shared::Shared;
use crate::static_files::StaticFiles;
use crate::thp::disable_transparent_huge_pages;
use crate::worker_msg::WorkerMsg;
use crate::worker_thread::run_worker;

/// Bytes of the secret `--insecure-dev` takes from the operating system's
/// random source when no `tableros_secret_key` is set.
pub const INSECURE_DEV_SECRET_BYTES: usize = 32;
/// Listen backlog per worker.
pub const LISTEN_BACKLOG: i32 = 4096;
/// How often a drain looks whether it is done (and closes the sessions
/// whose queries ended meanwhile).
pub const DRAIN_TICK: Duration = Duration::from_millis(100);
/// How long a drain waits for idle tunnels to leave by themselves after
/// `reconnect` — a connector that moves closes its old tunnel once its
/// replacement registered elsewhere, so its tenant is never without one —
/// before it closes those that stay (connectors that do not know
/// `reconnect`).
pub const DRAIN_MOVE_WAIT: Duration = Duration::from_secs(2);
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
    /// The cluster's directory thread, when `cluster:` is set.
    directory: Option<JoinHandle<()>>,
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

    /// Closes every connection with 1001, joins the workers and the
    /// revocation feed, then writes the revocations still queued for the Redis
    /// record (at most [`revocation::feed::STOP_FLUSH_TIMEOUT`]).
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
        // It releases this node's leases and deletes its key on the way out.
        if let Some(directory) = self.directory.take() {
            let _ = directory.join();
        }
        // Last: nothing queues a revocation write any more (bounded; Redis may be down).
        revocation::feed::flush_on_stop(&self.shared);
    }

    /// Drains, then shuts down (SIGTERM): accepts no new connection, asks
    /// every level-2 tunnel to move to another gateway (`reconnect`,
    /// PROTOCOL.md §4.2), closes each browser session with 1012 once its
    /// running queries ended, and stops as [`Gateway::shutdown`] does once
    /// every session is gone, no tunnel carries a stream and the tunnels
    /// have left ([`DRAIN_MOVE_WAIT`] for those that do not) — after
    /// `shutdown_grace_seconds` at the latest, closing what still runs
    /// (sessions with 1012). The cluster's directory releases the leases
    /// of the tunnels as they leave, and the node key at the stop.
    pub fn drain(mut self) {
        let grace = Duration::from_secs(self.shared.config.shutdown_grace_seconds);
        let started = Instant::now();
        self.shared.draining.store(true, Ordering::Release);
        log::info!(
            "draining: accepting no new connection, asking connectors to move, closing browser sessions with 1012 \
             once their queries ended (within shutdown_grace_seconds, {}s)",
            grace.as_secs()
        );
        loop {
            for inbox in &self.shared.inboxes {
                let _ = inbox.push(WorkerMsg::Drain);
            }
            std::thread::sleep(DRAIN_TICK);
            let busy: usize = self.shared.drain_busy.iter().map(|count| count.load(Ordering::Acquire)).sum();
            let tunnels = self.shared.registry.all_connectors();
            let streaming = tunnels.iter().filter(|t| t.active_streams.load(Ordering::Acquire) > 0).count();
            let waited = started.elapsed();
            if busy == 0 && streaming == 0 && (tunnels.is_empty() || waited >= DRAIN_MOVE_WAIT) {
                log::info!(
                    "drained in {:.1} s: no browser session left, no stream running; {} tunnel(s) still open are \
                     closed now",
                    waited.as_secs_f64(),
                    tunnels.len()
                );
                break;
            }
            if waited >= grace {
                log::warn!(
                    "shutdown_grace_seconds ({}s) passed with {busy} browser session(s) still open (running a \
                     query, or not reading what it was sent) and {streaming} tunnel(s) still streaming: closing \
                     them now (browsers with 1012, to reconnect elsewhere); raise shutdown_grace_seconds if \
                     queries need longer to finish",
                    grace.as_secs()
                );
                break;
            }
        }
        self.stop();
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
    // Read here, once, before the port is bound: a worker never touches the
    // disk to serve them.
    let static_dir = config.static_dir.clone().unwrap_or_else(|| PathBuf::from("web/dist"));
    let static_files = StaticFiles::load(&static_dir);
    let listeners = bind_all(addr, workers)?;
    let local_addr = listeners[0].local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let leeway = i64::try_from(config.limits.protocol.token_leeway_seconds).unwrap_or(0);
    let control_plane = ControlPlane::start(&config.control_plane, leeway)
        .map_err(|source| StartError::Thread { what: "control-plane", source })?;
    let shared = Arc::new(Shared {
        inboxes: (0..workers).map(|_| Arc::new(Mailbox::new(config.limits.inbox_max))).collect(),
        inbox_bytes: (0..workers).map(|_| InboxBytes::new(config.limits.inbox_bytes_max)).collect(),
        metrics: MetricsHub::new(workers, !options.metrics_disabled),
        secrets,
        connector_secrets,
        registry: Registry::with_share_budget(config.queries.share_total_bytes),
        ring_totals: Arc::new(RingTotals::default()),
        connections: AtomicUsize::new(0),
        workers,
        static_files,
        revocations: Revocations::new(config.redis.revocation_ttl_seconds, leeway, config.redis.url.is_some()),
        cluster: cluster_directory(&config)?,
        control_plane,
        ip_connections: Arc::new(Counter::default()),
        tenant_sessions: Arc::new(Counter::default()),
        tls,
        panics: AtomicU64::new(0),
        runtime: decision.kind,
        started: Instant::now(),
        next_id: AtomicU64::new(1),
        stopping: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        drain_busy: (0..workers).map(|_| AtomicUsize::new(1)).collect(),
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
    let feed = match revocation::feed::spawn_feed(shared.clone()) {
        Ok(feed) => feed,
        Err(source) => {
            let mut gateway = Gateway { shared, threads, feed: None, directory: None, local_addr };
            gateway.stop();
            return Err(StartError::Thread { what: "revocation feed", source });
        }
    };
    let directory = match cluster::thread::spawn(shared.clone()) {
        Ok(directory) => directory,
        Err(source) => {
            let mut gateway = Gateway { shared, threads, feed, directory: None, local_addr };
            gateway.stop();
            return Err(StartError::Thread { what: "cluster directory", source });
        }
    };
    log::info!("gateway listening on {local_addr} with {workers} {} workers", decision.kind);
    Ok(Gateway { shared, threads, feed, directory, local_addr })
}

/// This node's directory when `cluster:` is set (validated with the rest of
/// the configuration: `redis.url` is there).
fn cluster_directory(config: &GatewayConfig) -> Result<Option<Directory>, StartError> {
    let (Some(cluster), Some(url)) = (&config.cluster, &config.redis.url) else { return Ok(None) };
    Ok(Some(Directory::new(cluster.identity()?, url)))
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
