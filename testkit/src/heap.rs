//! Heap accounting for memory tests: a global allocator that forwards to
//! mimalloc (the allocator the `volley` binary uses) and counts live bytes,
//! the peak, and live allocations by size. The gateway runs in the test's
//! process, so its allocations are counted too. A test binary opts in with
//! `use volley_testkit::heap;` and
//! `#[global_allocator] static ALLOCATOR: heap::Counting = heap::Counting;`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicI64, Ordering};

/// Live allocations by size: 16-byte bins up to 4 KiB, then one bin.
pub const BINS: usize = 257;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BY_SIZE: [AtomicI64; BINS] = [const { AtomicI64::new(0) }; BINS];

fn bin(size: usize) -> usize {
    (size.div_ceil(16)).min(BINS - 1)
}

fn count(size: usize, delta: i64) {
    let bytes = delta * i64::try_from(size).unwrap_or(i64::MAX);
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
    LIVE_BY_SIZE[bin(size)].fetch_add(delta, Ordering::Relaxed);
}

/// The counting allocator; see the module docs.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to mimalloc, which upholds
// GlobalAlloc's contract; the wrapper only updates atomic counters (which
// never allocate). Exercised by every allocation of the test binaries that
// install it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout contract as our caller's.
        let ptr = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`.
        let new = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        new
    }
}

/// Live heap bytes and live allocations per size bin.
pub fn snapshot() -> (i64, Vec<i64>) {
    (LIVE_BYTES.load(Ordering::SeqCst), LIVE_BY_SIZE.iter().map(|c| c.load(Ordering::SeqCst)).collect())
}

/// Live heap bytes.
pub fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::SeqCst)
}

/// The highest live heap since the last [`reset_peak`].
pub fn peak_bytes() -> i64 {
    PEAK_BYTES.load(Ordering::SeqCst)
}

/// Starts a new peak at the live heap now; returns that.
pub fn reset_peak() -> i64 {
    let live = live_bytes();
    PEAK_BYTES.store(live, Ordering::SeqCst);
    live
}

/// The size range of bin `i`, for printing.
pub fn bin_label(i: usize) -> String {
    if i == BINS - 1 {
        "> 4096".to_owned()
    } else {
        format!("{}..={}", (i * 16).saturating_sub(15), i * 16)
    }
}

/// This process's resident set size (`VmRSS`), bytes.
pub fn rss_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<i64>().ok()).expect("kB") * 1024
}
