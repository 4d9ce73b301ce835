//! Revocations (DESIGN.md "Security"): the Redis pub/sub feed and the set of
//! revoked sessions, users and tenants.
//!
//! - A dedicated std thread ([`spawn_feed`]) subscribes to `redis.channel`
//!   with the blocking `redis` client and reconnects with a bounded
//!   exponential backoff, one log line per failed attempt. Each message —
//!   `{"session_id": "<jti>"}`, `{"user_id": "…"}` or `{"cuenta_id": "…"}`,
//!   optionally with `"exp"` (Unix seconds) — is recorded in
//!   [`Revocations`] and pushed once into every worker's inbox as
//!   [`WorkerMsg::Revoke`]; each worker closes its matching browser sessions
//!   with close code 4000 and, for a tenant, that tenant's tunnels on it.
//! - [`Revocations`] is checked when a browser session is admitted (403
//!   `revoked`) and when a connector registers, so a revoked session, user or
//!   tenant stays out until its entry expires: at the token's `exp` when it is
//!   known, else after `redis.revocation_ttl_seconds`. The set holds at most
//!   [`REVOCATIONS_MAX`] entries; at the limit expired entries are purged and
//!   then the entry that expires soonest is dropped (logged).
//!
//! Revocations published while the feed is disconnected are lost (pub/sub
//! keeps no history); `redis.fail_closed: true` refuses new sessions for as
//! long as the feed is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use volley_protocol::token::SessionClaims;

use crate::mailbox::PushError;
use crate::worker::WorkerMsg;
use crate::Shared;

/// Most entries the revocation set holds (sessions, users and tenants together).
pub const REVOCATIONS_MAX: usize = 100_000;
/// First reconnect delay of the Redis feed; doubles per failed attempt.
pub const REDIS_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay of the Redis feed.
pub const REDIS_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// TCP connect timeout to Redis.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read timeout of the subscription: how often the feed thread looks at the
/// gateway's stop flag.
pub const REDIS_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long the feed thread retries a full worker inbox before dropping a
/// revocation for that worker (the set still refuses new connections).
pub const INBOX_PUSH_PATIENCE: Duration = Duration::from_secs(1);
/// Largest revocation message accepted, bytes.
pub const REVOCATION_MESSAGE_BYTES_MAX: usize = 4096;

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session (its token's `jti`).
    Session(String),
    /// Every session of a user (`sub`).
    User(String),
    /// Every session and connector of a tenant (`cuenta_id`).
    Tenant(String),
}

#[derive(Deserialize)]
struct RevocationMessage {
    session_id: Option<String>,
    user_id: Option<String>,
    cuenta_id: Option<String>,
    exp: Option<i64>,
}

impl Revocation {
    /// Parses a feed message; returns the revocation and the optional expiry it carries.
    pub fn parse(text: &str) -> Result<(Revocation, Option<i64>), String> {
        if text.len() > REVOCATION_MESSAGE_BYTES_MAX {
            return Err(format!("message of {} bytes is over {REVOCATION_MESSAGE_BYTES_MAX}", text.len()));
        }
        let message: RevocationMessage = serde_json::from_str(text).map_err(|e| format!("not a revocation: {e}"))?;
        let named: Vec<Revocation> = [
            message.session_id.map(Revocation::Session),
            message.user_id.map(Revocation::User),
            message.cuenta_id.map(Revocation::Tenant),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Revocation; 1]>::try_from(named) {
            Ok([revocation]) if !revocation.key().is_empty() => Ok((revocation, message.exp)),
            Ok(_) => Err("the revoked id is empty".into()),
            Err(_) => Err("name exactly one of session_id, user_id, cuenta_id".into()),
        }
    }

    /// The id it names.
    pub fn key(&self) -> &str {
        match self {
            Revocation::Session(k) | Revocation::User(k) | Revocation::Tenant(k) => k,
        }
    }

    /// True when it covers a browser session with these claims.
    pub fn matches(&self, claims: &SessionClaims) -> bool {
        match self {
            Revocation::Session(jti) => claims.jti == *jti,
            Revocation::User(user) => claims.sub == *user,
            Revocation::Tenant(tenant) => claims.cuenta_id == *tenant,
        }
    }
}

#[derive(Default)]
struct Sets {
    /// id → expiry (Unix seconds), per kind.
    sessions: HashMap<String, i64>,
    users: HashMap<String, i64>,
    tenants: HashMap<String, i64>,
}

impl Sets {
    fn len(&self) -> usize {
        self.sessions.len() + self.users.len() + self.tenants.len()
    }

    fn map(&mut self, revocation: &Revocation) -> &mut HashMap<String, i64> {
        match revocation {
            Revocation::Session(_) => &mut self.sessions,
            Revocation::User(_) => &mut self.users,
            Revocation::Tenant(_) => &mut self.tenants,
        }
    }

    fn purge_expired(&mut self, now: i64) {
        for map in [&mut self.sessions, &mut self.users, &mut self.tenants] {
            map.retain(|_, expires| *expires > now);
        }
    }

    fn drop_soonest(&mut self) {
        let soonest = [&self.sessions, &self.users, &self.tenants]
            .into_iter()
            .enumerate()
            .flat_map(|(kind, map)| map.iter().map(move |(k, e)| (*e, kind, k)))
            .min()
            .map(|(_, kind, k)| (kind, k.clone()));
        if let Some((kind, key)) = soonest {
            [&mut self.sessions, &mut self.users, &mut self.tenants][kind].remove(&key);
        }
    }
}

/// The revoked sessions, users and tenants, each until its expiry.
pub struct Revocations {
    sets: Mutex<Sets>,
    /// Entries held (a lock-free "nothing revoked" fast path).
    len: AtomicUsize,
    ttl_seconds: i64,
    /// The Redis feed is configured.
    pub feed_configured: bool,
    /// The Redis feed is subscribed now.
    pub connected: AtomicBool,
}

impl Revocations {
    /// An empty set; entries without a known expiry live `ttl_seconds`.
    pub fn new(ttl_seconds: u64, feed_configured: bool) -> Revocations {
        Revocations {
            sets: Mutex::new(Sets::default()),
            len: AtomicUsize::new(0),
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX),
            feed_configured,
            connected: AtomicBool::new(false),
        }
    }

    /// Records a revocation until `exp` (when given and sooner than the TTL) or for the TTL.
    pub fn insert(&self, revocation: &Revocation, exp: Option<i64>, now: i64) {
        let ttl_end = now.saturating_add(self.ttl_seconds);
        let expires = exp.map_or(ttl_end, |exp| exp.min(ttl_end));
        if expires <= now {
            return;
        }
        let mut sets = self.sets.lock();
        let exists = sets.map(revocation).contains_key(revocation.key());
        if !exists && sets.len() >= REVOCATIONS_MAX {
            sets.purge_expired(now);
            if sets.len() >= REVOCATIONS_MAX {
                log::warn!("revocation set full ({REVOCATIONS_MAX} entries): dropping the one that expires soonest");
                sets.drop_soonest();
            }
        }
        let entry = sets.map(revocation).entry(revocation.key().to_owned()).or_insert(expires);
        *entry = (*entry).max(expires);
        self.len.store(sets.len(), Ordering::Release);
    }

    /// Shortens a session entry to its token's expiry, once a worker saw the
    /// token (after `exp` the token is refused as expired anyway).
    pub fn session_expires_at(&self, jti: &str, exp: i64) {
        if let Some(expires) = self.sets.lock().sessions.get_mut(jti) {
            *expires = (*expires).min(exp);
        }
    }

    /// The revocation covering these session claims, if any.
    pub fn check_session(&self, claims: &SessionClaims, now: i64) -> Option<Revocation> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let sets = self.sets.lock();
        let live = |map: &HashMap<String, i64>, key: &str| map.get(key).is_some_and(|expires| *expires > now);
        if live(&sets.sessions, &claims.jti) {
            Some(Revocation::Session(claims.jti.clone()))
        } else if live(&sets.users, &claims.sub) {
            Some(Revocation::User(claims.sub.clone()))
        } else if live(&sets.tenants, &claims.cuenta_id) {
            Some(Revocation::Tenant(claims.cuenta_id.clone()))
        } else {
            None
        }
    }

    /// True when a connector credential (`jti`, tenant) is revoked.
    pub fn check_connector(&self, jti: Option<&str>, tenant: &str, now: i64) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let sets = self.sets.lock();
        let live = |map: &HashMap<String, i64>, key: &str| map.get(key).is_some_and(|expires| *expires > now);
        live(&sets.tenants, tenant) || jti.is_some_and(|jti| live(&sets.sessions, jti))
    }

    /// Entries held now (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when new browser sessions must be refused: the feed is
    /// configured to fail closed and is not subscribed now.
    pub fn feed_down_and_fail_closed(&self, fail_closed: bool) -> bool {
        fail_closed && self.feed_configured && !self.connected.load(Ordering::Acquire)
    }
}

/// Starts the feed thread when `redis.url` is set.
pub fn spawn_feed(shared: Arc<Shared>) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(url) = shared.config.redis.url.clone() else { return Ok(None) };
    std::thread::Builder::new().name("volley-revocations".into()).spawn(move || feed(&shared, &url)).map(Some)
}

fn feed(shared: &Shared, url: &str) {
    let channel = shared.config.redis.channel().to_owned();
    let mut backoff = REDIS_BACKOFF_MIN;
    let mut attempt: u64 = 0;
    while !shared.is_stopping() {
        attempt += 1;
        match subscribe(shared, url, &channel, &mut backoff, &mut attempt) {
            Ok(()) => break,
            Err(e) => {
                shared.revocations.connected.store(false, Ordering::Release);
                let policy = if shared.config.redis.fail_closed {
                    "refusing new browser sessions (fail_closed)"
                } else {
                    "still admitting sessions (fail_closed is off)"
                };
                log::warn!(
                    "revocation feed {} channel {channel}: {e}; attempt {attempt} failed, retrying in {} ms; {policy}",
                    redact_url(url),
                    backoff.as_millis()
                );
                sleep_unless_stopping(shared, backoff);
                backoff = (backoff * 2).min(REDIS_BACKOFF_MAX);
            }
        }
    }
    shared.revocations.connected.store(false, Ordering::Release);
}

/// One connection's life: `Ok` when the gateway stops, `Err` when the connection is lost.
fn subscribe(
    shared: &Shared,
    url: &str,
    channel: &str,
    backoff: &mut Duration,
    attempt: &mut u64,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_connection_with_timeout(REDIS_CONNECT_TIMEOUT)?;
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe(channel)?;
    pubsub.set_read_timeout(Some(REDIS_POLL_INTERVAL))?;
    shared.revocations.connected.store(true, Ordering::Release);
    log::info!("revocation feed subscribed to {channel} at {}", redact_url(url));
    *backoff = REDIS_BACKOFF_MIN;
    *attempt = 0;
    let keepalive = Duration::from_secs(shared.config.redis.keepalive_seconds);
    let mut last_heard = std::time::Instant::now();
    loop {
        if shared.is_stopping() {
            return Ok(());
        }
        let message = match pubsub.get_message() {
            Ok(message) => message,
            Err(e) if e.is_timeout() => {
                if last_heard.elapsed() >= keepalive {
                    // A silent subscription may be a dead one: ask. A
                    // connection that does not answer in time is dropped and
                    // the feed reconnects (and reports itself down meanwhile).
                    pubsub.set_read_timeout(Some(keepalive))?;
                    let _: redis::Value = pubsub.ping()?;
                    pubsub.set_read_timeout(Some(REDIS_POLL_INTERVAL))?;
                    last_heard = std::time::Instant::now();
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        last_heard = std::time::Instant::now();
        let payload = message.get_payload_bytes();
        match std::str::from_utf8(payload).map_err(|e| e.to_string()).and_then(Revocation::parse) {
            Ok((revocation, exp)) => revoke(shared, revocation, exp),
            Err(e) => log::warn!("revocation feed: ignoring a message on {channel}: {e}"),
        }
    }
}

/// Records a revocation and tells every worker.
pub fn revoke(shared: &Shared, revocation: Revocation, exp: Option<i64>) {
    shared.revocations.insert(&revocation, exp, crate::unix_now());
    log::info!("revoked {revocation:?}");
    let revocation = Arc::new(revocation);
    for (index, inbox) in shared.inboxes.iter().enumerate() {
        let mut item = WorkerMsg::Revoke(revocation.clone());
        let deadline = std::time::Instant::now() + INBOX_PUSH_PATIENCE;
        loop {
            match inbox.push(item) {
                Ok(()) => break,
                Err(PushError::Full(back)) if std::time::Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(PushError::Full(_)) => {
                    log::error!("worker {index}'s inbox stayed full: {revocation:?} not applied to its open sessions");
                    break;
                }
                Err(PushError::Closed(_)) => break,
            }
        }
    }
}

fn sleep_unless_stopping(shared: &Shared, total: Duration) {
    let deadline = std::time::Instant::now() + total;
    while !shared.is_stopping() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(REDIS_POLL_INTERVAL));
    }
}

/// A URL fit for logs: any `user:password@` part is replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(super::redact_url("redis://:s3cret@db:6379/0"), "redis://<redacted>@db:6379/0");
        assert_eq!(super::redact_url("redis://db:6379"), "redis://db:6379");
    }

    use super::*;

    fn claims(jti: &str, sub: &str, tenant: &str) -> SessionClaims {
        SessionClaims {
            sub: sub.into(),
            cuenta_id: tenant.into(),
            edge_id: String::new(),
            permisos: vec![],
            jti: jti.into(),
            iat: 0,
            exp: 2_000_000_000,
            nbf: None,
            role: None,
        }
    }

    #[test]
    fn parses_each_kind_and_refuses_ambiguity() {
        assert_eq!(Revocation::parse(r#"{"session_id":"s1"}"#).unwrap(), (Revocation::Session("s1".into()), None));
        assert_eq!(
            Revocation::parse(r#"{"user_id":"ana","exp":5}"#).unwrap(),
            (Revocation::User("ana".into()), Some(5))
        );
        assert_eq!(Revocation::parse(r#"{"cuenta_id":"acme"}"#).unwrap().0, Revocation::Tenant("acme".into()));
        assert!(Revocation::parse(r#"{"session_id":"s1","user_id":"ana"}"#).is_err());
        assert!(Revocation::parse(r#"{}"#).is_err());
        assert!(Revocation::parse(r#"{"session_id":""}"#).is_err());
        assert!(Revocation::parse("not json").is_err());
        assert!(Revocation::parse(&"x".repeat(REVOCATION_MESSAGE_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn entries_expire_at_exp_or_ttl() {
        let set = Revocations::new(100, true);
        let now = 1000;
        set.insert(&Revocation::Session("s1".into()), Some(now + 10), now);
        set.insert(&Revocation::User("bob".into()), None, now);
        assert!(set.check_session(&claims("s1", "x", "t"), now + 9).is_some());
        assert!(set.check_session(&claims("s1", "x", "t"), now + 10).is_none());
        assert!(set.check_session(&claims("z", "bob", "t"), now + 99).is_some());
        assert!(set.check_session(&claims("z", "bob", "t"), now + 100).is_none());
        // Already expired: not recorded.
        set.insert(&Revocation::Tenant("t".into()), Some(now - 1), now);
        assert!(!set.check_connector(None, "t", now));
    }

    #[test]
    fn the_set_stays_bounded() {
        let set = Revocations::new(1_000_000, true);
        for i in 0..REVOCATIONS_MAX + 10 {
            let i64i = i64::try_from(i).unwrap();
            set.insert(&Revocation::Session(format!("s{i}")), Some(10 + i64i), 0);
        }
        assert_eq!(set.len(), REVOCATIONS_MAX);
        // The soonest-expiring ones were dropped; the newest is present.
        assert!(set.check_session(&claims("s0", "x", "t"), 1).is_none());
        assert!(set.check_session(&claims(&format!("s{}", REVOCATIONS_MAX + 9), "x", "t"), 1).is_some());
    }
}
