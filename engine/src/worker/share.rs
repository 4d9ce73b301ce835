//! The worker's side of shared queries (`share_log.rs`, PROTOCOL.md §5.1):
//! its readers take frames from their stream's log into their sessions'
//! rings — every local reader when something arrives for the stream, one
//! reader when its session's ring drained or it just joined — and the
//! credit the log gives back goes upstream.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::sync::Arc;

use volley_protocol::message::{BrowserEvent, ErrorBody, ErrorCode};

use super::Worker;
use crate::conn::writev::OutItem;
use crate::conn::Ring;
use crate::frame::{Level, SharedFrame};
use crate::metrics::WorkerMetrics;
use crate::registry::{ConnectorCmd, Stream};
use crate::session::BrowserSession;
use crate::share_log::Sink;

/// A reader's session ring, as a pull's [`Sink`]: the log's items become
/// that reader's messages.
struct ReaderSink<'a> {
    ring: &'a mut Ring,
    level: Level,
    stream: &'a Stream,
    query_id: &'a str,
    /// Frames queued by this pull.
    frames: u64,
}

impl Sink for ReaderSink<'_> {
    fn has_room(&self, frame: &SharedFrame) -> bool {
        // An empty ring takes any frame, so a frame larger than the ring's
        // budget still goes, alone.
        self.ring.bytes() == 0 || self.ring.fits(frame.wire_len(self.level))
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
        self.frames += 1;
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
        let stream = {
            let local = self.local.borrow();
            let first = local.subs.get(&stream_id).and_then(|subs| subs.first());
            let Some((stream, _)) = first.and_then(|sub| sub.reader.as_ref()) else { return };
            stream.clone()
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
                let session = sub.session.clone();
                let mut ring = session.ring.borrow_mut();
                let mut sink = ReaderSink {
                    ring: &mut ring,
                    level: session.level,
                    stream: &stream,
                    query_id: &sub.query_id,
                    frames: 0,
                };
                let pulled = log.pull(slot, &mut sink);
                if sink.frames > 0 && !sub.first_frame_seen {
                    sub.first_frame_seen = true;
                    WorkerMetrics::record_us(&mut metrics.ttfb_us, sub.opened_at.elapsed());
                }
                credit += pulled.credit;
                if pulled.done {
                    WorkerMetrics::record(
                        &mut metrics.stream_duration_ms,
                        u64::try_from(sub.opened_at.elapsed().as_millis()).unwrap_or(u64::MAX),
                    );
                    done.push((session.clone(), sub.query_id.clone()));
                }
            }
            credit
        };
        give_credit(&stream, credit);
        for (session, query_id) in done {
            self.reader_done(&stream, &session, &query_id);
        }
    }

    /// One reader takes what its ring has room for: its session's ring
    /// drained, or it just joined.
    pub(crate) fn pull_reader(&self, session: &BrowserSession, stream: &Arc<Stream>, slot: u32, query_id: &str) {
        let pulled = {
            let mut state = stream.state.lock();
            let Some(log) = state.share.as_mut() else { return };
            let mut ring = session.ring.borrow_mut();
            let mut sink = ReaderSink { ring: &mut ring, level: session.level, stream, query_id, frames: 0 };
            log.pull(slot, &mut sink)
        };
        give_credit(stream, pulled.credit);
        if pulled.done {
            self.reader_done(stream, session, query_id);
        }
    }

    /// A reader got its end: it leaves the worker's tables, its session's
    /// queries and the stream's subscribers (the stream has ended or is
    /// ending: nothing to cancel).
    fn reader_done(&self, stream: &Stream, session: &BrowserSession, query_id: &str) {
        self.remove_sub(stream.id, session.id, query_id);
        session.forget_query(query_id);
        stream.detach(self.index, session.id, query_id);
    }
}

/// Gives `credit` bytes back to the connector of a shared query (level 2: a
/// `credit` message; level 1: its reader goes on). A credit message that
/// cannot be queued (the tunnel's command queue is full) is taken back by
/// the log and given with the next pull.
fn give_credit(stream: &Stream, credit: u64) {
    if credit == 0 {
        return;
    }
    match stream.connector.level {
        Level::One => stream.return_credit(credit),
        Level::Two => {
            let cmd = ConnectorCmd::Credit { stream_id: stream.id, bytes: credit };
            if stream.connector.mailbox.push(cmd).is_err() {
                if let Some(log) = stream.state.lock().share.as_mut() {
                    log.take_back(credit);
                }
            }
        }
    }
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
