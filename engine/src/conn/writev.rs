//! Vectored writes that survive partial writes.
//!
//! monoio 0.2.4's `write_vectored_all` corrupts data when `writev` writes
//! part of the vector (docs/decisions/2026-11-28-monoio-thread-per-core.md): its bookkeeping drops the advanced
//! pointer. [`WriteBatch`] owns the items being written and an iovec array
//! pointing into them; the writer's [`crate::conn::writer::write_all`] loops, advancing
//! the iovecs through `WriteBatch::advance`.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use monoio::buf::IoVecBuf;

use crate::frame::{Level, SharedFrame};

/// Most iovecs in one `writev` (Linux `IOV_MAX` is 1024).
pub const IOVECS_PER_WRITE_MAX: usize = 1024;

/// Empty write batches kept per worker thread for reuse. A batch's arrays
/// hold at most [`IOVECS_PER_WRITE_MAX`] iovecs and `BATCH_ITEMS_MAX` items,
/// so the pool bounds its memory at about 1.4 MiB per worker.
pub const WRITE_BATCH_POOL_MAX: usize = 64;

thread_local! {
    static BATCH_POOL: RefCell<Vec<WriteBatch>> = const { RefCell::new(Vec::new()) };
}

/// One thing to write.
#[derive(Debug, Clone)]
pub enum OutItem {
    /// A shared binary frame, written as header + payload without copying.
    Frame(Arc<SharedFrame>, Level),
    /// A whole pre-encoded WebSocket frame (text, ping, pong, close).
    Encoded(Bytes),
}

impl OutItem {
    /// Bytes this item puts on the socket.
    pub fn wire_len(&self) -> usize {
        match self {
            OutItem::Frame(frame, level) => frame.wire_len(*level),
            OutItem::Encoded(bytes) => bytes.len(),
        }
    }
}

/// Items being written plus the iovecs that point into them.
#[derive(Debug, Default)]
pub struct WriteBatch {
    items: Vec<OutItem>,
    iovecs: Vec<libc::iovec>,
    first: usize,
    remaining: usize,
    total: usize,
}

impl WriteBatch {
    /// Number of iovecs the batch holds.
    pub fn iovec_count(&self) -> usize {
        self.iovecs.len()
    }

    /// Adds an item; its slices are referenced, not copied.
    pub fn push(&mut self, item: OutItem) {
        match &item {
            OutItem::Frame(frame, level) => {
                for part in frame.parts(*level) {
                    self.push_slice(part);
                }
            }
            OutItem::Encoded(bytes) => self.push_slice(bytes),
        }
        self.items.push(item);
    }

    fn push_slice(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        // The pointer stays valid while `self.items` owns the item: its bytes
        // live in an `Arc`/`Bytes` heap allocation that does not move.
        self.iovecs.push(libc::iovec { iov_base: part.as_ptr().cast_mut().cast(), iov_len: part.len() });
        self.remaining += part.len();
        self.total += part.len();
    }

    /// The bytes still to write, as slices of the items (for writers that
    /// cannot take raw iovecs, such as TLS).
    pub fn remaining_parts(&self) -> Vec<&[u8]> {
        let mut skip = self.total - self.remaining;
        let mut parts = Vec::new();
        for item in &self.items {
            let (three, one);
            let slices: &[&[u8]] = match item {
                OutItem::Frame(frame, level) => {
                    three = frame.parts(*level);
                    &three
                }
                OutItem::Encoded(bytes) => {
                    one = [&bytes[..]];
                    &one
                }
            };
            for &part in slices {
                match part.get(skip..) {
                    Some(rest) if !rest.is_empty() => {
                        parts.push(rest);
                        skip = 0;
                    }
                    _ => skip -= part.len(),
                }
            }
        }
        parts
    }

    /// Bytes still to write.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The items of the batch (after a write: what was delivered).
    pub fn items(&self) -> &[OutItem] {
        &self.items
    }

    /// Empties the batch, keeping its Vecs' capacity.
    pub fn clear(&mut self) {
        self.items.clear();
        self.iovecs.clear();
        self.first = 0;
        self.remaining = 0;
        self.total = 0;
    }

    /// An empty batch from this thread's pool (or a new one). Writers hold a
    /// batch only while they have something to write, so an idle connection
    /// keeps no iovec or item arrays; the pool saves the allocations when a
    /// connection goes from idle to busy again.
    pub fn pooled() -> WriteBatch {
        BATCH_POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_default()
    }

    /// Empties the batch and gives it back to this thread's pool (dropped
    /// when the pool already holds [`WRITE_BATCH_POOL_MAX`]).
    pub fn recycle(mut self) {
        self.clear();
        BATCH_POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < WRITE_BATCH_POOL_MAX {
                pool.push(self);
            }
        });
    }

    /// Marks `written` bytes as done: whole iovecs are skipped, a partly
    /// written one has its base and length moved forward.
    pub(crate) fn advance(&mut self, mut written: usize) {
        self.remaining = self.remaining.saturating_sub(written);
        while written > 0 {
            let Some(iovec) = self.iovecs.get_mut(self.first) else { break };
            if written >= iovec.iov_len {
                written -= iovec.iov_len;
                self.first += 1;
            } else {
                iovec.iov_base = iovec.iov_base.cast::<u8>().wrapping_add(written).cast();
                iovec.iov_len -= written;
                written = 0;
            }
        }
    }
}

// SAFETY: `read_iovec_ptr` points at `iovecs[first..]`, a live Vec that is
// not resized while the runtime owns the batch (the batch is moved into the
// write op and only `advance` — which mutates entries in place — runs between
// ops). Every iovec points into an item owned by `items` (Arc<SharedFrame> or
// Bytes heap memory, which never moves) and describes exactly the remaining
// part of that slice. Exercised by
// `conn::write_all_tests::partial_writes_deliver_every_byte`.
#[allow(unsafe_code)]
unsafe impl IoVecBuf for WriteBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        // `advance` stops `first` at `iovecs.len()`; past it both this and
        // `read_iovec_len` describe an empty vector.
        self.iovecs.get(self.first..).unwrap_or_default().as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len().saturating_sub(self.first).min(IOVECS_PER_WRITE_MAX)
    }
}
