//! A connection's outgoing [`Ring`] with its byte budget.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use volley_protocol::ws::{close_payload, encode_frame, OpCode};

use crate::conn::writev::{OutItem, WriteBatch, IOVECS_PER_WRITE_MAX};

/// Items one writer batch takes at most.
pub const BATCH_ITEMS_MAX: usize = 256;
/// Bytes one writer batch takes at most (more wait for the next writev).
pub const BATCH_BYTES_MAX: usize = 4 << 20;
// A batch of whole items fits one writev: an item is at most three iovecs
// (WebSocket header, level-2 prefix, body: `SharedFrame::parts`).
const _: () = assert!(3 * BATCH_ITEMS_MAX <= IOVECS_PER_WRITE_MAX);

/// Outgoing queue of one connection, with a byte budget. Single-threaded
/// (owned by the connection's worker).
///
/// Every byte queued counts in [`Ring::bytes`], against the ring's budget:
/// - data frames are admitted by the caller's policy (credit for queries,
///   skip/close for live streams) and count in the gateway-wide data total
///   (`rings.total_bytes_max`);
/// - control output (text messages, pings, pongs — [`OutItem::Encoded`])
///   counts in the gateway-wide control total, and the ring's own control
///   bytes are capped: a push that would take them past `control_bytes_max`
///   is dropped and the connection closed with 4002 instead, so a peer that
///   asks for replies and never reads them cannot grow its queue;
/// - while the ring holds its budget or more, the connection's reader waits
///   ([`Ring::wait_for_room`]) before it reads the next message: TCP then
///   slows the sender down.
///
/// A close frame is always queued (it ends the connection).
pub struct Ring {
    items: VecDeque<OutItem>,
    bytes: usize,
    control_bytes: usize,
    budget: usize,
    control_bytes_max: usize,
    /// The writer, waiting for items.
    waker: Option<Waker>,
    /// The reader, waiting for the ring to drop below its budget.
    room_waker: Option<Waker>,
    /// When the close frame was queued (`None`: open).
    closing_at: Option<Instant>,
    totals: Arc<RingTotals>,
}

/// Bytes queued in all rings of a gateway, data and control apart: the live
/// admission policy compares the data total with `rings.total_bytes_max`;
/// control output is bounded per connection instead (its cap), so one
/// tenant's unread replies never make another tenant's live frames skip.
#[derive(Debug, Default)]
pub struct RingTotals {
    /// Data frames queued.
    pub data: AtomicUsize,
    /// Control output queued.
    pub control: AtomicUsize,
    /// Rings in memory: one per open connection, and one per closed
    /// connection whose state something still holds (it should be none).
    pub rings: AtomicUsize,
}

/// How long a closing connection may go without writing anything before
/// its worker kills it (see [`Ring::closing_at`]): its peer reads nothing,
/// so its close frame would never go out.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why a ring closed its connection when its control output passed its cap.
pub const CONTROL_OVERFLOW_REASON: &str = "slow consumer: too many unread control replies";

impl Ring {
    /// An empty ring with a budget and a cap on its control output, counted
    /// also in `totals`.
    pub fn new(budget: usize, control_bytes_max: usize, totals: Arc<RingTotals>) -> Ring {
        totals.rings.fetch_add(1, Ordering::Relaxed);
        Ring {
            items: VecDeque::new(),
            bytes: 0,
            control_bytes: 0,
            budget,
            control_bytes_max,
            waker: None,
            room_waker: None,
            closing_at: None,
            totals,
        }
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// True when `len` more bytes fit in the budget.
    pub fn fits(&self, len: usize) -> bool {
        self.bytes.saturating_add(len) <= self.budget
    }

    /// True once a close frame is queued.
    pub fn is_closing(&self) -> bool {
        self.closing_at.is_some()
    }

    /// When the close frame was queued, if it was. A browser session that
    /// then writes nothing for [`CLOSE_GRACE`] (its peer reads nothing, so
    /// the close frame cannot be written) is killed by its worker's sweep.
    pub fn closing_at(&self) -> Option<Instant> {
        self.closing_at
    }

    /// Queues an item (ignored once closing). Control output past the cap
    /// closes the connection instead (4002).
    pub fn push(&mut self, item: OutItem) {
        if self.is_closing() {
            return;
        }
        let len = item.wire_len();
        if matches!(item, OutItem::Encoded(_)) {
            if self.control_bytes.saturating_add(len) > self.control_bytes_max {
                self.push_close(volley_protocol::ws::close_code::SLOW_CONSUMER, CONTROL_OVERFLOW_REASON);
                return;
            }
            self.enqueue(item, len, true);
        } else {
            self.enqueue(item, len, false);
        }
    }

    fn enqueue(&mut self, item: OutItem, len: usize, control: bool) {
        self.bytes += len;
        if control {
            self.control_bytes += len;
            self.totals.control.fetch_add(len, Ordering::Relaxed);
        } else {
            self.totals.data.fetch_add(len, Ordering::Relaxed);
        }
        self.items.push_back(item);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Queues a text message.
    pub fn push_text(&mut self, text: &str) {
        self.push(OutItem::Encoded(encode_frame(OpCode::Text, text.as_bytes())));
    }

    /// Queues a close frame (whatever the budget); nothing after it is sent.
    pub fn push_close(&mut self, code: u16, reason: &str) {
        if self.is_closing() {
            return;
        }
        let item = OutItem::Encoded(encode_frame(OpCode::Close, &close_payload(code, reason)));
        let len = item.wire_len();
        self.enqueue(item, len, true);
        self.closing_at = Some(Instant::now());
        // A reader waiting for room stops waiting: the connection is ending.
        if let Some(waker) = self.room_waker.take() {
            waker.wake();
        }
    }

    /// Wakes the writer without queuing (used when the connection is killed).
    pub fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        if let Some(waker) = self.room_waker.take() {
            waker.wake();
        }
    }

    /// Waits until the ring holds less than its budget (or is closing):
    /// a reader calls it before reading the next request, so a peer that
    /// does not read what it asked for stops being read (backpressure).
    pub async fn wait_for_room(ring: &RefCell<Ring>) {
        poll_fn(|cx| {
            let mut ring = ring.borrow_mut();
            if ring.bytes < ring.budget || ring.is_closing() {
                return Poll::Ready(());
            }
            ring.room_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// For the writer: ready with true when there is something to write,
    /// with false once the ring is closing and empty; otherwise `waker` is
    /// woken by the next push.
    pub(super) fn poll_work(&mut self, waker: &Waker) -> Poll<bool> {
        if !self.items.is_empty() {
            return Poll::Ready(true);
        }
        if self.is_closing() {
            return Poll::Ready(false);
        }
        self.waker = Some(waker.clone());
        Poll::Pending
    }

    pub(super) fn take_batch(&mut self, batch: &mut WriteBatch) -> Taken {
        let mut taken = Taken::default();
        let mut count = 0;
        while let Some(item) = self.items.front() {
            let len = item.wire_len();
            if count > 0
                && (count >= BATCH_ITEMS_MAX
                    || taken.bytes + len > BATCH_BYTES_MAX
                    || batch.iovec_count() + 3 > IOVECS_PER_WRITE_MAX)
            {
                break;
            }
            let Some(item) = self.items.pop_front() else { break };
            taken.bytes += len;
            if matches!(item, OutItem::Encoded(_)) {
                taken.control_bytes += len;
            }
            count += 1;
            batch.push(item);
        }
        taken
    }

    pub(super) fn release(&mut self, taken: Taken) {
        // A batch takes only what was queued here, so the clamps below never
        // engage; they keep a release build's counters sane if that breaks.
        debug_assert!(taken.control_bytes <= taken.bytes, "a batch took more control bytes than bytes");
        debug_assert!(taken.control_bytes <= self.control_bytes, "a batch took control bytes never queued");
        debug_assert!(
            taken.bytes - taken.control_bytes <= self.bytes - self.control_bytes,
            "a batch took data bytes never queued"
        );
        let control = taken.control_bytes.min(self.control_bytes);
        let data = taken.bytes.saturating_sub(taken.control_bytes).min(self.bytes - self.control_bytes);
        self.control_bytes -= control;
        self.bytes -= control + data;
        self.totals.control.fetch_sub(control, Ordering::Relaxed);
        self.totals.data.fetch_sub(data, Ordering::Relaxed);
        if self.bytes < self.budget {
            if let Some(waker) = self.room_waker.take() {
                waker.wake();
            }
        }
    }
}

/// What one writer batch took off a ring.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Taken {
    pub(super) bytes: usize,
    control_bytes: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.totals.rings.fetch_sub(1, Ordering::Relaxed);
        self.totals.control.fetch_sub(self.control_bytes, Ordering::Relaxed);
        self.totals.data.fetch_sub(self.bytes - self.control_bytes, Ordering::Relaxed);
    }
}
