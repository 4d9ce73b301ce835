//! The optional control plane (`control_plane.url`): sessions whose id is
//! not a JWT (or every session, with `control_plane.validate_all`) are
//! admitted only if `GET <url>?session_id=<id>` answers 200 with
//! `{"user_id","cuenta_id","edge_id","permisos":[…],"exp"}`.
//!
//! The HTTP call never runs on an io_uring worker: a small pool of std
//! threads ([`CONTROL_PLANE_THREADS`]) owns one blocking `ureq` agent with
//! the configured connect and whole-request timeouts; a worker hands it a job
//! through a bounded queue and awaits a one-shot reply slot woken across
//! threads (monoio's `sync` feature).
//!
//! Answers are cached ([`CONTROL_PLANE_CACHE_MAX`] entries): admissions until
//! the session's `exp` or [`CONTROL_PLANE_POSITIVE_TTL`], whichever is
//! sooner; refusals for [`CONTROL_PLANE_NEGATIVE_TTL`]. A control plane that
//! cannot be reached (connect error, timeout, 5xx, queue full) is not cached:
//! the caller applies `control_plane.fail_open`.
//!
//! Every id that is not cached costs one request, so requests are limited
//! per client (`control_plane.lookups_per_ip_per_minute`, IPv4 address or
//! IPv6 /64, at most [`CONTROL_PLANE_CLIENTS_MAX`] clients tracked): past
//! the limit a lookup is refused with 429 `too_many_requests` and the control
//! plane is not asked. Cached answers are served whatever the limit.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use serde::Deserialize;
use volley_protocol::token::SessionClaims;

use crate::config::ControlPlaneConfig;
use crate::rate_limit::{Limited, PerClientRate};
use crate::refusal::{Refusal, RefusalKind};

/// Most answers cached.
pub const CONTROL_PLANE_CACHE_MAX: usize = 10_000;
/// Longest an admission is cached (a revocation on the control plane takes
/// at most this long to reach sessions that reconnect, when Redis is not used).
pub const CONTROL_PLANE_POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is cached.
pub const CONTROL_PLANE_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Threads making control-plane requests.
pub const CONTROL_PLANE_THREADS: usize = 4;
/// Requests waiting for a thread; more are answered "unavailable" at once.
pub const CONTROL_PLANE_QUEUE_MAX: usize = 1024;
/// Largest answer body read, bytes.
pub const CONTROL_PLANE_BODY_BYTES_MAX: u64 = 64 * 1024;
/// Clients whose lookups are counted at once (for
/// `control_plane.lookups_per_ip_per_minute`); about 64 bytes each.
pub const CONTROL_PLANE_CLIENTS_MAX: usize = 65_536;

/// What the control plane said about a session.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// 200 with valid claims.
    Admit(SessionClaims),
    /// A definite no (a non-200, non-5xx answer, or an unusable 200).
    Refuse(Refusal),
    /// No answer: unreachable, timed out, 5xx, overloaded.
    Unavailable(String),
}

#[derive(Deserialize)]
struct Answer {
    user_id: String,
    cuenta_id: String,
    #[serde(default)]
    edge_id: String,
    #[serde(default)]
    permisos: Vec<String>,
    exp: i64,
}

struct CacheEntry {
    verdict: Verdict,
    until: Instant,
}

/// One-shot reply slot, filled by a pool thread, awaited on a worker.
struct Slot {
    value: Mutex<Option<Verdict>>,
    waker: AtomicWaker,
}

/// The sending side; dropping it unfilled (a dropped job) answers "unavailable".
struct Reply(Option<Arc<Slot>>);

impl Reply {
    fn send(mut self, verdict: Verdict) {
        if let Some(slot) = self.0.take() {
            *slot.value.lock() = Some(verdict);
            slot.waker.wake();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            *slot.value.lock() = Some(Verdict::Unavailable("the control-plane request was dropped".into()));
            slot.waker.wake();
        }
    }
}

struct Job {
    session_id: String,
    reply: Reply,
}

/// The client: cache, queue, pool.
pub struct ControlPlane {
    /// Ask about every session, JWTs included.
    pub validate_all: bool,
    /// Admit locally verified JWTs when unreachable.
    pub fail_open: bool,
    cache: Mutex<HashMap<String, CacheEntry>>,
    lookups: PerClientRate,
    jobs: crossbeam_channel::Sender<Job>,
    /// Requests sent (tests and metrics).
    pub requests: std::sync::atomic::AtomicU64,
    _threads: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts the pool when `control_plane.url` is set.
    pub fn start(config: &ControlPlaneConfig, leeway_seconds: i64) -> std::io::Result<Option<ControlPlane>> {
        let Some(url) = config.url.clone() else { return Ok(None) };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("volley-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(CONTROL_PLANE_QUEUE_MAX);
        let mut threads = Vec::with_capacity(CONTROL_PLANE_THREADS);
        for index in 0..CONTROL_PLANE_THREADS {
            let agent = agent.clone();
            let queue = queue.clone();
            let url = url.clone();
            threads.push(std::thread::Builder::new().name(format!("volley-control-plane-{index}")).spawn(
                move || {
                    // Ends when the gateway (the only sender) is dropped.
                    for job in queue.iter() {
                        let verdict = ask(&agent, &url, &job.session_id, leeway_seconds);
                        job.reply.send(verdict);
                    }
                },
            )?);
        }
        Ok(Some(ControlPlane {
            validate_all: config.validate_all,
            fail_open: config.fail_open,
            cache: Mutex::new(HashMap::new()),
            lookups: PerClientRate::new(config.lookups_per_ip_per_minute, CONTROL_PLANE_CLIENTS_MAX),
            jobs,
            requests: std::sync::atomic::AtomicU64::new(0),
            _threads: threads,
        }))
    }

    /// The verdict on `session_id`, asked for by `client`: from the cache,
    /// else from the control plane (awaited without blocking the worker) if
    /// `client` is within its lookup budget.
    pub async fn validate(&self, session_id: &str, client: IpAddr) -> Verdict {
        let now = Instant::now();
        if let Some(entry) = self.cache.lock().get(session_id) {
            if entry.until > now {
                return entry.verdict.clone();
            }
        }
        if let Err(limited) = self.lookups.check(client, now) {
            return Verdict::Refuse(self.limited(limited, client));
        }
        let slot = Arc::new(Slot { value: Mutex::new(None), waker: AtomicWaker::new() });
        let job = Job { session_id: session_id.to_owned(), reply: Reply(Some(slot.clone())) };
        if let Err(e) = self.jobs.try_send(job) {
            let why = match e {
                crossbeam_channel::TrySendError::Full(_) => "too many control-plane requests in flight",
                crossbeam_channel::TrySendError::Disconnected(_) => "the control-plane client stopped",
            };
            return Verdict::Unavailable(why.into());
        }
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let verdict = poll_fn(|cx| {
            if let Some(verdict) = slot.value.lock().take() {
                return Poll::Ready(verdict);
            }
            slot.waker.register(cx.waker());
            match slot.value.lock().take() {
                Some(verdict) => Poll::Ready(verdict),
                None => Poll::Pending,
            }
        })
        .await;
        let ttl = match &verdict {
            Verdict::Admit(claims) => {
                let left = u64::try_from(claims.exp.saturating_sub(crate::clock::unix_now())).unwrap_or(0);
                Some(CONTROL_PLANE_POSITIVE_TTL.min(Duration::from_secs(left)))
            }
            Verdict::Refuse(_) => Some(CONTROL_PLANE_NEGATIVE_TTL),
            Verdict::Unavailable(_) => None,
        };
        if let Some(ttl) = ttl.filter(|ttl| !ttl.is_zero()) {
            let mut cache = self.cache.lock();
            if cache.len() >= CONTROL_PLANE_CACHE_MAX && !cache.contains_key(session_id) {
                let now = Instant::now();
                cache.retain(|_, entry| entry.until > now);
                if cache.len() >= CONTROL_PLANE_CACHE_MAX {
                    let soonest = cache.iter().min_by_key(|(_, entry)| entry.until).map(|(k, _)| k.clone());
                    if let Some(key) = soonest {
                        cache.remove(&key);
                    }
                }
            }
            cache.insert(session_id.to_owned(), CacheEntry { verdict: verdict.clone(), until: Instant::now() + ttl });
        }
        verdict
    }

    /// Answers cached now (expired ones included until evicted).
    pub fn cached(&self) -> usize {
        self.cache.lock().len()
    }

    /// The refusal of a lookup over the limit (not cached: it is about the
    /// client, not the session).
    fn limited(&self, limited: Limited, client: IpAddr) -> Refusal {
        let message = match limited {
            Limited::Client { retry_after } => format!(
                "too many session lookups from {client}: at most {} a minute reach the control plane; retry in {} s",
                self.lookups.limit(),
                retry_after.as_secs().max(1)
            ),
            Limited::Table => "too many clients are looking up sessions at once; retry in a few seconds".to_owned(),
        };
        RefusalKind::LookupsOverLimit.with(message)
    }
}

/// One blocking request (on a pool thread).
fn ask(agent: &ureq::Agent, url: &str, session_id: &str, leeway_seconds: i64) -> Verdict {
    let response = match agent.get(url).query("session_id", session_id).call() {
        Ok(response) => response,
        // The error may quote the request URL: never let the session id reach a log.
        Err(e) => {
            let text = e.to_string().replace(session_id, "<redacted>");
            return Verdict::Unavailable(format!("control plane unreachable: {text}"));
        }
    };
    let status = response.status().as_u16();
    if status >= 500 {
        return Verdict::Unavailable(format!("control plane answered {status}"));
    }
    if status != 200 {
        let kind = if status == 403 { RefusalKind::Forbidden } else { RefusalKind::Unauthorized };
        return Verdict::Refuse(kind.with(format!("the control plane refused the session ({status})")));
    }
    let mut response = response;
    let body = match response.body_mut().with_config().limit(CONTROL_PLANE_BODY_BYTES_MAX).read_to_string() {
        Ok(body) => body,
        Err(e) => return Verdict::Unavailable(format!("control plane answer unreadable: {e}")),
    };
    let answer: Answer = match serde_json::from_str(&body) {
        Ok(answer) => answer,
        Err(e) => {
            return Verdict::Refuse(
                RefusalKind::Unauthorized.with(format!("control plane answer is not a session: {e}")),
            )
        }
    };
    if answer.user_id.is_empty() || answer.cuenta_id.is_empty() {
        return Verdict::Refuse(RefusalKind::Unauthorized.with("the control plane's answer names no user or tenant"));
    }
    let now = crate::clock::unix_now();
    if answer.exp.saturating_add(leeway_seconds) < now {
        return Verdict::Refuse(RefusalKind::TokenExpired.with("the session has expired"));
    }
    Verdict::Admit(SessionClaims {
        sub: answer.user_id,
        cuenta_id: answer.cuenta_id,
        edge_id: answer.edge_id,
        permisos: answer.permisos,
        jti: session_id.to_owned(),
        iat: now,
        exp: answer.exp,
        nbf: None,
        role: None,
    })
}
