//! A tenant's admission queue (PROTOCOL.md §5.1): queries that found every
//! tunnel serving their dataset at its stream limit wait here, in order,
//! instead of being refused, and are admitted — their stream opened here,
//! under the tenant's lock, so no later request takes the slot — as soon as
//! a stream of the tenant ends or a connector registers.
//!
//! Bounded per tenant (`queries.queue_max`); each waiter is a few strings.
//! The session side (its deadline, `queued`, cancel) is the worker's
//! (`worker/admit.rs`, `browser/requests.rs`).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::Ordering;

use volley_protocol::Codec;

use super::{OpenError, Registry, Subscriber};

/// A query waiting for a stream slot.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// Who asked.
    pub subscriber: Subscriber,
    /// The dataset.
    pub dataset: String,
    /// The codecs it may get, most preferred first (as for `open_query`).
    pub codecs: Vec<Option<Codec>>,
    /// Unique in the gateway: names this wait, so that an admission that
    /// arrives after the query was cancelled and its id reused starts nothing.
    pub ticket: u64,
}

impl Registry {
    /// Queues `waiter` behind the tenant's other waiters; returns its
    /// position (1: next), or, when `queue_max` already wait, how many do.
    pub fn enqueue(&self, tenant: &str, waiter: Waiter, queue_max: usize) -> Result<usize, usize> {
        let mut shard = self.tenant_shard(tenant).write();
        let entry = shard.entry(tenant.to_owned()).or_default();
        if entry.queue.len() >= queue_max {
            return Err(entry.queue.len());
        }
        entry.queue.push_back(waiter);
        self.queued_queries.fetch_add(1, Ordering::Relaxed);
        self.queries_queued_total.fetch_add(1, Ordering::Relaxed);
        Ok(entry.queue.len())
    }

    /// Puts back, first in line, a waiter whose admission could not be handed
    /// to its worker (the queue may exceed `queue_max` by these few).
    pub fn requeue_front(&self, tenant: &str, waiter: Waiter) {
        let mut shard = self.tenant_shard(tenant).write();
        shard.entry(tenant.to_owned()).or_default().queue.push_front(waiter);
        self.queued_queries.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the session's query `query_id` out of the tenant's queue; false
    /// when it is not there (never queued, or admitted meanwhile).
    pub fn dequeue(&self, tenant: &str, session: u64, query_id: &str) -> bool {
        let mut shard = self.tenant_shard(tenant).write();
        let Some(entry) = shard.get_mut(tenant) else { return false };
        let Some(at) =
            entry.queue.iter().position(|w| w.subscriber.session == session && w.subscriber.query_id == query_id)
        else {
            return false;
        };
        entry.queue.remove(at);
        self.queued_queries.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// True when the tenant has queries waiting for `dataset`: a new query
    /// for it queues behind them instead of taking a slot they wait for.
    pub(super) fn has_waiters(entry: &super::TenantEntry, dataset: &str) -> bool {
        entry.queue.iter().any(|w| w.dataset == dataset)
    }

    /// Admits, in queue order, every waiter of the tenant that can go now:
    /// one whose identical query runs shared joins it (no slot needed);
    /// another gets a new stream if a tunnel has room (one that has none is
    /// skipped: a later waiter for another dataset may fit, or join). Each
    /// admitted waiter is attached to its stream; the caller hands it to
    /// the waiter's worker, which sends `Open` for a new stream (or ends
    /// it, if the browser left meanwhile).
    pub fn admit_waiting(&self, tenant: &str, params: super::QueryParams) -> Vec<(Waiter, super::Opened)> {
        let now = std::time::Instant::now();
        let mut admitted = Vec::new();
        let mut shard = self.tenant_shard(tenant).write();
        let Some(entry) = shard.get_mut(tenant) else { return admitted };
        let has_room = |entry: &super::TenantEntry| {
            entry.connectors.iter().any(|c| c.active_streams.load(Ordering::Relaxed) < params.streams_per_connector_max)
        };
        // Datasets found without room in this pass: their later waiters are
        // skipped unless they can join a shared stream.
        let mut full: Vec<String> = Vec::new();
        let mut at = 0;
        while let Some(waiter) = entry.queue.get(at) {
            let joined = self.join_shared(entry, &waiter.dataset, &waiter.codecs, &waiter.subscriber, now);
            if let Some(joined) = joined {
                if let Some(waiter) = entry.queue.remove(at) {
                    self.queued_queries.fetch_sub(1, Ordering::Relaxed);
                    admitted.push((waiter, joined));
                }
                continue;
            }
            // No tunnel of the tenant has a free slot and nothing runs to
            // join: nothing more to scan (this runs on every stream end and
            // every queued query).
            if !has_room(entry) && entry.shared.is_empty() {
                break;
            }
            if full.contains(&waiter.dataset) || !has_room(entry) {
                at += 1;
                continue;
            }
            let (dataset, codecs) = (waiter.dataset.clone(), waiter.codecs.clone());
            let picked = codecs.iter().find_map(|codec| {
                match self.pick_connector(entry, &dataset, false, *codec, params.streams_per_connector_max) {
                    Ok(connector) => Some((connector, *codec)),
                    Err(OpenError::Busy | OpenError::NoCodec | OpenError::Offline | OpenError::NotFound)
                    | Err(OpenError::NotLive) => None,
                }
            });
            let Some((connector, codec)) = picked else {
                full.push(dataset);
                at += 1;
                continue;
            };
            let Some(waiter) = entry.queue.remove(at) else { break };
            self.queued_queries.fetch_sub(1, Ordering::Relaxed);
            let subscriber = waiter.subscriber.clone();
            let opened = self.start_query(entry, tenant, &dataset, codec, connector, subscriber, params, now);
            admitted.push((waiter, opened));
        }
        admitted
    }
}
