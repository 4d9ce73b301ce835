//! A worker's sweep: one timer per worker instead of one per connection
//! for handshake deadlines, token expiry, idle timeouts, heartbeat pings
//! and query deadlines of its browser sessions.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::conn::ConnCtl;
use crate::session::BrowserSession;
use crate::worker::Worker;

/// How often a worker's [`sweep`] runs: handshake deadlines, token expiry,
/// idle timeouts and pings of all its sessions. One timer per worker
/// instead of one per connection; deadlines are honoured to within this.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Once per [`SWEEP_INTERVAL`]: cancels connections past their handshake
/// deadline, and checks every browser session of this worker (token expiry,
/// idle timeout, heartbeat ping).
pub async fn sweep(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(SWEEP_INTERVAL).await;
        let now = Instant::now();
        let expired: Vec<Rc<ConnCtl>> = {
            let mut local = worker.local.borrow_mut();
            let mut expired = Vec::new();
            while local.handshakes.front().is_some_and(|(deadline, _)| *deadline <= now) {
                if let Some((_, ctl)) = local.handshakes.pop_front() {
                    expired.extend(ctl.upgrade().filter(|ctl| !ctl.is_ready()));
                }
            }
            expired
        };
        for ctl in expired {
            ctl.kill();
        }
        // `check` only queues frames on sessions' rings; it never touches
        // the worker's tables, so they are walked in place (no copy of
        // every session four times a second). Sessions with a query past
        // its deadline are collected and handled after the walk (ending a
        // query detaches it from the worker's tables).
        let now_unix = crate::clock::unix_now();
        let overdue: Vec<Rc<BrowserSession>> = worker
            .local
            .borrow()
            .sessions
            .values()
            .filter(|session| crate::browser::check(&worker, session, now, now_unix))
            .cloned()
            .collect();
        for session in overdue {
            crate::browser::expire_queries(&worker, &session, now);
        }
        // Connectors came or went since the last sweep: sessions whose
        // readable datasets changed hear the new list, at most once a sweep
        // however often a connector comes and goes.
        let generation = worker.shared.registry.datasets_generation.load(std::sync::atomic::Ordering::Acquire);
        let connectors_changed = generation != worker.datasets_generation_seen.get();
        if connectors_changed {
            worker.datasets_generation_seen.set(generation);
            let mut online = std::collections::HashMap::new();
            for session in worker.local.borrow().sessions.values() {
                crate::browser::datasets_changed(&worker, session, &mut online);
            }
        }
        // Queries that waited too long for a stream slot are refused.
        worker.expire_queued(now);
        // Live subscriptions waiting for a connector try again: at once
        // when connectors came or went, otherwise when their retry is due.
        if worker.live_waiting.get() {
            crate::browser::resume_waiting(&worker, connectors_changed, now);
        }
        // Completed shared queries kept for reuse whose time is over are
        // forgotten (by one worker: the registry is shared).
        if worker.index == 0 && worker.shared.config.queries.reuse_seconds > 0 {
            worker.shared.registry.expire_kept(now);
        }
    }
}
