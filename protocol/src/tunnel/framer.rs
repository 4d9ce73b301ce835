//! The frames of one stream, as the connector sends them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{FrameHeader, FrameKind, FLAG_LAST};
use crate::limits::FRAME_HEADER_BYTES;

/// Turns a stream's IPC messages into binary frames: at level 2 each gets
/// the 16-byte header (PROTOCOL.md §3) with the stream's id and the next
/// sequence number, the end-of-stream marker flagged last; at level 1 the
/// message is the frame.
#[derive(Debug, Clone)]
pub struct Framer {
    stream_id: Option<u32>,
    sequence: u64,
}

impl Framer {
    /// Frames for the stream `do_get` named (`Some` at level 2).
    pub fn new(stream_id: Option<u32>) -> Framer {
        Framer { stream_id, sequence: 0 }
    }

    /// The frame carrying `message`, an IPC message of `kind`.
    pub fn frame(&mut self, kind: FrameKind, message: &Bytes) -> Bytes {
        let sequence = self.sequence;
        self.sequence += 1;
        let Some(stream_id) = self.stream_id else { return message.clone() };
        let flags = if kind == FrameKind::EndOfStream { FLAG_LAST } else { 0 };
        let header = FrameHeader { kind, flags, stream_id, sequence };
        let mut framed = BytesMut::with_capacity(FRAME_HEADER_BYTES + message.len());
        framed.put_slice(&header.encode());
        framed.put_slice(message);
        framed.freeze()
    }

    /// Frames made so far.
    pub fn frames(&self) -> u64 {
        self.sequence
    }
}
