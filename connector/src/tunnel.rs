//! The reverse tunnel: `parallel_connections` WebSocket connections dialled
//! out to the gateways of `gateway.uri` (spread round robin, and over the
//! addresses a name resolves to), each registering for the tenant and
//! serving the streams the gateway asks for, reconnecting forever with
//! exponential backoff and jitter — to the next listed gateway, not the same
//! one first. A draining gateway's `reconnect` (PROTOCOL.md §4.2) moves a
//! connection at once: the replacement dials the next gateway while a thread
//! of the old connection's own finishes its streams, then closes it.
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

use self::dial::{open_socket, set_read_timeout, Dialled, Socket};
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
/// How long a connection asked to move may stay open to finish its streams
/// when the gateway's `reconnect` names no grace.
pub const MOVE_GRACE_DEFAULT: Duration = Duration::from_secs(30);
/// The longest a connection asked to move stays open, whatever the gateway says.
pub const MOVE_GRACE_MAX: Duration = Duration::from_secs(600);
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
/// each connecting, serving and reconnecting forever. Tunnel `i` starts at
/// the `i`-th gateway of `gateway.uri` (round robin; past the list's end, at
/// the next address of a name that resolves to several).
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

/// Where a tunnel's next attempt goes: its turn in the gateway list. The
/// turn advances by one whenever the tunnel loses its gateway or is asked to
/// move, so it goes to the next gateway, not the same one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn(pub usize);

impl Turn {
    /// The URI of this turn and the address of its host to try first
    /// (the round through the list: every round starts at the next address).
    pub fn target(self, uris: &[String]) -> (&str, usize) {
        let count = uris.len().max(1);
        (uris.get(self.0 % count).map_or("", String::as_str), self.0 / count)
    }

    /// The turn after this one.
    pub fn next(self) -> Turn {
        Turn(self.0.wrapping_add(1))
    }
}

/// How a served connection ended, when it did not fail.
enum Served {
    /// The gateway closed it, or the connector is shutting down.
    Closed,
    /// It was asked to move and closed itself once it could.
    Left,
    /// It was asked to move and another gateway is listed: the caller hands
    /// it to a thread of its own and opens the replacement now.
    HandOff,
}

/// A registered connection and what its streams share.
struct Connection {
    socket: Socket,
    end: ConnectorEnd<StreamHandle>,
    out_tx: SyncSender<Outgoing>,
    out_rx: Receiver<Outgoing>,
    /// `tunnel N on URI (ADDRESS)`, for log lines.
    label: String,
    /// Asked to move: the latest it may stay open.
    leave_by: Option<Instant>,
}

/// Whether the replacement of a moving connection is settled (registered, or
/// its attempt failed); always for a connection that has none.
type Settled = Arc<AtomicBool>;

/// A connection handed off after a move: the thread that finishes its
/// streams, and the flag its replacement sets.
type Moving = (JoinHandle<()>, Settled);

fn connection_loop(index: usize, config: &Arc<Config>, catalog: &Arc<Catalog>, shutdown: &Arc<AtomicBool>) {
    let base = config.performance.reconnect_delay.max(Duration::from_millis(50));
    let uris = &config.gateway.uris;
    let mut delay = base;
    let mut attempt: u64 = 0;
    let mut turn = Turn(index);
    // Connections that were asked to move and still finish their streams.
    let mut retiring: Vec<JoinHandle<()>> = Vec::new();
    // The newest of them waits for this attempt to settle before it leaves.
    let mut replacing: Option<Settled> = None;
    while !shutdown.load(Ordering::Acquire) {
        attempt += 1;
        let started = Instant::now();
        let (uri, _) = turn.target(uris);
        let outcome = connect_and_serve(index, turn, config, catalog, shutdown, replacing.take());
        retiring.retain(|thread| !thread.is_finished());
        if shutdown.load(Ordering::Acquire) {
            break;
        }
        if started.elapsed() >= STABLE_CONNECTION {
            delay = base;
        }
        turn = turn.next();
        let (next, _) = turn.target(uris);
        let next = if next == uri { "the same gateway".to_owned() } else { next.to_owned() };
        match outcome {
            Ok((Served::HandOff, Some((thread, settled)))) => {
                // A move is not a failure: at once, and the backoff starts over.
                retiring.push(thread);
                replacing = Some(settled);
                delay = base;
                continue;
            }
            Ok(_) => {
                // Full jitter between half and all of the delay, so a fleet does not reconnect in step.
                let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
                let retry = jittered.as_secs_f64();
                log::info!("tunnel {index}: connection to {uri} closed; reconnecting to {next} in {retry:.1} s");
                sleep_unless(jittered, shutdown);
            }
            Err(e) => {
                let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
                let retry = jittered.as_secs_f64();
                log::warn!("tunnel {index}: {uri}: {e}; retrying in {retry:.1} s with {next} (attempt {attempt})");
                sleep_unless(jittered, shutdown);
            }
        }
        delay = (delay * 2).min(RECONNECT_DELAY_MAX);
    }
    if let Some(settled) = replacing {
        settled.store(true, Ordering::Release);
    }
    for thread in retiring {
        let _ = thread.join();
    }
}

fn sleep_unless(duration: Duration, shutdown: &AtomicBool) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !shutdown.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Opens one connection to `uri` (one of `gateway.uri`'s) and registers;
/// returns the socket and the agreed level.
pub fn connect_and_register(config: &Config, uri: &str, catalog: &Catalog) -> Result<(Socket, u8), TunnelError> {
    register_at(config, uri, 0, catalog).map(|(dialled, level)| (dialled.socket, level))
}

fn register_at(config: &Config, uri: &str, preferred: usize, catalog: &Catalog) -> Result<(Dialled, u8), TunnelError> {
    let mut dialled = open_socket(&config.gateway, uri, preferred)?;
    let socket = &mut dialled.socket;
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
    set_read_timeout(socket, REGISTER_TIMEOUT)?;
    loop {
        match socket.read()? {
            Message::Text(text) => {
                return match RegisterReply::parse(text.as_str()) {
                    Ok(RegisterReply::Ok(ok)) => Ok((dialled, ok.protocol.unwrap_or(1))),
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

/// Connects at `turn`, registers and serves until the connection ends.
/// `replacing`: the moving connection this one replaces, told once this
/// attempt registered or failed. A connection asked to move while another
/// gateway is listed comes back as [`Served::HandOff`] with the thread that
/// now serves it and the flag its own replacement must set.
fn connect_and_serve(
    index: usize,
    turn: Turn,
    config: &Arc<Config>,
    catalog: &Arc<Catalog>,
    shutdown: &Arc<AtomicBool>,
    replacing: Option<Settled>,
) -> Result<(Served, Option<Moving>), TunnelError> {
    let (uri, preferred) = turn.target(&config.gateway.uris);
    let registered = register_at(config, uri, preferred, catalog);
    if let Some(settled) = replacing {
        settled.store(true, Ordering::Release);
    }
    let (dialled, level) = registered?;
    let count = config.gateway.uris.len();
    let position = config.gateway.uris.iter().position(|listed| listed == uri).map_or(1, |p| p + 1);
    log::info!(
        "tunnel {index}: registered with gateway {position} of {count}, {uri} ({}), as tenant {:?} (level {level})",
        dialled.addr,
        config.tenant.id
    );
    set_read_timeout(&dialled.socket, IDLE_POLL)?;
    let (out_tx, out_rx) = sync_channel::<Outgoing>(OUTGOING_QUEUE_MAX);
    let mut connection = Connection {
        socket: dialled.socket,
        end: ConnectorEnd::new(level >= 2, config.performance.compression_codecs.clone()),
        out_tx,
        out_rx,
        label: format!("tunnel {index} on {uri} ({})", dialled.addr),
        leave_by: None,
    };
    let elsewhere = count > 1 || dialled.addresses > 1;
    let result = serve(&mut connection, config, catalog, shutdown, None, elsewhere);
    if let Ok(Served::HandOff) = result {
        let settled: Settled = Arc::new(AtomicBool::new(false));
        let (config, catalog, shutdown, flag) = (config.clone(), catalog.clone(), shutdown.clone(), settled.clone());
        let thread = std::thread::Builder::new().name(format!("volley-tunnel-{index}-moving")).spawn(move || {
            let result = serve(&mut connection, &config, &catalog, &shutdown, Some(flag.as_ref()), false);
            if let Err(e) = &result {
                log::warn!("{}: {e}", connection.label);
            }
            finish(connection, &shutdown);
        });
        return match thread {
            Ok(thread) => Ok((Served::HandOff, Some((thread, settled)))),
            Err(e) => Err(TunnelError::Io(e)),
        };
    }
    finish(connection, shutdown);
    result.map(|served| (served, None))
}

/// The end of a connection: streams still running stop (their producers see
/// the stop flag) and are drained for at most [`SHUTDOWN_GRACE`]; at
/// shutdown the gateway is told (1001).
fn finish(mut connection: Connection, shutdown: &AtomicBool) {
    let Connection { ref mut socket, ref mut end, out_tx, ref out_rx, .. } = connection;
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
}

/// Serves a connection until it ends. `replacement`: set when it was handed
/// off after a move, the flag its replacement sets. `may_hand_off`: another
/// gateway is listed, so a move hands it off ([`Served::HandOff`]) rather
/// than finishing its streams here.
fn serve(
    connection: &mut Connection,
    config: &Config,
    catalog: &Arc<Catalog>,
    shutdown: &AtomicBool,
    replacement: Option<&AtomicBool>,
    may_hand_off: bool,
) -> Result<Served, TunnelError> {
    let Connection { socket, end, out_tx, out_rx, label, leave_by } = connection;
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
            return Ok(Served::Closed);
        }
        write_pending(socket, out_rx)?;
        end.reap(StreamHandle::is_finished);
        if end.is_moving() {
            let settled = replacement.is_none_or(|flag| flag.load(Ordering::Acquire));
            let late = leave_by.is_some_and(|by| Instant::now() >= by);
            if end.may_leave(settled, StreamHandle::is_finished) || late {
                let why = if late { "its grace passed" } else { "its streams ended" };
                log::info!("{label}: closing the tunnel to the draining gateway ({why})");
                let _ = socket.close(Some(tungstenite::protocol::CloseFrame {
                    code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "moved to another gateway".into(),
                }));
                let _ = socket.flush();
                return Ok(Served::Left);
            }
        }
        match socket.read() {
            Ok(Message::Text(text)) => {
                last_heard = Instant::now();
                handle_command(text.as_str(), config, catalog, out_tx, end, socket)?;
                if let Some(order) = end.take_move() {
                    let grace = order.grace_seconds.map_or(MOVE_GRACE_DEFAULT, Duration::from_secs).min(MOVE_GRACE_MAX);
                    *leave_by = Some(Instant::now() + grace);
                    let running = end.streams().filter(|h| !h.is_finished()).count();
                    if may_hand_off {
                        log::info!(
                            "{label}: the gateway asks connectors to move ({}): opening a tunnel to the next \
                             gateway now; this one closes once its {running} running stream(s) ended, within {grace:?}",
                            order.reason
                        );
                        return Ok(Served::HandOff);
                    }
                    log::info!(
                        "{label}: the gateway asks connectors to move ({}), but gateway.uri lists no other \
                         gateway: this tunnel closes once its {running} running stream(s) ended and reconnects \
                         with the usual delay; list the cluster's other gateways under gateway.uri to move at once",
                        order.reason
                    );
                }
            }
            Ok(Message::Close(_)) => return Ok(Served::Closed),
            Ok(_) => last_heard = Instant::now(),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                if last_heard.elapsed() > GATEWAY_SILENCE_MAX {
                    return Err(TunnelError::Silent);
                }
            }
            Err(tungstenite::Error::ConnectionClosed) => return Ok(Served::Closed),
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
