//! The simulated connector's writer thread: it owns every write (frames,
//! replies, pongs), hands each command to the protocol's `ConnectorEnd` and
//! does what it says, and sends each stream's batched frames within credit
//! (queries) or on a schedule/at full speed (live).

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use volley_protocol::header::FrameKind;
use volley_protocol::message::{ConnectorMessage, ErrorBody, ErrorCode, FlightData, GatewayCommand};
use volley_protocol::tunnel::{ConnectorAction, ConnectorEnd, Framer, StreamOrder};

use crate::wire::{self, Event, HEADER_BYTES, OP_BINARY, OP_PONG};

use super::{text_frame, ConnectorSpec, ConnectorStats};

/// Binary bytes one write aims for when frames are small.
const BATCH_BYTES: usize = 64 * 1024;
/// Most frames in one batch.
const BATCH_FRAMES_MAX: usize = 256;
/// How often a finished live stream repeats its end marker.
const END_MARKER_INTERVAL: Duration = Duration::from_millis(50);
/// Schema string handed out (the gateway treats it as opaque).
const SCHEMA_B64: &str = "/////w==";
/// The payload of a live stream's end marker: an IPC end-of-stream message.
const END_MARKER: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

pub(super) struct Active {
    request_id: String,
    stream_id: u32,
    dataset: usize,
    live: bool,
    next: u64,
    /// Credit granted minus payload bytes sent (queries); live streams ignore it.
    credit: i64,
    /// Batch buffer: `frames_per_batch` frames of `frame_len` bytes each.
    batch: Vec<u8>,
    frame_len: usize,
    frames_per_batch: usize,
    /// Open-loop schedule start (Unix nanos), set when sending starts.
    t0: Option<u64>,
    /// Live: end markers sent after the last data frame, and when the last one went.
    markers: u64,
    marker_at: u64,
    /// Live: the end marker's WebSocket frame (its sequence patched before each write).
    end_marker: Vec<u8>,
}

pub(super) struct Writer {
    pub(super) stream: TcpStream,
    pub(super) spec: ConnectorSpec,
    pub(super) stats: Arc<ConnectorStats>,
    pub(super) go: Arc<AtomicBool>,
    pub(super) stop: Arc<AtomicBool>,
    /// The tunnel's conversation; a stream's value is its stream id, the key of [`Writer::active`].
    pub(super) end: ConnectorEnd<u32>,
    pub(super) active: VecDeque<Active>,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Event>) -> Result<(), String> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            loop {
                match rx.try_recv() {
                    Ok(event) => self.handle(event)?,
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            let wait = self.send_round()?;
            if let Some(wait) = wait {
                match rx.recv_timeout(wait) {
                    Ok(event) => self.handle(event)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| format!("connector write: {e}"))
    }

    fn send(&mut self, message: &ConnectorMessage) -> Result<(), String> {
        self.write(&text_frame(message))
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        let text = match event {
            Event::Text(text) => text,
            Event::Ping(payload) => return self.write(&wire::client_frame(OP_PONG, &payload)),
            Event::Close(_) => {
                if self.stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                return Err("gateway closed the tunnel".into());
            }
            Event::Binary { .. } => return Ok(()),
        };
        let command = match GatewayCommand::parse(&text) {
            Ok(command) => command,
            Err(e) => {
                log::debug!("bench connector: ignoring a command it does not understand: {e}");
                return Ok(());
            }
        };
        if matches!(command, GatewayCommand::Credit { .. }) {
            self.stats.credit_messages.fetch_add(1, Ordering::Relaxed);
        }
        match self.end.handle_command(command) {
            ConnectorAction::Describe { request_id, .. } => {
                self.end.described(request_id, Ok(FlightData { schema: SCHEMA_B64.into(), records: -1 }))
            }
            ConnectorAction::Start(order) => self.open(order)?,
            ConnectorAction::Credit { stream, bytes } => {
                let stream = *stream;
                if let Some(a) = self.active.iter_mut().find(|a| a.stream_id == stream) {
                    a.credit = a.credit.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
            }
            ConnectorAction::Stop(stream) => {
                let stream = *stream;
                self.cancel(stream)?;
            }
            ConnectorAction::Ignored(reason) => log::debug!("bench connector: {reason}"),
            ConnectorAction::Nothing => {}
        }
        while let Some(message) = self.end.poll_transmit() {
            self.send(&message)?;
        }
        Ok(())
    }

    /// Starts streaming `order`: its frames are built here, once.
    fn open(&mut self, order: StreamOrder) -> Result<(), String> {
        let Some(dataset) = self.spec.datasets.iter().position(|d| d.name == order.dataset) else {
            let error = ErrorBody::new(ErrorCode::DatasetNotFound, "no such dataset");
            return self.send(&ConnectorMessage::Error { request_id: Some(order.request_id), error });
        };
        let spec = &self.spec.datasets[dataset];
        let mut framer = Framer::new(order.header_stream_id);
        let payload: Bytes = (0..spec.frame_bytes).map(|i| (i % 251).to_le_bytes()[0]).collect();
        let frame = framer.frame(FrameKind::RecordBatch, &payload);
        let mut one = wire::client_frame_header(OP_BINARY, frame.len());
        one.extend_from_slice(&frame);
        let frame_len = one.len();
        let frames_per_batch = (BATCH_BYTES / frame_len).clamp(1, BATCH_FRAMES_MAX);
        let batch = one.repeat(frames_per_batch);
        let end_marker =
            wire::client_frame(OP_BINARY, &framer.frame(FrameKind::EndOfStream, &Bytes::from_static(&END_MARKER)));
        let live = spec.live || order.live;
        // A stream still open under either id is forgotten: the gateway reuses
        // an id only after that stream's stream_end.
        for (_, displaced) in self.end.started(&order, order.id) {
            self.active.retain(|a| a.stream_id != displaced);
        }
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.active.push_back(Active {
            request_id: order.request_id.clone(),
            stream_id: order.id,
            dataset,
            live,
            next: 0,
            credit: i64::try_from(order.credit_bytes).unwrap_or(i64::MAX / 2),
            batch,
            frame_len,
            frames_per_batch,
            t0: None,
            markers: 0,
            marker_at: 0,
            end_marker,
        });
        self.send(&ConnectorMessage::StreamStart {
            request_id: order.request_id,
            schema: SCHEMA_B64.into(),
            stream_id: order.header_stream_id,
        })
    }

    /// Ends the stream `stream_id` with `cancelled`.
    fn cancel(&mut self, stream_id: u32) -> Result<(), String> {
        if let Some(pos) = self.active.iter().position(|a| a.stream_id == stream_id) {
            let a = self.active.remove(pos).ok_or("active stream vanished")?;
            self.end.reap(|id| *id == stream_id);
            let total_bytes = a.next * self.spec.datasets[a.dataset].frame_bytes as u64;
            self.send(&ConnectorMessage::StreamEnd {
                request_id: a.request_id,
                total_bytes,
                stream_id: Some(a.stream_id),
                error: Some(ErrorBody::new(ErrorCode::Cancelled, "cancelled")),
            })?;
        }
        Ok(())
    }

    /// Sends one batch per sendable stream; returns how long to wait for
    /// commands when nothing could be sent (`None`: go again at once).
    fn send_round(&mut self) -> Result<Option<Duration>, String> {
        let mut wait = Duration::from_millis(20);
        let mut sent_any = false;
        let mut index = 0;
        while index < self.active.len() {
            let Some(mut a) = self.active.remove(index) else { break };
            let spec = self.spec.datasets[a.dataset].clone();
            let go = self.go.load(Ordering::Acquire);
            let mut count = 0usize;
            let now = wire::now_nanos();
            if a.live && !go {
                // waits for the harness
            } else if let Some(rate) = spec.rate_per_second.filter(|r| *r > 0) {
                let t0 = *a.t0.get_or_insert(now);
                let due = crate::units::sat_u64(u128::from(now - t0) * u128::from(rate) / 1_000_000_000) + 1;
                let due = due.min(spec.frames);
                count = usize::try_from(due.saturating_sub(a.next)).unwrap_or(usize::MAX).min(a.frames_per_batch);
                if count == 0 {
                    let next_at = t0 + crate::units::sat_u64(u128::from(a.next) * 1_000_000_000 / u128::from(rate));
                    wait = wait.min(Duration::from_nanos(next_at.saturating_sub(now)));
                }
            } else if a.live || a.credit > 0 {
                a.t0.get_or_insert(now);
                let left = spec.frames - a.next;
                let by_credit = if a.live {
                    u64::MAX
                } else {
                    (u64::try_from(a.credit).unwrap_or(0)).div_ceil(spec.frame_bytes.max(1) as u64)
                };
                count = usize::try_from(left.min(by_credit)).unwrap_or(usize::MAX).min(a.frames_per_batch);
            }
            if count > 0 {
                if a.live && a.next == 0 {
                    let _ = self.stats.live_started_nanos.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
                }
                let rate = spec.rate_per_second.filter(|r| *r > 0);
                let t0 = a.t0.unwrap_or(now);
                for k in 0..count {
                    let seq = a.next + k as u64;
                    let at = k * a.frame_len + a.frame_len - spec.frame_bytes - HEADER_BYTES;
                    let frame = &mut a.batch[at..at + HEADER_BYTES + spec.frame_bytes];
                    frame[3] = u8::from(seq + 1 == spec.frames && !a.live);
                    frame[8..16].copy_from_slice(&seq.to_le_bytes());
                    if spec.frame_bytes >= 16 {
                        let scheduled = rate
                            .map(|r| t0 + crate::units::sat_u64(u128::from(seq) * 1_000_000_000 / u128::from(r)))
                            .unwrap_or(now);
                        frame[16..24].copy_from_slice(&scheduled.to_le_bytes());
                        frame[24..32].copy_from_slice(&now.to_le_bytes());
                    }
                }
                let bytes = count * a.frame_len;
                let result = self.stream.write_all(&a.batch[..bytes]);
                if let Err(e) = result {
                    return Err(format!("connector write: {e}"));
                }
                a.next += count as u64;
                let payload = (count * spec.frame_bytes) as u64;
                a.credit -= i64::try_from(payload).unwrap_or(i64::MAX);
                self.stats.frames_sent.fetch_add(count as u64, Ordering::Relaxed);
                self.stats.bytes_sent.fetch_add(payload, Ordering::Relaxed);
                sent_any = true;
            }
            if a.next >= spec.frames && a.live {
                // A live stream stays open (a `stream_end` would make the gateway
                // start a new upstream for the remaining subscribers). Its end is
                // an end-of-stream frame flagged LAST, repeated every
                // END_MARKER_INTERVAL: a subscriber that was skipping (ring over
                // half full) resumes at one of them once its ring drains.
                let now = wire::now_nanos();
                if a.markers == 0 {
                    let _ =
                        self.stats.live_finished_nanos.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
                }
                if now.saturating_sub(a.marker_at) >= crate::units::sat_u64(END_MARKER_INTERVAL.as_nanos()) {
                    let at = a.end_marker.len() - END_MARKER.len() - HEADER_BYTES;
                    a.end_marker[at + 8..at + 16].copy_from_slice(&(a.next + a.markers).to_le_bytes());
                    self.write(&a.end_marker)?;
                    a.markers += 1;
                    a.marker_at = now;
                }
                wait = wait.min(END_MARKER_INTERVAL);
                self.active.insert(index, a);
                index += 1;
                continue;
            }
            if a.next >= spec.frames {
                self.end.reap(|id| *id == a.stream_id);
                let total_bytes = a.next * spec.frame_bytes as u64;
                self.send(&ConnectorMessage::StreamEnd {
                    request_id: a.request_id,
                    total_bytes,
                    stream_id: Some(a.stream_id),
                    error: None,
                })?;
                self.stats.streams_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.active.insert(index, a);
            index += 1;
        }
        Ok(if sent_any { None } else { Some(wait) })
    }
}
