//! The worker's side of the admission queue (PROTOCOL.md §5.1): its
//! sessions' queries waiting in their tenant's queue
//! (`registry/queue.rs`), their admission when a slot frees, and their
//! deadline (`queries.queue_timeout_seconds`).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use volley_protocol::message::ErrorCode;

use super::{LocalSub, Worker, WorkerMsg};
use crate::metrics::WorkerMetrics;
use crate::registry::{Opened, QueryParams, Subscriber};
use crate::session::{OpenQuery, QueryLink};

/// A query of one of this worker's sessions, waiting in its tenant's queue.
pub struct QueuedQuery {
    /// The session.
    pub session: u64,
    /// The query's id.
    pub query_id: String,
    /// Its tenant (the queue it waits in).
    pub tenant: String,
    /// Its dataset.
    pub dataset: String,
    /// When it was queued.
    pub since: Instant,
    /// Its wait's ticket (`registry::Waiter::ticket`).
    pub ticket: u64,
}

impl Worker {
    /// How many of the session's queries wait in the admission queue.
    pub fn queued_count(&self, session: u64) -> usize {
        self.local.borrow().queued.iter().filter(|q| q.session == session).count()
    }

    /// True when the session's query `query_id` waits in the admission queue.
    pub fn is_queued(&self, session: u64, query_id: &str) -> bool {
        self.local.borrow().queued.iter().any(|q| q.session == session && q.query_id == query_id)
    }

    /// Forgets the session's queued query `query_id` here and in its
    /// tenant's queue; false when it was not queued.
    pub fn unqueue(&self, session: u64, query_id: &str) -> bool {
        let queued = {
            let mut local = self.local.borrow_mut();
            let Some(at) = local.queued.iter().position(|q| q.session == session && q.query_id == query_id) else {
                return false;
            };
            local.queued.remove(at)
        };
        // Not in the tenant's queue any more: admitted meanwhile, and its
        // `Admitted` message, on its way here, ends the stream it got.
        self.shared.registry.dequeue(&queued.tenant, session, query_id);
        true
    }

    /// Opens streams for the tenant's waiting queries that a tunnel has room
    /// for now, and hands each to its session's worker.
    pub fn admit_queued(&self, tenant: &str) {
        let registry = &self.shared.registry;
        if registry.queued_queries.load(Ordering::Relaxed) == 0 {
            return;
        }
        let params = QueryParams::from_config(&self.shared.config);
        for (waiter, opened) in registry.admit_waiting(tenant, params) {
            let (stream, is_new) = (opened.stream.clone(), opened.is_new);
            let message = WorkerMsg::Admitted(waiter.subscriber.clone(), waiter.ticket, opened);
            let pushed = match self.shared.inboxes.get(waiter.subscriber.worker) {
                Some(inbox) => inbox.push(message).is_ok(),
                None => false,
            };
            // The session's worker cannot be told now (its inbox is full):
            // the query leaves its stream (a new one ends before it was
            // opened upstream, or opens for the queries that joined it) and
            // goes back to the head of the queue, for the next slot.
            if !pushed {
                let subscriber = &waiter.subscriber;
                if is_new {
                    self.leave_unopened(&stream, subscriber, None);
                } else if stream.detach(subscriber.worker, subscriber.session, &subscriber.query_id) == 0 {
                    self.unread(&stream);
                }
                registry.requeue_front(tenant, waiter);
            }
        }
    }

    /// A queued query was given a stream: a new one starts (`Open` to the
    /// connector), a shared one it joined is read from its log; when its
    /// session or the query is gone, it leaves the stream (a new stream
    /// then ends before it was ever opened upstream).
    pub(super) fn admitted(&self, subscriber: &Subscriber, ticket: u64, opened: &Opened) {
        let Opened { stream, reader, is_new } = opened;
        let (reader, is_new) = (*reader, *is_new);
        let queued = {
            let mut local = self.local.borrow_mut();
            let at = local.queued.iter().position(|q| q.ticket == ticket);
            at.map(|at| local.queued.remove(at))
        };
        let session = self.local.borrow().sessions.get(&subscriber.session).cloned();
        let gone = match (&queued, &session) {
            (Some(_), Some(session)) => session.ring.borrow().is_closing(),
            _ => true,
        };
        let (Some(queued), Some(session), false) = (queued, session, gone) else {
            // A new stream this query was to open may have joiners by now.
            if is_new {
                self.leave_unopened(stream, subscriber, None);
            } else {
                self.detach(stream, subscriber.session, &subscriber.query_id);
            }
            return;
        };
        WorkerMetrics::record(
            &mut self.metrics.borrow_mut().queue_wait_ms,
            u64::try_from(queued.since.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
        self.add_sub(
            stream.id,
            LocalSub {
                session: session.clone(),
                query_id: queued.query_id.clone(),
                dataset: queued.dataset,
                live: false,
                compression: stream.compression,
                started: false,
                skipping: false,
                skipped: 0,
                // Time to first byte counts from the request, queue included.
                opened_at: queued.since,
                first_frame_seen: false,
                snapshot_through: None,
                reader: reader.map(|slot| (stream.clone(), slot)),
                share_seen: 0,
            },
        );
        let query_seconds = self.shared.config.timeouts.query_seconds;
        session.queries.borrow_mut().push(OpenQuery {
            id: queued.query_id.clone(),
            link: QueryLink::Attached(stream.clone()),
            credit_owed: 0,
            reader,
            // The query's own time starts when it is admitted.
            deadline: Some(Instant::now() + Duration::from_secs(query_seconds)),
            attached: None,
            codecs: Vec::new(),
        });
        if !is_new {
            if let Some(slot) = reader {
                self.pull_reader(&session, stream, slot, &queued.query_id);
            }
            return;
        }
        if let Err(why) = stream.request_open() {
            session.take_query(&queued.query_id);
            self.leave_unopened(stream, subscriber, Some(why));
            let (code, message) = why.explain(&stream.dataset);
            session.error(code, message, Some(queued.query_id));
        }
    }

    /// Refuses this worker's queued queries that waited longer than
    /// `queries.queue_timeout_seconds`.
    pub fn expire_queued(&self, now: Instant) {
        let timeout = Duration::from_secs(self.shared.config.queries.queue_timeout_seconds);
        let expired: Vec<QueuedQuery> = {
            let mut local = self.local.borrow_mut();
            if !local.queued.iter().any(|q| now.saturating_duration_since(q.since) >= timeout) {
                return;
            }
            let (expired, kept) = std::mem::take(&mut local.queued)
                .into_iter()
                .partition(|q| now.saturating_duration_since(q.since) >= timeout);
            local.queued = kept;
            expired
        };
        for queued in expired {
            // Admitted meanwhile: its `Admitted` message ends the stream.
            self.shared.registry.dequeue(&queued.tenant, queued.session, &queued.query_id);
            let session = self.local.borrow().sessions.get(&queued.session).cloned();
            if let Some(session) = session {
                session.error(
                    ErrorCode::TooManyRequests,
                    format!(
                        "waited {} s for a stream slot (queries.queue_timeout_seconds): the connectors serving {:?} \
                         were busy with other streams or offline the whole time; retry later",
                        timeout.as_secs(),
                        queued.dataset
                    ),
                    Some(queued.query_id),
                );
            }
        }
    }
}
