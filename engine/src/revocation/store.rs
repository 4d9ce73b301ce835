//! The durable record of revocations in Redis (PROTOCOL.md §6.2): one sorted
//! set per [`Kind`] next to the channel, `<channel>:sessions`, `:users`,
//! `:tenant_users` and `:tenants`; member = the id ([`Revocation::member`]),
//! score = the Unix second at which the entry stops mattering.
//!
//! - [`Store::write`]: `ZADD <key> GT <expiry> <member>`, so a write never
//!   shortens an entry another gateway or the publisher stretched.
//! - [`Store::load`]: `ZREVRANGEBYSCORE <key> +inf (<now> WITHSCORES LIMIT 0 <n>`
//!   for each kind, broadest first, [`REVOCATIONS_MAX`] entries in all (the
//!   ones that expire last win when Redis holds more).
//! - [`Store::prune`]: `ZREMRANGEBYSCORE <key> -inf <now>`.
//!
//! A lost connection is returned as an error (the feed reconnects); a reply
//! error (a key of another type, a Redis user without the right to run the
//! command) is logged with what to do and the rest goes on.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use redis::{Connection, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::{Kind, Revocation, Revocations, REVOCATIONS_MAX, REVOCATION_MESSAGE_BYTES_MAX};

/// The sorted-set keys of one channel.
pub struct Store {
    channel: String,
}

/// What a load found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Live entries read from Redis.
    pub entries: usize,
    /// Entries that were new to this gateway, or now last longer.
    pub changed: usize,
}

impl Store {
    /// The record that goes with `channel`.
    pub fn new(channel: &str) -> Store {
        Store { channel: channel.to_owned() }
    }

    /// The sorted set of `kind`: `<channel>:<suffix>`.
    pub fn key(&self, kind: Kind) -> String {
        format!("{}:{}", self.channel, kind.suffix())
    }

    /// Records `revocation` until `expires` (never shortening an entry).
    pub fn write(&self, c: &mut Connection, revocation: &Revocation, expires: i64) -> RedisResult<()> {
        let key = self.key(revocation.kind());
        let reply = redis::cmd("ZADD").arg(&key).arg("GT").arg(expires).arg(revocation.member()).query::<Value>(c);
        match reply {
            Ok(_) => Ok(()),
            Err(e) if connection_lost(&e) => Err(e),
            Err(e) => {
                log::error!(
                    "revocation record: ZADD {key} GT {expires} failed: {e}; {revocation:?} lasts only in this \
                     gateway's memory (the gateway's Redis user needs ZADD, ZREVRANGEBYSCORE and ZREMRANGEBYSCORE on \
                     {}:*, and Redis 6.2 or newer)",
                    self.channel
                );
                Ok(())
            }
        }
    }

    /// Removes the entries that expired by `now`; returns how many.
    pub fn prune(&self, c: &mut Connection, now: i64) -> RedisResult<u64> {
        let mut removed = 0;
        for kind in Kind::ALL {
            let key = self.key(kind);
            match redis::cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now).query::<u64>(c) {
                Ok(n) => removed += n,
                Err(e) if connection_lost(&e) => return Err(e),
                Err(e) => log::error!("revocation record: ZREMRANGEBYSCORE {key} failed: {e}; expired entries stay"),
            }
        }
        Ok(removed)
    }

    /// Loads the live entries into `revocations`.
    pub fn load(&self, c: &mut Connection, revocations: &Revocations, now: i64) -> RedisResult<Loaded> {
        let mut loaded = Loaded::default();
        for kind in Kind::ALL {
            let budget = REVOCATIONS_MAX.saturating_sub(loaded.entries);
            if budget == 0 {
                log::warn!(
                    "revocation record: {REVOCATIONS_MAX} live entries loaded; {} and the kinds after it were not read",
                    self.key(kind)
                );
                break;
            }
            let key = self.key(kind);
            let reply = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&key)
                .arg("+inf")
                .arg(format!("({now}"))
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(budget)
                .query::<Vec<(Vec<u8>, Value)>>(c);
            let entries = match reply {
                Ok(entries) => entries,
                Err(e) if connection_lost(&e) => return Err(e),
                Err(e) => {
                    log::error!(
                        "revocation record: ZREVRANGEBYSCORE {key} failed: {e}; its revocations are not loaded"
                    );
                    continue;
                }
            };
            if entries.len() >= budget {
                log::warn!(
                    "revocation record: {key} holds more live entries than the {REVOCATIONS_MAX} a gateway keeps; \
                     the ones that expire soonest were not loaded"
                );
            }
            let mut skipped = 0usize;
            for (member, score) in entries {
                let parsed = std::str::from_utf8(&member)
                    .map_err(|e| e.to_string())
                    .and_then(|member| {
                        if member.len() > REVOCATION_MESSAGE_BYTES_MAX {
                            return Err(format!("over {REVOCATION_MESSAGE_BYTES_MAX} bytes"));
                        }
                        Revocation::from_member(kind, member)
                    })
                    .and_then(|revocation| score_seconds(&score).map(|expires| (revocation, expires)));
                match parsed {
                    Ok((revocation, expires)) => {
                        loaded.entries += 1;
                        if revocations.insert_until(&revocation, expires, now) {
                            loaded.changed += 1;
                        }
                    }
                    Err(why) => {
                        skipped += 1;
                        if skipped == 1 {
                            log::warn!("revocation record: skipping a member of {key}: {why}");
                        }
                    }
                }
            }
            if skipped > 1 {
                log::warn!("revocation record: skipped {skipped} unusable members of {key} in all");
            }
        }
        Ok(loaded)
    }
}

/// True when `e` means the connection is gone or Redis is not ready yet
/// (reconnect and retry), not that Redis refused one command for good.
pub fn connection_lost(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown,
        ) => true,
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType | ErrorKind::Parse => false,
        _ => true,
    }
}

/// A sorted-set score as whole Unix seconds (rounded down; `inf` saturates).
fn score_seconds(score: &Value) -> Result<i64, String> {
    let text = match score {
        Value::Int(n) => return Ok(*n),
        Value::Double(x) => x.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        other => return Err(format!("score {other:?} is not a number")),
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let x: f64 = text.parse().map_err(|_| format!("score {text:?} is not a number"))?;
    if x.is_nan() {
        return Err("score is NaN".into());
    }
    // 9.2e18 is just below i64::MAX; past it (or at +inf) the entry never expires.
    if x >= 9.2e18 {
        return Ok(i64::MAX);
    }
    if x <= -9.2e18 {
        return Ok(i64::MIN);
    }
    format!("{:.0}", x.floor()).parse().map_err(|_| format!("score {text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_become_whole_seconds() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(score_seconds(&bulk("1795000000")), Ok(1_795_000_000));
        assert_eq!(score_seconds(&bulk("1795000000.9")), Ok(1_795_000_000));
        assert_eq!(score_seconds(&bulk("1.5e9")), Ok(1_500_000_000));
        assert_eq!(score_seconds(&bulk("inf")), Ok(i64::MAX));
        assert_eq!(score_seconds(&bulk("-inf")), Ok(i64::MIN));
        assert_eq!(score_seconds(&Value::Double(12.5)), Ok(12));
        assert!(score_seconds(&bulk("soon")).is_err());
        assert!(score_seconds(&bulk("nan")).is_err());
    }

    #[test]
    fn keys_sit_next_to_the_channel() {
        let store = Store::new("volley:revocations");
        assert_eq!(store.key(Kind::Sessions), "volley:revocations:sessions");
        assert_eq!(store.key(Kind::TenantUsers), "volley:revocations:tenant_users");
    }
}
