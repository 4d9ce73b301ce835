//! One stream's producer: a thread per `do_get` that opens the dataset,
//! encodes it into IPC messages and pushes each, as one binary frame made by
//! [`Framer`] (level 2: behind the 16-byte header), into its connection's
//! bounded outgoing queue (a full queue blocks it: backpressure), within the
//! gateway's credit. It starts with `stream_start` and ends with
//! `stream_end`, or with an `error` when it fails before its first message.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use volley_protocol::header::FrameKind;
use volley_protocol::message::{ConnectorMessage, ErrorBody, ErrorCode};
use volley_protocol::tunnel::{Framer, StreamOrder, UNCOUNTED_CREDIT};

use crate::config::{Compression, PerformanceConfig};
use crate::public_error::{open_failure, source_failure};
use crate::slice::{MessageKind, SliceOptions};
use crate::source::{Catalog, StopFlag};

/// What a connection's socket thread writes for its producers.
pub(crate) enum Outgoing {
    Text(String),
    Binary(Bytes),
}

/// Per-stream credit (level 2): producers wait while it is exhausted.
#[derive(Default)]
struct Credit {
    available: Mutex<i64>,
    changed: Condvar,
}

impl Credit {
    fn add(&self, bytes: u64) {
        if let Ok(mut available) = self.available.lock() {
            *available = available.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.changed.notify_all();
    }

    /// Wakes a producer waiting in [`Credit::take`] so that it sees its stop
    /// flag now, without granting it anything.
    fn wake(&self) {
        self.changed.notify_all();
    }

    /// Waits for credit; false when stopped.
    fn take(&self, bytes: usize, stop: &StopFlag) -> bool {
        let Ok(mut available) = self.available.lock() else { return false };
        while *available <= 0 {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            match self.changed.wait_timeout(available, Duration::from_millis(50)) {
                Ok((guard, _)) => available = guard,
                Err(_) => return false,
            }
        }
        *available -= i64::try_from(bytes).unwrap_or(i64::MAX);
        true
    }
}

/// A running producer, as its connection holds it.
pub(crate) struct StreamHandle {
    request_id: String,
    stop: StopFlag,
    credit: Arc<Credit>,
    thread: JoinHandle<()>,
}

impl StreamHandle {
    /// Starts producing `order` on a thread of its own, its frames going to `out`.
    pub(crate) fn spawn(
        order: &StreamOrder,
        catalog: &Arc<Catalog>,
        performance: &PerformanceConfig,
        out: &SyncSender<Outgoing>,
    ) -> io::Result<StreamHandle> {
        let stop: StopFlag = Arc::new(AtomicBool::new(false));
        let credit = Arc::new(Credit::default());
        credit.add(order.credit_bytes);
        let mut options = SliceOptions::from_performance(performance);
        options.compression = order.compression.map_or(Compression::None, Compression::from);
        let job = StreamJob {
            catalog: catalog.clone(),
            dataset: order.dataset.clone(),
            request_id: order.request_id.clone(),
            stream_id: order.header_stream_id,
            live: order.live,
            history_bytes: order.history_bytes,
            options,
            out: out.clone(),
            stop: stop.clone(),
            credit: credit.clone(),
        };
        let thread =
            std::thread::Builder::new().name(format!("volley-stream-{}", order.request_id)).spawn(move || job.run())?;
        Ok(StreamHandle { request_id: order.request_id.clone(), stop, credit, thread })
    }

    /// The `do_get` the stream answers.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Lets the producer send `bytes` more.
    pub(crate) fn credit(&self, bytes: u64) {
        self.credit.add(bytes);
    }

    /// Stops the producer: it ends its stream with `cancelled` (a query) or
    /// quietly (a live stream). Woken, not granted credit: a producer waiting
    /// for credit must stop, not send one more frame past its credit.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.credit.wake();
    }

    /// Stops the producer and grants it uncounted credit: the connection is
    /// gone, so nothing waits for credit that will never come.
    pub(crate) fn release(&self) {
        self.stop.store(true, Ordering::Release);
        self.credit.add(UNCOUNTED_CREDIT);
    }

    /// The producer's thread has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the producer's thread.
    pub(crate) fn join(self) {
        let _ = self.thread.join();
    }
}

struct StreamJob {
    catalog: Arc<Catalog>,
    dataset: String,
    request_id: String,
    stream_id: Option<u32>,
    live: bool,
    /// `do_get`'s `history_bytes` (live streams).
    history_bytes: Option<u64>,
    options: SliceOptions,
    out: SyncSender<Outgoing>,
    stop: StopFlag,
    credit: Arc<Credit>,
}

fn frame_kind(kind: MessageKind) -> FrameKind {
    match kind {
        MessageKind::Schema => FrameKind::Schema,
        MessageKind::Dictionary => FrameKind::Dictionary,
        MessageKind::RecordBatch => FrameKind::RecordBatch,
        MessageKind::EndOfStream => FrameKind::EndOfStream,
    }
}

impl StreamJob {
    fn send(&self, message: ConnectorMessage) -> bool {
        self.out.send(Outgoing::Text(message.to_json())).is_ok()
    }

    fn run(self) {
        let request_id = self.request_id.clone();
        let dataset = match self.catalog.open(&self.dataset) {
            Ok(dataset) => dataset,
            Err(e) => {
                let error = open_failure(&request_id, &self.dataset, &e);
                self.send(ConnectorMessage::Error { request_id: Some(request_id), error });
                return;
            }
        };
        if self.live && !dataset.is_live() {
            log::info!("dataset {:?} is not live; streaming it once", self.dataset);
        }
        let source_stop = dataset.stop_flag();
        let mut stream = match dataset.into_ipc(self.options, self.history_bytes) {
            Ok(stream) => stream,
            Err(e) => {
                let error = source_failure(&request_id, &self.dataset, &e);
                self.send(ConnectorMessage::Error { request_id: Some(request_id), error });
                return;
            }
        };
        let mut framer = Framer::new(self.stream_id);
        let mut sent: u64 = 0;
        let mut total_bytes: u64 = 0;
        let mut started = false;
        let mut failure: Option<ErrorBody> = None;
        loop {
            if self.stop.load(Ordering::Acquire) {
                source_stop.store(true, Ordering::Release);
            }
            let message = match stream.next() {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    failure = Some(source_failure(&request_id, &self.dataset, &e));
                    break;
                }
                None => break,
            };
            if !started {
                started = true;
                let schema = base64::engine::general_purpose::STANDARD.encode(&message.bytes);
                if !self.send(ConnectorMessage::StreamStart {
                    request_id: request_id.clone(),
                    schema,
                    stream_id: self.stream_id,
                }) {
                    return;
                }
            }
            let frame = framer.frame(frame_kind(message.kind), &message.bytes);
            if !self.credit.take(frame.len(), &self.stop) && self.stop.load(Ordering::Acquire) {
                failure = Some(ErrorBody::new(ErrorCode::Cancelled, "stream cancelled"));
                break;
            }
            sent += 1;
            total_bytes += message.bytes.len() as u64;
            if self.out.send(Outgoing::Binary(frame)).is_err() {
                return;
            }
        }
        if self.stop.load(Ordering::Acquire) && failure.is_none() && !self.live {
            failure = Some(ErrorBody::new(ErrorCode::Cancelled, "stream cancelled"));
        }
        if !started {
            let error =
                failure.unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "the stream produced no messages"));
            self.send(ConnectorMessage::Error { request_id: Some(request_id), error });
            return;
        }
        log::debug!(
            "stream {request_id} of {:?} ended: {sent} messages, {total_bytes} bytes, error {:?}",
            self.dataset,
            failure.as_ref().map(|error| &error.message)
        );
        self.send(ConnectorMessage::StreamEnd { request_id, total_bytes, stream_id: self.stream_id, error: failure });
    }
}
