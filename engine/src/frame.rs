//! What travels from a connector's read to browsers' writes.
//!
//! A [`SharedFrame`] is built once per binary frame read from a connector:
//! the payload `Bytes` (a view of the connector's read buffer) plus the
//! WebSocket headers for both protocol levels, built once. It is then shared
//! by `Arc` — every session on every worker holds the same allocation; no
//! payload byte is copied after the read, except the copy a live stream keeps
//! of its schema and dictionary frames for late joiners
//! ([`SharedFrame::retained_copy`]).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::limits::FRAME_HEADER_BYTES;
use volley_protocol::ws::{encode_header, HeaderBytes, OpCode};

/// A browser socket's protocol level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The seed's: raw IPC chunks, no header.
    One,
    /// `volley.v2`: every binary frame starts with the 16-byte header.
    Two,
}

/// How many [`SharedFrame`]s this process built (one relaxed increment per
/// frame read, never per session). The zero-copy test (`engine/tests/zero_copy.rs`)
/// checks it equals the frames the connector sent, however many sessions on
/// however many workers received them.
#[doc(hidden)]
pub static SHARED_FRAMES_BUILT: AtomicU64 = AtomicU64::new(0);

/// One binary frame on its way to every subscriber; see the module docs.
#[derive(Debug)]
pub struct SharedFrame {
    /// Stream it belongs to.
    pub stream_id: u32,
    /// Payload kind.
    pub kind: FrameKind,
    /// Frame number in the stream.
    pub sequence: u64,
    /// When the gateway finished reading it (relay latency starts here).
    pub read_at: Instant,
    /// A copy kept for late joiners ([`SharedFrame::retained_copy`]): what it
    /// carries was read long before a joiner gets it, so it is not timed as
    /// relay latency.
    pub replayed: bool,
    /// The level-2 header the gateway built, when the connector speaks level 1.
    prefix: Option<Bytes>,
    /// The connector's payload; starts with the level-2 header when `prefix` is `None`.
    body: Bytes,
    ws_header_level2: HeaderBytes,
    ws_header_level1: HeaderBytes,
}

impl SharedFrame {
    /// A frame from a level-2 connector: `body` starts with its (checked) header.
    pub fn from_level2(body: Bytes, header: FrameHeader, read_at: Instant) -> Arc<SharedFrame> {
        let ipc_len = body.len().saturating_sub(FRAME_HEADER_BYTES);
        SHARED_FRAMES_BUILT.fetch_add(1, Ordering::Relaxed);
        Arc::new(SharedFrame {
            stream_id: header.stream_id,
            kind: header.kind,
            sequence: header.sequence,
            read_at,
            replayed: false,
            prefix: None,
            ws_header_level2: encode_header(true, OpCode::Binary, body.len(), None),
            ws_header_level1: encode_header(true, OpCode::Binary, ipc_len, None),
            body,
        })
    }

    /// A frame from a level-1 connector: `body` is a raw chunk of the IPC stream.
    pub fn from_level1(body: Bytes, stream_id: u32, sequence: u64, read_at: Instant) -> Arc<SharedFrame> {
        let header = FrameHeader { kind: FrameKind::Chunk, flags: 0, stream_id, sequence };
        SHARED_FRAMES_BUILT.fetch_add(1, Ordering::Relaxed);
        Arc::new(SharedFrame {
            stream_id,
            kind: FrameKind::Chunk,
            sequence,
            read_at,
            replayed: false,
            prefix: Some(Bytes::copy_from_slice(&header.encode())),
            ws_header_level2: encode_header(true, OpCode::Binary, FRAME_HEADER_BYTES + body.len(), None),
            ws_header_level1: encode_header(true, OpCode::Binary, body.len(), None),
            body,
        })
    }

    /// A copy of this frame whose payload has an allocation of its own, for
    /// a live stream to keep for late joiners (`crate::retained`): the frame
    /// as read is a view of a read buffer it shares with other frames. Not
    /// counted in [`SHARED_FRAMES_BUILT`], which counts frames read.
    pub fn retained_copy(&self) -> Arc<SharedFrame> {
        self.copy(true)
    }

    fn copy(&self, replayed: bool) -> Arc<SharedFrame> {
        Arc::new(SharedFrame {
            stream_id: self.stream_id,
            kind: self.kind,
            sequence: self.sequence,
            read_at: self.read_at,
            replayed,
            prefix: self.prefix.clone(),
            body: Bytes::copy_from_slice(&self.body),
            ws_header_level2: self.ws_header_level2,
            ws_header_level1: self.ws_header_level1,
        })
    }

    /// Bytes of the connector's frame as read (its WebSocket payload, which
    /// `connector_frame_bytes_max` bounds): what this frame counts in a
    /// worker's inbox byte budget (`crate::inbox_bytes`).
    pub fn read_len(&self) -> usize {
        self.body.len()
    }

    /// IPC payload bytes (headers excluded).
    pub fn ipc_len(&self) -> usize {
        match self.prefix {
            Some(_) => self.body.len(),
            None => self.body.len().saturating_sub(FRAME_HEADER_BYTES),
        }
    }

    /// Bytes this frame puts on a browser socket of `level`.
    pub fn wire_len(&self, level: Level) -> usize {
        self.parts(level).iter().map(|p| p.len()).sum()
    }

    /// The slices to write, in order, for a browser socket of `level`
    /// (empty slices are skipped by the writer).
    pub fn parts(&self, level: Level) -> [&[u8]; 3] {
        match (level, &self.prefix) {
            (Level::Two, Some(prefix)) => [self.ws_header_level2.as_slice(), prefix, &self.body],
            (Level::Two, None) => [self.ws_header_level2.as_slice(), &[], &self.body],
            (Level::One, Some(_)) => [self.ws_header_level1.as_slice(), &[], &self.body],
            // Empty if the body were shorter than its header, as `ws_header_level1` says.
            (Level::One, None) => {
                [self.ws_header_level1.as_slice(), &[], self.body.get(FRAME_HEADER_BYTES..).unwrap_or_default()]
            }
        }
    }

    /// The connector's payload `Bytes` (for identity checks in tests).
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}
