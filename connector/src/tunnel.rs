//! The reverse tunnel: `parallel_connections` WebSocket connections dialled
//! out to the gateway, each registering for the tenant and serving the
//! streams the gateway asks for, reconnecting forever with exponential
//! backoff and jitter.
//!
//! Threads: one per connection owns its socket (reads commands, writes
//! frames); one per open stream produces encoded IPC messages into the
//! connection's bounded outgoing queue (a full queue blocks the producer:
//! backpressure). Level-2 streams also wait for credit from the gateway.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::HashMap;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::message::{
    Codec, ConnectorMessage, ErrorBody, ErrorCode, FlightData, GatewayCommand, Register, RegisterReply,
};

use crate::ca::load_ca_file;
use crate::config::{Compression, Config, GatewayConfig};
use crate::public_error::{open_failure, source_failure};
use crate::slice::{MessageKind, SliceOptions};
use crate::source::{Catalog, StopFlag};

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

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

enum Outgoing {
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

struct StreamHandle {
    request_id: String,
    stop: StopFlag,
    credit: Arc<Credit>,
    thread: JoinHandle<()>,
}

/// The streams open on one connection.
///
/// The gateway names a stream two ways: by the `request_id` of its `do_get`,
/// which `cancel` repeats, and at level 2 by the `stream_id` of its
/// `do_get`, which `credit` repeats. The two are unrelated (PROTOCOL.md
/// §4.2 pairs request `r3` with stream `9`), so `do_get` records the pair
/// here and neither id is ever made from the other.
#[derive(Default)]
struct Streams {
    /// By stream id: the `do_get`'s at level 2; at level 1, whose `do_get`
    /// carries none, a number the connector picks.
    by_id: HashMap<u32, StreamHandle>,
    /// `request_id` → stream id.
    ids: HashMap<String, u32>,
    /// Where the search for the next level-1 stream's number starts.
    next_local_id: u32,
}

impl Streams {
    /// A stream id no open stream has, for a level-1 stream.
    fn local_id(&mut self) -> u32 {
        while self.by_id.contains_key(&self.next_local_id) {
            self.next_local_id = self.next_local_id.wrapping_add(1);
        }
        let id = self.next_local_id;
        self.next_local_id = id.wrapping_add(1);
        id
    }

    /// Records a stream under `id` and its request id. A stream still
    /// running under either id is stopped first: the gateway reuses an id
    /// only after that stream's `stream_end`, so it is ending anyway, or the
    /// gateway lost track of it.
    fn insert(&mut self, id: u32, handle: StreamHandle) {
        let same_request = self.ids.get(&handle.request_id).copied();
        for old in [Some(id), same_request].into_iter().flatten() {
            let Some(old) = self.remove(old) else { continue };
            if !old.thread.is_finished() {
                log::warn!(
                    "do_get {new} reuses an id of request {old}, which is still streaming: stopping {old}. A gateway \
                     may reuse a request id or stream id only after that stream's stream_end; check the gateway's \
                     version",
                    new = handle.request_id,
                    old = old.request_id,
                );
                old.stop.store(true, Ordering::Release);
                old.credit.wake();
            }
        }
        self.ids.insert(handle.request_id.clone(), id);
        self.by_id.insert(id, handle);
    }

    fn remove(&mut self, id: u32) -> Option<StreamHandle> {
        let handle = self.by_id.remove(&id)?;
        self.ids.remove(&handle.request_id);
        Some(handle)
    }

    /// The stream a `credit` names.
    fn by_stream_id(&self, id: u32) -> Option<&StreamHandle> {
        self.by_id.get(&id)
    }

    /// The stream a `cancel` names.
    fn by_request_id(&self, request_id: &str) -> Option<&StreamHandle> {
        self.ids.get(request_id).and_then(|id| self.by_id.get(id))
    }

    fn handles(&self) -> impl Iterator<Item = &StreamHandle> {
        self.by_id.values()
    }

    /// Forgets the streams whose producer has returned.
    fn reap(&mut self) {
        self.by_id.retain(|_, handle| !handle.thread.is_finished());
        let by_id = &self.by_id;
        self.ids.retain(|_, id| by_id.contains_key(id));
    }

    fn drain(&mut self) -> impl Iterator<Item = StreamHandle> + '_ {
        self.ids.clear();
        self.by_id.drain().map(|(_, handle)| handle)
    }
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

fn set_read_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.set_read_timeout(Some(timeout)),
        MaybeTlsStream::Rustls(stream) => stream.get_ref().set_read_timeout(Some(timeout)),
        _ => Ok(()),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// The roots `wss://` trusts: `gateway.ca_file` alone when set, else the
/// system's (Mozilla's bundled roots when the system has none).
fn client_tls_config(gateway: &GatewayConfig) -> Result<Arc<rustls::ClientConfig>, TunnelError> {
    let mut roots = rustls::RootCertStore::empty();
    match &gateway.ca_file {
        Some(path) => {
            let certs = load_ca_file(path).map_err(|e| TunnelError::Io(io::Error::other(e)))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TunnelError::Io(io::Error::other(format!(
                    "gateway.ca_file {}: no usable CA certificate",
                    path.display()
                ))));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TunnelError::Protocol(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TCP connect and WebSocket upgrade (TLS for `wss://`), each step bounded
/// by [`HANDSHAKE_TIMEOUT`]. `tungstenite::connect` has no timeout at all: a
/// listener that accepts but never answers would block it forever.
fn open_socket(gateway: &GatewayConfig) -> Result<Socket, TunnelError> {
    use std::net::ToSocketAddrs as _;
    use tungstenite::client::IntoClientRequest as _;
    use tungstenite::handshake::HandshakeError;

    let uri = gateway.uri.as_str();
    let request = uri.into_client_request()?;
    let tls = request.uri().scheme_str() == Some("wss");
    let tls_connector = if tls { Some(tungstenite::Connector::Rustls(client_tls_config(gateway)?)) } else { None };
    let host = request.uri().host().ok_or_else(|| TunnelError::Protocol(format!("no host in {uri}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = request.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, format!("{host} resolves to no address"));
    let mut stream = None;
    for addr in (host.as_str(), port).to_socket_addrs().map_err(TunnelError::Unreachable)? {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let stream = stream.ok_or(TunnelError::Unreachable(last_error))?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut ws_config = tungstenite::protocol::WebSocketConfig::default();
    ws_config.max_message_size = Some(GATEWAY_MESSAGE_BYTES_MAX);
    ws_config.max_frame_size = Some(GATEWAY_MESSAGE_BYTES_MAX);
    let timed_out = || {
        TunnelError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no WebSocket handshake from {uri} within {HANDSHAKE_TIMEOUT:?}"),
        ))
    };
    let socket = match tungstenite::client_tls_with_config(request, stream, Some(ws_config), tls_connector) {
        Ok((socket, _)) => socket,
        Err(HandshakeError::Interrupted(_)) => return Err(timed_out()),
        Err(HandshakeError::Failure(tungstenite::Error::Io(e))) if is_timeout(&e) => return Err(timed_out()),
        Err(HandshakeError::Failure(e)) => return Err(e.into()),
    };
    // Writes block again once connected: backpressure from the gateway is
    // normal and must not fail the connection.
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.set_write_timeout(None)?,
        MaybeTlsStream::Rustls(stream) => stream.get_ref().set_write_timeout(None)?,
        _ => {}
    }
    Ok(socket)
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
    let mut streams = Streams::default();
    let result = serve(&mut socket, level, config, catalog, shutdown, &out_tx, &out_rx, &mut streams);
    // Streams still running end here: their producers see the stop flag.
    for handle in streams.handles() {
        handle.stop.store(true, Ordering::Release);
        handle.credit.add(u64::MAX / 4);
    }
    drop(out_tx);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    for handle in streams.drain() {
        // Drain what producers still push so they can reach their end.
        while !handle.thread.is_finished() && Instant::now() < deadline {
            let _ = out_rx.recv_timeout(Duration::from_millis(10));
        }
        let _ = handle.thread.join();
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

#[allow(clippy::too_many_arguments)]
fn serve(
    socket: &mut Socket,
    level: u8,
    config: &Config,
    catalog: &Arc<Catalog>,
    shutdown: &AtomicBool,
    out_tx: &SyncSender<Outgoing>,
    out_rx: &Receiver<Outgoing>,
    streams: &mut Streams,
) -> Result<(), TunnelError> {
    let mut last_heard = Instant::now();
    loop {
        if shutdown.load(Ordering::Acquire) {
            for handle in streams.handles() {
                handle.stop.store(true, Ordering::Release);
            }
            // Let streams finish (they end with stream_end) within the grace period.
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            while streams.handles().any(|h| !h.thread.is_finished()) && Instant::now() < deadline {
                write_pending(socket, out_rx)?;
                std::thread::sleep(Duration::from_millis(5));
            }
            write_pending(socket, out_rx)?;
            return Ok(());
        }
        write_pending(socket, out_rx)?;
        streams.reap();
        match socket.read() {
            Ok(Message::Text(text)) => {
                last_heard = Instant::now();
                handle_command(text.as_str(), level, config, catalog, out_tx, streams, socket)?;
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

fn handle_command(
    text: &str,
    level: u8,
    config: &Config,
    catalog: &Arc<Catalog>,
    out_tx: &SyncSender<Outgoing>,
    streams: &mut Streams,
    socket: &mut Socket,
) -> Result<(), TunnelError> {
    let command = match GatewayCommand::parse(text) {
        Ok(command) => command,
        Err(e) => {
            log::warn!("ignoring a command the connector does not understand: {e}");
            return Ok(());
        }
    };
    let reply = |socket: &mut Socket, message: ConnectorMessage| socket.send(Message::text(message.to_json()));
    match command {
        GatewayCommand::Ping => reply(socket, ConnectorMessage::Pong)?,
        GatewayCommand::GetFlightInfo { request_id, descriptor } => {
            let name = GatewayCommand::descriptor_dataset(&descriptor).unwrap_or_default().to_owned();
            log::debug!("get_flight_info {request_id}: dataset {name:?}");
            match flight_info(catalog, &request_id, &name, config) {
                Ok(data) => reply(socket, ConnectorMessage::FlightInfo { request_id, data })?,
                Err(error) => reply(socket, ConnectorMessage::Error { request_id: Some(request_id), error })?,
            }
        }
        GatewayCommand::DoGet { request_id, ticket, stream_id, credit_bytes, live, compression } => {
            // Only a codec offered in `register` may be asked for: anything
            // else is a gateway bug, answered with an error, not ignored
            // (an uncompressed stream announced as compressed would mislead).
            let offered = &config.performance.compression_codecs;
            let compression = match compression.as_deref() {
                None => Compression::None,
                Some(name) => match Codec::from_name(name).filter(|codec| offered.contains(codec)) {
                    Some(codec) => codec.into(),
                    None => {
                        let error = ErrorBody::new(
                            ErrorCode::BadRequest,
                            format!("compression {name:?} was not offered in register (offered: {offered:?})"),
                        );
                        reply(socket, ConnectorMessage::Error { request_id: Some(request_id), error })?;
                        return Ok(());
                    }
                },
            };
            // Level 2 writes the stream id in every frame header and credit
            // names the stream by it: a do_get without one cannot be served.
            let id = match (level >= 2, stream_id) {
                (true, Some(id)) => id,
                (true, None) => {
                    let error = ErrorBody::new(
                        ErrorCode::BadRequest,
                        "do_get at protocol level 2 needs a stream_id (PROTOCOL.md §4.2)",
                    );
                    reply(socket, ConnectorMessage::Error { request_id: Some(request_id), error })?;
                    return Ok(());
                }
                (false, _) => streams.local_id(),
            };
            log::debug!(
                "do_get {request_id}: dataset {ticket:?}, stream {stream_id:?}, live {live}, credit {credit_bytes:?}, \
                 compression {compression:?}"
            );
            let stop: StopFlag = Arc::new(AtomicBool::new(false));
            let credit = Arc::new(Credit::default());
            credit.add(if level >= 2 { credit_bytes.unwrap_or(u64::MAX / 4) } else { u64::MAX / 4 });
            let mut options = SliceOptions::from_performance(&config.performance);
            options.compression = compression;
            let job = StreamJob {
                catalog: catalog.clone(),
                dataset: ticket,
                request_id: request_id.clone(),
                stream_id: (level >= 2).then_some(id),
                live,
                options,
                out: out_tx.clone(),
                stop: stop.clone(),
                credit: credit.clone(),
            };
            let thread =
                std::thread::Builder::new().name(format!("volley-stream-{request_id}")).spawn(move || job.run())?;
            streams.insert(id, StreamHandle { request_id, stop, credit, thread });
        }
        // Level 1 has no credit (and its stream ids are the connector's own).
        GatewayCommand::Credit { stream_id, .. } if level < 2 => {
            log::debug!("ignoring credit for stream {stream_id}: a level-1 tunnel has no credit")
        }
        GatewayCommand::Credit { stream_id, bytes } => match streams.by_stream_id(stream_id) {
            Some(handle) => handle.credit.add(bytes),
            // A stream that just ended, or a gateway bug: nothing to credit.
            None => log::debug!("credit of {bytes} bytes for stream {stream_id}, which is not open"),
        },
        GatewayCommand::Cancel { request_id } => match streams.by_request_id(&request_id) {
            Some(handle) => {
                log::debug!("cancel {request_id}");
                // Woken, not granted credit: a producer waiting for credit
                // must stop, not send one more frame past its credit.
                handle.stop.store(true, Ordering::Release);
                handle.credit.wake();
            }
            None => log::debug!("cancel {request_id}, which is not open"),
        },
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
        .into_ipc(SliceOptions::from_performance(&config.performance))
        .map_err(|e| source_failure(request_id, name, &e))?;
    let schema = match stream.next() {
        Some(Ok(message)) if message.kind == MessageKind::Schema => message.bytes,
        Some(Err(e)) => return Err(source_failure(request_id, name, &e)),
        _ => return Err(ErrorBody::new(ErrorCode::Internal, "the encoder produced no schema message")),
    };
    stop.store(true, Ordering::Release);
    Ok(FlightData { schema: base64::engine::general_purpose::STANDARD.encode(&schema), records: rows })
}

struct StreamJob {
    catalog: Arc<Catalog>,
    dataset: String,
    request_id: String,
    stream_id: Option<u32>,
    live: bool,
    options: SliceOptions,
    out: SyncSender<Outgoing>,
    stop: StopFlag,
    credit: Arc<Credit>,
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
        let mut stream = match dataset.into_ipc(self.options) {
            Ok(stream) => stream,
            Err(e) => {
                let error = source_failure(&request_id, &self.dataset, &e);
                self.send(ConnectorMessage::Error { request_id: Some(request_id), error });
                return;
            }
        };
        let mut sequence: u64 = 0;
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
            let payload = match self.stream_id {
                Some(stream_id) => {
                    let kind = match message.kind {
                        MessageKind::Schema => FrameKind::Schema,
                        MessageKind::Dictionary => FrameKind::Dictionary,
                        MessageKind::RecordBatch => FrameKind::RecordBatch,
                        MessageKind::EndOfStream => FrameKind::EndOfStream,
                    };
                    let flags =
                        if message.kind == MessageKind::EndOfStream { volley_protocol::header::FLAG_LAST } else { 0 };
                    let header = FrameHeader { kind, flags, stream_id, sequence };
                    let mut framed = BytesMut::with_capacity(header.encode().len() + message.bytes.len());
                    framed.put_slice(&header.encode());
                    framed.put_slice(&message.bytes);
                    framed.freeze()
                }
                None => message.bytes.clone(),
            };
            if !self.credit.take(payload.len(), &self.stop) && self.stop.load(Ordering::Acquire) {
                failure = Some(ErrorBody::new(ErrorCode::Cancelled, "stream cancelled"));
                break;
            }
            sequence += 1;
            total_bytes += message.bytes.len() as u64;
            if self.out.send(Outgoing::Binary(payload)).is_err() {
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
            "stream {request_id} of {:?} ended: {sequence} messages, {total_bytes} bytes, error {:?}",
            self.dataset,
            failure.as_ref().map(|error| &error.message)
        );
        self.send(ConnectorMessage::StreamEnd { request_id, total_bytes, stream_id: self.stream_id, error: failure });
    }
}
