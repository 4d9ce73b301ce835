//! A simulated level-2 connector: registers, answers `get_flight_info` and
//! `do_get`, and streams pre-built binary frames (16-byte header + payload)
//! within credit (queries) or on a schedule/at full speed (live).
//!
//! Two threads per connector: a reader that parses the gateway's WebSocket
//! frames and a writer that owns every write (frames, replies, pongs). The
//! writer hands each command to the protocol's `ConnectorEnd`, as the real
//! connector does, and does what it says. A stream's first frame is made by
//! the protocol's `Framer` and copied into a batch buffer once per stream
//! (several frames per `write` for small frames); before each write only the
//! sequence, the flags and the timestamps are patched in place.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use volley_protocol::header::FrameKind;
use volley_protocol::message::{
    ConnectorMessage, ErrorBody, ErrorCode, FlightData, GatewayCommand, Register, RegisterReply,
};
use volley_protocol::tunnel::{ConnectorAction, ConnectorEnd, Framer, StreamOrder};

use crate::wire::{self, Event, Parser, HEADER_BYTES, OP_BINARY, OP_PONG, OP_TEXT};

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

/// One dataset the simulated connector serves.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// Dataset name (ticket).
    pub name: String,
    /// Live dataset (subscribe) instead of a query dataset.
    pub live: bool,
    /// Payload bytes per frame, after the 16-byte header (at least 16 when stamped).
    pub frame_bytes: usize,
    /// Frames per stream.
    pub frames: u64,
    /// Open-loop rate in frames per second (`None`: as fast as credit/socket allow).
    pub rate_per_second: Option<u64>,
}

/// How to register.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Gateway address.
    pub addr: SocketAddr,
    /// Tenant id.
    pub tenant: String,
    /// Connector credential.
    pub token: String,
    /// Datasets.
    pub datasets: Vec<DatasetSpec>,
}

/// Counters the harness reads.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Binary frames written.
    pub frames_sent: AtomicU64,
    /// Payload bytes written (headers excluded).
    pub bytes_sent: AtomicU64,
    /// Streams that reached their `stream_end`.
    pub streams_done: AtomicU64,
    /// Streams opened by `do_get`.
    pub streams_opened: AtomicU64,
    /// Unix nanos when the first live frame was written (0 before).
    pub live_started_nanos: AtomicU64,
    /// Unix nanos when the last live frame was written (0 before).
    pub live_finished_nanos: AtomicU64,
    /// `credit` messages received from the gateway.
    pub credit_messages: AtomicU64,
}

/// A running simulated connector.
pub struct Connector {
    /// Counters.
    pub stats: Arc<ConnectorStats>,
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<Result<(), String>>>,
    socket: TcpStream,
}

impl Connector {
    /// Connects, registers and starts serving. Live streams wait for [`Connector::go`].
    pub fn start(spec: ConnectorSpec) -> Result<Connector, String> {
        let (mut stream, rest) = wire::handshake(spec.addr, "/ws/connect", None).map_err(|e| e.to_string())?;
        let register = ConnectorMessage::Register(Register {
            tenant_id: spec.tenant.clone(),
            version: Some("bench".into()),
            datasets: spec.datasets.iter().map(|d| d.name.clone()).collect(),
            live: spec.datasets.iter().filter(|d| d.live).map(|d| d.name.clone()).collect(),
            protocol: Some(2),
            token: Some(spec.token.clone()),
            compression: Vec::new(),
        });
        stream.write_all(&text_frame(&register)).map_err(|e| e.to_string())?;
        let mut parser = Parser::default();
        let mut pending = Vec::new();
        parser.feed(&rest, |e| pending.push(e));
        let reply = wire::read_text(&mut stream, &mut parser, &mut pending).map_err(|e| e.to_string())?;
        match RegisterReply::parse(&reply) {
            // The frames are built for level 2 (a 16-byte header in front of each).
            Ok(RegisterReply::Ok(ok)) if ok.protocol.unwrap_or(1) < 2 => {
                return Err(format!("the gateway did not agree to protocol level 2: {reply}"))
            }
            Ok(RegisterReply::Ok(_)) => {}
            Ok(RegisterReply::Refused(_)) | Err(_) => return Err(format!("register refused: {reply}")),
        }
        let (tx, rx) = channel();
        let read_socket = stream.try_clone().map_err(|e| e.to_string())?;
        for event in pending {
            let _ = tx.send(event);
        }
        std::thread::Builder::new()
            .name("bench-conn-read".into())
            .spawn(move || reader(read_socket, parser, tx))
            .map_err(|e| e.to_string())?;
        let stats = Arc::new(ConnectorStats::default());
        let go = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let socket = stream.try_clone().map_err(|e| e.to_string())?;
        let writer = {
            let (stats, go, stop) = (stats.clone(), go.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-conn-write".into())
                .spawn(move || {
                    let end = ConnectorEnd::new(true, Vec::new());
                    Writer { stream, spec, stats, go, stop, end, active: VecDeque::new() }.run(rx)
                })
                .map_err(|e| e.to_string())?
        };
        Ok(Connector { stats, go, stop, writer: Some(writer), socket })
    }

    /// Lets live streams start sending.
    pub fn go(&self) {
        self.go.store(true, Ordering::Release);
    }

    /// Stops and closes the socket; returns the writer's error, if any.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Release);
        let result = self.writer.take().map(|w| w.join().unwrap_or_else(|_| Err("writer panicked".into())));
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        result.unwrap_or(Ok(()))
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

fn reader(mut socket: TcpStream, mut parser: Parser, tx: Sender<Event>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Event::Close(None));
                return;
            }
            Ok(n) => {
                let mut dead = false;
                parser.feed(&buf[..n], |e| dead |= tx.send(e).is_err());
                if dead {
                    return;
                }
            }
        }
    }
}

struct Active {
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

struct Writer {
    stream: TcpStream,
    spec: ConnectorSpec,
    stats: Arc<ConnectorStats>,
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The tunnel's conversation; a stream's value is its stream id, the key of [`Writer::active`].
    end: ConnectorEnd<u32>,
    active: VecDeque<Active>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Event>) -> Result<(), String> {
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
                let due = crate::sat_u64(u128::from(now - t0) * u128::from(rate) / 1_000_000_000) + 1;
                let due = due.min(spec.frames);
                count = usize::try_from(due.saturating_sub(a.next)).unwrap_or(usize::MAX).min(a.frames_per_batch);
                if count == 0 {
                    let next_at = t0 + crate::sat_u64(u128::from(a.next) * 1_000_000_000 / u128::from(rate));
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
                            .map(|r| t0 + crate::sat_u64(u128::from(seq) * 1_000_000_000 / u128::from(r)))
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
                if now.saturating_sub(a.marker_at) >= crate::sat_u64(END_MARKER_INTERVAL.as_nanos()) {
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

/// A text message as the client frame that carries it.
fn text_frame(message: &ConnectorMessage) -> Vec<u8> {
    wire::client_frame(OP_TEXT, message.to_json().as_bytes())
}
