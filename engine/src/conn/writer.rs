//! The writer task: drains a connection's [`Ring`] with vectored writes
//! and its own partial-write loop, then closes.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::Poll;

use crate::conn::transport::ConnWrite;
use crate::conn::writev::{OutItem, WriteBatch};
use crate::runtime::fair_turn;

use super::ctl::{killed_error, or_killed, ConnCtl, Side};
use super::ring::Ring;

/// Runs a connection's writer until the ring is closed and drained, the
/// connection is killed, or a write fails. `on_written` sees each written
/// batch (metrics, credit) along with the ring's occupancy when it was taken.
///
/// An idle writer (empty ring) is small: the state of writing — the batch and
/// the `writev` in flight, some 700 bytes of future — lives in a boxed future
/// that exists only while the ring has something to write (memory per idle
/// session; ARCHITECTURE.md, "Memory per idle session"); so does the shutdown. A plain fn returning an async
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
                ring.borrow_mut().poll_work(cx.waker())
            })
            .await;
            if !busy {
                let closing = ring.borrow().is_closing();
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
        let (occupancy, taken) = {
            let mut ring = ring.borrow_mut();
            (ring.bytes(), ring.take_batch(&mut batch))
        };
        if taken.bytes == 0 {
            break Ok(());
        }
        let (result, returned) = write_all(writer, batch, ctl).await;
        batch = returned;
        ring.borrow_mut().release(taken);
        if let Err(e) = result {
            break Err(e);
        }
        on_written(batch.items(), occupancy);
        batch.clear();
        fair_turn().await;
    };
    batch.recycle();
    result
}

/// Writes the whole batch, however many partial writes it takes, and returns
/// it (so the caller can account for what was delivered and reuse its Vecs).
/// A kill of `ctl` ends an in-flight write (a stalled reader never completes
/// it); the batch is then lost with the cancelled write.
pub async fn write_all<W: ConnWrite>(
    writer: &mut W,
    mut batch: WriteBatch,
    ctl: &ConnCtl,
) -> (io::Result<()>, WriteBatch) {
    while batch.remaining() > 0 {
        let Some((result, returned)) = or_killed!(ctl, Side::Write, writer.write_batch(batch)) else {
            return (Err(killed_error()), WriteBatch::default());
        };
        batch = returned;
        match result {
            Ok(0) => return (Err(io::Error::from(io::ErrorKind::WriteZero)), batch),
            Ok(written) => batch.advance(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), batch),
        }
    }
    (Ok(()), batch)
}

#[cfg(test)]
mod write_all_tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;
    use crate::frame::{Level, SharedFrame};
    use bytes::Bytes;
    use std::io::Read;
    use std::sync::Arc;
    use std::time::Instant;
    use volley_protocol::header::{FrameHeader, FrameKind};

    /// A slow reader forces many partial writes; every byte must arrive in order.
    #[test]
    fn partial_writes_deliver_every_byte() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let frames: Vec<Arc<SharedFrame>> = (0..24u32)
            .map(|i| {
                let header =
                    FrameHeader { kind: FrameKind::RecordBatch, flags: 0, stream_id: 3, sequence: u64::from(i) };
                let mut body = header.encode().to_vec();
                body.extend(
                    (0..(700_000 + i as usize * 13)).map(|j| (j.wrapping_mul(31) ^ i as usize).to_le_bytes()[0]),
                );
                SharedFrame::from_level2(Bytes::from(body), header, Instant::now())
            })
            .collect();
        let mut expected = Vec::new();
        for frame in &frames {
            for part in frame.parts(Level::Two) {
                expected.extend_from_slice(part);
            }
        }
        let reader = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 7919];
            loop {
                std::thread::sleep(std::time::Duration::from_micros(50));
                match socket.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            }
            got
        });
        let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build().expect("runtime");
        runtime.block_on(async move {
            let mut stream = monoio::net::TcpStream::connect(addr).await.expect("connect");
            let mut batch = WriteBatch::default();
            for frame in &frames {
                batch.push(OutItem::Frame(frame.clone(), Level::Two));
            }
            let ctl = ConnCtl::new();
            let (result, mut batch) = write_all(&mut stream, batch, &ctl).await;
            result.expect("write_all");
            assert_eq!(batch.items().len(), 24);
            batch.clear();
            // Send FIN now: a close queued on the ring would wait for the next poll.
            ConnWrite::shutdown(&mut stream).await.expect("shutdown");
        });
        drop(runtime);
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ after partial writes");
    }
}
