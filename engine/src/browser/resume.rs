//! Live subscriptions that outlive their connector (PROTOCOL.md §5.3).
//!
//! When a live stream ends because its connector went away (a crash, a
//! lost network, or a clean stop that ended the stream), its level-2
//! subscribers are told `live_waiting` and stay subscribed
//! ([`crate::worker::Worker`] marks them, `OpenQuery::waiting`). The
//! worker's sweep calls [`resume_waiting`]: whenever connectors come or go,
//! and every [`LIVE_RESUME_RETRY`] besides, each waiting subscription is
//! attached again through the registry, exactly as a new `subscribe` would
//! be — joining the dataset's running live stream or starting one — and
//! the browser gets a new `stream_start` (a new `stream_id`, the schema
//! again) and then frames. A subscription waits until it resumes or its
//! browser unsubscribes or leaves: whether a dataset is gone for good
//! cannot be told from connectors coming and going (another connector may
//! serve it, not live, while the live one restarts), and the page learns
//! what is online from `datasets_changed`. It holds only its entry in the
//! session's queries (counted in `limits.pending_requests_max`): the
//! dataset's name and its codecs, nothing of the ended stream.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::time::{Duration, Instant};

use volley_protocol::Codec;

use super::requests::attach;
use crate::session::{BrowserSession, QueryLink};
use crate::worker::Worker;

/// How often a waiting subscription is tried again while no connector
/// change gives a reason to (a tunnel at its stream limit, a snapshot that
/// did not fit the session's ring).
pub const LIVE_RESUME_RETRY: Duration = Duration::from_secs(2);

/// One sweep's pass over this worker's waiting subscriptions: those due
/// (all of them when `connectors_changed`) are attached again where a
/// connector serves their dataset live.
pub(crate) fn resume_waiting(worker: &Rc<Worker>, connectors_changed: bool, now: Instant) {
    worker.live_waiting.set(false);
    let sessions: Vec<Rc<BrowserSession>> = worker
        .local
        .borrow()
        .sessions
        .values()
        .filter(|session| session.queries.borrow().iter().any(|q| q.stream().is_none()))
        .cloned()
        .collect();
    for session in sessions {
        if session.ctl.killed() || session.ring.borrow().is_closing() {
            continue;
        }
        let due: Vec<(String, String, Vec<Option<Codec>>)> = session
            .queries
            .borrow()
            .iter()
            .filter_map(|q| match &q.link {
                QueryLink::Waiting { dataset, retry_at } if connectors_changed || *retry_at <= now => {
                    Some((q.id.clone(), dataset.clone(), q.codecs.clone()))
                }
                _ => None,
            })
            .collect();
        for (query_id, dataset, codecs) in due {
            resume(worker, &session, &query_id, &dataset, &codecs, now);
        }
        if session.queries.borrow().iter().any(|q| q.stream().is_none()) {
            worker.live_waiting.set(true);
        }
    }
}

fn resume(
    worker: &Rc<Worker>,
    session: &Rc<BrowserSession>,
    query_id: &str,
    dataset: &str,
    codecs: &[Option<Codec>],
    now: Instant,
) {
    match attach(worker, session, query_id, dataset, true, codecs) {
        Ok(stream) => {
            let mut queries = session.queries.borrow_mut();
            if let Some(query) = queries.iter_mut().find(|q| q.id == query_id) {
                query.link = QueryLink::Attached(stream);
            }
            log::debug!("session {}: live subscription {query_id:?} of {dataset:?} resumed", session.id);
        }
        // No connector serves it live yet (another may serve it not live
        // while the live one restarts), or none has room now: wait on.
        Err(_) => {
            if let Some(query) = session.queries.borrow_mut().iter_mut().find(|q| q.id == query_id) {
                query.link = QueryLink::Waiting { dataset: dataset.to_owned(), retry_at: now + LIVE_RESUME_RETRY };
            }
        }
    }
}
