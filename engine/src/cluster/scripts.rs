//! The directory's writes, each one Lua script so that Redis runs its
//! compare and its write as one step (the `redis` crate's [`Script`] sends
//! `EVALSHA` and loads the script on `NOSCRIPT`). Every key a script touches
//! is in its `KEYS` and in one tenant's slot (`keys.rs`).
//!
//! The fencing rule (docs/decisions/2026-12-07-cluster-directory.md): a
//! registration takes a new epoch from the connector's counter (`INCR`);
//! a node may extend or rewrite a lease only with the epoch it was given,
//! and only while no larger epoch has been given out and no other node holds
//! that epoch. So a node that was paused or cut off past its lease learns on
//! its next renewal that it lost ([`Renewal::Lost`]) and never overwrites the
//! newer registration. A lease that merely expired (Redis restarted and
//! forgot it, or Redis was unreachable longer than a lease) with no newer
//! epoch given out is written again by its node ([`Renewal::Restored`]).
//!
//! `renewal`, compiled for the unit tests only, states the same rule in Rust, as the
//! specification the Lua must match.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use redis::{Connection, RedisResult, Script};

use super::keys::{ConnectorKeys, EPOCH_TTL_SECONDS};

/// `KEYS`: epoch counter, lease, tenant index. `ARGV`: instance, lease ms,
/// tenant, connector, advertise, tunnels, since, counter TTL s, node.
/// Returns the new epoch: one more than the counter, and than the lease's
/// epoch should the counter have been lost while the lease was not.
const REGISTER: &str = r"
local epoch = redis.call('INCR', KEYS[1])
local held = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
if held >= epoch then
  epoch = held + 1
  redis.call('SET', KEYS[1], epoch)
end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'tenant', ARGV[3], 'connector', ARGV[4], 'node', ARGV[9], 'instance', ARGV[1],
  'epoch', epoch, 'advertise', ARGV[5], 'tunnels', ARGV[6], 'since', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
return epoch
";

/// `KEYS`: epoch counter, lease, tenant index. `ARGV`: instance, epoch, lease
/// ms, tenant, connector, advertise, tunnels, since, counter TTL s, node.
/// Returns `{1, epoch}` renewed, `{2, epoch}` restored, `{0, newer epoch}` lost.
const RENEW: &str = r"
local epoch = tonumber(ARGV[2])
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
if counter > epoch then return {0, counter} end
local held = redis.call('HMGET', KEYS[2], 'instance', 'epoch')
local held_epoch = tonumber(held[2] or '0')
if held[1] and (held_epoch > epoch or (held_epoch == epoch and held[1] ~= ARGV[1])) then
  return {0, held_epoch}
end
local status = 1
if not held[1] then
  status = 2
  redis.call('DEL', KEYS[2])
end
if counter < epoch then redis.call('SET', KEYS[1], epoch) end
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('HSET', KEYS[2], 'tenant', ARGV[4], 'connector', ARGV[5], 'node', ARGV[10], 'instance', ARGV[1],
  'epoch', epoch, 'advertise', ARGV[6], 'tunnels', ARGV[7], 'since', ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[5])
return {status, epoch}
";

/// `KEYS`: lease, tenant index. `ARGV`: instance, epoch, connector.
/// Deletes the lease only if this node holds it at this epoch; returns 1 then.
const RELEASE: &str = r"
local held = redis.call('HMGET', KEYS[1], 'instance', 'epoch')
if held[1] == ARGV[1] and held[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
if not held[1] then redis.call('SREM', KEYS[2], ARGV[3]) end
return 0
";

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// This node still holds the lease; its TTL is extended.
    Renewed,
    /// The lease had expired (or Redis forgot it) and no newer epoch was
    /// given out: written again for this node.
    Restored,
    /// A newer registration (this epoch) exists: the lease is lost and
    /// nothing was written.
    Lost(u64),
}

/// The rule the renewal script applies, in Rust: `counter` is the
/// connector's epoch counter (0 when absent), `held` the lease as Redis
/// has it (instance, epoch), `node` and `epoch` the renewing process's.
#[cfg(test)]
fn renewal(counter: u64, held: Option<(&str, u64)>, node: &str, epoch: u64) -> Renewal {
    if counter > epoch {
        return Renewal::Lost(counter);
    }
    match held {
        Some((holder, held_epoch)) if held_epoch > epoch || (held_epoch == epoch && holder != node) => {
            Renewal::Lost(held_epoch)
        }
        Some(_) => Renewal::Renewed,
        None => Renewal::Restored,
    }
}

/// One lease as this node writes it.
pub struct LeaseWrite<'a> {
    /// Its keys.
    pub keys: &'a ConnectorKeys,
    /// Tenant and connector ids (unescaped).
    pub tenant: &'a str,
    /// Connector id.
    pub connector: &'a str,
    /// This node's id.
    pub node: &'a str,
    /// This gateway process ([`super::Directory::instance`]): what the
    /// scripts compare, so that two processes given the same node id still
    /// fence each other.
    pub instance: &'a str,
    /// This node's advertised address.
    pub advertise: &'a str,
    /// The local tunnels, e.g. `c-3,c-7`.
    pub tunnels: &'a str,
    /// When this node's registration began, Unix seconds.
    pub since: i64,
    /// Lease length, milliseconds.
    pub lease_ms: u64,
}

/// The directory's scripts, loaded once per process.
pub struct Scripts {
    register: Script,
    renew: Script,
    release: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}

impl Scripts {
    /// The three scripts (their SHA-1 computed here; Redis loads them on first use).
    pub fn new() -> Scripts {
        Scripts { register: Script::new(REGISTER), renew: Script::new(RENEW), release: Script::new(RELEASE) }
    }

    /// A new registration: the next epoch, and the lease written for this node.
    pub fn register(&self, c: &mut Connection, lease: &LeaseWrite<'_>) -> RedisResult<u64> {
        self.register
            .key(&lease.keys.epoch)
            .key(&lease.keys.lease)
            .key(&lease.keys.index)
            .arg(lease.instance)
            .arg(lease.lease_ms)
            .arg(lease.tenant)
            .arg(lease.connector)
            .arg(lease.advertise)
            .arg(lease.tunnels)
            .arg(lease.since)
            .arg(EPOCH_TTL_SECONDS)
            .arg(lease.node)
            .invoke(c)
    }

    /// Renews the lease this node holds at `epoch` (the fencing rule of the module doc).
    pub fn renew(&self, c: &mut Connection, lease: &LeaseWrite<'_>, epoch: u64) -> RedisResult<Renewal> {
        let (status, found): (i64, u64) = self
            .renew
            .key(&lease.keys.epoch)
            .key(&lease.keys.lease)
            .key(&lease.keys.index)
            .arg(lease.instance)
            .arg(epoch)
            .arg(lease.lease_ms)
            .arg(lease.tenant)
            .arg(lease.connector)
            .arg(lease.advertise)
            .arg(lease.tunnels)
            .arg(lease.since)
            .arg(EPOCH_TTL_SECONDS)
            .arg(lease.node)
            .invoke(c)?;
        Ok(renewal_reply(status, found))
    }

    /// Deletes the lease if this process (`instance`) still holds it at `epoch`; true then.
    pub fn release(
        &self,
        c: &mut Connection,
        keys: &ConnectorKeys,
        connector: &str,
        instance: &str,
        epoch: u64,
    ) -> RedisResult<bool> {
        let deleted: i64 =
            self.release.key(&keys.lease).key(&keys.index).arg(instance).arg(epoch).arg(connector).invoke(c)?;
        Ok(deleted == 1)
    }
}

/// The renewal script's reply: `{status, epoch}`.
fn renewal_reply(status: i64, epoch: u64) -> Renewal {
    match status {
        1 => Renewal::Renewed,
        2 => Renewal::Restored,
        _ => Renewal::Lost(epoch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_epoch_anywhere_means_lost() {
        // The counter moved on (a newer registration, wherever its lease is).
        assert_eq!(renewal(2, Some(("b", 2)), "a", 1), Renewal::Lost(2));
        assert_eq!(renewal(2, None, "a", 1), Renewal::Lost(2), "even when the newer lease expired too");
        // The same epoch held by another node (a counter lost with Redis
        // and handed out again): not ours.
        assert_eq!(renewal(1, Some(("b", 1)), "a", 1), Renewal::Lost(1));
        // A lease with a larger epoch than the counter says (counter forgotten).
        assert_eq!(renewal(0, Some(("b", 3)), "a", 1), Renewal::Lost(3));
    }

    #[test]
    fn the_holder_renews_and_an_expired_lease_comes_back() {
        assert_eq!(renewal(4, Some(("a", 4)), "a", 4), Renewal::Renewed);
        // Expired, nothing newer given out.
        assert_eq!(renewal(4, None, "a", 4), Renewal::Restored);
        // Redis restarted empty: no counter, no lease.
        assert_eq!(renewal(0, None, "a", 4), Renewal::Restored);
    }

    #[test]
    fn replies_map_to_outcomes() {
        assert_eq!(renewal_reply(1, 3), Renewal::Renewed);
        assert_eq!(renewal_reply(2, 3), Renewal::Restored);
        assert_eq!(renewal_reply(0, 5), Renewal::Lost(5));
        assert_eq!(renewal_reply(-7, 5), Renewal::Lost(5), "anything else is not a success");
    }

    #[test]
    fn the_lua_states_the_same_rule() {
        // The script compares exactly what `renewal` compares, in that order.
        let counter = RENEW.find("if counter > epoch then return {0, counter}").unwrap();
        let holder = RENEW.find("held_epoch > epoch or (held_epoch == epoch and held[1] ~= ARGV[1])").unwrap();
        let write = RENEW.find("redis.call('HSET'").unwrap();
        assert!(counter < holder && holder < write);
        assert!(RELEASE.find("held[1] == ARGV[1] and held[2] == ARGV[2]").unwrap() < RELEASE.find("'DEL'").unwrap());
    }
}
