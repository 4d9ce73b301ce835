//! A tunnel's binary frames, to the streams' subscribers: the hot path
//! (read → [`SharedFrame`] → [`Worker::route`]).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use volley_protocol::header::FrameKind;
use volley_protocol::message::{ErrorBody, ErrorCode};
use volley_protocol::tunnel::{Binary, Violation};

use super::Tunnel;
use crate::frame::SharedFrame;
use crate::registry::Stream;
use crate::retained::RetainRefused;
use crate::share_log::{copy_into, LOG_COPY_BELOW_BYTES};
use crate::worker::{Worker, WorkerMsg};

/// Routes one binary frame; a violation closes the tunnel.
pub async fn on_binary(
    worker: &Rc<Worker>,
    tunnel: &Rc<Tunnel>,
    payload: Bytes,
    read_at: Instant,
) -> Result<(), Violation> {
    worker.metrics.borrow_mut().frames_in += 1;
    let (stream, stream_id, sequence, header) = match tunnel.conversation.borrow_mut().handle_binary(&payload)? {
        // A cancelled stream's frames may still be in flight: dropped.
        Binary::Dropped => return Ok(()),
        Binary::Frame { stream_id, sequence, header, stream } => (stream.clone(), stream_id, sequence, header),
    };
    let Some(header) = header else {
        // Level 1: one stream at a time, whose reader paces the socket.
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
        if stream.shared {
            let build = |payload| SharedFrame::from_level1(payload, stream_id, sequence, read_at);
            route_shared(worker, &stream, payload, build).await;
        } else {
            let frame = SharedFrame::from_level1(payload, stream_id, sequence, read_at);
            worker.route(stream.destinations(), WorkerMsg::Frame(frame)).await;
        }
        wait_for_readers(&stream, len).await;
        return Ok(());
    };
    if stream.shared {
        let build = |payload| SharedFrame::from_level2(payload, header, read_at);
        route_shared(worker, &stream, payload, build).await;
        return Ok(());
    }
    let frame = SharedFrame::from_level2(payload, header, read_at);
    let mut mask = stream.destinations();
    let limits = tunnel.retain_limits;
    let kept_kind = match header.kind {
        FrameKind::Schema | FrameKind::Dictionary => true,
        FrameKind::RecordBatch => limits.window_bytes_max > 0,
        _ => false,
    };
    if stream.live && kept_kind {
        let queued = worker.shared.ring_totals.data.load(Ordering::Relaxed);
        // Copied before the stream's lock is taken: joiners take that lock,
        // and `open_live` takes it while holding a registry shard's lock.
        let copy = frame.retained_copy();
        let kept = {
            let mut state = stream.state.lock();
            // Read under the lock late joiners take: a joiner either finds
            // this frame in its snapshot or is in the mask (never neither;
            // both is deduplicated by `LocalSub::snapshot_through`).
            mask = stream.destinations();
            if state.ended {
                Ok(())
            } else {
                state.retained.keep_copy(copy, limits, queued)
            }
        };
        if let Err(refused) = kept {
            retained_limit(worker, tunnel, &stream, refused).await;
            return Ok(());
        }
    }
    worker.route(mask, WorkerMsg::Frame(frame)).await;
    Ok(())
}

/// A shared query's frame (its `payload`, made a frame by `build`) goes
/// into its log and its readers' workers are told; when that took the log
/// past its bound, the tunnel is not read until readers made room.
async fn route_shared(
    worker: &Rc<Worker>,
    stream: &Stream,
    payload: Bytes,
    build: impl FnOnce(Bytes) -> Arc<SharedFrame>,
) {
    let (frame, mask, over) = share(stream, payload, build);
    worker.route(mask, WorkerMsg::Frame(frame)).await;
    if over {
        wait_for_log_room(stream).await;
    }
}

/// A shared query's frame (its `payload`, made a frame by `build`) goes
/// into its log (`share_log.rs`), from which its readers pull it — a small
/// one copied into the stream's own chunk first (`share_log::copy_into`,
/// before the log's lock, which readers take). Returns the frame to route,
/// the workers to tell (read under the lock joiners take: a joiner either
/// finds the frame in the log or is told), and whether the log is now past
/// its bound.
fn share(
    stream: &Stream,
    payload: Bytes,
    build: impl FnOnce(Bytes) -> Arc<SharedFrame>,
) -> (Arc<SharedFrame>, u64, bool) {
    let payload = if payload.len() < LOG_COPY_BELOW_BYTES {
        copy_into(&mut stream.share_chunk.lock(), &payload)
    } else {
        payload
    };
    let frame = build(payload);
    let (mask, over) = {
        let mut state = stream.state.lock();
        let over = state.share.as_mut().is_some_and(|log| {
            log.append(frame.clone());
            log.over_bound()
        });
        (stream.destinations(), over)
    };
    stream.share_changed();
    (frame, mask, over)
}

/// A shared query's log is past its bound (a connector sending tiny
/// frames within its credit): the tunnel is not read again until its
/// readers made room, the stream ended, or nobody reads it. Woken by pulls
/// and by readers leaving (`Stream::credit_waker`).
async fn wait_for_log_room(stream: &Stream) {
    poll_fn(|cx| {
        stream.credit_waker.register(cx.waker());
        let over = stream.state.lock().share.as_ref().is_some_and(|log| log.over_bound());
        if !over || stream.destinations() == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Level-1 flow control (the protocol has none at level 1): the socket is
/// not read again until the stream's browsers drained what they were sent,
/// or none is left.
async fn wait_for_readers(stream: &Stream, len: i64) {
    let left = stream.credit_available.fetch_sub(len, Ordering::AcqRel) - len;
    if left > 0 {
        return;
    }
    poll_fn(|cx| {
        stream.credit_waker.register(cx.waker());
        if stream.credit_available.load(Ordering::Acquire) > 0 || stream.destinations() == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// A live stream's schema and dictionaries passed what the gateway keeps
/// (PROTOCOL.md §5.2): the stream ends for its subscribers with
/// `retained_limit` and is cancelled upstream; the tunnel's other streams go on.
async fn retained_limit(worker: &Rc<Worker>, tunnel: &Rc<Tunnel>, stream: &Arc<Stream>, refused: RetainRefused) {
    log::warn!("connector c-{}: live stream {} of {:?} ended: {refused}", tunnel.handle.id, stream.id, stream.dataset);
    let total = tunnel.converse(|conversation| conversation.cancel(stream.id)).map(|(_, bytes)| bytes).unwrap_or(0);
    let error = ErrorBody::new(
        ErrorCode::RetainedLimit,
        format!("{refused}: the live stream was ended and cancelled upstream; {}", refused.advice()),
    );
    worker.end_stream(stream, total, Some(error)).await;
}
