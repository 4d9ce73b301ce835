//! A shared query's log (PROTOCOL.md §5.1): the frames of one upstream
//! query stream, kept as the refcounted frames the gateway already holds
//! (no copy), read by every query that joined it, each at its own pace from
//! the first frame.
//!
//! - **Readers** have a cursor each. A reader takes frames from the log
//!   (a *pull*) whenever its session's ring has room: when a frame arrives
//!   and when the ring drained. The engine turns what a pull yields into
//!   the reader's `flight_info`, `stream_start`, frames and `stream_end`, in
//!   that order, whenever it joined.
//! - **Upstream credit** is given back as the *leading* reader takes bytes,
//!   and only while the log, with what the connector may still send, stays
//!   within three quarters of its bound ([`ShareLog::pull`] returns what to
//!   give back). So a slow reader never holds a fast one back while the log
//!   has room; once it has none, the connector waits for the slowest
//!   reader, as a single reader's stream waits for its reader. Credit counts
//!   payload bytes while the log also counts each frame's bookkeeping, so a
//!   connector sending tiny frames could still make the log pass its bound
//!   within its credit: past the bound ([`ShareLog::over_bound`]) the
//!   tunnel's reader stops reading until readers made room (backpressure,
//!   as for a full inbox). Frames of 1 KiB or more never get there.
//! - **Joining** is possible while the log holds the stream from its first
//!   frame: before any frame was dropped, and, when the stream completed,
//!   for `queries.reuse_seconds` after. Frames are dropped only when the log
//!   needs room and every current reader has passed them (the log then
//!   takes no one new: a later identical query starts its own stream), or
//!   once the stream ended and is not kept for reuse.
//! - **Memory**: a log counts each frame it holds as its bytes as read plus
//!   [`LOG_FRAME_OVERHEAD_BYTES`], at most `queries.share_log_bytes` per
//!   stream; each shared stream reserves that much of
//!   `queries.share_total_bytes` when it starts ([`ShareBudget`]), and a
//!   query that finds the gateway-wide budget taken gets a stream of its own
//!   that is not shared.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use volley_protocol::message::ErrorBody;

use crate::frame::SharedFrame;

/// What a frame in a log costs beyond its bytes as read: the frame's
/// bookkeeping (its `SharedFrame` with both WebSocket headers, the
/// refcounts, the log's slot for it), rounded up.
pub const LOG_FRAME_OVERHEAD_BYTES: usize = 192;

/// Frames shorter than this are copied into the stream's own chunks before
/// they go into its log (once per stream, not per reader; [`copy_into`]):
/// a frame as read is a view of the tunnel's read buffer (256 KiB), which
/// it shares with the tunnel's other frames, and a small frame kept for
/// long would pin all of it while counting a little. A longer frame is kept
/// as read: it pins at most four times what it counts.
pub const LOG_COPY_BELOW_BYTES: usize = 64 * 1024;

/// The chunks small frames are copied into: consecutive frames of one
/// stream, which leave the log in order, so a chunk pins only frames the
/// log counts, and at most one chunk's unused tail per log.
pub const LOG_CHUNK_BYTES: usize = 256 * 1024;
const _: () = assert!(LOG_COPY_BELOW_BYTES <= LOG_CHUNK_BYTES);

/// A copy of a small frame's payload in `chunk` (a new chunk when it has
/// no room): one `memcpy`, no allocation per frame.
pub fn copy_into(chunk: &mut BytesMut, payload: &[u8]) -> Bytes {
    if chunk.capacity() - chunk.len() < payload.len() {
        *chunk = BytesMut::with_capacity(LOG_CHUNK_BYTES.max(payload.len()));
    }
    chunk.extend_from_slice(payload);
    chunk.split().freeze()
}

/// The gateway-wide budget of shared query logs (`queries.share_total_bytes`)
/// and what they hold now.
#[derive(Debug, Default)]
pub struct ShareBudget {
    /// The budget.
    pub max: usize,
    /// Reserved by running or kept logs (each its `share_log_bytes`).
    pub reserved: AtomicUsize,
    /// Held by all logs now (frames, counted as in [`ShareLog`]).
    pub held: AtomicUsize,
    /// Queries that joined a running or kept stream: upstream streams saved.
    pub joins: AtomicU64,
    /// Of those, joins of a completed stream kept for `reuse_seconds`.
    pub reuses: AtomicU64,
    /// Shared streams that could not start because the budget was taken
    /// (their query got a stream of its own).
    pub refused: AtomicU64,
}

impl ShareBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> ShareBudget {
        ShareBudget { max, ..ShareBudget::default() }
    }

    fn reserve(&self, bytes: usize) -> bool {
        let mut now = self.reserved.load(Ordering::Relaxed);
        loop {
            let Some(next) = now.checked_add(bytes).filter(|next| *next <= self.max) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self.reserved.compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }
}

/// What a reader's pull hands to its session, in this order.
pub trait Sink {
    /// True when `frame` may be queued now (the reader's ring has room).
    fn has_room(&self, frame: &SharedFrame) -> bool;
    /// `flight_info` (sent only before `stream_start`).
    fn info(&mut self, schema: &str, records: i64);
    /// `stream_start`.
    fn start(&mut self, schema: &str);
    /// A frame.
    fn frame(&mut self, frame: &Arc<SharedFrame>);
    /// The end: `stream_end`, or the error when the stream failed before
    /// it started (`started` false).
    fn end(&mut self, total_bytes: u64, error: Option<&ErrorBody>, started: bool);
}

/// What one pull did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Credit (body bytes) to give back to the connector now.
    pub credit: u64,
    /// The reader got its end and left the log.
    pub done: bool,
    /// The reader got its first frames (its time to first byte ends).
    pub first: bool,
    /// Its ring had no room for the next frame.
    pub blocked: bool,
}

#[derive(Debug)]
struct Reader {
    /// Its session and query id (to find it when it leaves).
    session: u64,
    query_id: String,
    /// Index of the next frame it takes.
    cursor: u64,
    /// Body bytes it took.
    taken: u64,
    info_sent: bool,
    started: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct ShareLog {
    frames: VecDeque<Arc<SharedFrame>>,
    /// Index of `frames`' first frame.
    base: u64,
    /// Frames appended so far (index of the next one).
    appended: u64,
    /// Body bytes appended so far (the unit of credit).
    appended_body: u64,
    /// Bytes held now, counted as in the module docs.
    held: usize,
    /// `queries.share_log_bytes`, reserved in `budget`.
    bound: usize,
    /// Credit the connector had when the stream opened.
    credit_initial: u64,
    /// Credit given back so far.
    returned: u64,
    /// The most body bytes any reader took.
    lead: u64,
    /// A frame was dropped, or the stream failed: nobody joins any more.
    closed: bool,
    info: Option<(String, i64)>,
    schema: Option<String>,
    end: Option<(u64, Option<ErrorBody>)>,
    /// A completed stream kept for `queries.reuse_seconds`: joinable until then.
    reuse_until: Option<Instant>,
    /// By slot; `None`: left.
    readers: Vec<Option<Reader>>,
    /// Readers per cursor: the first key is the slowest reader's.
    cursors: BTreeMap<u64, usize>,
    budget: Arc<ShareBudget>,
    /// Reservation not yet given back.
    reserved: usize,
}

impl ShareLog {
    /// A log bounded at `bound` bytes for a stream whose connector starts
    /// with `credit_initial` bytes of credit, reserved in `budget`; `None`
    /// when the budget has no room for it.
    pub fn new(bound: usize, credit_initial: u64, budget: Arc<ShareBudget>) -> Option<ShareLog> {
        if !budget.reserve(bound) {
            return None;
        }
        Some(ShareLog {
            frames: VecDeque::new(),
            base: 0,
            appended: 0,
            appended_body: 0,
            held: 0,
            bound,
            credit_initial,
            returned: 0,
            lead: 0,
            closed: false,
            info: None,
            schema: None,
            end: None,
            reuse_until: None,
            readers: Vec::new(),
            cursors: BTreeMap::new(),
            budget,
            reserved: bound,
        })
    }

    /// True when a new reader may join now: the log holds the stream from
    /// its first frame, and the stream runs or completed less than
    /// `reuse_seconds` ago.
    pub fn joinable(&self, now: Instant) -> bool {
        if self.closed || self.reserved == 0 {
            return false;
        }
        match &self.end {
            None => true,
            Some((_, Some(_))) => false,
            Some((_, None)) => self.reuse_until.is_some_and(|until| now < until),
        }
    }

    /// Adds a reader at the first frame; its slot, or `None` when the log
    /// takes no one new, or when `session` reads it already under another
    /// query id (its frames carry one stream id, so a level-2 page could not
    /// tell two readers of one stream on one socket apart).
    pub fn join(&mut self, now: Instant, session: u64, query_id: &str) -> Option<u32> {
        if !self.joinable(now) || self.readers.iter().flatten().any(|r| r.session == session) {
            return None;
        }
        let reader =
            Reader { session, query_id: query_id.to_owned(), cursor: 0, taken: 0, info_sent: false, started: false };
        // The slot of a reader that left is taken again, so readers coming
        // and going on a long stream do not grow the table.
        let slot = match self.readers.iter().position(Option::is_none) {
            Some(free) => {
                let slot = u32::try_from(free).ok()?;
                if let Some(entry) = self.readers.get_mut(free) {
                    *entry = Some(reader);
                }
                slot
            }
            None => {
                let slot = u32::try_from(self.readers.len()).ok()?;
                self.readers.push(Some(reader));
                slot
            }
        };
        *self.cursors.entry(0).or_default() += 1;
        Some(slot)
    }

    /// Readers that have not got their end nor left.
    pub fn readers(&self) -> usize {
        self.cursors.values().sum()
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// `get_flight_info` answered.
    pub fn set_info(&mut self, schema: String, records: i64) {
        self.info = Some((schema, records));
    }

    /// `stream_start` arrived.
    pub fn set_schema(&mut self, schema: String) {
        self.schema = Some(schema);
    }

    /// A frame arrived (the connector spent credit on it).
    pub fn append(&mut self, frame: Arc<SharedFrame>) {
        if self.end.is_some() {
            return;
        }
        let bytes = frame.read_len().saturating_add(LOG_FRAME_OVERHEAD_BYTES);
        self.held = self.held.saturating_add(bytes);
        self.budget.held.fetch_add(bytes, Ordering::Relaxed);
        self.appended += 1;
        self.appended_body = self.appended_body.saturating_add(frame.body().len() as u64);
        self.frames.push_back(frame);
    }

    /// The stream ended (`error`: it failed). A completed stream is kept
    /// joinable for `reuse` when it is set and the log still holds it all.
    pub fn finish(&mut self, total_bytes: u64, error: Option<ErrorBody>, reuse: Option<Duration>, now: Instant) {
        if self.end.is_some() {
            return;
        }
        if error.is_none() && !self.closed {
            self.reuse_until = reuse.filter(|reuse| !reuse.is_zero()).map(|reuse| now + reuse);
        }
        if error.is_some() {
            self.closed = true;
        }
        self.end = Some((total_bytes, error));
        if self.readers() == 0 && self.kept_until().is_none() {
            self.release();
        }
        self.trim();
    }

    /// True when the stream ended and the log is kept for later joiners
    /// until `reuse_until` (the registry keeps it findable until then).
    pub fn kept_until(&self) -> Option<Instant> {
        self.reuse_until.filter(|_| self.end.is_some() && !self.closed && self.reserved > 0)
    }

    /// Hands the reader in `slot` what it has not had yet, as far as its
    /// ring has room; see [`Pulled`].
    pub fn pull(&mut self, slot: u32, sink: &mut dyn Sink) -> Pulled {
        let Some(Some(reader)) = self.readers.get_mut(slot as usize) else {
            return Pulled::default();
        };
        let before = reader.cursor;
        if !reader.started {
            if let (false, Some((schema, records))) = (reader.info_sent, &self.info) {
                reader.info_sent = true;
                sink.info(schema, *records);
            }
            if let Some(schema) = &self.schema {
                reader.started = true;
                sink.start(schema);
            }
        }
        let taken_before = reader.taken;
        let mut blocked = false;
        if reader.started {
            while reader.cursor < self.appended {
                let at = usize::try_from(reader.cursor.saturating_sub(self.base)).unwrap_or(usize::MAX);
                // A reader's cursor is never below `base` (frames are dropped
                // only once every reader passed them).
                let Some(frame) = self.frames.get(at) else { break };
                if !sink.has_room(frame) {
                    blocked = true;
                    break;
                }
                sink.frame(frame);
                reader.cursor += 1;
                reader.taken = reader.taken.saturating_add(frame.body().len() as u64);
            }
            self.lead = self.lead.max(reader.taken);
        }
        let mut done = false;
        if let Some((total, error)) = &self.end {
            if reader.cursor >= self.appended || !reader.started {
                sink.end(*total, error.as_ref(), reader.started);
                done = true;
            }
        }
        let after = reader.cursor;
        let first = taken_before == 0 && reader.taken > 0;
        if done {
            self.remove(slot, before);
        } else if after != before {
            self.move_cursor(before, after);
        }
        self.trim();
        Pulled { credit: self.credit_due(), done, first, blocked }
    }

    /// The session's reader `query_id` left before its end (cancelled,
    /// timed out, its session closed); nothing when it is not reading.
    /// Returns the credit to give the connector now: the frames only this
    /// reader still held back may have been the log's last room.
    pub fn leave(&mut self, session: u64, query_id: &str) -> u64 {
        let found = self.readers.iter().enumerate().find_map(|(slot, reader)| {
            reader.as_ref().filter(|r| r.session == session && r.query_id == query_id).map(|r| (slot, r.cursor))
        });
        let Some((slot, cursor)) = found else { return 0 };
        self.remove(u32::try_from(slot).unwrap_or(u32::MAX), cursor);
        self.trim();
        if self.cursors.is_empty() {
            return 0;
        }
        self.credit_due()
    }

    /// A kept log's reuse time is over: nobody joins any more, and the log
    /// goes once its last reader is done. True when it is released now.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.reuse_until.is_some_and(|until| until <= now) {
            self.reuse_until = None;
            self.closed = true;
            if self.readers() == 0 {
                self.release();
                return true;
            }
            self.trim();
        }
        false
    }

    /// Credit that [`ShareLog::pull`] returned could not be sent (the
    /// tunnel's command queue was full): the next pull gives it again.
    pub fn take_back(&mut self, credit: u64) {
        self.returned = self.returned.saturating_sub(credit);
    }

    /// Drops every frame and gives the reservation back: nobody will read
    /// the log again (its stream ended and its readers left, or it was
    /// kept and its time is up).
    pub fn release(&mut self) {
        self.drop_frames_before(self.appended);
        self.closed = true;
        if self.reserved > 0 {
            self.budget.reserved.fetch_sub(self.reserved, Ordering::Relaxed);
            self.reserved = 0;
        }
    }

    fn remove(&mut self, slot: u32, cursor: u64) {
        if let Some(entry) = self.readers.get_mut(slot as usize) {
            *entry = None;
        }
        if let Some(count) = self.cursors.get_mut(&cursor) {
            *count -= 1;
            if *count == 0 {
                self.cursors.remove(&cursor);
            }
        }
        // Ended, not kept, and its last reader is gone: nobody reads it again.
        if self.cursors.is_empty() && self.end.is_some() && self.kept_until().is_none() {
            self.release();
        }
    }

    fn move_cursor(&mut self, from: u64, to: u64) {
        if let Some(count) = self.cursors.get_mut(&from) {
            *count -= 1;
            if *count == 0 {
                self.cursors.remove(&from);
            }
        }
        *self.cursors.entry(to).or_default() += 1;
    }

    /// Body bytes the connector may still send without more credit.
    fn outstanding(&self) -> u64 {
        self.returned.saturating_add(self.credit_initial).saturating_sub(self.appended_body)
    }

    /// Room left for credit: three quarters of the bound, less what the log
    /// holds and what the connector may still send. The last quarter is for
    /// the frames' bookkeeping, which credit does not count.
    fn room(&self) -> u64 {
        let target = self.bound as u64 / 4 * 3;
        target.saturating_sub((self.held as u64).saturating_add(self.outstanding()))
    }

    /// True when the log holds more than its bound (a connector sending
    /// tiny frames): the tunnel's reader waits until readers made room.
    pub fn over_bound(&self) -> bool {
        self.held > self.bound && self.end.is_none() && self.reserved > 0
    }

    /// Credit to give back now (recorded as given): what the leading reader
    /// took and was not given back, as far as the bound has room; in steps
    /// of a quarter of the initial credit, or all of it once the leading
    /// reader has taken everything that arrived (the connector may be
    /// waiting for it).
    fn credit_due(&mut self) -> u64 {
        if self.end.is_some() {
            return 0;
        }
        let due = self.lead.saturating_sub(self.returned).min(self.room());
        if due == 0 || (due < self.credit_initial / 4 && self.lead < self.appended_body) {
            return 0;
        }
        self.returned += due;
        due
    }

    /// Drops frames every reader passed when the log needs the room (the
    /// bound keeps the leading reader's credit back) or will never be
    /// joined again (ended and not kept).
    fn trim(&mut self) {
        let slowest = self.cursors.keys().next().copied().unwrap_or(self.appended);
        if slowest <= self.base {
            return;
        }
        let ended_unkept = self.end.is_some() && self.kept_until().is_none();
        let needs_room = self.lead.saturating_sub(self.returned) > self.room();
        if ended_unkept || needs_room {
            self.closed = true;
            self.drop_frames_before(slowest);
        }
    }

    fn drop_frames_before(&mut self, index: u64) {
        let mut freed = 0usize;
        while self.base < index {
            let Some(frame) = self.frames.pop_front() else { break };
            freed = freed.saturating_add(frame.read_len().saturating_add(LOG_FRAME_OVERHEAD_BYTES));
            self.base += 1;
        }
        self.held = self.held.saturating_sub(freed);
        self.budget.held.fetch_sub(freed, Ordering::Relaxed);
    }
}

impl Drop for ShareLog {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use volley_protocol::header::{FrameHeader, FrameKind};
    use volley_protocol::message::ErrorCode;

    const KIB: usize = 1024;

    /// A level-2 frame of `len` bytes (header included).
    fn frame(sequence: u64, len: usize) -> Arc<SharedFrame> {
        let header = FrameHeader { kind: FrameKind::RecordBatch, flags: 0, stream_id: 7, sequence };
        let mut body = header.encode().to_vec();
        body.resize(len, 0);
        SharedFrame::from_level2(Bytes::from(body), header, Instant::now())
    }

    /// A reader's side: takes `room` frames at most per pull, records what it got.
    #[derive(Default)]
    struct Reader {
        room: usize,
        got: Vec<String>,
    }

    impl Sink for Reader {
        fn has_room(&self, _: &SharedFrame) -> bool {
            self.room > 0
        }
        fn info(&mut self, _: &str, records: i64) {
            self.got.push(format!("info {records}"));
        }
        fn start(&mut self, schema: &str) {
            self.got.push(format!("start {schema}"));
        }
        fn frame(&mut self, frame: &Arc<SharedFrame>) {
            self.room -= 1;
            self.got.push(format!("frame {}", frame.sequence));
        }
        fn end(&mut self, total: u64, error: Option<&ErrorBody>, started: bool) {
            self.got.push(format!("end {total} {:?} {started}", error.map(|e| e.code)));
        }
    }

    fn reader(room: usize) -> Reader {
        Reader { room, got: Vec::new() }
    }

    fn log(bound: usize, credit: u64) -> (ShareLog, Arc<ShareBudget>) {
        let budget = Arc::new(ShareBudget::new(4 * bound));
        (ShareLog::new(bound, credit, budget.clone()).expect("room"), budget)
    }

    #[test]
    fn each_reader_gets_the_whole_stream_in_order_at_its_own_pace() {
        let (mut log, budget) = log(1 << 20, 64 * KIB as u64);
        let now = Instant::now();
        let fast = log.join(now, 1, "a").expect("joins");
        let slow = log.join(now, 2, "b").expect("joins");
        log.set_info("S".into(), 40);
        log.set_schema("S".into());
        for sequence in 0..4 {
            log.append(frame(sequence, 16 * KIB));
        }
        let mut a = reader(usize::MAX);
        let pulled = log.pull(fast, &mut a);
        assert_eq!(
            pulled,
            Pulled { credit: 64 * KIB as u64, done: false, first: true, blocked: false },
            "the lead took it all"
        );
        let mut b = reader(1);
        log.pull(slow, &mut b);
        assert_eq!(b.got, ["info 40", "start S", "frame 0"]);
        // A third reader joins late and still starts at the first frame.
        let late = log.join(now, 3, "c").expect("a complete log takes readers");
        log.finish(64 * KIB as u64, None, None, now);
        assert!(!log.joinable(now), "ended and not kept");
        let mut c = reader(usize::MAX);
        assert!(log.pull(late, &mut c).done);
        assert_eq!(c.got, ["info 40", "start S", "frame 0", "frame 1", "frame 2", "frame 3", "end 65536 None true"]);
        assert!(log.pull(fast, &mut a).done);
        b.room = usize::MAX;
        assert!(log.pull(slow, &mut b).done);
        assert_eq!(b.got.len(), 7);
        assert_eq!((log.held(), budget.held.load(Ordering::Relaxed)), (0, 0), "the last reader done: frames freed");
        assert_eq!(budget.reserved.load(Ordering::Relaxed), 0, "and the reservation given back");
    }

    #[test]
    fn credit_follows_the_leading_reader_until_the_bound_then_the_slowest() {
        let bound = 256 * KIB;
        let credit = 64 * KIB as u64;
        let (mut log, _) = log(bound, credit);
        let now = Instant::now();
        let fast = log.join(now, 1, "a").expect("joins");
        let slow = log.join(now, 2, "b").expect("joins");
        log.set_schema("S".into());
        let mut a = reader(usize::MAX);
        let mut b = reader(0);
        let mut given = credit;
        let mut appended = 0u64;
        // The connector sends whatever credit it has; the fast reader takes it all.
        for _ in 0..64 {
            while appended * 16 * KIB as u64 + 16 * KIB as u64 <= given {
                log.append(frame(appended, 16 * KIB));
                appended += 1;
            }
            let pulled = log.pull(fast, &mut a);
            if pulled.credit == 0 {
                break;
            }
            given += pulled.credit;
        }
        assert!(log.held() <= bound, "the log holds {} of its {bound} bytes", log.held());
        assert!(appended >= 8, "the fast reader was not held back while the log had room ({appended} frames)");
        assert!(log.joinable(now), "nothing was dropped: it still takes readers");
        assert_eq!(log.pull(fast, &mut a).credit, 0, "at the bound, the slow reader holds the stream");
        // The slow reader takes two frames: they are dropped, and credit flows again.
        b.room = 2;
        let pulled = log.pull(slow, &mut b);
        assert!(pulled.credit > 0, "room made by the slowest reader goes upstream");
        assert!(!log.joinable(now), "a frame was dropped: later identical queries start their own stream");
        assert!(log.join(now, 3, "c").is_none());
    }

    #[test]
    fn a_reader_that_leaves_no_longer_holds_frames() {
        let (mut log, budget) = log(128 * KIB, 32 * KIB as u64);
        let now = Instant::now();
        let fast = log.join(now, 1, "a").expect("joins");
        log.join(now, 2, "b").expect("joins");
        log.set_schema("S".into());
        for sequence in 0..6 {
            log.append(frame(sequence, 16 * KIB));
        }
        log.pull(fast, &mut reader(usize::MAX));
        let held = log.held();
        log.leave(2, "b");
        assert!(log.held() < held, "frames only the leaver had not read are dropped when room is needed");
        log.leave(1, "a");
        log.finish(0, None, None, now);
        assert_eq!((log.held(), budget.reserved.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn a_completed_stream_kept_for_reuse_is_replayed_whole_until_its_time_is_up() {
        let (mut log, budget) = log(1 << 20, 64 * KIB as u64);
        let now = Instant::now();
        let first = log.join(now, 1, "a").expect("joins");
        log.set_schema("S".into());
        log.append(frame(0, KIB));
        log.append(frame(1, KIB));
        log.finish(2048, None, Some(Duration::from_secs(5)), now);
        assert!(log.pull(first, &mut reader(usize::MAX)).done);
        assert_eq!(log.kept_until(), Some(now + Duration::from_secs(5)));
        assert!(log.held() > 0, "kept: its frames stay with no reader");
        let again = log.join(now + Duration::from_secs(4), 2, "b").expect("within reuse_seconds");
        let mut b = reader(usize::MAX);
        assert!(log.pull(again, &mut b).done);
        assert_eq!(b.got, ["start S", "frame 0", "frame 1", "end 2048 None true"]);
        assert!(log.join(now + Duration::from_secs(5), 3, "c").is_none(), "its time is up");
        assert!(log.expire(now + Duration::from_secs(5)), "no reader: released at once");
        assert_eq!((budget.held.load(Ordering::Relaxed), budget.reserved.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn a_failed_stream_ends_its_readers_with_the_error_and_takes_no_one() {
        let (mut log, _) = log(1 << 20, 64 * KIB as u64);
        let now = Instant::now();
        let before = log.join(now, 1, "a").expect("joins");
        let error = ErrorBody::new(ErrorCode::ConnectorGone, "gone");
        log.finish(0, Some(error), Some(Duration::from_secs(60)), now);
        assert!(!log.joinable(now), "a failed stream is never reused");
        let mut a = reader(usize::MAX);
        assert!(log.pull(before, &mut a).done);
        assert_eq!(a.got, ["end 0 Some(ConnectorGone) false"], "no start: the error alone");
    }

    #[test]
    fn the_gateway_wide_budget_refuses_a_log_it_has_no_room_for() {
        let budget = Arc::new(ShareBudget::new(3 << 20));
        let one = ShareLog::new(2 << 20, KIB as u64, budget.clone());
        assert!(one.is_some());
        assert!(ShareLog::new(2 << 20, KIB as u64, budget.clone()).is_none(), "2 + 2 MiB > 3 MiB");
        assert_eq!(budget.refused.load(Ordering::Relaxed), 1);
        drop(one);
        assert!(ShareLog::new(2 << 20, KIB as u64, budget.clone()).is_some(), "room again once the first is gone");
    }

    #[test]
    fn a_session_reads_a_stream_once() {
        let (mut log, _) = log(1 << 20, KIB as u64);
        let now = Instant::now();
        log.join(now, 1, "q1").expect("joins");
        assert!(log.join(now, 1, "q2").is_none(), "the same socket would see one stream id for two queries");
        assert!(log.join(now, 2, "q2").is_some());
    }

    #[test]
    fn slots_of_readers_that_left_are_taken_again() {
        let (mut log, _) = log(1 << 20, KIB as u64);
        let now = Instant::now();
        for i in 0..100 {
            let slot = log.join(now, i, "q").expect("joins");
            assert_eq!(slot, 0, "one reader at a time: one slot");
            log.leave(i, "q");
        }
    }
}
