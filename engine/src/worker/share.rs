//! The worker's side of shared queries (`share_log.rs`, PROTOCOL.md §5.1):
//! its readers take frames from their stream's log into their sessions'
//! rings — every local reader when something arrives for the stream, one
//! reader when its session's ring drained or it just joined — and the
//! credit the log gives back goes upstream.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use volley_protocol::message::{BrowserEvent, ErrorBody, ErrorCode};

use super::Worker;
use crate::conn::writev::OutItem;
use crate::conn::Ring;
use crate::frame::{Level, SharedFrame};
use crate::metrics::WorkerMetrics;
use crate::registry::{Stream, Subscriber, Unreachable};
use crate::session::BrowserSession;
use crate::share_log::Sink;

/// A reader's session ring, as a pull's [`Sink`]: the log's items become
/// that reader's messages.
struct ReaderSink<'a> {
    ring: &'a mut Ring,
    /// What the ring may hold of queued bytes for a pull to add a frame:
    /// the ring's budget, at most `limits.credit_bytes` — what a query of
    /// its own could have queued there.
    cap: usize,
    level: Level,
    stream: &'a Stream,
    query_id: &'a str,
}

impl Sink for ReaderSink<'_> {
    fn has_room(&self, frame: &SharedFrame) -> bool {
        // An empty ring takes any frame, so a frame larger than the cap
        // still goes, alone.
        self.ring.bytes() == 0 || self.ring.bytes().saturating_add(frame.wire_len(self.level)) <= self.cap
    }

    fn info(&mut self, schema: &str, records: i64) {
        let event = BrowserEvent::FlightInfo {
            query_id: self.query_id.to_owned(),
            dataset: self.stream.dataset.clone(),
            schema: schema.to_owned(),
            records,
        };
        self.ring.push_text(&event.to_json());
    }

    fn start(&mut self, schema: &str) {
        let event = BrowserEvent::StreamStart {
            query_id: self.query_id.to_owned(),
            request_id: self.query_id.to_owned(),
            dataset: self.stream.dataset.clone(),
            schema: schema.to_owned(),
            stream_id: (self.level == Level::Two).then_some(self.stream.id),
            live: false,
            compression: self.stream.compression.map(|codec| codec.as_str().to_owned()),
        };
        self.ring.push_text(&event.to_json());
    }

    fn frame(&mut self, frame: &Arc<SharedFrame>) {
        self.ring.push(OutItem::Frame(frame.clone(), self.level));
    }

    fn end(&mut self, total_bytes: u64, error: Option<&ErrorBody>, started: bool) {
        let query_id = self.query_id.to_owned();
        let event = if started {
            BrowserEvent::StreamEnd {
                query_id: query_id.clone(),
                request_id: query_id,
                stream_id: (self.level == Level::Two).then_some(self.stream.id),
                total_bytes,
                error: error.cloned(),
            }
        } else {
            let error =
                error.cloned().unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "stream ended before it started"));
            BrowserEvent::error(error.code, error.message, Some(query_id))
        };
        self.ring.push_text(&event.to_json());
    }
}

impl Worker {
    /// True when `stream_id`'s local readers are a shared query's.
    pub(super) fn is_shared(&self, stream_id: u32) -> bool {
        self.local.borrow().subs.get(&stream_id).and_then(|subs| subs.first()).is_some_and(|sub| sub.reader.is_some())
    }

    /// Something arrived for a shared query (a frame, its `flight_info`,
    /// start or end): every local reader takes what its ring has room for.
    pub(super) fn pull_readers(&self, stream_id: u32) {
        let mut done = Vec::new();
        let (stream, version) = {
            let local = self.local.borrow();
            let Some(subs) = local.subs.get(&stream_id) else { return };
            let Some((stream, _)) = subs.first().and_then(|sub| sub.reader.as_ref()) else { return };
            // Every local reader took everything up to the log's last change
            // (a worker drains many frame messages at once, and the first
            // pull took them all): nothing to do, and the log's lock, which
            // the connector's worker takes per frame, is left alone.
            let version = stream.share_version.load(Ordering::Acquire);
            if subs.iter().all(|sub| sub.share_seen >= version) {
                return;
            }
            (stream.clone(), version)
        };
        let credit = {
            let mut local = self.local.borrow_mut();
            let Some(subs) = local.subs.get_mut(&stream_id) else { return };
            let mut metrics = self.metrics.borrow_mut();
            let mut state = stream.state.lock();
            let Some(log) = state.share.as_mut() else { return };
            let mut credit = 0;
            for sub in subs.iter_mut() {
                let Some((_, slot)) = sub.reader else { continue };
                if sub.share_seen >= version {
                    continue;
                }
                let session = sub.session.clone();
                let mut ring = session.ring.borrow_mut();
                let cap = self.reader_cap(&ring);
                let mut sink =
                    ReaderSink { ring: &mut ring, cap, level: session.level, stream: &stream, query_id: &sub.query_id };
                let pulled = log.pull(slot, &mut sink);
                if pulled.first && !sub.first_frame_seen {
                    sub.first_frame_seen = true;
                    WorkerMetrics::record_us(&mut metrics.ttfb_us, sub.opened_at.elapsed());
                }
                credit += pulled.credit;
                if !pulled.blocked {
                    sub.share_seen = version;
                }
                if pulled.done {
                    done.push((session.clone(), sub.query_id.clone()));
                }
            }
            credit
        };
        after_pulls(&stream, credit);
        for (session, query_id) in done {
            self.reader_done(&stream, &session, &query_id);
        }
    }

    /// A reader pulled frames outside [`Worker::pull_readers`]: its first
    /// ones are its time to first byte.
    fn first_frames(&self, stream_id: u32, session: u64, query_id: &str) {
        let mut local = self.local.borrow_mut();
        let Some(subs) = local.subs.get_mut(&stream_id) else { return };
        let Some(sub) = subs.iter_mut().find(|sub| sub.session.id == session && sub.query_id == query_id) else {
            return;
        };
        if !sub.first_frame_seen {
            sub.first_frame_seen = true;
            WorkerMetrics::record_us(&mut self.metrics.borrow_mut().ttfb_us, sub.opened_at.elapsed());
        }
    }

    /// How much of `ring` a pull may fill (see [`ReaderSink::cap`]).
    fn reader_cap(&self, ring: &Ring) -> usize {
        let credit = usize::try_from(self.shared.config.limits.credit_bytes).unwrap_or(usize::MAX);
        ring.budget().min(credit)
    }

    /// One reader takes what its ring has room for: its session's ring
    /// drained, or it just joined.
    pub(crate) fn pull_reader(&self, session: &BrowserSession, stream: &Arc<Stream>, slot: u32, query_id: &str) {
        let pulled = {
            let mut state = stream.state.lock();
            let Some(log) = state.share.as_mut() else { return };
            let mut ring = session.ring.borrow_mut();
            let cap = self.reader_cap(&ring);
            let mut sink = ReaderSink { ring: &mut ring, cap, level: session.level, stream, query_id };
            log.pull(slot, &mut sink)
        };
        after_pulls(stream, pulled.credit);
        if pulled.first {
            self.first_frames(stream.id, session.id, query_id);
        }
        if pulled.done {
            self.reader_done(stream, session, query_id);
        }
    }

    /// The query that was to open the new shared stream `stream` leaves it
    /// before its `Open` was sent: its session or query went away, it could
    /// not be told it was admitted, or its connector could not be asked
    /// (`unreachable`). Alone on it, the stream ends as if it never was.
    /// If identical queries joined it meanwhile, it is opened for them; if
    /// its connector cannot be asked, it ends for them with the reason.
    pub(crate) fn leave_unopened(
        &self,
        stream: &Arc<Stream>,
        subscriber: &Subscriber,
        unreachable: Option<Unreachable>,
    ) {
        let Subscriber { worker, session, query_id } = subscriber;
        self.remove_sub(stream.id, *session, query_id);
        if stream.detach(*worker, *session, query_id) == 0 {
            self.shared.registry.end_stream(stream);
            self.admit_queued(&stream.tenant);
            return;
        }
        let why = match unreachable {
            Some(why) => why,
            None => match stream.request_open() {
                Ok(()) => return,
                Err(why) => why,
            },
        };
        let (code, message) = why.explain(&stream.dataset);
        let error = ErrorBody::new(code, message);
        let Some(me) = self.me.upgrade() else { return };
        let (worker, stream) = (me.clone(), stream.clone());
        crate::task::spawn(&me, "end an unopened shared stream", async move {
            worker.end_stream(&stream, 0, Some(error)).await
        });
    }

    /// A reader got its end: it leaves the worker's tables, its session's
    /// queries and the stream's subscribers (the stream has ended or is
    /// ending: nothing to cancel).
    fn reader_done(&self, stream: &Stream, session: &BrowserSession, query_id: &str) {
        let opened_at = self.local.borrow().subs.get(&stream.id).and_then(|subs| {
            subs.iter().find(|sub| sub.session.id == session.id && sub.query_id == query_id).map(|sub| sub.opened_at)
        });
        if let Some(opened_at) = opened_at {
            WorkerMetrics::record(
                &mut self.metrics.borrow_mut().stream_duration_ms,
                u64::try_from(opened_at.elapsed().as_millis()).unwrap_or(u64::MAX),
            );
        }
        self.remove_sub(stream.id, session.id, query_id);
        session.forget_query(query_id);
        stream.detach(self.index, session.id, query_id);
    }
}

/// After pulls: the credit they freed goes upstream, and a tunnel reader
/// waiting for room in the log (tiny frames past its bound) tries again.
fn after_pulls(stream: &Stream, credit: u64) {
    stream.give_credit(credit);
    stream.credit_waker.wake();
}

/// The shared queries of `session` take what its ring has room for now
/// (after its writer wrote a batch).
pub(crate) fn pull_session(worker: &Rc<Worker>, session: &BrowserSession) {
    let readers: Vec<(Arc<Stream>, u32, String)> = {
        let queries = session.queries.borrow();
        if !queries.iter().any(|q| q.reader.is_some()) {
            return;
        }
        queries.iter().filter_map(|q| Some((q.stream()?.clone(), q.reader?, q.id.clone()))).collect()
    };
    for (stream, slot, query_id) in readers {
        worker.pull_reader(session, &stream, slot, &query_id);
    }
}
