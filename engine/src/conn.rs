//! Connection plumbing shared by tunnels and browser sessions: the kill
//! switch ([`ConnCtl`], `or_killed!`), the reader (one task per connection
//! for its whole life — dropping an in-flight io_uring read loses data, so a
//! read is only ever dropped when its connection is killed for good), the
//! outgoing [`Ring`] with its byte budget, and the writer task.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use volley_protocol::limits::WS_HEADER_BYTES_MAX;
use volley_protocol::ws::{close_payload, encode_frame, FrameDecoder, Message, MessageAssembler, OpCode, WsError};

use crate::runtime::fair_turn;
use crate::transport::{ConnRead, ConnWrite};
use crate::writev::{OutItem, WriteBatch, IOVECS_PER_WRITE_MAX};

/// Items one writer batch takes at most.
pub const BATCH_ITEMS_MAX: usize = 256;
/// Bytes one writer batch takes at most (more wait for the next writev).
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Kill switch of one connection: ends its in-flight read and write.
///
/// Every IO operation of a connection runs under `or_killed!`, which
/// stops waiting for it once the connection is killed; dropping the
/// operation makes monoio cancel it in the kernel (feature `async-cancel`)
/// and keep its buffer until the cancellation completes. A kill is final —
/// the connection is never read again — so the bytes a dropped read may have
/// taken are not needed (that loss is why a timeout must
/// not drop a read it goes on from). Unlike monoio's `Canceller`, this costs
/// no allocation per connection or per operation (memory per idle session).
#[derive(Default)]
pub struct ConnCtl {
    killed: Cell<bool>,
    ready: Cell<bool>,
    /// The task waiting on this connection's reads, and on its writes.
    wakers: [Cell<Option<Waker>>; 2],
}

/// Which of a connection's waiters an operation belongs to: a connection
/// has at most one task waiting on reads (its reader) and one on writes
/// (its writer) at a time.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// Reads (and the TLS handshake, before any other task exists).
    Read = 0,
    /// Writes and shutdown.
    Write = 1,
}

impl ConnCtl {
    /// A live connection's control.
    pub fn new() -> Rc<ConnCtl> {
        Rc::new(ConnCtl::default())
    }

    /// Remembers the task waiting on `side`, to wake it on kill.
    pub fn register(&self, side: Side, waker: &Waker) {
        self.waker(side).set(Some(waker.clone()));
    }

    /// Forgets the task waiting on `side` (its operation completed).
    pub fn deregister(&self, side: Side) {
        self.waker(side).set(None);
    }

    fn waker(&self, side: Side) -> &Cell<Option<Waker>> {
        let [read, write] = &self.wakers;
        match side {
            Side::Read => read,
            Side::Write => write,
        }
    }

    /// Ends every in-flight operation; later operations fail at once.
    pub fn kill(&self) {
        if self.killed.replace(true) {
            return;
        }
        for slot in &self.wakers {
            if let Some(waker) = slot.take() {
                waker.wake();
            }
        }
    }

    /// True after [`ConnCtl::kill`].
    pub fn killed(&self) -> bool {
        self.killed.get()
    }

    /// The handshake is done (upgrade answered; for a connector, registered):
    /// the handshake deadline no longer applies.
    pub fn mark_ready(&self) {
        self.ready.set(true);
    }

    /// True after [`ConnCtl::mark_ready`].
    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }
}

/// The error an operation ends with when its connection was killed.
pub fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed by the gateway")
}

/// `or_killed!(ctl, side, future)` awaits `future` unless the connection
/// `ctl` (a `&ConnCtl`) is or gets killed first: `Some(output)`, or `None`
/// once killed (the future is then dropped, which cancels its operation).
/// `side` says which waiter slot the calling task uses ([`Side`]). A macro
/// rather than a function so the operation's future is stored in the
/// caller's own state, not in one more nested future.
macro_rules! or_killed {
    ($ctl:expr, $side:expr, $future:expr) => {{
        let ctl: &$crate::conn::ConnCtl = $ctl;
        let side: $crate::conn::Side = $side;
        let mut future = ::std::pin::pin!($future);
        ::std::future::poll_fn(|cx| {
            if ctl.killed() {
                return ::std::task::Poll::Ready(None);
            }
            ctl.register(side, cx.waker());
            let output = ::std::task::ready!(::std::future::Future::poll(future.as_mut(), cx));
            ctl.deregister(side);
            ::std::task::Poll::Ready(Some(output))
        })
        .await
    }};
}
pub(crate) use or_killed;

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or was cancelled.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455 or a limit.
    #[error("websocket: {0}")]
    Ws(#[from] WsError),
}

/// Reads WebSocket messages from one socket.
pub struct WsReader<R> {
    io: R,
    buf: BytesMut,
    decoder: FrameDecoder,
    assembler: MessageAssembler,
    /// Read buffer size (see [`ReadShape`]).
    chunk_bytes: u32,
    /// Wire length of the last binary frame taken off the buffer: the guess for the next one.
    last_frame_bytes: u32,
    ctl: Rc<ConnCtl>,
    /// Bytes moved from a full buffer into a new one (see metrics).
    pub carried_bytes: u64,
}

impl<R: ConnRead> WsReader<R> {
    /// A reader; `initial` holds bytes already read past the HTTP head.
    pub fn new(
        io: R,
        initial: BytesMut,
        decoder: FrameDecoder,
        assembler: MessageAssembler,
        chunk_bytes: usize,
        ctl: Rc<ConnCtl>,
    ) -> WsReader<R> {
        let chunk_bytes = u32::try_from(chunk_bytes).unwrap_or(u32::MAX);
        WsReader { io, buf: initial, decoder, assembler, chunk_bytes, last_frame_bytes: 0, ctl, carried_bytes: 0 }
    }

    /// The next whole message; `Ok(None)` at end of stream.
    ///
    /// Reads as needed. Large frames get a buffer of exactly their size and
    /// the read stops at their end, so their payload is read straight into
    /// the allocation the browsers will share. One async fn with the read
    /// inline: an idle connection's task holds just this state and the read.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            let buffered = self.buf.len();
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                if frame.opcode == OpCode::Binary {
                    self.last_frame_bytes = u32::try_from(buffered - self.buf.len()).unwrap_or(u32::MAX);
                }
                if let Some(message) = self.assembler.push(frame)? {
                    return Ok(Some(message));
                }
                continue;
            }
            let end = self.prepare();
            // The buffer moves into the read inside this block, so the
            // pending read's future is the only place that holds it.
            let read = self.io.read_into({
                let buf = std::mem::take(&mut self.buf);
                let start = buf.len();
                buf.slice_mut(start..end)
            });
            let Some((result, slice)) = or_killed!(&self.ctl, Side::Read, read) else {
                return Err(killed_error().into());
            };
            self.buf = slice.into_inner();
            if result? == 0 {
                return Ok(None);
            }
            // On epoll a read of a busy socket completes without suspending:
            // without this a connector that never pauses would keep its
            // worker from every other connection.
            fair_turn().await;
        }
    }

    /// Changes the limits and the read buffer size for what is still to be
    /// read: a tunnel reads with small ones until `register` succeeded. Call
    /// it between messages (nothing of the next one is decoded yet).
    pub fn set_limits(&mut self, frame_bytes_max: usize, message_bytes_max: usize, chunk_bytes: usize) {
        self.decoder.set_frame_bytes_max(frame_bytes_max);
        self.assembler.set_message_bytes_max(message_bytes_max);
        self.chunk_bytes = u32::try_from(chunk_bytes).unwrap_or(u32::MAX);
    }

    /// Makes room for the next read; returns where it may end (see [`ReadShape`]).
    fn prepare(&mut self) -> usize {
        let frame_len = self.decoder.frame_len_hint(&self.buf).unwrap_or(0);
        let shape = ReadShape { chunk: self.chunk_bytes as usize, guess: self.last_frame_bytes as usize, frame_len };
        if let Some(capacity) = shape.fresh_capacity(self.buf.len(), self.buf.capacity()) {
            let mut fresh = BytesMut::with_capacity(capacity);
            if !self.buf.is_empty() {
                self.carried_bytes += self.buf.len() as u64;
                fresh.extend_from_slice(&self.buf);
            }
            self.buf = fresh;
        }
        let end = shape.read_end(self.buf.len(), self.buf.capacity());
        debug_assert!(self.buf.len() < end && end <= self.buf.capacity());
        end
    }
}

/// Readers with a chunk at least this large align their reads on frames
/// (see [`ReadShape`]); smaller ones (browser sessions, whose idle memory
/// matters more than the rare copy) read into their chunk as it comes.
pub const READ_ALIGN_MIN_CHUNK_BYTES: usize = 4096;

// A batch of whole items fits one writev: an item is at most three iovecs
// (WebSocket header, level-2 prefix, body: `SharedFrame::parts`).
const _: () = assert!(3 * BATCH_ITEMS_MAX <= IOVECS_PER_WRITE_MAX);

/// How the next read of a [`WsReader`] is shaped.
///
/// Frames share read buffers, and a frame that straddles a buffer's end is
/// copied into the next ("carried", counted in the metrics). To keep a
/// steady stream of frames from straddling, reads are aligned on frames,
/// with the last binary frame's length as the guess for the ones to come:
/// - frames expected to fit a chunk: a read ends after the frame in
///   progress (its length is known once its header is in) plus as many
///   guessed frames as fit, and a buffer without room for one more guessed
///   frame is left for a fresh chunk;
/// - frames expected to be longer than a chunk: the next frame's header is
///   read alone (at most [`WS_HEADER_BYTES_MAX`] bytes), then the frame gets
///   a buffer of exactly its size. Buffers are never sized on a guess, so a
///   small frame never pins a large allocation.
///
/// A stream of equal frames is then never copied, except the few header
/// bytes of large ones; a wrong guess costs at most one carry, as without
/// alignment. Readers with small chunks ([`READ_ALIGN_MIN_CHUNK_BYTES`]) do
/// not align and use exact-size buffers only for frames longer than their
/// chunk.
#[derive(Debug, Clone, Copy)]
pub struct ReadShape {
    /// Read buffer size.
    pub chunk: usize,
    /// Wire length of the last binary frame (0: none yet).
    pub guess: usize,
    /// Wire length of the frame at the front of the buffer, 0 while its header is incomplete.
    pub frame_len: usize,
}

impl ReadShape {
    fn aligned(self) -> bool {
        self.guess > 0 && self.chunk >= READ_ALIGN_MIN_CHUNK_BYTES
    }

    /// A large frame is expected and its header is not in yet.
    fn header_probe(self) -> bool {
        self.aligned() && self.frame_len == 0 && self.guess > self.chunk
    }

    /// The capacity of a fresh buffer the next read needs (what is buffered
    /// moves into it), or `None` to read into the current one, which holds
    /// `len` bytes in `capacity`.
    pub fn fresh_capacity(self, len: usize, capacity: usize) -> Option<usize> {
        let wanted = self.frame_len.max(len + 1);
        let no_room_for_guess =
            self.aligned() && self.frame_len == 0 && self.guess <= self.chunk && capacity < self.guess;
        if !(capacity < wanted || capacity == len || no_room_for_guess) {
            return None;
        }
        Some(if self.frame_len > self.chunk {
            self.frame_len
        } else if self.header_probe() {
            WS_HEADER_BYTES_MAX.max(wanted)
        } else {
            self.chunk.max(wanted)
        })
    }

    /// Where the next read into a buffer of `len` bytes in `capacity` may
    /// end; past `len` and within `capacity` once
    /// [`ReadShape::fresh_capacity`] was applied.
    pub fn read_end(self, len: usize, capacity: usize) -> usize {
        if self.header_probe() {
            return WS_HEADER_BYTES_MAX.min(capacity).max(len + 1);
        }
        if self.aligned() {
            // Where the frame in progress ends, known or guessed.
            let first = if self.frame_len > 0 { self.frame_len } else { self.guess };
            if first <= capacity {
                let end = first + (capacity - first) / self.guess * self.guess;
                if end > len {
                    return end;
                }
            }
        } else if self.frame_len > self.chunk {
            return self.frame_len;
        }
        capacity
    }
}

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

    /// Control bytes queued.
    pub fn control_bytes(&self) -> usize {
        self.control_bytes
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

    fn take_batch(&mut self, batch: &mut WriteBatch) -> Taken {
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

    fn release(&mut self, taken: Taken) {
        let control = taken.control_bytes.min(self.control_bytes);
        let data = (taken.bytes - taken.control_bytes).min(self.bytes - self.control_bytes);
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
struct Taken {
    bytes: usize,
    control_bytes: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.totals.rings.fetch_sub(1, Ordering::Relaxed);
        self.totals.control.fetch_sub(self.control_bytes, Ordering::Relaxed);
        self.totals.data.fetch_sub(self.bytes - self.control_bytes, Ordering::Relaxed);
    }
}

/// Kills its connection when dropped, unless disarmed: held by a
/// connection's helper tasks (writer, command loop, heartbeat), so that one
/// of them ending — or being dropped after a panic — ends the whole
/// connection, never half of it.
pub struct KillOnDrop(Option<Rc<ConnCtl>>);

impl KillOnDrop {
    /// Arms the guard for `ctl`.
    pub fn new(ctl: Rc<ConnCtl>) -> KillOnDrop {
        KillOnDrop(Some(ctl))
    }

    /// The task ends normally and must not kill its connection.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(ctl) = self.0.take() {
            ctl.kill();
        }
    }
}

/// Runs a connection's writer until the ring is closed and drained, the
/// connection is killed, or a write fails. `on_written` sees each written
/// batch (metrics, credit) along with the ring's occupancy when it was taken.
///
/// An idle writer (empty ring) is small: the state of writing — the batch and
/// the `writev` in flight, some 700 bytes of future — lives in a boxed future
/// that exists only while the ring has something to write (memory per idle
/// session, issue #3); so does the shutdown. A plain fn returning an async
/// block: an async fn would keep its arguments twice in the task.
#[allow(clippy::manual_async_fn)] // deliberate, see above
pub fn run_writer<W, F>(
    ring: Rc<RefCell<Ring>>,
    mut writer: W,
    ctl: Rc<ConnCtl>,
    mut on_written: F,
) -> impl Future<Output = io::Result<()>>
where
    W: ConnWrite,
    F: FnMut(&[OutItem], usize),
{
    async move {
        loop {
            let busy = poll_fn(|cx| {
                if ctl.killed() {
                    return Poll::Ready(false);
                }
                let mut ring = ring.borrow_mut();
                if !ring.items.is_empty() {
                    return Poll::Ready(true);
                }
                if ring.is_closing() {
                    return Poll::Ready(false);
                }
                ring.waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            if !busy {
                let closing = ring.borrow().is_closing();
                if closing && !ctl.killed() {
                    Box::pin(shutdown(&mut writer, &ctl)).await;
                }
                return Ok(());
            }
            Box::pin(drain(&ring, &mut writer, &ctl, &mut on_written)).await?;
        }
    }
}

/// Shuts the write side down after the close frame (killable).
async fn shutdown<W: ConnWrite>(writer: &mut W, ctl: &ConnCtl) {
    let _ = or_killed!(ctl, Side::Write, writer.shutdown());
}

/// Writes batches until the ring is empty (or the connection fails).
async fn drain<W, F>(ring: &RefCell<Ring>, writer: &mut W, ctl: &ConnCtl, on_written: &mut F) -> io::Result<()>
where
    W: ConnWrite,
    F: FnMut(&[OutItem], usize),
{
    let mut batch = WriteBatch::pooled();
    let result = loop {
        if ctl.killed() {
            break Ok(());
        }
        let (occupancy, taken) = {
            let mut ring = ring.borrow_mut();
            (ring.bytes, ring.take_batch(&mut batch))
        };
        if taken.bytes == 0 {
            break Ok(());
        }
        let (result, returned) = write_all(writer, batch, ctl).await;
        batch = returned;
        ring.borrow_mut().release(taken);
        if let Err(e) = result {
            break Err(e);
        }
        on_written(batch.items(), occupancy);
        batch.clear();
        fair_turn().await;
    };
    batch.recycle();
    result
}

/// Writes the whole batch, however many partial writes it takes, and returns
/// it (so the caller can account for what was delivered and reuse its Vecs).
/// A kill of `ctl` ends an in-flight write (a stalled reader never completes
/// it); the batch is then lost with the cancelled write.
pub async fn write_all<W: ConnWrite>(
    writer: &mut W,
    mut batch: WriteBatch,
    ctl: &ConnCtl,
) -> (io::Result<()>, WriteBatch) {
    while batch.remaining() > 0 {
        let Some((result, returned)) = or_killed!(ctl, Side::Write, writer.write_batch(batch)) else {
            return (Err(killed_error()), WriteBatch::default());
        };
        batch = returned;
        match result {
            Ok(0) => return (Err(io::Error::from(io::ErrorKind::WriteZero)), batch),
            Ok(written) => batch.advance(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), batch),
        }
    }
    (Ok(()), batch)
}

/// Encodes a close frame's payload into a whole frame.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    encode_frame(OpCode::Close, &close_payload(code, reason))
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;
    use proptest::prelude::*;

    /// Header length of a masked client frame of `wire` bytes in all.
    fn header_len(wire: usize) -> usize {
        match wire {
            0..132 => 6,
            132..65544 => 8,
            _ => 14,
        }
    }

    /// Feeds frames of the given wire lengths through the read planning the
    /// way [`WsReader`] does, with the socket handing over at most the next
    /// of `arrivals` bytes per read; returns the bytes carried between
    /// buffers. Asserts on every read that it is non-empty and inside the
    /// buffer, and that every frame is taken off whole, in order.
    fn carried(frames: &[usize], arrivals: &[usize], chunk: usize) -> usize {
        let total: usize = frames.iter().sum();
        let (mut len, mut capacity, mut read, mut carried) = (0usize, 0usize, 0usize, 0usize);
        let (mut next, mut guess) = (0usize, 0usize);
        let mut arrival = arrivals.iter().cycle();
        while next < frames.len() {
            // Take whole frames off the front.
            while next < frames.len() && len >= frames[next] {
                len -= frames[next];
                capacity -= frames[next];
                guess = frames[next];
                next += 1;
            }
            if next == frames.len() {
                break;
            }
            let frame_len = if len >= header_len(frames[next]) { frames[next] } else { 0 };
            let shape = ReadShape { chunk, guess, frame_len };
            if let Some(fresh) = shape.fresh_capacity(len, capacity) {
                assert!(fresh > len, "a fresh buffer has room: {fresh} for {len} buffered");
                carried += len;
                capacity = fresh;
            }
            let end = shape.read_end(len, capacity);
            assert!(len < end && end <= capacity, "read end {end} with {len} buffered in {capacity}");
            let n = (end - len).min(*arrival.next().expect("arrivals")).min(total - read);
            assert!(n > 0, "every read makes progress");
            len += n;
            read += n;
        }
        carried
    }

    const CHUNK: usize = 256 * 1024;
    const ARRIVAL_MAX: usize = 4 << 20;

    #[test]
    fn equal_frames_are_not_carried_once_their_length_is_known() {
        for wire in [1054, 65566, (1 << 20) + 30, (4 << 20) + 30] {
            let frames = vec![wire; 64];
            let whole = carried(&frames, &[usize::MAX], CHUNK);
            // While the first frame is read without a guess, then only the
            // header probes of frames longer than a chunk.
            let probes = if wire > CHUNK { WS_HEADER_BYTES_MAX * frames.len() } else { 0 };
            assert!(whole <= wire + probes, "{wire}-byte frames: {whole} carried");
            let trickled = carried(&frames, &[1500, 9000, 64 * 1024, 7, 300_000], CHUNK);
            assert!(trickled <= 2 * wire + probes, "{wire}-byte frames in uneven reads: {trickled} carried");
        }
    }

    #[test]
    fn a_browser_sized_chunk_does_not_align_so_an_idle_session_keeps_a_chunk_sized_buffer() {
        // After a 100-byte request the emptied buffer is replaced by a
        // 32-byte one, not by one sized for the next 100-byte request.
        let shape = ReadShape { chunk: 32, guess: 100, frame_len: 0 };
        assert_eq!(shape.fresh_capacity(0, 0), Some(32));
        assert_eq!(shape.read_end(0, 32), 32);
        // A longer frame still gets a buffer of exactly its size.
        let long = ReadShape { chunk: 32, guess: 100, frame_len: 100 };
        assert_eq!(long.fresh_capacity(20, 32), Some(100));
        assert_eq!(long.read_end(20, 100), 100);
    }

    proptest! {
        #[test]
        fn any_frames_and_reads_make_progress_and_stay_in_the_buffer(
            frames in proptest::collection::vec(2usize..3_000_000, 1..40),
            arrivals in proptest::collection::vec(1usize..ARRIVAL_MAX, 1..20),
            chunk in prop_oneof![Just(32usize), Just(4096), Just(CHUNK)],
        ) {
            let total: usize = frames.iter().sum();
            let moved = carried(&frames, &arrivals, chunk);
            prop_assert!(moved <= total, "carried {moved} of {total}");
        }
    }
}

#[cfg(test)]
mod write_all_tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;
    use crate::frame::{Level, SharedFrame};
    use std::io::Read;
    use std::time::Instant;
    use volley_protocol::header::{FrameHeader, FrameKind};

    /// A slow reader forces many partial writes; every byte must arrive in order.
    #[test]
    fn partial_writes_deliver_every_byte() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let frames: Vec<Arc<SharedFrame>> = (0..24u32)
            .map(|i| {
                let header =
                    FrameHeader { kind: FrameKind::RecordBatch, flags: 0, stream_id: 3, sequence: u64::from(i) };
                let mut body = header.encode().to_vec();
                body.extend(
                    (0..(700_000 + i as usize * 13)).map(|j| (j.wrapping_mul(31) ^ i as usize).to_le_bytes()[0]),
                );
                SharedFrame::from_level2(Bytes::from(body), header, Instant::now())
            })
            .collect();
        let mut expected = Vec::new();
        for frame in &frames {
            for part in frame.parts(Level::Two) {
                expected.extend_from_slice(part);
            }
        }
        let reader = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 7919];
            loop {
                std::thread::sleep(std::time::Duration::from_micros(50));
                match socket.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            }
            got
        });
        let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build().expect("runtime");
        runtime.block_on(async move {
            let mut stream = monoio::net::TcpStream::connect(addr).await.expect("connect");
            let mut batch = WriteBatch::new();
            for frame in &frames {
                batch.push(OutItem::Frame(frame.clone(), Level::Two));
            }
            let ctl = ConnCtl::new();
            let (result, mut batch) = write_all(&mut stream, batch, &ctl).await;
            result.expect("write_all");
            assert_eq!(batch.items().len(), 24);
            batch.clear();
            // Send FIN now: a close queued on the ring would wait for the next poll.
            ConnWrite::shutdown(&mut stream).await.expect("shutdown");
        });
        drop(runtime);
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ after partial writes");
    }
}
