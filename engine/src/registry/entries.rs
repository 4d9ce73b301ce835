//! What the registry holds: a connector's handle and the commands for it,
//! and a stream with its subscribers.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use volley_protocol::message::{ErrorBody, ErrorCode};
use volley_protocol::Codec;

use crate::frame::Level;
use crate::mailbox::{Mailbox, PushError};
use crate::retained::Retained;
use crate::share_log::ShareLog;

/// A command for a connector tunnel, handled on the tunnel's worker.
#[derive(Debug)]
pub enum ConnectorCmd {
    /// Start serving this stream (`get_flight_info`, then `do_get`).
    Open(Arc<Stream>),
    /// Stop a stream: its last reader left, it was cancelled or timed out.
    Cancel(u32),
    /// The browsers drained this many bytes of the stream.
    Credit {
        /// Stream.
        stream_id: u32,
        /// Bytes drained.
        bytes: u64,
    },
    /// Close the tunnel (revocation, shutdown).
    Close {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
}

/// A registered connector tunnel.
#[derive(Debug)]
pub struct ConnectorHandle {
    /// Unique id (also the `session_id` of its register reply).
    pub id: u64,
    /// Tenant it serves.
    pub tenant: String,
    /// Worker that owns its socket.
    pub worker: usize,
    /// Protocol level agreed at register.
    pub level: Level,
    /// Datasets it serves.
    pub datasets: Vec<String>,
    /// The live subset.
    pub live: Vec<String>,
    /// IPC body compression codecs it offered in `register` (known ones only).
    /// It is never asked for any other.
    pub compression: Vec<Codec>,
    /// Commands for it.
    pub mailbox: Mailbox<ConnectorCmd>,
    /// Streams open on it now.
    pub active_streams: AtomicUsize,
    /// `jti` of the credential it registered with (none for a seed-style
    /// connector): revoking it closes this tunnel.
    pub credential_jti: Option<String>,
    /// `exp` of that credential: a revocation of it lasts at least until then.
    pub credential_exp: Option<i64>,
}

impl ConnectorHandle {
    /// Its credential's `jti` and `exp` (none for a seed-style connector).
    pub fn credential(&self) -> Option<(&str, i64)> {
        self.credential_jti.as_deref().zip(self.credential_exp)
    }

    /// True when it serves `dataset`.
    pub fn serves(&self, dataset: &str) -> bool {
        self.datasets.iter().any(|d| d == dataset)
    }

    /// True when `dataset` is live on it.
    pub fn is_live(&self, dataset: &str) -> bool {
        self.live.iter().any(|d| d == dataset)
    }

    /// True when it can produce streams compressed with `codec` (`None`: uncompressed, always).
    pub fn offers(&self, codec: Option<Codec>) -> bool {
        codec.is_none_or(|codec| self.compression.contains(&codec))
    }
}

/// One reader of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Worker that owns the browser session.
    pub worker: usize,
    /// Session id.
    pub session: u64,
    /// The browser's id for the query or subscription.
    pub query_id: String,
}

/// Mutable stream state, behind the stream's lock (never held across IO).
#[derive(Debug)]
pub struct StreamState {
    /// Readers.
    pub subscribers: Vec<Subscriber>,
    /// Base64 schema from `stream_start`, once known.
    pub schema_b64: Option<String>,
    /// Live streams: the schema frame and the dictionary frames since, which
    /// late joiners get first (bounded; see [`Retained`]).
    pub retained: Retained,
    /// `stream_start` arrived.
    pub started: bool,
    /// The stream is over; nobody may attach.
    pub ended: bool,
    /// A shared query's log (`share_log.rs`): its readers take frames from
    /// it at their own pace. `None` for live streams and unshared queries.
    pub share: Option<ShareLog>,
}

impl StreamState {
    /// A fresh stream's state; its kept frames count in `retained_total`.
    pub fn new(retained_total: Arc<AtomicUsize>, window_total: Arc<AtomicUsize>) -> StreamState {
        StreamState {
            subscribers: Vec::new(),
            schema_b64: None,
            retained: Retained::new(retained_total, window_total),
            started: false,
            ended: false,
            share: None,
        }
    }
}

/// An upstream stream: one `do_get` on one connector, read by one or more browsers.
#[derive(Debug)]
pub struct Stream {
    /// Gateway-wide id, written in level-2 frame headers.
    pub id: u32,
    /// Tenant.
    pub tenant: String,
    /// Dataset.
    pub dataset: String,
    /// A live subscription stream (shared, lossy for slow readers) rather than a query.
    pub live: bool,
    /// IPC body compression the connector applies (`do_get`'s `compression`).
    /// Part of what makes a live stream shareable: a subscriber is attached
    /// only to a stream whose codec it accepted.
    pub compression: Option<Codec>,
    /// The tunnel serving it.
    pub connector: Arc<ConnectorHandle>,
    /// A shared query (it has a [`ShareLog`] in its state): its frames go
    /// into the log and its readers pull them from there.
    pub shared: bool,
    /// A shared query: bumped after each change of its log (a frame, its
    /// info, start or end), so a worker whose readers all pulled since
    /// skips the log's lock (`worker/share.rs`).
    pub share_version: AtomicU64,
    /// A shared query: the chunk its small frames are copied into before
    /// they go into the log (`share_log::copy_into`); only the tunnel's
    /// worker takes it, so it is never contended.
    pub share_chunk: Mutex<bytes::BytesMut>,
    /// Bit `w` set: worker `w` has subscribers. Read per frame without locking.
    pub dest_workers: AtomicU64,
    /// Level-1 flow control: bytes the connector may still send before the
    /// gateway stops reading its socket.
    pub credit_available: AtomicI64,
    /// Woken when credit returns.
    pub credit_waker: AtomicWaker,
    /// Subscribers and late-joiner state.
    pub state: Mutex<StreamState>,
}

/// Why a stream's connector could not be asked to start it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Its command queue is full: it is not keeping up.
    QueueFull,
    /// It left as the request reached it.
    Gone,
}

impl Unreachable {
    /// The error code and message a browser gets for it.
    pub fn explain(self, dataset: &str) -> (ErrorCode, String) {
        match self {
            Unreachable::QueueFull => (
                ErrorCode::TooManyRequests,
                "the connector's command queue is full: it is not keeping up; retry in a moment".to_owned(),
            ),
            Unreachable::Gone => (
                ErrorCode::ConnectorGone,
                format!("the connector serving {dataset:?} disconnected as the request reached it; retry"),
            ),
        }
    }
}

impl Stream {
    /// Asks its connector to start it (`Open`, handled on the tunnel's worker).
    pub fn request_open(self: &Arc<Self>) -> Result<(), Unreachable> {
        self.connector.mailbox.push(ConnectorCmd::Open(self.clone())).map_err(|e| match e {
            PushError::Full(_) => Unreachable::QueueFull,
            PushError::Closed(_) => Unreachable::Gone,
        })
    }

    /// Adds a subscriber and marks its worker as a destination; false when
    /// the stream has ended (checked under the same lock
    /// [`crate::registry::Registry::end_stream`] sets it under, so a
    /// subscriber is either attached before the end, and its worker is in
    /// the mask the end is routed to, or not at all).
    pub fn attach(&self, subscriber: Subscriber) -> bool {
        let mut state = self.state.lock();
        if state.ended {
            return false;
        }
        self.dest_workers.fetch_or(1 << subscriber.worker, Ordering::AcqRel);
        state.subscribers.push(subscriber);
        true
    }

    /// A shared query's stream ended (`error`: it failed): its readers get
    /// the end from its log once they took every frame; a completed one is
    /// kept for identical queries for `reuse` (`queries.reuse_seconds`).
    pub fn finish_share(&self, total_bytes: u64, error: Option<ErrorBody>, reuse: std::time::Duration) {
        if let Some(log) = self.state.lock().share.as_mut() {
            log.finish(total_bytes, error, Some(reuse), std::time::Instant::now());
        }
        self.share_changed();
    }

    /// A shared query's log changed (see [`Stream::share_version`]).
    pub fn share_changed(&self) {
        self.share_version.fetch_add(1, Ordering::Release);
    }

    /// Joins `subscriber` to this shared query as a reader from the first
    /// frame; its slot in the log and whether the stream had completed (a
    /// reuse), or `None` when the log takes no one new (it dropped a frame,
    /// the stream failed, or a completed stream's reuse time is over). A
    /// completed stream kept for reuse gets no subscriber: nothing will be
    /// routed to it again.
    pub fn join_shared(&self, subscriber: Subscriber, now: std::time::Instant) -> Option<(u32, bool)> {
        let mut state = self.state.lock();
        let slot = state.share.as_mut()?.join(now, subscriber.session, &subscriber.query_id)?;
        if !state.ended {
            self.dest_workers.fetch_or(1 << subscriber.worker, Ordering::AcqRel);
            state.subscribers.push(subscriber);
        }
        Some((slot, state.ended))
    }

    /// Removes a session's subscription; returns how many subscribers
    /// remain. A shared query's reader leaves its log, and the room it
    /// frees goes upstream as credit at once (the readers left may be
    /// waiting for the connector with nothing to write).
    pub fn detach(&self, worker: usize, session: u64, query_id: &str) -> usize {
        let (remaining, credit) = {
            let mut state = self.state.lock();
            let credit = state.share.as_mut().map_or(0, |log| log.leave(session, query_id));
            state.subscribers.retain(|s| !(s.session == session && s.query_id == query_id));
            if !state.subscribers.iter().any(|s| s.worker == worker) {
                self.dest_workers.fetch_and(!(1 << worker), Ordering::AcqRel);
            }
            (state.subscribers.len(), credit)
        };
        if self.shared {
            self.give_credit(credit);
            // A tunnel reader waiting for room in the log tries again.
            self.credit_waker.wake();
        }
        remaining
    }

    /// Gives `credit` bytes of a shared query back to its connector (level
    /// 2: a `credit` message; level 1: its reader goes on). A credit message
    /// that cannot be queued (the tunnel's command queue is full) is taken
    /// back by the log and given with the next pull.
    pub fn give_credit(&self, credit: u64) {
        if credit == 0 {
            return;
        }
        match self.connector.level {
            Level::One => self.return_credit(credit),
            Level::Two => {
                let cmd = ConnectorCmd::Credit { stream_id: self.id, bytes: credit };
                if self.connector.mailbox.push(cmd).is_err() {
                    if let Some(log) = self.state.lock().share.as_mut() {
                        log.take_back(credit);
                    }
                }
            }
        }
    }

    /// The worker bitmask.
    pub fn destinations(&self) -> u64 {
        self.dest_workers.load(Ordering::Acquire)
    }

    /// Returns credit (level-1 flow control) and wakes the connector reader.
    pub fn return_credit(&self, bytes: u64) {
        self.credit_available.fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::AcqRel);
        self.credit_waker.wake();
    }
}
