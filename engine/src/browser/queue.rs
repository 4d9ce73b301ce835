//! A session's query joining its tenant's admission queue (PROTOCOL.md
//! §5.1): every tunnel serving the dataset is at its stream limit, so the
//! query waits for a slot (`queued`) instead of being refused — unless
//! `queries.queue_max` queries of the tenant already wait.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::time::Instant;

use volley_protocol::message::{BrowserEvent, ErrorCode};
use volley_protocol::Codec;

use crate::frame::Level;
use crate::registry::{Subscriber, Waiter};
use crate::session::BrowserSession;
use crate::worker::{QueuedQuery, Worker};

/// Queues the session's query `query_id` of `dataset`, and tells the browser
/// (`queued`, level 2), or refuses it when the tenant's queue is full.
pub(super) fn enqueue(
    worker: &Rc<Worker>,
    session: &Rc<BrowserSession>,
    query_id: String,
    dataset: String,
    codecs: Vec<Option<Codec>>,
) {
    let config = &worker.shared.config;
    let tenant = session.claims.cuenta_id.clone();
    let subscriber = Subscriber { worker: worker.index, session: session.id, query_id: query_id.clone() };
    let ticket = worker.shared.next_id();
    let waiter = Waiter { subscriber, dataset: dataset.clone(), codecs, ticket };
    match worker.shared.registry.enqueue(&tenant, waiter, config.queries.queue_max) {
        Ok(position) => {
            worker.local.borrow_mut().queued.push(QueuedQuery {
                session: session.id,
                query_id: query_id.clone(),
                tenant: tenant.clone(),
                dataset: dataset.clone(),
                since: Instant::now(),
                ticket,
            });
            if session.level == Level::Two {
                session.send(&BrowserEvent::Queued {
                    query_id,
                    dataset,
                    position: u64::try_from(position).unwrap_or(u64::MAX),
                });
            }
            // A slot may have freed between the refusal and the queueing.
            worker.admit_queued(&tenant);
        }
        Err(waiting) => session.error(
            ErrorCode::TooManyRequests,
            format!(
                "every connector serving {dataset:?} is at its stream limit and {waiting} queries of your tenant \
                 already wait for one (queries.queue_max): retry later"
            ),
            Some(query_id),
        ),
    }
}
