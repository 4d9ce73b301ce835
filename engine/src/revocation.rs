//! Revocations (PROTOCOL.md §6.2): what a revocation
//! names, the in-memory set every admission checks, and how the feed tells
//! the workers.
//!
//! - A revocation names one session (`{"session_id": "<jti>"}`, a browser
//!   session or a connector credential), one user in every tenant
//!   (`{"user_id": "…"}`), one user in one tenant (`{"user_id": "…",
//!   "cuenta_id": "…"}`) or one tenant (`{"cuenta_id": "…"}`), optionally with
//!   `"exp"` (Unix seconds).
//! - [`Revocations`] is checked when a browser session is admitted (403
//!   `revoked`) and when a connector registers. An entry lives until its
//!   expiry: `exp` plus the token leeway when the message gives one, else
//!   `redis.revocation_ttl_seconds`. A session entry follows its token once a
//!   gateway sees that token (an open session or tunnel when the revocation
//!   arrives, or a later attempt to use it): it then lasts exactly until the
//!   token's own `exp` plus the leeway — shorter for a short-lived browser
//!   token, longer for a connector credential that outlives the TTL, which
//!   therefore never comes back while it is valid. The set holds at most
//!   [`REVOCATIONS_MAX`] entries; at the limit expired entries are purged and
//!   then the [`EVICT_BATCH`] entries that expire soonest are dropped (logged).
//! - The revocations last beyond one process and one subscription: each is
//!   kept in Redis too, one sorted set per kind next to the channel
//!   (`<channel>:sessions`, `:users`, `:tenant_users`, `:tenants`; score = the
//!   expiry in Unix seconds), written by the publisher and by every gateway
//!   that receives the message, loaded at start and after every reconnect,
//!   and pruned of expired entries. [`store`] holds that record, [`feed`] the
//!   thread that subscribes, loads, writes and prunes.
//! - A revocation received on the feed is recorded here, queued for the
//!   durable record and pushed once into every worker's inbox as
//!   [`WorkerMsg::Revoke`] (all three by [`feed::revoke`]); each worker closes
//!   its matching browser sessions with close code 4000 and the covered
//!   tunnels on it. After a load that added anything, every worker gets
//!   [`WorkerMsg::Recheck`] and closes whatever open session or tunnel the set
//!   now covers.
//!
//! This module is the set and what a revocation names, below the gateway's
//! shared state (which holds a [`Revocations`]); [`feed`], which needs that
//! state and the workers' inboxes, sits above it.
//!
//! [`WorkerMsg::Revoke`]: crate::worker_msg::WorkerMsg::Revoke
//! [`WorkerMsg::Recheck`]: crate::worker_msg::WorkerMsg::Recheck

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod feed;
mod names;
pub mod store;

use names::tenant_user_member;
pub use names::{Kind, Revocation, RevokedUser};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use volley_protocol::token::SessionClaims;

/// Most entries the revocation set holds (all kinds together); also the most
/// the feed loads from Redis at once.
pub const REVOCATIONS_MAX: usize = 100_000;
/// Entries dropped at once when the set is full of live entries (the ones
/// that expire soonest), so a full set costs one scan per batch, not per insert.
pub const EVICT_BATCH: usize = REVOCATIONS_MAX / 100;
/// Durable writes waiting for the Redis connection (a revocation received, an
/// entry stretched to its token's `exp`); past this the newest are dropped
/// from the queue (logged; they still apply in this gateway's memory).
pub const PENDING_WRITES_MAX: usize = 4096;
/// Largest revocation message accepted, bytes; also the largest member the
/// feed loads from a sorted set.
pub const REVOCATION_MESSAGE_BYTES_MAX: usize = 4096;

/// One map per [`Kind`], in the order `Sets::map` names them: member →
/// expiry (Unix seconds).
#[derive(Default)]
struct Sets {
    maps: [HashMap<String, i64>; 4],
}

impl Sets {
    fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    fn map(&mut self, kind: Kind) -> &mut HashMap<String, i64> {
        let [sessions, users, tenant_users, tenants] = &mut self.maps;
        match kind {
            Kind::Sessions => sessions,
            Kind::Users => users,
            Kind::TenantUsers => tenant_users,
            Kind::Tenants => tenants,
        }
    }

    fn get(&self, kind: Kind) -> &HashMap<String, i64> {
        let [sessions, users, tenant_users, tenants] = &self.maps;
        match kind {
            Kind::Sessions => sessions,
            Kind::Users => users,
            Kind::TenantUsers => tenant_users,
            Kind::Tenants => tenants,
        }
    }

    fn live(&self, kind: Kind, member: &str, now: i64) -> bool {
        self.get(kind).get(member).is_some_and(|expires| *expires > now)
    }

    fn purge_expired(&mut self, now: i64) {
        for map in &mut self.maps {
            map.retain(|_, expires| *expires > now);
        }
    }

    /// Drops the [`EVICT_BATCH`] entries that expire soonest.
    fn drop_soonest(&mut self) {
        let mut all: Vec<(i64, usize, String)> = self
            .maps
            .iter()
            .enumerate()
            .flat_map(|(kind, map)| map.iter().map(move |(member, expires)| (*expires, kind, member.clone())))
            .collect();
        let batch = EVICT_BATCH.clamp(1, all.len().max(1));
        if all.len() > batch {
            all.select_nth_unstable(batch - 1);
            all.truncate(batch);
        }
        for (_, kind, member) in all {
            if let Some(map) = self.maps.get_mut(kind) {
                map.remove(&member);
            }
        }
    }
}

/// The revoked sessions, users and tenants, each until its expiry, and the
/// durable writes waiting for the feed thread.
pub struct Revocations {
    sets: Mutex<Sets>,
    /// Entries held (a lock-free "nothing revoked" fast path).
    len: AtomicUsize,
    ttl_seconds: i64,
    leeway_seconds: i64,
    /// Entries to write to the Redis record (revocation, expiry).
    writes: Mutex<VecDeque<(Revocation, i64)>>,
    /// The Redis feed is configured.
    pub feed_configured: bool,
    /// The Redis feed is subscribed now and has loaded the Redis record.
    pub connected: AtomicBool,
}

impl Revocations {
    /// An empty set. Entries without a known expiry live `ttl_seconds`; a
    /// token is accepted until `leeway_seconds` after its `exp`, so entries
    /// that follow a token's `exp` last that much longer.
    pub fn new(ttl_seconds: u64, leeway_seconds: i64, feed_configured: bool) -> Revocations {
        Revocations {
            sets: Mutex::new(Sets::default()),
            len: AtomicUsize::new(0),
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX),
            leeway_seconds: leeway_seconds.max(0),
            writes: Mutex::new(VecDeque::new()),
            feed_configured,
            connected: AtomicBool::new(false),
        }
    }

    /// The expiry of a new revocation: `exp` plus the leeway when given, else now plus the TTL.
    pub fn expiry(&self, exp: Option<i64>, now: i64) -> i64 {
        exp.map_or(now.saturating_add(self.ttl_seconds), |exp| exp.saturating_add(self.leeway_seconds))
    }

    /// Records a revocation received on the feed; returns the expiry it got,
    /// `None` when that is already past (nothing recorded).
    pub fn insert(&self, revocation: &Revocation, exp: Option<i64>, now: i64) -> Option<i64> {
        let expires = self.expiry(exp, now);
        self.insert_until(revocation, expires, now);
        (expires > now).then_some(expires)
    }

    /// Records a revocation until `expires` (an existing entry keeps the later
    /// expiry); returns true when that added an entry or stretched one.
    pub fn insert_until(&self, revocation: &Revocation, expires: i64, now: i64) -> bool {
        if expires <= now {
            return false;
        }
        let kind = revocation.kind();
        let member = revocation.member();
        let mut sets = self.sets.lock();
        if let Some(current) = sets.map(kind).get_mut(&member) {
            let stretched = expires > *current;
            *current = (*current).max(expires);
            return stretched;
        }
        if sets.len() >= REVOCATIONS_MAX {
            sets.purge_expired(now);
            if sets.len() >= REVOCATIONS_MAX {
                log::warn!(
                    "revocation set full ({REVOCATIONS_MAX} live entries): dropping the {EVICT_BATCH} that expire soonest"
                );
                sets.drop_soonest();
            }
        }
        sets.map(kind).insert(member, expires);
        self.len.store(sets.len(), Ordering::Release);
        true
    }

    /// A gateway saw the token whose `jti` may be revoked, valid until
    /// `token_exp`: a session entry for it now lasts exactly until that `exp`
    /// plus the leeway. Shortening stays in memory; stretching (a connector
    /// credential that outlives the TTL) is queued for the Redis record too.
    pub fn token_seen(&self, jti: &str, token_exp: i64) {
        let until = token_exp.saturating_add(self.leeway_seconds);
        let stretched = {
            let mut sets = self.sets.lock();
            let Some(expires) = sets.map(Kind::Sessions).get_mut(jti) else { return };
            let stretched = until > *expires;
            *expires = until;
            stretched
        };
        if stretched {
            self.queue_write(Revocation::Session(jti.to_owned()), until);
        }
    }

    /// The revocation covering these session claims, if any.
    pub fn check_session(&self, claims: &SessionClaims, now: i64) -> Option<Revocation> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let covering = {
            let sets = self.sets.lock();
            if sets.live(Kind::Sessions, &claims.jti, now) {
                Some(Revocation::Session(claims.jti.clone()))
            } else if sets.live(Kind::Users, &claims.sub, now) {
                Some(Revocation::User(RevokedUser { user_id: claims.sub.clone(), cuenta_id: None }))
            } else if !sets.get(Kind::TenantUsers).is_empty()
                && sets.live(Kind::TenantUsers, &tenant_user_member(&claims.cuenta_id, &claims.sub), now)
            {
                Some(Revocation::User(RevokedUser {
                    user_id: claims.sub.clone(),
                    cuenta_id: Some(claims.cuenta_id.clone()),
                }))
            } else if sets.live(Kind::Tenants, &claims.cuenta_id, now) {
                Some(Revocation::Tenant(claims.cuenta_id.clone()))
            } else {
                None
            }
        };
        if let Some(Revocation::Session(jti)) = &covering {
            self.token_seen(jti, claims.exp);
        }
        covering
    }

    /// True when a connector of `tenant` with this credential (`jti`, `exp`;
    /// none for a seed-style connector) is revoked. A revoked credential's
    /// entry is stretched to the credential's `exp`.
    pub fn check_connector(&self, credential: Option<(&str, i64)>, tenant: &str, now: i64) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let (tenant_revoked, credential_revoked) = {
            let sets = self.sets.lock();
            (
                sets.live(Kind::Tenants, tenant, now),
                credential.is_some_and(|(jti, _)| sets.live(Kind::Sessions, jti, now)),
            )
        };
        if let Some((jti, exp)) = credential.filter(|_| credential_revoked) {
            self.token_seen(jti, exp);
        }
        tenant_revoked || credential_revoked
    }

    /// Drops the entries whose expiry has passed.
    pub fn purge_expired(&self, now: i64) {
        let mut sets = self.sets.lock();
        sets.purge_expired(now);
        self.len.store(sets.len(), Ordering::Release);
    }

    /// Queues an entry for the Redis record.
    pub fn queue_write(&self, revocation: Revocation, expires: i64) {
        let mut writes = self.writes.lock();
        if writes.len() >= PENDING_WRITES_MAX {
            log::warn!(
                "revocation record: {PENDING_WRITES_MAX} writes already wait for Redis; {revocation:?} is kept in this \
                 gateway's memory only"
            );
            return;
        }
        writes.push_back((revocation, expires));
    }

    /// Writes queued for the Redis record now.
    pub fn pending_writes(&self) -> usize {
        self.writes.lock().len()
    }

    /// Takes the queued writes (the feed thread's job).
    pub fn take_writes(&self) -> Vec<(Revocation, i64)> {
        self.writes.lock().drain(..).collect()
    }

    /// Puts writes that could not be done back at the front of the queue (bounded).
    pub fn requeue_writes(&self, failed: Vec<(Revocation, i64)>) {
        let mut writes = self.writes.lock();
        for write in failed.into_iter().rev() {
            if writes.len() >= PENDING_WRITES_MAX {
                log::warn!("revocation record: write queue full; {:?} is kept in memory only", write.0);
                continue;
            }
            writes.push_front(write);
        }
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

#[cfg(test)]
mod tests {
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

    fn user(user_id: &str, cuenta_id: Option<&str>) -> Revocation {
        Revocation::User(RevokedUser { user_id: user_id.into(), cuenta_id: cuenta_id.map(str::to_owned) })
    }

    #[test]
    fn parses_each_kind_and_refuses_ambiguity() {
        assert_eq!(Revocation::parse(r#"{"session_id":"s1"}"#).unwrap(), (Revocation::Session("s1".into()), None));
        assert_eq!(Revocation::parse(r#"{"user_id":"ana","exp":5}"#).unwrap(), (user("ana", None), Some(5)));
        assert_eq!(Revocation::parse(r#"{"user_id":"ana","cuenta_id":"acme"}"#).unwrap().0, user("ana", Some("acme")));
        assert_eq!(Revocation::parse(r#"{"cuenta_id":"acme"}"#).unwrap().0, Revocation::Tenant("acme".into()));
        assert!(Revocation::parse(r#"{"session_id":"s1","user_id":"ana"}"#).is_err());
        assert!(Revocation::parse(r#"{"session_id":"s1","cuenta_id":"acme"}"#).is_err());
        assert!(Revocation::parse(r#"{}"#).is_err());
        assert!(Revocation::parse(r#"{"session_id":""}"#).is_err());
        assert!(Revocation::parse(r#"{"user_id":"ana","cuenta_id":""}"#).is_err());
        assert!(Revocation::parse("not json").is_err());
        assert!(Revocation::parse(&"x".repeat(REVOCATION_MESSAGE_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn members_round_trip_and_odd_ids_stay_apart() {
        for revocation in [
            Revocation::Session("s1".into()),
            user("ana", None),
            user("ana", Some("acme")),
            user("a\",\"b", Some("c")),
            Revocation::Tenant("acme".into()),
        ] {
            let back = Revocation::from_member(revocation.kind(), &revocation.member()).unwrap();
            assert_eq!(back, revocation);
        }
        assert_ne!(user("b", Some("a:")).member(), user(":b", Some("a")).member());
        assert!(Revocation::from_member(Kind::TenantUsers, "acme/ana").is_err());
        assert!(Revocation::from_member(Kind::TenantUsers, r#"["","ana"]"#).is_err());
        assert!(Revocation::from_member(Kind::Sessions, "").is_err());
    }

    #[test]
    fn entries_expire_at_exp_or_ttl() {
        let set = Revocations::new(100, 0, true);
        let now = 1000;
        // The message gives the token's exp (the token says the same: seeing
        // it changes nothing).
        set.insert(&Revocation::Session("s1".into()), Some(now + 10), now);
        set.insert(&user("bob", None), None, now);
        let s1 = SessionClaims { exp: now + 10, ..claims("s1", "x", "t") };
        assert!(set.check_session(&s1, now + 9).is_some());
        assert!(set.check_session(&s1, now + 10).is_none());
        assert!(set.check_session(&claims("z", "bob", "t"), now + 99).is_some());
        assert!(set.check_session(&claims("z", "bob", "t"), now + 100).is_none());
        // An exp past the TTL is kept: it is what the publisher asked for.
        set.insert(&Revocation::Tenant("t2".into()), Some(now + 500), now);
        assert!(set.check_connector(None, "t2", now + 499));
        // Already expired: not recorded.
        assert_eq!(set.insert(&Revocation::Tenant("t".into()), Some(now - 1), now), None);
        assert!(!set.check_connector(None, "t", now));
    }

    #[test]
    fn a_tenant_scoped_user_revocation_covers_that_tenant_only() {
        let set = Revocations::new(100, 0, true);
        set.insert(&user("admin", Some("a")), None, 0);
        assert!(set.check_session(&claims("x", "admin", "a"), 1).is_some());
        assert!(set.check_session(&claims("x", "admin", "b"), 1).is_none());
        assert!(user("admin", Some("a")).matches(&claims("x", "admin", "a")));
        assert!(!user("admin", Some("a")).matches(&claims("x", "admin", "b")));
        assert!(user("admin", None).matches(&claims("x", "admin", "b")));
    }

    #[test]
    fn a_session_entry_follows_its_tokens_exp_plus_the_leeway() {
        let set = Revocations::new(100, 30, true);
        // A credential that lives past the TTL stretches the entry (and queues a write).
        set.insert(&Revocation::Session("cred".into()), None, 0);
        assert!(set.check_connector(Some(("cred", 1000)), "t", 1));
        assert!(set.check_connector(Some(("cred", 1000)), "t", 1029));
        assert!(!set.check_connector(Some(("cred", 1000)), "t", 1030));
        assert_eq!(set.take_writes(), vec![(Revocation::Session("cred".into()), 1030)]);
        // A short-lived browser token shortens it, in memory only.
        set.insert(&Revocation::Session("s".into()), None, 0);
        let mut short = claims("s", "u", "t");
        short.exp = 20;
        assert!(set.check_session(&short, 1).is_some());
        assert!(set.check_session(&short, 49).is_some());
        assert!(set.check_session(&short, 50).is_none());
        assert!(set.take_writes().is_empty());
    }

    #[test]
    fn the_set_stays_bounded() {
        let set = Revocations::new(1_000_000, 0, true);
        for i in 0..REVOCATIONS_MAX + 10 {
            let i64i = i64::try_from(i).unwrap();
            set.insert(&Revocation::Session(format!("s{i}")), Some(10 + i64i), 0);
        }
        assert!(set.len() <= REVOCATIONS_MAX);
        assert!(set.len() > REVOCATIONS_MAX - EVICT_BATCH);
        // The soonest-expiring ones were dropped; the newest is present.
        assert!(set.check_session(&claims("s0", "x", "t"), 1).is_none());
        assert!(set.check_session(&claims(&format!("s{}", REVOCATIONS_MAX + 9), "x", "t"), 1).is_some());
    }

    #[test]
    fn the_write_queue_stays_bounded() {
        let set = Revocations::new(10, 0, true);
        for i in 0..PENDING_WRITES_MAX + 5 {
            set.queue_write(Revocation::Session(format!("s{i}")), 5);
        }
        let writes = set.take_writes();
        assert_eq!(writes.len(), PENDING_WRITES_MAX);
        set.requeue_writes(writes);
        set.queue_write(Revocation::Session("late".into()), 5);
        assert_eq!(set.take_writes().len(), PENDING_WRITES_MAX);
    }
}
