//! A browser session's state ([`BrowserSession`]): what its worker, its
//! sweep and the revocation checks need to see of it — its ring, its kill
//! switch, its claims, its open queries. The connection that drives it is
//! [`crate::browser`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_protocol::message::{BrowserEvent, ErrorCode};
use volley_protocol::token::SessionClaims;
use volley_protocol::Codec;

use crate::conn::{ConnCtl, Ring};
use crate::frame::Level;
use crate::registry::Stream;

/// One browser connection's state, owned by its worker.
pub struct BrowserSession {
    /// Unique id.
    pub id: u64,
    /// Protocol level negotiated at the upgrade.
    pub level: Level,
    /// Verified token claims.
    pub claims: SessionClaims,
    /// Outgoing frames.
    pub ring: Rc<RefCell<Ring>>,
    /// Kill switch.
    pub ctl: Rc<ConnCtl>,
    /// Open queries and subscriptions, at most
    /// `limits.pending_requests_max` (16 by default): a short list, one
    /// vector instead of maps (memory per idle session: ARCHITECTURE.md, "Memory per idle session").
    pub(crate) queries: RefCell<Vec<OpenQuery>>,
    pub(crate) next_query: Cell<u64>,
    /// Last time anything was read or written.
    pub last_activity: Cell<Instant>,
    /// Last heartbeat ping queued.
    pub(crate) last_ping: Cell<Instant>,
    /// A digest of the dataset list this session was last sent (`list` or
    /// `datasets_changed`), so an unchanged list is not sent again; 0: none.
    pub(crate) datasets_sent: Cell<u64>,
}

/// One open query or subscription of a session.
pub(crate) struct OpenQuery {
    /// The browser's id for it.
    pub(crate) id: String,
    /// Its stream, or what it waits for.
    pub(crate) link: QueryLink,
    /// Body bytes written to the browser and not yet returned upstream as
    /// credit (unshared queries only; live streams are not credit-paced and
    /// a shared query's log gives credit back itself).
    pub(crate) credit_owed: u64,
    /// A shared query: its reader slot in its stream's log, from which its
    /// frames are pulled as its ring drains (`share_log.rs`).
    pub(crate) reader: Option<u32>,
    /// When a query ends with `query_timeout` (`timeouts.query_seconds`);
    /// `None` for a live subscription. Checked by the worker's sweep: no
    /// timer task holds the session.
    pub(crate) deadline: Option<Instant>,
    /// A live subscription: when it was last (re)attached and the tries it
    /// had taken to get there, so that a stream that ends again at once
    /// makes the next try wait longer.
    pub(crate) attached: Option<(Instant, u32)>,
    /// A live subscription's codecs, most preferred first (what
    /// `CompressionConfig::preference` chose for its request), kept to
    /// resume it; empty for a query.
    pub(crate) codecs: Vec<Option<Codec>>,
}

/// How long after its stream ended a waiting live subscription is first
/// tried again, unless connectors come or go sooner (the sweep tries then).
/// Not at once: a connector that ends its live streams cleanly while
/// staying online would otherwise be asked again four times a second.
pub(crate) const LIVE_RESUME_FIRST: Duration = Duration::from_secs(1);

/// How long a waiting subscription waits before it is tried again while no
/// connector of its tenant comes or goes (a tunnel at its stream limit, a
/// snapshot that did not fit the session's ring, no connector yet): doubled
/// with each failed try, up to 30 s ([`live_backoff`]).
pub(crate) const LIVE_RESUME_RETRY: Duration = Duration::from_secs(2);

/// A resumed live stream that runs this long counts as running: its next
/// end starts the waits over from the first.
pub(crate) const LIVE_STABLE: Duration = Duration::from_secs(30);

/// Longest wait between two tries of a waiting live subscription when no
/// connector of its tenant comes or goes.
pub(crate) const LIVE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The wait before try number `attempts` (0: the first): `base`, doubled per
/// attempt, at most [`LIVE_BACKOFF_MAX`].
pub(crate) fn live_backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.min(5)).min(LIVE_BACKOFF_MAX)
}

/// What an open query or subscription is attached to.
pub(crate) enum QueryLink {
    /// A running stream.
    Attached(Arc<Stream>),
    /// A live subscription whose stream ended with its connector
    /// (PROTOCOL.md §5.3) waits for a connector serving `dataset`; the
    /// worker's sweep next tries to resume it at `retry_at` (and whenever
    /// connectors come or go). It holds nothing of the ended stream or its
    /// connector.
    Waiting {
        /// The dataset.
        dataset: String,
        /// The next try.
        retry_at: Instant,
        /// The tenant's connector generation (`Registry::tenant_generation`)
        /// at the last try: a change is a reason to try at once.
        seen: u64,
        /// Tries and ends since the subscription last ran for a while: the
        /// next try waits longer with each (`browser/resume.rs`).
        attempts: u32,
    },
}

impl OpenQuery {
    /// Its stream, unless it waits for a connector.
    pub(crate) fn stream(&self) -> Option<&Arc<Stream>> {
        match &self.link {
            QueryLink::Attached(stream) => Some(stream),
            QueryLink::Waiting { .. } => None,
        }
    }
}

impl BrowserSession {
    /// Forgets a finished query (its stream ended).
    pub fn forget_query(&self, query_id: &str) {
        self.take_query(query_id);
    }

    /// Removes the query `query_id` and returns it.
    pub(crate) fn take_query(&self, query_id: &str) -> Option<OpenQuery> {
        let mut queries = self.queries.borrow_mut();
        let at = queries.iter().position(|q| q.id == query_id)?;
        Some(queries.swap_remove(at))
    }

    /// Marks the live subscription `query_id`, attached to `stream_id`, as
    /// waiting for a connector: tried again after [`LIVE_RESUME_FIRST`]
    /// (longer when its stream ended soon after it was resumed), or at once
    /// when the tenant's connectors change from `seen`. False when the
    /// session has no such subscription (it left meanwhile).
    pub(crate) fn wait_for_connector(&self, query_id: &str, stream_id: u32, seen: u64) -> bool {
        let mut queries = self.queries.borrow_mut();
        let Some(query) =
            queries.iter_mut().find(|q| q.id == query_id && q.stream().is_some_and(|s| s.id == stream_id))
        else {
            return false;
        };
        let dataset = query.stream().map(|s| s.dataset.clone()).unwrap_or_default();
        let now = Instant::now();
        // Ran for a while: a fresh start. Ended soon after a resume: one more
        // attempt, so a connector that keeps ending the stream is asked less often.
        let attempts = match query.attached {
            Some((at, attempts)) if now.saturating_duration_since(at) < LIVE_STABLE => attempts.saturating_add(1),
            _ => 0,
        };
        let retry_at = now + live_backoff(LIVE_RESUME_FIRST, attempts);
        query.link = QueryLink::Waiting { dataset, retry_at, seen, attempts };
        true
    }

    /// True when the session has an open query or subscription `query_id`.
    pub(crate) fn has_query(&self, query_id: &str) -> bool {
        self.queries.borrow().iter().any(|q| q.id == query_id)
    }

    /// A query of this session is running (or waiting for its stream); a
    /// live subscription is not a running query.
    pub(crate) fn has_running_query(&self) -> bool {
        self.queries.borrow().iter().any(|query| query.deadline.is_some())
    }

    /// Sends a close frame, then ends the connection.
    pub fn close(&self, code: u16, reason: &str) {
        self.ring.borrow_mut().push_close(code, reason);
    }

    pub(crate) fn send(&self, event: &BrowserEvent) {
        self.ring.borrow_mut().push_text(&event.to_json());
    }

    pub(crate) fn error(&self, code: ErrorCode, message: impl Into<String>, query_id: Option<String>) {
        self.send(&BrowserEvent::error(code, message, query_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_between_tries_doubles_up_to_its_cap() {
        let base = Duration::from_secs(2);
        let waits: Vec<u64> = (0..8).map(|attempts| live_backoff(base, attempts).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(live_backoff(Duration::from_secs(1), 0), Duration::from_secs(1));
    }
}
