//! The reverse tunnel: `parallel_connections` WebSocket connections dialled
//! out to the gateway, each registering for the tenant and serving the
//! streams the gateway asks for, reconnecting forever with exponential
//! backoff and jitter.
//!
//! Threads: one per connection owns its socket (reads commands, writes
//! frames); one per open stream (`producer`) produces encoded IPC
//! messages into the connection's bounded outgoing queue (a full queue
//! blocks the producer: backpressure). Level-2 streams also wait for credit
//! from the gateway.
//!
//! The conversation's rules — which `do_get` may be served, the pairing of
//! its request id and stream id that `cancel` and `credit` name, the
//! level-1 stream numbers — are `volley_protocol::tunnel::ConnectorEnd`'s;
//! this module does what it asks. `dial` opens the socket.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

mod dial;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tungstenite::Message;
use volley_protocol::message::{
    ConnectorMessage, ErrorBody, ErrorCode, FlightData, GatewayCommand, Register, RegisterReply,
};
use volley_protocol::tunnel::{ConnectorAction, ConnectorEnd, UNCOUNTED_CREDIT};

use self::dial::{open_socket, set_read_timeout, Socket};
use crate::config::{Compression, Config};
use crate::producer::{Outgoing, StreamHandle};
use crate::public_error::{open_failure, source_failure};
use crate::slice::{MessageKind, SliceOptions};
use crate::source::Catalog;

/// Messages queued per connection before stream producers block.
pub const OUTGOING_QUEUE_MAX: usize = 64;
/// Longest wait between reconnect attempts.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(60);
/// A connection that lived this long resets the backoff.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// Socket read timeout while idle: how soon queued output is noticed.
pub const IDLE_POLL: Duration = Duration::from_millis(5);
/// Nothing heard from the gateway for this long: the connection is dead.
pub const GATEWAY_SILENCE_MAX: Duration = Duration::from_secs(60);
/// How long shutdown waits for streams to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest message accepted from the gateway (commands are small JSON).
pub const GATEWAY_MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Longest wait for the TCP connect (per resolved address) and for each read
/// or write of the WebSocket upgrade: a blackholed address or a listener that
/// never answers must not hang a connection attempt (or `--test`) forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the gateway's reply to `register` (its own
/// `timeouts.connect_seconds` default).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Connect, TLS or WebSocket failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// No TCP connection to the gateway's address (refused, unreachable,
    /// timed out, or the name does not resolve). The gateway URI is said by
    /// whoever reports it.
    #[error("cannot connect: {0}")]
    Unreachable(#[source] io::Error),
    /// Socket failure.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The gateway refused `register`.
    #[error("the gateway refused registration: {code}: {message}")]
    Refused {
        /// Code.
        code: ErrorCode,
        /// Message.
        message: String,
    },
    /// The gateway broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Nothing heard for too long.
    #[error("the gateway went silent")]
    Silent,
}

/// Runs the tunnel until `shutdown` is set: `parallel_connections` threads,
/// each connecting, serving and reconnecting forever.
pub fn run(config: Arc<Config>, catalog: Arc<Catalog>, shutdown: Arc<AtomicBool>) {
    let threads: Vec<JoinHandle<()>> = (0..config.performance.parallel_connections.max(1))
        .map(|index| {
            let config = config.clone();
            let catalog = catalog.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("volley-tunnel-{index}"))
                .spawn(move || connection_loop(index, &config, &catalog, &shutdown))
        })
        .filter_map(Result::ok)
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn connection_loop(index: usize, config: &Config, catalog: &Arc<Catalog>, shutdown: &AtomicBool) {
    let base = config.performance.reconnect_delay.max(Duration::from_millis(50));
    let mut delay = base;
    let mut attempt: u64 = 0;
    while !shutdown.load(Ordering::Acquire) {
        attempt += 1;
        let started = Instant::now();
        let outcome = connect_and_serve(index, config, catalog, shutdown);
        if shutdown.load(Ordering::Acquire) {
            return;
        }
        if started.elapsed() >= STABLE_CONNECTION {
            delay = base;
        }
        // Full jitter between half and all of the delay, so a fleet does not reconnect in step.
        let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
        let uri = &config.gateway.uri;
        let retry = jittered.as_secs_f64();
        match outcome {
            Ok(()) => log::info!("tunnel {index}: connection to {uri} closed; reconnecting in {retry:.1} s"),
            Err(e) => log::warn!("tunnel {index}: {uri}: {e}; retrying in {retry:.1} s (attempt {attempt})"),
        }
        sleep_unless(jittered, shutdown);
        delay = (delay * 2).min(RECONNECT_DELAY_MAX);
    }
}

fn sleep_unless(duration: Duration, shutdown: &AtomicBool) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !shutdown.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Opens one connection and registers; returns the socket and the agreed level.
pub fn connect_and_register(config: &Config, catalog: &Catalog) -> Result<(Socket, u8), TunnelError> {
    let mut socket = open_socket(&config.gateway)?;
    let datasets: Vec<String> = catalog.names().map(str::to_owned).collect();
    let live: Vec<String> =
        config.datasets.iter().filter(|(_, spec)| spec.is_live()).map(|(name, _)| name.clone()).collect();
    let register = ConnectorMessage::Register(Register {
        tenant_id: config.tenant.id.clone(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        datasets,
        live,
        protocol: Some(2),
        token: config.tenant.token.clone(),
        compression: config.performance.compression_codecs.iter().map(|codec| codec.as_str().to_owned()).collect(),
    });
    socket.send(Message::text(register.to_json()))?;
    set_read_timeout(&socket, REGISTER_TIMEOUT)?;
    loop {
        match socket.read()? {
            Message::Text(text) => {
                return match RegisterReply::parse(text.as_str()) {
                    Ok(RegisterReply::Ok(ok)) => Ok((socket, ok.protocol.unwrap_or(1))),
                    Ok(RegisterReply::Refused(error)) => {
                        Err(TunnelError::Refused { code: error.code, message: error.message })
                    }
                    Err(e) => Err(TunnelError::Protocol(format!("bad register reply: {e}"))),
                };
            }
            Message::Close(frame) => {
                return Err(TunnelError::Protocol(format!("closed during register: {frame:?}")));
            }
            _ => {}
        }
    }
}

fn connect_and_serve(
    index: usize,
    config: &Config,
    catalog: &Arc<Catalog>,
    shutdown: &AtomicBool,
) -> Result<(), TunnelError> {
    let (mut socket, level) = connect_and_register(config, catalog)?;
    log::info!(
        "tunnel {index}: registered with {} as tenant {:?} (level {level})",
        config.gateway.uri,
        config.tenant.id
    );
    set_read_timeout(&socket, IDLE_POLL)?;
    let (out_tx, out_rx) = sync_channel::<Outgoing>(OUTGOING_QUEUE_MAX);
    let mut end = ConnectorEnd::new(level >= 2, config.performance.compression_codecs.clone());
    let result = serve(&mut socket, config, catalog, shutdown, &out_tx, &out_rx, &mut end);
    // Streams still running end here: their producers see the stop flag.
    for handle in end.streams() {
        handle.release();
    }
    drop(out_tx);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    for handle in end.drain() {
        // Drain what producers still push so they can reach their end.
        while !handle.is_finished() && Instant::now() < deadline {
            let _ = out_rx.recv_timeout(Duration::from_millis(10));
        }
        handle.join();
    }
    if shutdown.load(Ordering::Acquire) {
        let _ = socket.close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "connector shutting down".into(),
        }));
        let _ = socket.flush();
    }
    result
}

fn serve(
    socket: &mut Socket,
    config: &Config,
    catalog: &Arc<Catalog>,
    shutdown: &AtomicBool,
    out_tx: &SyncSender<Outgoing>,
    out_rx: &Receiver<Outgoing>,
    end: &mut ConnectorEnd<StreamHandle>,
) -> Result<(), TunnelError> {
    let mut last_heard = Instant::now();
    loop {
        if shutdown.load(Ordering::Acquire) {
            for handle in end.streams() {
                handle.stop();
            }
            // Let streams finish (they end with stream_end) within the grace period.
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            while end.streams().any(|h| !h.is_finished()) && Instant::now() < deadline {
                write_pending(socket, out_rx)?;
                std::thread::sleep(Duration::from_millis(5));
            }
            write_pending(socket, out_rx)?;
            return Ok(());
        }
        write_pending(socket, out_rx)?;
        end.reap(StreamHandle::is_finished);
        match socket.read() {
            Ok(Message::Text(text)) => {
                last_heard = Instant::now();
                handle_command(text.as_str(), config, catalog, out_tx, end, socket)?;
            }
            Ok(Message::Close(_)) => return Ok(()),
            Ok(_) => last_heard = Instant::now(),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                if last_heard.elapsed() > GATEWAY_SILENCE_MAX {
                    return Err(TunnelError::Silent);
                }
            }
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn write_pending(socket: &mut Socket, out_rx: &Receiver<Outgoing>) -> Result<(), TunnelError> {
    let mut wrote = false;
    loop {
        match out_rx.try_recv() {
            Ok(Outgoing::Text(text)) => socket.write(Message::text(text))?,
            Ok(Outgoing::Binary(bytes)) => socket.write(Message::Binary(bytes))?,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
        wrote = true;
    }
    if wrote {
        socket.flush()?;
    } else {
        // Pongs queued by tungstenite in answer to pings.
        match socket.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A command from the gateway: `end` says what to do about it, and what to answer.
fn handle_command(
    text: &str,
    config: &Config,
    catalog: &Arc<Catalog>,
    out_tx: &SyncSender<Outgoing>,
    end: &mut ConnectorEnd<StreamHandle>,
    socket: &mut Socket,
) -> Result<(), TunnelError> {
    let command = match GatewayCommand::parse(text) {
        Ok(command) => command,
        Err(e) => {
            log::warn!("ignoring a command the connector does not understand: {e}");
            return Ok(());
        }
    };
    match end.handle_command(command) {
        ConnectorAction::Describe { request_id, dataset } => {
            log::debug!("get_flight_info {request_id}: dataset {dataset:?}");
            let answer = flight_info(catalog, &request_id, &dataset, config);
            end.described(request_id, answer);
        }
        ConnectorAction::Start(order) => {
            log::debug!(
                "do_get {}: dataset {:?}, stream {:?}, live {}, credit {:?}, compression {:?}",
                order.request_id,
                order.dataset,
                order.header_stream_id,
                order.live,
                (order.credit_bytes != UNCOUNTED_CREDIT).then_some(order.credit_bytes),
                order.compression.map_or(Compression::None, Compression::from),
            );
            let handle = StreamHandle::spawn(&order, catalog, &config.performance, out_tx)?;
            for (old, displaced) in end.started(&order, handle) {
                if !displaced.is_finished() {
                    log::warn!(
                        "do_get {new} reuses an id of request {old}, which is still streaming: stopping {old}. A \
                         gateway may reuse a request id or stream id only after that stream's stream_end; check the \
                         gateway's version",
                        new = order.request_id,
                    );
                    displaced.stop();
                }
            }
        }
        ConnectorAction::Credit { stream, bytes } => stream.credit(bytes),
        ConnectorAction::Stop(stream) => {
            log::debug!("cancel {}", stream.request_id());
            stream.stop();
        }
        ConnectorAction::Ignored(reason) => log::debug!("{reason}"),
        ConnectorAction::Nothing => {}
    }
    while let Some(message) = end.poll_transmit() {
        socket.send(Message::text(message.to_json()))?;
    }
    Ok(())
}

/// Errors are answered as [`crate::public_error`] says: what went wrong is
/// logged, not sent.
fn flight_info(catalog: &Catalog, request_id: &str, name: &str, config: &Config) -> Result<FlightData, ErrorBody> {
    let dataset = catalog.open(name).map_err(|e| open_failure(request_id, name, &e))?;
    let rows = dataset.row_count().map(|r| i64::try_from(r).unwrap_or(i64::MAX)).unwrap_or(-1);
    let stop = dataset.stop_flag();
    let mut stream = dataset
        .into_ipc(SliceOptions::from_performance(&config.performance), None)
        .map_err(|e| source_failure(request_id, name, &e))?;
    let schema = match stream.next() {
        Some(Ok(message)) if message.kind == MessageKind::Schema => message.bytes,
        Some(Err(e)) => return Err(source_failure(request_id, name, &e)),
        _ => return Err(ErrorBody::new(ErrorCode::Internal, "the encoder produced no schema message")),
    };
    stop.store(true, Ordering::Release);
    Ok(FlightData { schema: base64::engine::general_purpose::STANDARD.encode(&schema), records: rows })
}
