//! A bounded multi-producer, single-consumer queue between threads, woken
//! only when its consumer is parked.
//!
//! Workers talk through these (ARCHITECTURE.md, "Cross-worker delivery goes through inboxes"): a frame for
//! sessions on another worker is pushed once into that worker's inbox; a
//! command for a connector is pushed into its tunnel's mailbox. The consumer
//! drains in batches and registers its waker only when it finds the queue
//! empty, so a busy consumer costs producers no eventfd write.
//!
//! Policy when full: `push` hands the item back; the caller decides (the
//! engine's producers retry after yielding, which slows the producing
//! connector — never an unbounded queue). The queue counts items only; the
//! bytes of the frames in a worker's inbox are bounded beside it
//! ([`crate::inbox_bytes`]).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

/// See the module docs.
#[derive(Debug)]
pub struct Mailbox<T> {
    queue: ArrayQueue<T>,
    waker: AtomicWaker,
    parked: AtomicBool,
    closed: AtomicBool,
}

/// Why a push failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The queue is at capacity; the item is handed back.
    Full(T),
    /// The consumer is gone.
    Closed(T),
}

impl<T> Mailbox<T> {
    /// A mailbox holding at most `capacity` items.
    pub fn new(capacity: usize) -> Mailbox<T> {
        Mailbox {
            queue: ArrayQueue::new(capacity.max(1)),
            waker: AtomicWaker::new(),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Enqueues `item`, waking the consumer if it is parked.
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(item));
        }
        self.queue.push(item).map_err(PushError::Full)?;
        if self.parked.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
        Ok(())
    }

    /// Marks the mailbox closed: later pushes fail; queued items stay until dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// True once [`Mailbox::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Waits until at least one item is queued (or the mailbox is closed) and
    /// moves up to `max` items into `out`. Returns how many were moved; 0 means closed.
    pub async fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        poll_fn(|cx| {
            let moved = self.drain(out, max);
            if moved > 0 {
                return Poll::Ready(moved);
            }
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(0);
            }
            self.waker.register(cx.waker());
            self.parked.store(true, Ordering::SeqCst);
            // A producer may have pushed between the drain and the park.
            let moved = self.drain(out, max);
            if moved > 0 {
                self.parked.store(false, Ordering::SeqCst);
                return Poll::Ready(moved);
            }
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(0);
            }
            Poll::Pending
        })
        .await
    }

    fn drain(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut moved = 0;
        while moved < max {
            match self.queue.pop() {
                Some(item) => {
                    out.push(item);
                    moved += 1;
                }
                None => break,
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn full_mailbox_hands_items_back() {
        let mailbox = Mailbox::new(2);
        assert!(mailbox.push(1).is_ok());
        assert!(mailbox.push(2).is_ok());
        assert_eq!(mailbox.push(3), Err(PushError::Full(3)));
        mailbox.close();
        assert!(matches!(mailbox.push(4), Err(PushError::Closed(4))));
    }

    #[test]
    fn a_parked_consumer_is_woken_from_another_thread() {
        let mailbox = Arc::new(Mailbox::new(1024));
        let producer = {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u32 {
                    let mut item = i;
                    loop {
                        match mailbox.push(item) {
                            Ok(()) => break,
                            Err(PushError::Full(back)) => {
                                item = back;
                                std::thread::yield_now();
                            }
                            Err(PushError::Closed(_)) => return,
                        }
                    }
                }
            })
        };
        let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build().expect("io_uring runtime");
        let received = runtime.block_on(async {
            let mut seen = Vec::new();
            let mut batch = Vec::new();
            while seen.len() < 10_000 {
                batch.clear();
                mailbox.recv_batch(&mut batch, 256).await;
                seen.extend_from_slice(&batch);
            }
            seen
        });
        producer.join().expect("producer thread");
        assert_eq!(received, (0..10_000).collect::<Vec<_>>(), "in order, none lost");
    }
}
