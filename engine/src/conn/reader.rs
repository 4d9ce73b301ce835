//! The reader: one task per connection for its whole life (dropping an
//! in-flight io_uring read loses data, so a read is only ever dropped when
//! its connection is killed for good), reads shaped by [`ReadShape`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io;
use std::rc::Rc;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use volley_protocol::limits::WS_HEADER_BYTES_MAX;
use volley_protocol::ws::{FrameDecoder, Message, MessageAssembler, OpCode, WsError};

use super::ctl::{killed_error, or_killed, ConnCtl, Side};
use crate::conn::transport::ConnRead;
use crate::runtime::fair_turn;

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
