//! The revocation feed thread: a dedicated std thread ([`spawn_feed`]) with
//! the blocking `redis` client and two connections to `redis.url`, one
//! subscribed to `redis.channel`, one for the sorted sets of [`super::store`].
//!
//! Each connection's life, in this order:
//! 1. `SUBSCRIBE` (confirmed), so nothing published from now on is missed;
//! 2. prune the expired entries of the Redis record, then load the live ones
//!    (anything recorded before step 1 is read here, anything published
//!    after it arrives on the subscription: no gap);
//! 3. mark the feed connected (`redis.fail_closed` admits sessions again) and,
//!    when the load added anything, ask every worker to recheck its open
//!    sessions and tunnels ([`WorkerMsg::Recheck`]);
//! 4. handle messages, write the queued entries to the record, prune every
//!    `redis.prune_interval_seconds` (Redis and memory), `PING` a
//!    subscription silent for `redis.keepalive_seconds`.
//!
//! A lost connection (either one) ends the life; the thread reconnects with
//! a bounded exponential backoff, one log line per failed attempt, and
//! reports itself down meanwhile. Writes that could not be done are kept
//! (bounded) and retried after the reconnect.
//!
//! When the gateway stops, the thread ends at its next look at the stop flag
//! (it does not write then). Writes may still be queued: a revocation applied
//! a moment before the stop (its sessions already closed), one whose write
//! failed and waits for a reconnect, an entry a worker stretched while
//! draining. The gateway's stop, once the workers and this thread have ended,
//! writes them over a fresh connection with [`flush_on_stop`], within
//! [`STOP_FLUSH_TIMEOUT`] (Redis may be down), so the next gateway on the same
//! Redis loads them; what is left is logged.
//!
//! A message received is applied by [`revoke`]: recorded in the set
//! ([`super::Revocations`]), queued for the record, and pushed into every
//! worker's inbox by [`tell_workers`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::Store;
use super::Revocation;
use crate::mailbox::PushError;
use crate::shared::Shared;
use crate::worker_msg::WorkerMsg;

/// First reconnect delay of the Redis feed; doubles per failed attempt.
pub const REDIS_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay of the Redis feed.
pub const REDIS_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// TCP connect timeout to Redis.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the answer to one command on the record connection.
pub const REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout of the subscription: how often the feed thread looks at the
/// gateway's stop flag and at the queued writes.
pub const REDIS_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Longest the gateway's stop spends writing the entries still queued for
/// the Redis record ([`flush_on_stop`]), connecting included.
pub const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries named in the log line of [`flush_on_stop`] when some were not written.
const LOST_SHOWN: usize = 10;

/// How long the feed thread retries a full worker inbox before dropping a
/// message for that worker (the set still refuses new connections).
pub const INBOX_PUSH_PATIENCE: Duration = Duration::from_secs(1);
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
            Err(e) if shared.is_stopping() => {
                log::info!(
                    "revocation feed {} channel {channel}: {e} while the gateway stops; not reconnecting (queued \
                     writes are written on the way out)",
                    redact_url(url)
                );
                break;
            }
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

/// One connection's life: `Ok` when the gateway stops, `Err` when a connection is lost.
fn subscribe(
    shared: &Shared,
    url: &str,
    channel: &str,
    backoff: &mut Duration,
    attempt: &mut u64,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut record = client.get_connection_with_timeout(REDIS_CONNECT_TIMEOUT)?;
    record.set_read_timeout(Some(REDIS_COMMAND_TIMEOUT))?;
    record.set_write_timeout(Some(REDIS_COMMAND_TIMEOUT))?;
    let mut connection = client.get_connection_with_timeout(REDIS_CONNECT_TIMEOUT)?;
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe(channel)?;
    pubsub.set_read_timeout(Some(REDIS_POLL_INTERVAL))?;

    // Subscribed first, loaded second (see the module doc).
    let store = Store::new(channel);
    let now = crate::clock::unix_now();
    let pruned = store.prune(&mut record, now)?;
    let loaded = store.load(&mut record, &shared.revocations, now)?;
    shared.revocations.purge_expired(now);
    shared.revocations.connected.store(true, Ordering::Release);
    log::info!(
        "revocation feed subscribed to {channel} at {}; {} live revocation(s) in the Redis record ({} new here), {pruned} \
         expired one(s) pruned",
        redact_url(url),
        loaded.entries,
        loaded.changed
    );
    if loaded.changed > 0 {
        tell_workers(shared, || WorkerMsg::Recheck);
    }
    *backoff = REDIS_BACKOFF_MIN;
    *attempt = 0;

    let keepalive = Duration::from_secs(shared.config.redis.keepalive_seconds);
    let prune_every = Duration::from_secs(shared.config.redis.prune_interval_seconds);
    let mut last_heard = Instant::now();
    let mut last_pruned = Instant::now();
    loop {
        if shared.is_stopping() {
            return Ok(());
        }
        flush_writes(shared, &store, &mut record, None)?;
        if last_pruned.elapsed() >= prune_every {
            let now = crate::clock::unix_now();
            let pruned = store.prune(&mut record, now)?;
            shared.revocations.purge_expired(now);
            if pruned > 0 {
                log::info!("revocation record: pruned {pruned} expired entr{}", if pruned == 1 { "y" } else { "ies" });
            }
            last_pruned = Instant::now();
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
                    last_heard = Instant::now();
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        last_heard = Instant::now();
        let payload = message.get_payload_bytes();
        match std::str::from_utf8(payload).map_err(|e| e.to_string()).and_then(Revocation::parse) {
            Ok((revocation, exp)) => revoke(shared, revocation, exp),
            Err(e) => log::warn!("revocation feed: ignoring a message on {channel}: {e}"),
        }
    }
}

/// Writes the queued entries to the Redis record; on a lost connection puts
/// the unwritten ones back and returns the error ([`Store::write`] logs and
/// drops an entry Redis refused, so only a lost connection comes back here).
/// With a `deadline`, each write gets only the time left and none starts
/// after it (the unwritten ones are put back and a timeout returned).
fn flush_writes(
    shared: &Shared,
    store: &Store,
    record: &mut redis::Connection,
    deadline: Option<Instant>,
) -> redis::RedisResult<()> {
    let writes = shared.revocations.take_writes();
    if writes.is_empty() {
        return Ok(());
    }
    let now = crate::clock::unix_now();
    let mut pending = writes.into_iter();
    while let Some((revocation, expires)) = pending.next() {
        if expires <= now {
            continue;
        }
        let written = match deadline {
            Some(deadline) => limit_to(record, deadline).and_then(|()| store.write(record, &revocation, expires)),
            None => store.write(record, &revocation, expires),
        };
        if let Err(e) = written {
            let mut unwritten = vec![(revocation, expires)];
            unwritten.extend(pending);
            shared.revocations.requeue_writes(unwritten);
            return Err(e);
        }
    }
    Ok(())
}

/// Gives the next command on `record` only the time left until `deadline`.
fn limit_to(record: &mut redis::Connection, deadline: Instant) -> redis::RedisResult<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "out of time").into());
    }
    record.set_read_timeout(Some(left))?;
    record.set_write_timeout(Some(left))
}

/// The gateway is stopping and the feed thread has ended: writes the entries
/// still queued for the Redis record over a fresh connection, within
/// [`STOP_FLUSH_TIMEOUT`], so a gateway started later on the same Redis
/// refuses them too. What cannot be written in time is logged.
pub fn flush_on_stop(shared: &Shared) {
    let Some(url) = shared.config.redis.url.as_deref() else { return };
    let queued = shared.revocations.pending_writes();
    if queued == 0 {
        return;
    }
    let deadline = Instant::now() + STOP_FLUSH_TIMEOUT;
    let channel = shared.config.redis.channel();
    let store = Store::new(channel);
    let flushed = redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(STOP_FLUSH_TIMEOUT))
        .and_then(|mut record| flush_writes(shared, &store, &mut record, Some(deadline)));
    let lost = shared.revocations.take_writes();
    match flushed {
        Ok(()) => log::info!(
            "revocation record: wrote the {queued} entr{} still queued at stop to {}",
            if queued == 1 { "y" } else { "ies" },
            redact_url(url)
        ),
        Err(e) => {
            let shown: Vec<_> = lost.iter().take(LOST_SHOWN).map(|(revocation, _)| revocation).collect();
            log::error!(
                "revocation record: {} entr{} still queued at stop could not be written to {} within {} s ({e}); \
                 they applied in this gateway only and a gateway started later admits them again: publish them \
                 again (or ZADD them to {channel}:<kind>, PROTOCOL.md §6.2) once Redis answers. First ones: \
                 {shown:?}",
                lost.len(),
                if lost.len() == 1 { "y" } else { "ies" },
                redact_url(url),
                STOP_FLUSH_TIMEOUT.as_secs()
            );
        }
    }
}

fn sleep_unless_stopping(shared: &Shared, total: Duration) {
    let deadline = Instant::now() + total;
    while !shared.is_stopping() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(REDIS_POLL_INTERVAL));
    }
}

/// A URL fit for logs: any `user:password@` part is replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((_credentials, host)) => format!("{scheme}://<redacted>@{host}"),
        None => url.to_owned(),
    }
}

/// Records a revocation received on the feed, queues it for the Redis record
/// and tells every worker.
pub fn revoke(shared: &Shared, revocation: Revocation, exp: Option<i64>) {
    match shared.revocations.insert(&revocation, exp, crate::clock::unix_now()) {
        Some(expires) => {
            log::info!("revoked {revocation:?} until {expires}");
            shared.revocations.queue_write(revocation.clone(), expires);
        }
        None => log::info!("revoked {revocation:?} (its exp has passed: open sessions closed, nothing recorded)"),
    }
    let revocation = Arc::new(revocation);
    tell_workers(shared, || WorkerMsg::Revoke(revocation.clone()));
}

/// Pushes one message into every worker's inbox, waiting at most
/// [`INBOX_PUSH_PATIENCE`] for a full one.
pub fn tell_workers(shared: &Shared, message: impl Fn() -> WorkerMsg) {
    for (index, inbox) in shared.inboxes.iter().enumerate() {
        let mut item = message();
        let deadline = std::time::Instant::now() + INBOX_PUSH_PATIENCE;
        loop {
            match inbox.push(item) {
                Ok(()) => break,
                Err(PushError::Full(back)) if std::time::Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(PushError::Full(back)) => {
                    log::error!("worker {index}'s inbox stayed full: {back:?} not applied to its open sessions");
                    break;
                }
                Err(PushError::Closed(_)) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(super::redact_url("redis://:s3cret@db:6379/0"), "redis://<redacted>@db:6379/0");
        assert_eq!(super::redact_url("redis://db:6379"), "redis://db:6379");
    }
}
