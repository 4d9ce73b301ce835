//! The directory thread: a std thread of its own (like the revocation feed),
//! with one blocking Redis connection. Never on a worker and never on the
//! frame path: the workers only wake it ([`super::Directory::wake`], a
//! channel of one), and it reaches a tunnel only through that tunnel's
//! bounded command mailbox.
//!
//! Each pass, when woken or every third of `cluster.lease_seconds`:
//! 1. reads which tunnels are registered here (the registry, under its
//!    shard locks, copied out) and hands them to [`Leases`], which says what
//!    to write: releases of connectors that left, registrations of new
//!    tunnels (each a new epoch);
//! 2. on the tick, writes this node's key (heartbeat, TTL one lease) and
//!    renews every lease held; a lease lost to a newer registration closes
//!    its tunnels here with 4004 (the connector reconnects and registers
//!    again, with a new epoch) — once, logged with the reason;
//! 3. sleeps until the next tick or wake-up.
//!
//! Redis unreachable: tunnels keep registering and serving locally (the
//! registry is this node's routing; the directory only tells other nodes),
//! registrations are owed and written, leases renewed or restored, on the
//! first pass after Redis answers again — within a third of a lease of it.
//! One warning per outage, one line when it ends.
//!
//! At stop, the thread releases its leases (compare-and-delete: a lease
//! another node took meanwhile stays) and deletes its node key, each command
//! bounded by [`super::command_timeout`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};
use volley_protocol::ws::close_code;

use super::keys::{self, ConnectorKeys};
use super::leases::{Action, LeaseKey, Leases, Tunnel, UNAUTHENTICATED};
use super::lookup::connect;
use super::scripts::{LeaseWrite, Renewal, Scripts};
use super::{command_timeout, Directory};
use crate::mailbox::PushError;
use crate::registry::{ConnectorCmd, ConnectorHandle};
use crate::revocation::feed::redact_url;
use crate::shared::Shared;

/// Starts the directory thread when `cluster:` is set.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<Option<JoinHandle<()>>> {
    if shared.cluster.is_none() {
        return Ok(None);
    }
    std::thread::Builder::new().name("volley-directory".into()).spawn(move || run(&shared)).map(Some)
}

/// The connector id of a tunnel: its credential's `jti`.
fn connector_id(handle: &ConnectorHandle) -> String {
    handle.credential_jti.clone().unwrap_or_else(|| UNAUTHENTICATED.to_owned())
}

/// The thread's state between passes.
struct Node<'a> {
    shared: &'a Shared,
    directory: &'a Directory,
    scripts: Scripts,
    leases: Leases,
    connection: Option<Connection>,
    /// Since when Redis has not answered (one warning per outage).
    outage: Option<Instant>,
    started: i64,
    /// Tunnels of lost leases whose close command found their mailbox full: retried each pass.
    closing: Vec<(u64, String)>,
    /// When each lease this node holds was first registered here, Unix seconds.
    since: HashMap<LeaseKey, i64>,
    /// Another process heartbeating under this node id was reported.
    duplicate_warned: bool,
}

fn run(shared: &Shared) {
    let Some(directory) = shared.cluster.as_ref() else { return };
    let identity = &directory.identity;
    let tick = Duration::from_millis(identity.lease_seconds.saturating_mul(1000) / 3);
    log::info!(
        "cluster: node {} (advertised as {}) keeps its connectors' leases in {} with a {} s lease; peer links are not \
         built yet, so each node serves its own connectors only",
        identity.node_id,
        identity.advertise,
        redact_url(&directory.redis_url),
        identity.lease_seconds
    );
    let mut node = Node {
        shared,
        directory,
        scripts: Scripts::new(),
        leases: Leases::default(),
        connection: None,
        outage: None,
        started: crate::clock::unix_now(),
        closing: Vec::new(),
        since: HashMap::new(),
        duplicate_warned: false,
    };
    let mut next_tick = Instant::now();
    while !shared.is_stopping() {
        let due = Instant::now() >= next_tick;
        if due {
            next_tick = Instant::now() + tick;
        }
        node.pass(due);
        let wait = next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        let _ = directory.wake_rx.recv_timeout(wait);
    }
    node.leave();
}

impl Node<'_> {
    fn pass(&mut self, due: bool) {
        let handles = self.shared.registry.all_connectors();
        let tunnels: Vec<Tunnel> =
            handles.iter().map(|h| Tunnel { id: h.id, tenant: h.tenant.clone(), connector: connector_id(h) }).collect();
        let actions = self.leases.reconcile(&tunnels);
        self.retry_closes(&handles);
        // Redis down: owed writes wait for the tick, so an outage costs one
        // connection attempt per third of a lease, not one per wake-up.
        if !due && (actions.is_empty() || self.outage.is_some()) {
            return;
        }
        if self.connection.is_none() {
            let timeout = command_timeout(self.directory.identity.lease_seconds);
            match connect(&self.directory.redis_url, timeout) {
                Ok(connection) => self.connection = Some(connection),
                Err(e) => {
                    self.failed(&e);
                    self.publish();
                    return;
                }
            }
        }
        let result = self.write(&actions, due, &handles);
        match result {
            Ok(()) => {
                if let Some(since) = self.outage.take() {
                    log::info!(
                        "cluster: Redis at {} answers again after {:.1} s; this node's leases are written again ({} \
                         held)",
                        redact_url(&self.directory.redis_url),
                        since.elapsed().as_secs_f64(),
                        self.leases.held()
                    );
                }
                self.directory.stats.redis_up.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                self.connection = None;
                self.failed(&e);
            }
        }
        self.publish();
    }

    fn publish(&self) {
        self.directory.stats.leases_held.store(self.leases.held(), Ordering::Relaxed);
    }

    /// A Redis command failed: counted, and logged once per outage.
    fn failed(&mut self, e: &redis::RedisError) {
        let stats = &self.directory.stats;
        stats.redis_errors.fetch_add(1, Ordering::Relaxed);
        stats.redis_up.store(false, Ordering::Relaxed);
        if self.outage.is_none() {
            self.outage = Some(Instant::now());
            log::warn!(
                "cluster: Redis at {} does not answer ({e}); this node goes on serving its connectors, but their \
                 leases are not renewed, so other nodes will not find them here once the leases expire ({} s). Check \
                 that redis-server runs there and that this host reaches it (redis.url in gateway.yaml); the \
                 directory retries every {} ms and logs once when Redis answers again",
                redact_url(&self.directory.redis_url),
                self.directory.identity.lease_seconds,
                self.directory.identity.lease_seconds.saturating_mul(1000) / 3
            );
        }
    }

    fn write(&mut self, actions: &[Action], due: bool, handles: &[Arc<ConnectorHandle>]) -> RedisResult<()> {
        let Some(mut connection) = self.connection.take() else { return Ok(()) };
        let result = self.write_on(&mut connection, actions, due, handles);
        self.connection = Some(connection);
        result
    }

    fn write_on(
        &mut self,
        c: &mut Connection,
        actions: &[Action],
        due: bool,
        handles: &[Arc<ConnectorHandle>],
    ) -> RedisResult<()> {
        let directory = self.directory;
        let stats = &directory.stats;
        for action in actions {
            match action {
                Action::Release(key, epoch) => {
                    self.since.remove(key);
                    let (tenant, connector) = key;
                    let keys = ConnectorKeys::new(tenant, connector);
                    self.scripts.release(c, &keys, connector, &directory.instance, *epoch)?;
                }
                Action::Register(key) => {
                    let since = *self.since.entry(key.clone()).or_insert_with(crate::clock::unix_now);
                    let tunnels = self.leases.tunnels_field(key);
                    let keys = ConnectorKeys::new(&key.0, &key.1);
                    let epoch = self.scripts.register(c, &self.lease(key, &keys, &tunnels, since))?;
                    self.leases.registered(key, epoch);
                    stats.registrations.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "cluster: connector {:?} of tenant {:?} registered here at epoch {epoch} (tunnels {tunnels})",
                        key.1,
                        key.0
                    );
                }
            }
        }
        if !due {
            return Ok(());
        }
        self.heartbeat(c)?;
        for (key, epoch) in self.leases.renewals() {
            let since = self.since.get(&key).copied().unwrap_or(self.started);
            let tunnels = self.leases.tunnels_field(&key);
            let keys = ConnectorKeys::new(&key.0, &key.1);
            let answer = self.scripts.renew(c, &self.lease(&key, &keys, &tunnels, since), epoch)?;
            match answer {
                Renewal::Renewed => {
                    stats.renewals.fetch_add(1, Ordering::Relaxed);
                }
                Renewal::Restored => {
                    stats.renewals.fetch_add(1, Ordering::Relaxed);
                    stats.restored_leases.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "cluster: the lease of connector {:?} of tenant {:?} had expired in Redis with no newer \
                         registration; written again at epoch {epoch}",
                        key.1,
                        key.0
                    );
                }
                Renewal::Lost(newer) => self.lost(&key, epoch, newer, handles),
            }
        }
        Ok(())
    }

    fn lease<'k>(&'k self, key: &'k LeaseKey, keys: &'k ConnectorKeys, tunnels: &'k str, since: i64) -> LeaseWrite<'k> {
        let identity = &self.directory.identity;
        LeaseWrite {
            keys,
            tenant: &key.0,
            connector: &key.1,
            node: &identity.node_id,
            instance: &self.directory.instance,
            advertise: &identity.advertise,
            tunnels,
            since,
            lease_ms: identity.lease_seconds.saturating_mul(1000),
        }
    }

    /// Writes this node's key, alive for one lease; warns (once) when
    /// another process heartbeats under the same node id.
    fn heartbeat(&mut self, c: &mut Connection) -> RedisResult<()> {
        let identity = &self.directory.identity;
        let key = keys::node(&identity.node_id);
        let holder: Option<String> = redis::cmd("HGET").arg(&key).arg("instance").query(c)?;
        if let Some(other) = holder.filter(|holder| *holder != self.directory.instance) {
            if !self.duplicate_warned {
                self.duplicate_warned = true;
                log::error!(
                    "cluster: another gateway ({other}) heartbeats as node {:?} too; this one is {}. Give every \
                     node its own cluster.node_id (the default is the host name, the same for two gateways on one \
                     host): meanwhile `volley cluster status` shows one of them, and their connectors' leases \
                     fence each other as if they were on two nodes",
                    identity.node_id,
                    self.directory.instance
                );
            }
        }
        let now_ms = i64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
        )
        .unwrap_or(i64::MAX);
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("node")
            .arg(&identity.node_id)
            .arg("instance")
            .arg(&self.directory.instance)
            .arg("advertise")
            .arg(&identity.advertise)
            .arg("started")
            .arg(self.started)
            .arg("heartbeat_ms")
            .arg(now_ms)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(identity.lease_seconds.saturating_mul(1000))
            .ignore()
            .query::<()>(c)
    }

    /// A lease was lost to a newer registration: its tunnels here are stale.
    fn lost(&mut self, key: &LeaseKey, epoch: u64, newer: u64, handles: &[Arc<ConnectorHandle>]) {
        let closing = self.leases.renewed(key, epoch, Renewal::Lost(newer));
        if closing.is_empty() {
            return;
        }
        self.since.remove(key);
        self.directory.stats.lost_leases.fetch_add(1, Ordering::Relaxed);
        let names: Vec<String> = closing.iter().map(|id| format!("c-{id}")).collect();
        if self.shared.is_draining() {
            // The connector moved as this node asked (`reconnect`): its
            // tunnels here only finish their running streams and then close,
            // by the connector or at the drain's end. Nothing is written.
            log::info!(
                "cluster: connector {:?} of tenant {:?} registered elsewhere (epoch {newer} over {epoch}) as this \
                 draining node asked; its tunnel(s) here ({}) finish their streams and close",
                key.1,
                key.0,
                names.join(", ")
            );
            return;
        }
        log::warn!(
            "cluster: lost the lease of connector {:?} of tenant {:?}: this node held epoch {epoch}, and a newer \
             registration (epoch {newer}) exists, so the connector reconnected elsewhere while this node was paused \
             or cut off from Redis for longer than the lease. Closing its stale tunnel(s) here ({}) with 4004; the \
             connector keeps its newer tunnel and reconnects any other",
            key.1,
            key.0,
            names.join(", ")
        );
        let reason = format!(
            "another gateway holds a newer registration of this connector (epoch {newer} over {epoch}); reconnect"
        );
        self.closing.extend(closing.into_iter().map(|id| (id, reason.clone())));
        self.retry_closes(handles);
    }

    /// Sends each pending close to its tunnel's mailbox; keeps those that found it full.
    fn retry_closes(&mut self, handles: &[Arc<ConnectorHandle>]) {
        if self.closing.is_empty() {
            return;
        }
        let by_id: HashMap<u64, &Arc<ConnectorHandle>> = handles.iter().map(|h| (h.id, h)).collect();
        self.closing.retain(|(id, reason)| {
            let Some(handle) = by_id.get(id) else { return false };
            let close = ConnectorCmd::Close { code: close_code::CONNECTOR_REFUSED, reason: reason.clone() };
            matches!(handle.mailbox.push(close), Err(PushError::Full(_)))
        });
    }

    /// At stop: releases the leases and deletes this node's key.
    fn leave(mut self) {
        let held = self.leases.drain();
        let connection = match self.connection.take() {
            Some(connection) => Ok(connection),
            None => connect(&self.directory.redis_url, command_timeout(self.directory.identity.lease_seconds)),
        };
        let node_id = &self.directory.identity.node_id;
        let instance = &self.directory.instance;
        let left = connection.and_then(|mut c| {
            let mut released = 0;
            for ((tenant, connector), epoch) in &held {
                let keys = ConnectorKeys::new(tenant, connector);
                if self.scripts.release(&mut c, &keys, connector, instance, *epoch)? {
                    released += 1;
                }
            }
            // Only this process's key: another one with the same id keeps its own.
            let node_key = keys::node(node_id);
            let holder: Option<String> = redis::cmd("HGET").arg(&node_key).arg("instance").query(&mut c)?;
            if holder.as_deref() == Some(instance.as_str()) {
                let _: i64 = redis::cmd("DEL").arg(&node_key).query(&mut c)?;
            }
            Ok(released)
        });
        self.directory.stats.leases_held.store(0, Ordering::Relaxed);
        match left {
            Ok(released) => {
                log::info!("cluster: node {node_id} left the directory ({released} lease(s) released)")
            }
            Err(e) => log::warn!(
                "cluster: node {node_id} could not leave the directory cleanly ({e}); its key and {} lease(s) expire \
                 by themselves within {} s",
                held.len(),
                self.directory.identity.lease_seconds
            ),
        }
    }
}
