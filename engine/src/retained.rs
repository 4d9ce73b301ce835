//! What a live stream keeps for joiners (PROTOCOL.md §5.2), as opaque
//! bytes: its schema frame, the dictionary frames since, and its *window* —
//! the most recent record batch frames, whole, at most
//! `limits.live_window_bytes`. A joiner gets them in the order the connector
//! sent them, then the frames that follow, so every subscriber starts the
//! same way: with the stream's recent history, not only what arrives after
//! it joined.
//!
//! Schema and dictionaries are bounded per stream
//! (`limits.live_retained_bytes_max`); a frame that would pass that bound,
//! or the gateway's budget, is refused, and the connector reader ends the
//! stream with `retained_limit` (PROTOCOL.md §8): what follows could not be
//! decoded without it. The window is best effort: the oldest batches leave
//! it to make room, a batch larger than the whole window empties it (the
//! window then holds no *recent* history), and at the gateway's budget it
//! is emptied rather than the stream ended. Everything kept is counted
//! gateway-wide in one gauge (`Registry::retained_bytes`, `retained_bytes`
//! in `/metrics`), part of the `rings.total_bytes_max` budget.
//!
//! Each kept frame is a copy in an allocation of its own
//! ([`SharedFrame::retained_copy`]): the frame as read is a view of the
//! tunnel's read buffer, which it shares with the frames read alongside it,
//! and keeping that view would pin the whole buffer while counting only the
//! view. A kept frame costs its bytes plus [`RETAINED_FRAME_OVERHEAD_BYTES`].

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use volley_protocol::header::FrameKind;

use crate::frame::SharedFrame;

/// What one kept frame costs besides its bytes: the frame's bookkeeping, its
/// `Arc` counts and its slot in the list.
pub const RETAINED_FRAME_OVERHEAD_BYTES: usize =
    std::mem::size_of::<SharedFrame>() + 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Arc<SharedFrame>>();

// A connector sizes a live stream's history with this overhead per batch
// (`do_get`'s `history_bytes`): it must cover what a kept frame costs beside
// its IPC bytes, so that the whole history fits the window it was sized to.
const _: () = assert!(
    (volley_protocol::limits::FRAME_HEADER_BYTES + RETAINED_FRAME_OVERHEAD_BYTES) as u64
        <= volley_protocol::tunnel::HISTORY_FRAME_OVERHEAD_BYTES
);

/// The bounds a kept frame is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RetainLimits {
    /// `limits.live_retained_bytes_max` (at most `rings.session_bytes_max`): per stream.
    pub stream_bytes_max: usize,
    /// `rings.total_bytes_max`: everything queued or kept in the gateway.
    pub total_bytes_max: usize,
    /// `limits.live_window_bytes` (see
    /// `GatewayConfig::live_window_bytes`): the record batches kept; 0 keeps none.
    pub window_bytes_max: usize,
    /// What all live streams' windows together may hold
    /// ([`WINDOWS_SHARE_OF_TOTAL`] of `rings.total_bytes_max`), so that
    /// windows never take the budget that queued live data needs.
    pub windows_total_max: usize,
}

impl RetainLimits {
    /// The bounds `config` sets.
    pub fn from_config(config: &crate::config::GatewayConfig) -> RetainLimits {
        RetainLimits {
            stream_bytes_max: config.live_retained_bytes_max(),
            total_bytes_max: config.rings.total_bytes_max,
            window_bytes_max: config.live_window_bytes(),
            windows_total_max: config.rings.total_bytes_max / WINDOWS_SHARE_OF_TOTAL,
        }
    }
}

/// All windows together hold at most this share of `rings.total_bytes_max`
/// (a quarter): past it a stream's window keeps fewer batches, or none.
pub const WINDOWS_SHARE_OF_TOTAL: usize = 4;

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
    /// Schema and dictionaries, with their overhead.
    bytes: usize,
    /// The most recent record batches, oldest first.
    window: VecDeque<Arc<SharedFrame>>,
    /// The window's bytes, with their overhead.
    window_bytes: usize,
    /// The gateway-wide gauge this stream's bytes are counted in.
    total: Arc<AtomicUsize>,
    /// The gateway-wide gauge of all windows' bytes (also in `total`).
    windows: Arc<AtomicUsize>,
}

/// What keeping `frame` costs.
pub fn cost(frame: &SharedFrame) -> usize {
    frame.body().len().saturating_add(RETAINED_FRAME_OVERHEAD_BYTES)
}

impl Retained {
    /// Nothing kept yet; bytes kept later are counted in `total` too, and
    /// the window's also in `windows`.
    pub fn new(total: Arc<AtomicUsize>, windows: Arc<AtomicUsize>) -> Retained {
        Retained {
            schema: None,
            dictionaries: Vec::new(),
            bytes: 0,
            window: VecDeque::new(),
            window_bytes: 0,
            total,
            windows,
        }
    }

    /// Bytes kept (with their overhead), window included.
    pub fn bytes(&self) -> usize {
        self.bytes + self.window_bytes
    }

    /// What a joiner gets, in the order the connector sent it: the schema,
    /// then the dictionaries and the window's batches by sequence (a batch
    /// is decoded with the dictionaries sent before it).
    pub fn frames(&self) -> impl Iterator<Item = &Arc<SharedFrame>> {
        let mut dictionaries = self.dictionaries.iter().peekable();
        let mut window = self.window.iter().peekable();
        let merged = std::iter::from_fn(move || match (dictionaries.peek(), window.peek()) {
            (Some(d), Some(b)) if b.sequence < d.sequence => window.next(),
            (Some(_), _) => dictionaries.next(),
            (None, _) => window.next(),
        });
        self.schema.iter().chain(merged)
    }

    /// Keeps a copy of `frame` as [`Retained::keep_copy`] does (the tests'
    /// shorthand; the connector reader copies before it takes the lock).
    #[cfg(test)]
    pub fn keep(
        &mut self,
        frame: &SharedFrame,
        limits: RetainLimits,
        queued_bytes: usize,
    ) -> Result<(), RetainRefused> {
        self.keep_copy(frame.retained_copy(), limits, queued_bytes)
    }

    /// Keeps `copy` (a [`SharedFrame::retained_copy`], made before the
    /// stream's lock is taken, so that a megabyte's copy never holds it): a
    /// schema frame replaces everything kept, a dictionary frame is appended,
    /// unless that would pass `limits`; a record batch frame goes to the
    /// window. `queued_bytes` is what the gateway's rings hold now. Other
    /// kinds are not kept.
    pub fn keep_copy(
        &mut self,
        copy: Arc<SharedFrame>,
        limits: RetainLimits,
        queued_bytes: usize,
    ) -> Result<(), RetainRefused> {
        let frame = &*copy;
        let cost = cost(frame);
        let bytes = match frame.kind {
            FrameKind::Schema => cost,
            FrameKind::Dictionary => self.bytes.saturating_add(cost),
            FrameKind::RecordBatch => {
                self.keep_in_window(copy, cost, limits, queued_bytes);
                return Ok(());
            }
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
        if frame.kind == FrameKind::Schema {
            // A new schema starts a new IPC stream: nothing before it decodes after it.
            self.clear();
            self.schema = Some(copy);
        } else {
            self.dictionaries.push(copy);
        }
        self.total.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        self.bytes = bytes;
        Ok(())
    }

    /// Keeps a copy of a record batch frame in the window, making room by
    /// dropping the oldest batches; never refuses (see the module docs).
    fn keep_in_window(&mut self, copy: Arc<SharedFrame>, cost: usize, limits: RetainLimits, queued_bytes: usize) {
        let held = queued_bytes.saturating_add(self.total.load(Ordering::Relaxed));
        if cost > limits.window_bytes_max || held.saturating_add(cost) > limits.total_bytes_max {
            self.clear_window();
            return;
        }
        // Room in this window and in all windows together: the oldest
        // batches of this one leave first.
        while self.window_bytes.saturating_add(cost) > limits.window_bytes_max
            || self.windows.load(Ordering::Relaxed).saturating_add(cost) > limits.windows_total_max
        {
            if !self.drop_oldest() {
                // Other streams' windows hold the share: this one keeps none.
                return;
            }
        }
        self.window.push_back(copy);
        self.window_bytes += cost;
        self.total.fetch_add(cost, Ordering::Relaxed);
        self.windows.fetch_add(cost, Ordering::Relaxed);
    }

    /// Drops the window's oldest batch; false when it is empty.
    fn drop_oldest(&mut self) -> bool {
        let Some(oldest) = self.window.pop_front() else { return false };
        let freed = cost(&oldest);
        self.window_bytes -= freed;
        self.total.fetch_sub(freed, Ordering::Relaxed);
        self.windows.fetch_sub(freed, Ordering::Relaxed);
        true
    }

    fn clear_window(&mut self) {
        self.window = VecDeque::new();
        self.total.fetch_sub(self.window_bytes, Ordering::Relaxed);
        self.windows.fetch_sub(self.window_bytes, Ordering::Relaxed);
        self.window_bytes = 0;
    }

    /// Drops everything kept (the stream ended).
    pub fn clear(&mut self) {
        self.schema = None;
        self.dictionaries = Vec::new();
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        self.clear_window();
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

    const LIMITS: RetainLimits = RetainLimits {
        stream_bytes_max: 10_000,
        total_bytes_max: 1 << 20,
        window_bytes_max: 0,
        windows_total_max: 1 << 18,
    };

    #[test]
    fn dictionaries_add_up_to_the_stream_limit_and_a_schema_starts_over() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut kept = Retained::new(total.clone(), Arc::new(AtomicUsize::new(0)));
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
        // Record batches are not kept without a window.
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
        let mut kept = Retained::new(total.clone(), Arc::new(AtomicUsize::new(0)));
        let schema = frame(FrameKind::Schema, 100, 0);
        kept.keep(&schema, LIMITS, 0).unwrap();
        let copy = kept.frames().next().unwrap();
        assert_eq!(copy.body(), schema.body());
        assert_ne!(copy.body().as_ptr(), schema.body().as_ptr(), "a copy, not a view of the read buffer");
        assert_eq!((copy.sequence, copy.kind), (0, FrameKind::Schema));
        // Another stream's bytes and the rings' count against the same budget.
        let mut other = Retained::new(total.clone(), Arc::new(AtomicUsize::new(0)));
        let queued = LIMITS.total_bytes_max - kept.bytes() - 500;
        let refused = other.keep(&frame(FrameKind::Schema, 1000, 0), LIMITS, queued).unwrap_err();
        assert!(matches!(refused, RetainRefused::GatewayBudget { .. }), "{refused:?}");
        assert_eq!(other.bytes(), 0);
        kept.clear();
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_window_keeps_the_newest_whole_batches_in_sending_order_with_the_dictionaries() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut kept = Retained::new(total.clone(), Arc::new(AtomicUsize::new(0)));
        let batch = |sequence| frame(FrameKind::RecordBatch, 1000, sequence);
        let limits = RetainLimits { window_bytes_max: 3 * cost(&batch(0)), ..LIMITS };
        kept.keep(&frame(FrameKind::Schema, 100, 0), limits, 0).unwrap();
        kept.keep(&frame(FrameKind::Dictionary, 100, 1), limits, 0).unwrap();
        for sequence in 2..6 {
            kept.keep(&batch(sequence), limits, 0).unwrap();
        }
        kept.keep(&frame(FrameKind::Dictionary, 100, 6), limits, 0).unwrap();
        kept.keep(&batch(7), limits, 0).unwrap();
        // Batches 2 and 3 left to make room for 5 and 7; the dictionaries
        // all stay, each before the batches that came after it.
        let order: Vec<(u64, FrameKind)> = kept.frames().map(|f| (f.sequence, f.kind)).collect();
        assert_eq!(
            order,
            [
                (0, FrameKind::Schema),
                (1, FrameKind::Dictionary),
                (4, FrameKind::RecordBatch),
                (5, FrameKind::RecordBatch),
                (6, FrameKind::Dictionary),
                (7, FrameKind::RecordBatch),
            ]
        );
        assert_eq!(total.load(Ordering::Relaxed), kept.bytes(), "the window counts in the gauge");
        assert!(kept.frames().all(|f| f.replayed), "kept frames are copies, not timed as relay latency");

        // A batch larger than the whole window empties it: what is left
        // would not be the stream's recent history.
        kept.keep(&frame(FrameKind::RecordBatch, 10_000, 8), limits, 0).unwrap();
        assert_eq!(kept.frames().filter(|f| f.kind == FrameKind::RecordBatch).count(), 0);
        // At the gateway's budget the window is emptied, never the stream ended.
        kept.keep(&batch(9), limits, 0).unwrap();
        let full = LIMITS.total_bytes_max - kept.bytes();
        kept.keep(&batch(10), limits, full).unwrap();
        assert_eq!(kept.frames().filter(|f| f.kind == FrameKind::RecordBatch).count(), 0);
        assert_eq!(total.load(Ordering::Relaxed), kept.bytes());
        // A new schema starts over.
        kept.keep(&batch(11), limits, 0).unwrap();
        kept.keep(&frame(FrameKind::Schema, 100, 12), limits, 0).unwrap();
        assert_eq!(kept.frames().count(), 1);
        drop(kept);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn all_windows_together_stay_within_their_share_of_the_gateway_budget() {
        let (total, windows) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let batch = |sequence| frame(FrameKind::RecordBatch, 1000, sequence);
        let per_batch = cost(&batch(0));
        let limits = RetainLimits { window_bytes_max: 10 * per_batch, windows_total_max: 3 * per_batch, ..LIMITS };
        let mut a = Retained::new(total.clone(), windows.clone());
        let mut b = Retained::new(total.clone(), windows.clone());
        for sequence in 0..5 {
            a.keep(&batch(sequence), limits, 0).unwrap();
        }
        assert_eq!(a.bytes(), 3 * per_batch, "the share caps a window below its own limit");
        b.keep(&batch(0), limits, 0).unwrap();
        assert_eq!(b.bytes(), 0, "another stream's window gets none while the share is taken");
        drop(a);
        b.keep(&batch(1), limits, 0).unwrap();
        assert_eq!(b.bytes(), per_batch, "freed share is available again");
        assert_eq!(windows.load(Ordering::Relaxed), per_batch);
        assert_eq!(total.load(Ordering::Relaxed), per_batch);
    }
}
