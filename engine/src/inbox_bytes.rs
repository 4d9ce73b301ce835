//! The byte budget of one worker's inbox: how many bytes of connector
//! frames wait in it, and the wait of producers when that reaches
//! `limits.inbox_bytes_max`.
//!
//! The inbox itself ([`crate::mailbox::Mailbox`]) is bounded by message
//! count only; one message may be a frame of up to
//! `limits.connector_frame_bytes_max`. So each worker's inbox has one
//! [`InboxBytes`] beside it (`Shared::inbox_bytes`, same index):
//!
//! - a producer (`Worker::route`, on another worker) calls
//!   [`InboxBytes::acquire`] with the frame's length before it pushes the
//!   frame: one compare-and-swap when there is room. Without room it waits —
//!   woken by the consumer, no polling — and since the producer is a
//!   connector's reader, that connector's socket is not read meanwhile: TCP
//!   backpressure, never an unbounded queue;
//! - the consumer (the destination worker) calls [`InboxBytes::release`]
//!   after it has delivered the frame to its sessions' rings: one atomic
//!   subtraction, plus one load to see whether anyone waits. A frame is
//!   counted from before its push until it is in the rings (where the ring
//!   budgets count it), including while it sits in the batch the worker
//!   took off its inbox.
//!
//! Frames a worker delivers inline to its own sessions never pass through
//! its inbox and are not counted here.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use parking_lot::Mutex;

/// See the module docs.
#[derive(Debug)]
pub struct InboxBytes {
    held: AtomicUsize,
    max: usize,
    /// Producers waiting for room; locked only by waiting producers and by a
    /// release that finds `waiting` set.
    waiters: Mutex<Vec<Waker>>,
    waiting: AtomicBool,
}

impl InboxBytes {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> InboxBytes {
        InboxBytes { held: AtomicUsize::new(0), max, waiters: Mutex::new(Vec::new()), waiting: AtomicBool::new(false) }
    }

    /// Bytes counted now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts `bytes` if they fit: the total stays at most the limit, except
    /// that an empty budget always takes one item (so an item larger than
    /// the limit waits for an empty inbox instead of forever). Nothing is
    /// counted when it returns false.
    pub fn try_acquire(&self, bytes: usize) -> bool {
        let mut held = self.held.load(Ordering::SeqCst);
        loop {
            if held != 0 && held.saturating_add(bytes) > self.max {
                return false;
            }
            match self.held.compare_exchange_weak(held, held.saturating_add(bytes), Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    /// Counts `bytes`, waiting until they fit (see [`InboxBytes::try_acquire`]).
    pub async fn acquire(&self, bytes: usize) {
        if self.try_acquire(bytes) {
            return;
        }
        poll_fn(|cx| {
            {
                let mut waiters = self.waiters.lock();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                self.waiting.store(true, Ordering::SeqCst);
            }
            // A release may have run between the failed try and the
            // registration; it saw `waiting` false and woke nobody.
            if self.try_acquire(bytes) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Uncounts `bytes` and wakes the producers waiting for room.
    pub fn release(&self, bytes: usize) {
        let held = self.held.fetch_sub(bytes, Ordering::SeqCst);
        debug_assert!(held >= bytes, "inbox bytes released ({bytes}) beyond those counted ({held})");
        if self.waiting.load(Ordering::SeqCst) {
            let waiters = {
                let mut waiters = self.waiters.lock();
                self.waiting.store(false, Ordering::SeqCst);
                std::mem::take(&mut *waiters)
            };
            for waker in waiters {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn holds_at_most_the_limit_but_always_one_item() {
        let budget = InboxBytes::new(100);
        assert!(budget.try_acquire(60));
        assert!(budget.try_acquire(40));
        assert!(!budget.try_acquire(1), "full");
        assert_eq!(budget.held(), 100, "a refused try counts nothing");
        budget.release(100);
        assert!(budget.try_acquire(250), "an empty budget takes one item whatever its size");
        assert!(!budget.try_acquire(1));
        budget.release(250);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_waiting_producer_on_another_thread_is_woken_by_a_release() {
        let budget = Arc::new(InboxBytes::new(10));
        assert!(budget.try_acquire(10));
        let producer = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                let mut runtime =
                    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build().expect("io_uring runtime");
                runtime.block_on(async {
                    for _ in 0..1000 {
                        budget.acquire(10).await;
                    }
                });
            })
        };
        // The consumer: releases each item as it "delivers" it. The producer
        // can only finish if every release wakes it (no polling timer runs).
        let mut released = 0;
        while released < 1000 {
            if budget.held() == 10 {
                budget.release(10);
                released += 1;
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        producer.join().expect("producer thread");
        assert_eq!(budget.held(), 10, "the last item is still counted");
    }
}
