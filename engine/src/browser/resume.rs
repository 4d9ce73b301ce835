//! Live subscriptions that outlive their connector (PROTOCOL.md §5.3).
//!
//! When a live stream ends because its connector went away (a crash, a
//! lost network, or a clean stop that ended the stream), its level-2
//! subscribers are told `live_waiting` and stay subscribed
//! ([`crate::worker::Worker`] marks them, `QueryLink::Waiting`). The
//! worker's sweep calls [`resume_waiting`]: at once when a connector of the
//! subscription's tenant registers or leaves, otherwise when its retry is
//! due — 1 s after the end, then `LIVE_RESUME_RETRY` doubled per failed
//! try up to 30 s, and the first wait longer too when a resumed stream ends
//! again within 30 s (a connector that keeps ending it is asked less
//! often) — each waiting subscription is
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

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use volley_protocol::Codec;

use super::requests::attach;
use crate::session::{live_backoff, BrowserSession, QueryLink, LIVE_RESUME_RETRY};
use crate::worker::Worker;

/// One sweep's pass over this worker's waiting subscriptions: those due
/// (all of them when `connectors_changed`) are attached again where a
/// connector serves their dataset live.
pub(crate) fn resume_waiting(worker: &Rc<Worker>, connectors_changed: bool, now: Instant) {
    worker.live_waiting.set(false);
    // Each tenant's connector generation, looked up once per pass and only
    // when some connector came or went: a waiting subscription is tried at
    // once only when its own tenant's connectors changed.
    let mut generations: HashMap<String, u64> = HashMap::new();
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
        let tenant = &session.claims.cuenta_id;
        let generation = if connectors_changed {
            *generations.entry(tenant.clone()).or_insert_with(|| worker.shared.registry.tenant_generation(tenant))
        } else {
            0
        };
        let due: Vec<Due> = session
            .queries
            .borrow()
            .iter()
            .filter_map(|q| match &q.link {
                QueryLink::Waiting { dataset, retry_at, seen, attempts }
                    if (connectors_changed && generation != *seen) || *retry_at <= now =>
                {
                    Some(Due {
                        query_id: q.id.clone(),
                        dataset: dataset.clone(),
                        codecs: q.codecs.clone(),
                        attempts: *attempts,
                    })
                }
                _ => None,
            })
            .collect();
        for due in due {
            resume(worker, &session, due, now);
        }
        if session.queries.borrow().iter().any(|q| q.stream().is_none()) {
            worker.live_waiting.set(true);
        }
    }
}

/// A waiting subscription to try now.
struct Due {
    query_id: String,
    dataset: String,
    codecs: Vec<Option<Codec>>,
    attempts: u32,
}

fn resume(worker: &Rc<Worker>, session: &Rc<BrowserSession>, due: Due, now: Instant) {
    let Due { query_id, dataset, codecs, attempts } = due;
    let (query_id, dataset) = (query_id.as_str(), dataset.as_str());
    // Read before the try: a connector that registers during it changes it.
    let seen = worker.shared.registry.tenant_generation(&session.claims.cuenta_id);
    match attach(worker, session, query_id, dataset, true, &codecs) {
        Ok((stream, _)) => {
            let mut queries = session.queries.borrow_mut();
            if let Some(query) = queries.iter_mut().find(|q| q.id == query_id) {
                query.link = QueryLink::Attached(stream);
                query.attached = Some((now, attempts));
            }
            log::debug!("session {}: live subscription {query_id:?} of {dataset:?} resumed", session.id);
        }
        // No connector serves it live yet (another may serve it not live
        // while the live one restarts), or none has room now: wait on.
        Err(_) => {
            if let Some(query) = session.queries.borrow_mut().iter_mut().find(|q| q.id == query_id) {
                let attempts = attempts.saturating_add(1);
                let retry_at = now + live_backoff(LIVE_RESUME_RETRY, attempts);
                query.link = QueryLink::Waiting { dataset: dataset.to_owned(), retry_at, seen, attempts };
            }
        }
    }
}
