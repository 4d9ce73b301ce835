//! Connection plumbing shared by tunnels and browser sessions: the kill
//! switch ([`ConnCtl`], [`or_killed!`]), the reader (one task per connection
//! for its whole life — dropping an in-flight io_uring read loses data, so a
//! read is only ever dropped when its connection is killed for good), the
//! outgoing [`Ring`] with its byte budget, and the writer task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use volley_protocol::ws::{close_payload, encode_frame, FrameDecoder, Message, MessageAssembler, OpCode, WsError};

use crate::transport::{ConnRead, ConnWrite};
use crate::writev::{write_all, OutItem, WriteBatch, IOVECS_PER_WRITE_MAX};

/// Items one writer batch takes at most.
pub const BATCH_ITEMS_MAX: usize = 256;
/// Bytes one writer batch takes at most (more wait for the next writev).
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Kill switch of one connection: ends its in-flight read and write.
///
/// Every IO operation of a connection runs under [`or_killed!`], which
/// stops waiting for it once the connection is killed; dropping the
/// operation makes monoio cancel it in the kernel (feature `async-cancel`)
/// and keep its buffer until the cancellation completes. A kill is final —
/// the connection is never read again — so the bytes a dropped read may have
/// taken are not needed (FIELD-NOTES.md: that loss is why a timeout must
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
        self.wakers[side as usize].set(Some(waker.clone()));
    }

    /// Forgets the task waiting on `side` (its operation completed).
    pub fn deregister(&self, side: Side) {
        self.wakers[side as usize].set(None);
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
/// once killed (the future is then dropped, which cancels its io_uring op).
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
    /// Read buffer size for frames that fit one (see [`WsReader::prepare`]).
    chunk_bytes: u32,
    /// Wire length of the last frame taken off the buffer: the guess for the next one.
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
                if !frame.opcode.is_control() {
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
        }
    }

    /// Makes room for the next read; returns where it may end.
    ///
    /// A frame longer than a chunk gets a buffer of exactly its size. Frames
    /// that fit a chunk share one, and a frame that straddles the buffer's
    /// end is copied into the next ("carried", counted in the metrics). To
    /// keep a steady stream of such frames from straddling, reads are
    /// aligned on frames, with the last data frame's length as the guess for
    /// the ones to come: a read ends after the frame in progress (its length
    /// is known once its header is in) plus as many guessed frames as fit,
    /// and a buffer without room for one more guessed frame is left for a
    /// fresh one. A stream of equal frames is then never copied; a wrong
    /// guess costs at most a carry, as without alignment.
    fn prepare(&mut self) -> usize {
        let chunk = self.chunk_bytes as usize;
        let guess = self.last_frame_bytes as usize;
        // Alignment only for frames that fit a chunk (0: no data frame seen yet).
        let aligned = guess > 0 && guess <= chunk;
        let frame_len = self.decoder.frame_len_hint(&self.buf).unwrap_or(0);
        let wanted = frame_len.max(self.buf.len() + 1);
        let spare = self.buf.capacity() - self.buf.len();
        let no_room_for_guess = aligned && frame_len == 0 && self.buf.capacity() < guess;
        if self.buf.len() + spare < wanted || spare == 0 || no_room_for_guess {
            let capacity = if frame_len > chunk { frame_len } else { chunk.max(wanted) };
            let mut fresh = BytesMut::with_capacity(capacity);
            if !self.buf.is_empty() {
                self.carried_bytes += self.buf.len() as u64;
                fresh.extend_from_slice(&self.buf);
            }
            self.buf = fresh;
        }
        let capacity = self.buf.capacity();
        if frame_len > chunk {
            return frame_len;
        }
        if aligned {
            // Where the frame in progress ends, known or guessed.
            let first = if frame_len > 0 { frame_len } else { guess };
            if first <= capacity {
                let end = first + (capacity - first) / guess * guess;
                if end > self.buf.len() {
                    return end;
                }
            }
        }
        capacity
    }
}

/// Outgoing queue of one connection, with a byte budget. Single-threaded
/// (owned by the connection's worker). Pushes never block: control messages
/// always fit (they are few and small); frames are admitted by the caller's
/// policy (credit for queries, skip/close for live streams).
pub struct Ring {
    items: VecDeque<OutItem>,
    bytes: usize,
    budget: usize,
    waker: Option<Waker>,
    closing: bool,
    total: Arc<AtomicUsize>,
}

impl Ring {
    /// An empty ring with a per-ring budget, counted also in `total`.
    pub fn new(budget: usize, total: Arc<AtomicUsize>) -> Ring {
        Ring { items: VecDeque::new(), bytes: 0, budget, waker: None, closing: false, total }
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
        self.closing
    }

    /// Queues an item (ignored once closing).
    pub fn push(&mut self, item: OutItem) {
        if self.closing {
            return;
        }
        let len = item.wire_len();
        self.bytes += len;
        self.total.fetch_add(len, Ordering::Relaxed);
        self.items.push_back(item);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Queues a text message.
    pub fn push_text(&mut self, text: &str) {
        self.push(OutItem::Encoded(encode_frame(OpCode::Text, text.as_bytes())));
    }

    /// Queues a close frame; nothing after it is sent.
    pub fn push_close(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.push(OutItem::Encoded(encode_frame(OpCode::Close, &close_payload(code, reason))));
        self.closing = true;
    }

    /// Wakes the writer without queuing (used when the connection is killed).
    pub fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn take_batch(&mut self, batch: &mut WriteBatch) -> usize {
        let mut taken_bytes = 0;
        let mut taken = 0;
        while let Some(item) = self.items.front() {
            let len = item.wire_len();
            if taken > 0
                && (taken >= BATCH_ITEMS_MAX
                    || taken_bytes + len > BATCH_BYTES_MAX
                    || batch.iovec_count() + 3 > IOVECS_PER_WRITE_MAX)
            {
                break;
            }
            let Some(item) = self.items.pop_front() else { break };
            taken_bytes += len;
            taken += 1;
            batch.push(item);
        }
        taken_bytes
    }

    fn release(&mut self, bytes: usize) {
        self.bytes -= bytes.min(self.bytes);
        self.total.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
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
                if ring.closing {
                    return Poll::Ready(false);
                }
                ring.waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            if !busy {
                let closing = ring.borrow().closing;
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
        let (occupancy, bytes) = {
            let mut ring = ring.borrow_mut();
            (ring.bytes, ring.take_batch(&mut batch))
        };
        if bytes == 0 {
            break Ok(());
        }
        let (result, returned) = write_all(writer, batch, ctl).await;
        batch = returned;
        ring.borrow_mut().release(bytes);
        if let Err(e) = result {
            break Err(e);
        }
        on_written(batch.items(), occupancy);
        batch.clear();
    };
    batch.recycle();
    result
}

/// Encodes a close frame's payload into a whole frame.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    encode_frame(OpCode::Close, &close_payload(code, reason))
}
