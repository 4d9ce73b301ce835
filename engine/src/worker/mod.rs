//! Workers: one thread, one monoio runtime (io_uring or epoll), one `SO_REUSEPORT`
//! listener each. A connection lives on the worker that accepted it.
//!
//! Per-worker state ([`Worker`]) is `Rc`/`RefCell`, never shared across
//! threads: the browser sessions it owns and, per stream, the local
//! subscriptions that frames fan out to. Other workers reach it only through
//! its inbox ([`crate::mailbox::Mailbox`] of [`WorkerMsg`]), once per frame, not once per session.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_protocol::header::FrameKind;
use volley_protocol::message::{BrowserEvent, ErrorBody, ErrorCode};
use volley_protocol::ws::close_code;
use volley_protocol::Codec;

use crate::config::SlowReaderPolicy;
use crate::conn::writev::OutItem;
use crate::conn::ConnCtl;
use crate::frame::{Level, SharedFrame};
use crate::inbox_bytes::InboxBytes;
use crate::mailbox::PushError;
use crate::metrics::WorkerMetrics;
use crate::registry::Stream;
use crate::session::BrowserSession;
use crate::shared::Shared;
pub use crate::worker_msg::{StreamEvent, WorkerMsg};

mod admit;
mod revoke;
mod share;

pub use admit::QueuedQuery;
pub(crate) use share::pull_session;

/// Inbox messages drained per wake.
pub const INBOX_BATCH_MAX: usize = 256;
/// The close reason of a session closed by a drain (close code 1012).
pub const DRAIN_CLOSE_REASON: &str = "gateway restarting: reconnect";
/// How often a worker publishes its metrics.
pub const METRICS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// One browser's view of one stream on this worker.
pub struct LocalSub {
    /// The session.
    pub session: Rc<BrowserSession>,
    /// Its query or subscription id.
    pub query_id: String,
    /// Dataset name.
    pub dataset: String,
    /// Live subscription (lossy) or query (flow-controlled).
    pub live: bool,
    /// The stream's IPC body compression, announced in `stream_start`.
    pub compression: Option<Codec>,
    /// `stream_start` was sent to this browser.
    pub started: bool,
    /// Dropping frames until the next record batch (slow live reader).
    pub skipping: bool,
    /// Frames dropped since skipping began.
    pub skipped: u64,
    /// When the browser asked.
    pub opened_at: Instant,
    /// First frame already queued (time to first byte recorded).
    pub first_frame_seen: bool,
    /// Late joiner of a live stream: the highest sequence its snapshot
    /// (schema + dictionaries) carried. Frames up to it still in flight to
    /// this worker are older than the snapshot or in it: dropped for this
    /// subscriber, so it never sees a sequence twice or go backwards.
    pub snapshot_through: Option<u64>,
    /// A shared query's reader: its stream and its slot in the stream's
    /// log, from which it pulls (`share.rs`). Every reader of a shared
    /// stream has one; no subscriber of another stream does.
    pub reader: Option<(Arc<Stream>, u32)>,
    /// A shared query's reader: the stream's `share_version` up to which it
    /// took everything its log had (`share.rs`).
    pub share_seen: u64,
}

/// Worker-local tables.
#[derive(Default)]
pub struct Local {
    /// Browser sessions on this worker.
    pub sessions: HashMap<u64, Rc<BrowserSession>>,
    /// stream id → local subscriptions.
    pub subs: HashMap<u32, Vec<LocalSub>>,
    /// Connections still in their handshake, oldest first, with their
    /// deadlines (`timeouts.connect_seconds` is the same for all, so this
    /// is ordered): checked by `sweep::sweep`, no timer per connection.
    pub handshakes: VecDeque<(Instant, Weak<ConnCtl>)>,
    /// This worker's sessions' queries waiting in their tenant's admission
    /// queue (`admit.rs`), oldest first.
    pub queued: Vec<QueuedQuery>,
}

/// One worker.
pub struct Worker {
    /// Index (bit in stream destination masks).
    pub index: usize,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Local tables.
    pub local: RefCell<Local>,
    /// Local metrics (published once a second).
    pub metrics: RefCell<WorkerMetrics>,
    /// The registry's `datasets_generation` this worker's sessions were
    /// last brought up to date with.
    pub datasets_generation_seen: std::cell::Cell<u64>,
    /// Some session of this worker may have a live subscription waiting
    /// for a connector (`browser::resume_waiting` clears it when none does).
    pub live_waiting: std::cell::Cell<bool>,
    /// Cancels this worker's accept loop: taken by the first drain pass or
    /// by shutdown, whichever comes first.
    pub(crate) accept_stop: RefCell<Option<monoio::io::Canceller>>,
    /// This worker, for the few `&self` paths that spawn a task.
    me: Weak<Worker>,
}

impl Worker {
    /// A worker's state.
    pub fn new(index: usize, shared: Arc<Shared>) -> Rc<Worker> {
        Rc::new_cyclic(|me| Worker {
            index,
            shared,
            local: RefCell::new(Local::default()),
            metrics: RefCell::new(WorkerMetrics::default()),
            datasets_generation_seen: std::cell::Cell::new(0),
            live_waiting: std::cell::Cell::new(false),
            accept_stop: RefCell::new(None),
            me: me.clone(),
        })
    }

    /// Starts the handshake deadline of a new connection.
    pub fn watch_handshake(&self, ctl: &Rc<ConnCtl>) {
        let deadline = Instant::now() + Duration::from_secs(self.shared.config.timeouts.connect_seconds);
        self.local.borrow_mut().handshakes.push_back((deadline, Rc::downgrade(ctl)));
    }

    /// Sends `msg` to every worker with subscribers in `mask`: this worker
    /// handles it inline, others get it once through their inbox. An inbox
    /// full by count (`limits.inbox_max`) or holding
    /// `limits.inbox_bytes_max` bytes makes the caller (a connector reader)
    /// wait: backpressure, never an unbounded queue. Bytes are counted here,
    /// before the push, and uncounted by the destination once it delivered
    /// the message ([`Worker::deliver_queued`]); inline delivery counts nothing.
    pub async fn route(self: &Rc<Self>, mask: u64, msg: WorkerMsg) {
        let bytes = msg.inbox_bytes();
        let mut bits = mask;
        while bits != 0 {
            let target = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if target == self.index {
                self.deliver(msg.clone());
                continue;
            }
            let (Some(inbox), Some(budget)) = (self.shared.inboxes.get(target), self.shared.inbox_bytes.get(target))
            else {
                continue;
            };
            if bytes > 0 {
                budget.acquire(bytes).await;
            }
            let mut item = msg.clone();
            loop {
                match inbox.push(item) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        item = back;
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(PushError::Closed(_)) => {
                        if bytes > 0 {
                            budget.release(bytes);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Handles a message taken off this worker's inbox, then uncounts its
    /// bytes from the inbox's budget (also if delivering it panicked): a
    /// frame counts until it is in its sessions' rings, including while it
    /// waits in the batch the worker took off its inbox.
    pub fn deliver_queued(self: &Rc<Self>, msg: WorkerMsg) {
        struct Uncount<'a>(Option<&'a InboxBytes>, usize);
        impl Drop for Uncount<'_> {
            fn drop(&mut self) {
                if let (Some(budget), bytes @ 1..) = (self.0, self.1) {
                    budget.release(bytes);
                }
            }
        }
        let _uncount = Uncount(self.shared.inbox_bytes.get(self.index), msg.inbox_bytes());
        self.deliver(msg);
    }

    /// Handles a message for this worker's sessions.
    pub fn deliver(self: &Rc<Self>, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Frame(frame) => self.deliver_frame(&frame),
            WorkerMsg::Event(stream_id, event) => self.deliver_event(stream_id, &event),
            WorkerMsg::Revoke(revocation) => self.revoke(&revocation),
            WorkerMsg::Recheck => self.recheck(),
            WorkerMsg::Admitted(subscriber, ticket, opened) => self.admitted(&subscriber, ticket, &opened),
            WorkerMsg::Drain => self.drain_pass(),
            WorkerMsg::Shutdown => {}
            WorkerMsg::Stall(duration) => {
                if self.shared.config.test_fault_routes {
                    log::warn!("worker {} stalls for {duration:?} (test fault injection)", self.index);
                    std::thread::sleep(duration);
                }
            }
        }
    }

    /// Ends this worker's accept loop, which closes its listener: new
    /// connections are refused (or go to other workers' listeners until
    /// they too stop).
    pub(crate) fn stop_accepting(&self) {
        if let Some(canceller) = self.accept_stop.borrow_mut().take() {
            drop(canceller.cancel());
        }
    }

    /// One drain pass: stops accepting, closes with 1012 every session
    /// whose queries ended (a live subscription does not hold a session: the
    /// page resubscribes elsewhere; the close frame goes out behind what the
    /// ring still holds, a query's end included), and records how many
    /// sessions are still open — running a query, or still writing what was
    /// queued before their close. Tunnels are asked to move by their own
    /// heartbeat task (`reconnect`).
    fn drain_pass(&self) {
        self.stop_accepting();
        let sessions: Vec<Rc<BrowserSession>> = self.local.borrow().sessions.values().cloned().collect();
        let busy = sessions.len();
        for session in sessions {
            if !session.ring.borrow().is_closing() && !session.has_running_query() {
                session.close(close_code::SERVICE_RESTART, DRAIN_CLOSE_REASON);
            }
        }
        if let Some(count) = self.shared.drain_busy.get(self.index) {
            count.store(busy, std::sync::atomic::Ordering::Release);
        }
    }

    fn deliver_frame(&self, frame: &Arc<SharedFrame>) {
        let mut local = self.local.borrow_mut();
        let Some(subs) = local.subs.get_mut(&frame.stream_id) else { return };
        // A shared query's frame is in its log: readers pull it from there.
        if subs.first().is_some_and(|sub| sub.reader.is_some()) {
            drop(local);
            self.pull_readers(frame.stream_id);
            return;
        }
        let mut metrics = self.metrics.borrow_mut();
        let policy = self.shared.config.rings.slow_reader_policy;
        let total_max = self.shared.config.rings.total_bytes_max;
        for sub in subs.iter_mut() {
            if sub.snapshot_through.is_some_and(|through| frame.sequence <= through) {
                continue;
            }
            let session = &sub.session;
            let level = session.level;
            let len = frame.wire_len(level);
            let mut ring = session.ring.borrow_mut();
            if !sub.first_frame_seen {
                sub.first_frame_seen = true;
                WorkerMetrics::record_us(&mut metrics.ttfb_us, sub.opened_at.elapsed());
            }
            if !sub.live {
                // Queries are flow-controlled by credit: always queue.
                ring.push(OutItem::Frame(frame.clone(), level));
                continue;
            }
            // Kept frames of live streams count in the gateway-wide budget too.
            let over_total = self.shared.held_bytes().saturating_add(len) > total_max;
            // Schema and dictionaries are needed to decode the batches that
            // follow, so they are never skipped: a subscriber without room
            // for one cannot go on (PROTOCOL.md §5.2).
            if frame.kind == FrameKind::Dictionary || frame.kind == FrameKind::Schema {
                if ring.fits(len) && !over_total {
                    ring.push(OutItem::Frame(frame.clone(), level));
                } else {
                    drop(ring);
                    session.close(
                        close_code::SLOW_CONSUMER,
                        "slow consumer: no room for the live stream's schema or dictionary",
                    );
                }
                continue;
            }
            if sub.skipping {
                let resumable = matches!(frame.kind, FrameKind::RecordBatch | FrameKind::EndOfStream);
                if resumable && ring.bytes() <= ring.budget() / 2 && !over_total {
                    sub.skipping = false;
                    if level == Level::Two {
                        let gap = BrowserEvent::Gap {
                            query_id: sub.query_id.clone(),
                            stream_id: frame.stream_id,
                            next_sequence: frame.sequence,
                            skipped_frames: sub.skipped,
                        };
                        ring.push_text(&gap.to_json());
                    }
                    sub.skipped = 0;
                    ring.push(OutItem::Frame(frame.clone(), level));
                } else {
                    sub.skipped += 1;
                    metrics.frames_skipped += 1;
                }
                continue;
            }
            if ring.fits(len) && !over_total {
                ring.push(OutItem::Frame(frame.clone(), level));
                continue;
            }
            match policy {
                SlowReaderPolicy::Skip => {
                    sub.skipping = true;
                    sub.skipped = 1;
                    metrics.frames_skipped += 1;
                }
                SlowReaderPolicy::Close => {
                    drop(ring);
                    session.close(close_code::SLOW_CONSUMER, "slow consumer: fell behind the live stream");
                }
            }
        }
    }

    fn deliver_event(&self, stream_id: u32, event: &StreamEvent) {
        // A shared query's info, start and end are in its log: each reader
        // gets them in its turn (the end once it took every frame).
        if self.is_shared(stream_id) {
            self.pull_readers(stream_id);
            return;
        }
        let mut local = self.local.borrow_mut();
        let mut metrics = self.metrics.borrow_mut();
        if let StreamEvent::End { error, .. } = event {
            if let Some(mut subs) = local.subs.remove(&stream_id) {
                // The tenant's connector generation now (one stream, one tenant).
                let mut seen = None;
                for sub in subs.iter_mut() {
                    // A level-2 live subscriber outlives its connector: it
                    // waits for one to serve the dataset again (the sweep
                    // resumes it, `browser::resume_waiting`).
                    if resumable(sub, error.as_ref()) && {
                        let seen = *seen.get_or_insert_with(|| {
                            self.shared.registry.tenant_generation(&sub.session.claims.cuenta_id)
                        });
                        sub.session.wait_for_connector(&sub.query_id, stream_id, seen)
                    } {
                        sub.session.send(&waiting_event(sub, stream_id, error.as_ref()));
                        self.live_waiting.set(true);
                        continue;
                    }
                    send_event(sub, stream_id, event, &mut metrics);
                    sub.session.forget_query(&sub.query_id);
                }
            }
        } else if let Some(subs) = local.subs.get_mut(&stream_id) {
            for sub in subs.iter_mut() {
                send_event(sub, stream_id, event, &mut metrics);
            }
        }
    }

    /// Registers a local subscription (after the registry attached it).
    pub fn add_sub(&self, stream_id: u32, sub: LocalSub) {
        self.local.borrow_mut().subs.entry(stream_id).or_default().push(sub);
    }

    /// Removes a local subscription.
    pub fn remove_sub(&self, stream_id: u32, session: u64, query_id: &str) {
        let mut local = self.local.borrow_mut();
        if let Some(subs) = local.subs.get_mut(&stream_id) {
            subs.retain(|s| !(s.session.id == session && s.query_id == query_id));
            if subs.is_empty() {
                local.subs.remove(&stream_id);
            }
        }
    }

    /// Detaches a browser from a stream; the last reader leaving cancels it upstream.
    pub fn detach(&self, stream: &Arc<Stream>, session: u64, query_id: &str) {
        self.remove_sub(stream.id, session, query_id);
        if stream.detach(self.index, session, query_id) == 0 {
            self.unread(stream);
        }
    }

    /// Ends a stream for its subscribers and in the registry (`error`: it
    /// failed). A shared query's readers get the end from its log once they
    /// took every frame, and a completed one may be kept for identical
    /// queries (`queries.reuse_seconds`).
    pub async fn end_stream(self: &Rc<Self>, stream: &Arc<Stream>, total_bytes: u64, error: Option<ErrorBody>) {
        if stream.shared {
            let reuse = Duration::from_secs(self.shared.config.queries.reuse_seconds);
            stream.finish_share(total_bytes, error.clone(), reuse);
        }
        let mask = self.shared.registry.end_stream(stream);
        // A slot is free: the tenant's next waiting query may have it.
        self.admit_queued(&stream.tenant);
        self.route(mask, WorkerMsg::Event(stream.id, StreamEvent::End { total_bytes, error })).await;
    }

    /// Nobody reads `stream` any more: it ends and is cancelled upstream,
    /// unless it ended already (a completed shared query kept for reuse,
    /// whose readers leave, has nothing to cancel).
    pub fn unread(&self, stream: &Arc<Stream>) {
        if stream.state.lock().ended {
            return;
        }
        self.shared.registry.end_stream(stream);
        let _ = stream.connector.mailbox.push(crate::registry::ConnectorCmd::Cancel(stream.id));
        // A slot is free: the tenant's next waiting query may have it.
        self.admit_queued(&stream.tenant);
    }
}

/// Whether a live subscriber whose stream ended this way waits for a
/// connector instead of ending (PROTOCOL.md §5.3): level 2 only (a level-1
/// page knows one stream per socket and nothing of `live_waiting`), and only
/// when the connector went away or ended the stream without an error — not
/// when the stream failed (`source_error`, `retained_limit`, …), which
/// would fail again.
fn resumable(sub: &LocalSub, error: Option<&ErrorBody>) -> bool {
    sub.live && sub.session.level == Level::Two && error.is_none_or(|e| e.code == ErrorCode::ConnectorGone)
}

/// `live_waiting` for a subscriber whose stream ended (`error`: why, if it says).
fn waiting_event(sub: &LocalSub, stream_id: u32, error: Option<&ErrorBody>) -> BrowserEvent {
    let dataset = &sub.dataset;
    let why = error.map_or_else(
        || format!("the connector serving {dataset:?} ended the live stream"),
        |error| error.message.clone(),
    );
    BrowserEvent::LiveWaiting {
        query_id: sub.query_id.clone(),
        stream_id: Some(stream_id),
        dataset: dataset.clone(),
        error: ErrorBody::new(
            ErrorCode::ConnectorGone,
            format!(
                "{why}; the subscription stays open and resumes with a new stream_start as soon as a connector \
                 serving {dataset:?} is online"
            ),
        ),
    }
}

fn send_event(sub: &mut LocalSub, stream_id: u32, event: &StreamEvent, metrics: &mut WorkerMetrics) {
    let dataset = sub.dataset.as_str();
    let session = &sub.session;
    let level = session.level;
    let stream_id_field = (level == Level::Two).then_some(stream_id);
    let text = match event {
        // A late joiner of a live stream on another worker got `stream_start`
        // from the stream's snapshot while the connector's `flight_info` was
        // still in flight to this inbox: `flight_info` never follows `stream_start`.
        StreamEvent::FlightInfo { .. } if sub.started => return,
        StreamEvent::FlightInfo { schema, records } => BrowserEvent::FlightInfo {
            query_id: sub.query_id.clone(),
            dataset: dataset.to_owned(),
            schema: schema.clone(),
            records: *records,
        },
        StreamEvent::Start { schema } => {
            if sub.started {
                return;
            }
            sub.started = true;
            BrowserEvent::StreamStart {
                query_id: sub.query_id.clone(),
                request_id: sub.query_id.clone(),
                dataset: dataset.to_owned(),
                schema: schema.clone(),
                stream_id: stream_id_field,
                live: sub.live,
                compression: sub.compression.map(|codec| codec.as_str().to_owned()),
            }
        }
        StreamEvent::End { total_bytes, error } => {
            WorkerMetrics::record(
                &mut metrics.stream_duration_ms,
                u64::try_from(sub.opened_at.elapsed().as_millis()).unwrap_or(u64::MAX),
            );
            if !sub.started {
                let error = error
                    .clone()
                    .unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "stream ended before it started"));
                BrowserEvent::error(error.code, error.message, Some(sub.query_id.clone()))
            } else {
                BrowserEvent::StreamEnd {
                    query_id: sub.query_id.clone(),
                    request_id: sub.query_id.clone(),
                    stream_id: stream_id_field,
                    total_bytes: *total_bytes,
                    error: error.clone(),
                }
            }
        }
    };
    session.ring.borrow_mut().push_text(&text.to_json());
}
