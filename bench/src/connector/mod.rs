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
//!
//! Files: this one registers and owns the handle, the reader thread and the
//! counters; `writer` is the writer thread (commands, and every stream's
//! frames within credit or on schedule).

mod writer;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use volley_protocol::message::{ConnectorMessage, Register, RegisterReply};
use volley_protocol::tunnel::ConnectorEnd;

use crate::wire::{self, Event, Parser, OP_TEXT};

use writer::Writer;

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

impl DatasetSpec {
    /// A query dataset: `frames` frames of `frame_bytes`, as fast as credit allows.
    pub fn query(name: &str, frame_bytes: usize, frames: u64) -> DatasetSpec {
        DatasetSpec { name: name.to_owned(), live: false, frame_bytes, frames, rate_per_second: None }
    }
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

/// A text message as the client frame that carries it.
fn text_frame(message: &ConnectorMessage) -> Vec<u8> {
    wire::client_frame(OP_TEXT, message.to_json().as_bytes())
}
