//! What a live stream keeps for late joiners: its schema frame and the
//! dictionary frames since (PROTOCOL.md §5.2), as opaque bytes.
//!
//! Bounded per stream (`limits.live_retained_bytes_max`) and counted
//! gateway-wide in one gauge (`Registry::retained_bytes`, `retained_bytes` in
//! `/metrics`), which is part of the `rings.total_bytes_max` budget. A frame
//! that would pass either bound is refused, and the connector reader ends the
//! stream with `retained_limit` (PROTOCOL.md §8).
//!
//! Each kept frame is a copy in an allocation of its own
//! ([`SharedFrame::retained_copy`]): the frame as read is a view of the
//! tunnel's read buffer, which it shares with the frames read alongside it,
//! and keeping that view would pin the whole buffer while counting only the
//! view. A kept frame costs its bytes plus [`RETAINED_FRAME_OVERHEAD_BYTES`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use volley_protocol::header::FrameKind;

use crate::frame::SharedFrame;

/// What one kept frame costs besides its bytes: the frame's bookkeeping, its
/// `Arc` counts and its slot in the list.
pub const RETAINED_FRAME_OVERHEAD_BYTES: usize =
    std::mem::size_of::<SharedFrame>() + 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Arc<SharedFrame>>();

/// The bounds a kept frame is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RetainLimits {
    /// `limits.live_retained_bytes_max` (at most `rings.session_bytes_max`): per stream.
    pub stream_bytes_max: usize,
    /// `rings.total_bytes_max`: everything queued or kept in the gateway.
    pub total_bytes_max: usize,
}

/// Why a frame was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetainRefused {
    /// The stream's schema and dictionaries would pass the per-stream limit.
    #[error(
        "the live stream's schema and dictionary frames would take {bytes} bytes, over the limit of {limit} \
         (limits.live_retained_bytes_max, at most rings.session_bytes_max)"
    )]
    StreamLimit {
        /// What the stream would keep with this frame.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Everything queued and kept in the gateway would pass its budget.
    #[error(
        "the gateway holds {held} bytes of queued and kept frames; {more} more would pass rings.total_bytes_max \
         ({limit})"
    )]
    GatewayBudget {
        /// Queued and kept now.
        held: usize,
        /// What this frame adds.
        more: usize,
        /// The budget.
        limit: usize,
    },
}

impl RetainRefused {
    /// What to do about it, for people.
    pub fn advice(&self) -> &'static str {
        match self {
            RetainRefused::StreamLimit { .. } => {
                "the connector sends more dictionary data than the gateway keeps for late joiners: raise \
                 limits.live_retained_bytes_max (and rings.session_bytes_max, which caps it), or have the connector \
                 start over with a fresh schema frame"
            }
            RetainRefused::GatewayBudget { .. } => "the gateway is at its memory budget: subscribe again later",
        }
    }
}

/// One live stream's kept frames; see the module docs.
#[derive(Debug)]
pub struct Retained {
    schema: Option<Arc<SharedFrame>>,
    dictionaries: Vec<Arc<SharedFrame>>,
    bytes: usize,
    /// The gateway-wide gauge this stream's bytes are counted in.
    total: Arc<AtomicUsize>,
}

/// What keeping `frame` costs.
pub fn cost(frame: &SharedFrame) -> usize {
    frame.body().len().saturating_add(RETAINED_FRAME_OVERHEAD_BYTES)
}

impl Retained {
    /// Nothing kept yet; bytes kept later are counted in `total` too.
    pub fn new(total: Arc<AtomicUsize>) -> Retained {
        Retained { schema: None, dictionaries: Vec::new(), bytes: 0, total }
    }

    /// Bytes kept (with their overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What a late joiner gets, in order: the schema, then the dictionaries.
    pub fn frames(&self) -> impl Iterator<Item = &Arc<SharedFrame>> {
        self.schema.iter().chain(self.dictionaries.iter())
    }

    /// Keeps a copy of a schema frame (which replaces everything kept) or a
    /// dictionary frame (appended), unless that would pass `limits`;
    /// `queued_bytes` is what the gateway's rings hold now. Other kinds are
    /// not kept.
    pub fn keep(
        &mut self,
        frame: &SharedFrame,
        limits: RetainLimits,
        queued_bytes: usize,
    ) -> Result<(), RetainRefused> {
        let cost = cost(frame);
        let bytes = match frame.kind {
            FrameKind::Schema => cost,
            FrameKind::Dictionary => self.bytes.saturating_add(cost),
            _ => return Ok(()),
        };
        if bytes > limits.stream_bytes_max {
            return Err(RetainRefused::StreamLimit { bytes, limit: limits.stream_bytes_max });
        }
        let more = bytes.saturating_sub(self.bytes);
        let held = queued_bytes.saturating_add(self.total.load(Ordering::Relaxed));
        if more > 0 && held.saturating_add(more) > limits.total_bytes_max {
            return Err(RetainRefused::GatewayBudget { held, more, limit: limits.total_bytes_max });
        }
        let copy = frame.retained_copy();
        if frame.kind == FrameKind::Schema {
            self.clear();
            self.schema = Some(copy);
        } else {
            self.dictionaries.push(copy);
        }
        self.total.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        self.bytes = bytes;
        Ok(())
    }

    /// Drops everything kept (the stream ended).
    pub fn clear(&mut self) {
        self.schema = None;
        self.dictionaries = Vec::new();
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }
}

impl Drop for Retained {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Instant;
    use volley_protocol::header::FrameHeader;

    fn frame(kind: FrameKind, len: usize, sequence: u64) -> Arc<SharedFrame> {
        let header = FrameHeader { kind, flags: 0, stream_id: 1, sequence };
        let mut body = header.encode().to_vec();
        body.resize(16 + len, 7);
        SharedFrame::from_level2(Bytes::from(body), header, Instant::now())
    }

    const LIMITS: RetainLimits = RetainLimits { stream_bytes_max: 10_000, total_bytes_max: 1 << 20 };

    #[test]
    fn dictionaries_add_up_to_the_stream_limit_and_a_schema_starts_over() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut kept = Retained::new(total.clone());
        let schema = frame(FrameKind::Schema, 1000, 0);
        kept.keep(&schema, LIMITS, 0).unwrap();
        let dictionary = frame(FrameKind::Dictionary, 3000, 1);
        kept.keep(&dictionary, LIMITS, 0).unwrap();
        kept.keep(&dictionary, LIMITS, 0).unwrap();
        assert_eq!(kept.bytes(), cost(&schema) + 2 * cost(&dictionary));
        assert_eq!(total.load(Ordering::Relaxed), kept.bytes());
        let refused = kept.keep(&dictionary, LIMITS, 0).unwrap_err();
        assert_eq!(refused, RetainRefused::StreamLimit { bytes: kept.bytes() + cost(&dictionary), limit: 10_000 });
        assert_eq!(kept.frames().count(), 3, "a refused frame is not kept");
        // Record batches are not kept.
        kept.keep(&frame(FrameKind::RecordBatch, 50_000, 2), LIMITS, 0).unwrap();
        assert_eq!(kept.frames().count(), 3);
        kept.keep(&schema, LIMITS, 0).unwrap();
        assert_eq!(kept.bytes(), cost(&schema));
        assert_eq!(total.load(Ordering::Relaxed), cost(&schema));
        drop(kept);
        assert_eq!(total.load(Ordering::Relaxed), 0, "a dropped stream gives its bytes back");
    }

    #[test]
    fn kept_frames_are_copies_and_count_in_the_gateway_budget() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut kept = Retained::new(total.clone());
        let schema = frame(FrameKind::Schema, 100, 0);
        kept.keep(&schema, LIMITS, 0).unwrap();
        let copy = kept.frames().next().unwrap();
        assert_eq!(copy.body(), schema.body());
        assert_ne!(copy.body().as_ptr(), schema.body().as_ptr(), "a copy, not a view of the read buffer");
        assert_eq!((copy.sequence, copy.kind), (0, FrameKind::Schema));
        // Another stream's bytes and the rings' count against the same budget.
        let mut other = Retained::new(total.clone());
        let queued = LIMITS.total_bytes_max - kept.bytes() - 500;
        let refused = other.keep(&frame(FrameKind::Schema, 1000, 0), LIMITS, queued).unwrap_err();
        assert!(matches!(refused, RetainRefused::GatewayBudget { .. }), "{refused:?}");
        assert_eq!(other.bytes(), 0);
        kept.clear();
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }
}
