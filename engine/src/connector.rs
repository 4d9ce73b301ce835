//! A connector tunnel: `/ws/connect` after the upgrade.
//!
//! The reader task parses `register`, then relays the connector's answers
//! and binary frames to the streams' subscribers (the hot path: read →
//! [`SharedFrame`] → [`Worker::route`]). A command task turns registry
//! commands (`Open`, `Cancel`, `Credit`, `Close`) into messages to the
//! connector. Level-1 tunnels serve one stream at a time, queued in order.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::message::{
    ConnectorMessage, Descriptor, ErrorBody, ErrorCode, GatewayCommand, Register, RegisterOk, RegisterReply,
};
use volley_protocol::token::{verify_connector, Validation};
use volley_protocol::ws::{close_code, encode_frame, FrameDecoder, Message, MessageAssembler, OpCode, Role};
use volley_protocol::Codec;

use crate::conn::{run_writer, ConnCtl, KillOnDrop, ReadError, Ring, WsReader};
use crate::frame::{Level, SharedFrame};
use crate::mailbox::Mailbox;
use crate::registry::{ConnectorCmd, ConnectorHandle, Stream};
use crate::retained::{RetainLimits, RetainRefused};
use crate::transport::{ConnRead, ConnWrite};
use crate::worker::{StreamEvent, Worker, WorkerMsg};
use crate::writev::OutItem;

/// Read buffer size for tunnels: many small frames per read; frames larger
/// than this get a buffer of their own size.
pub const CONNECTOR_READ_CHUNK_BYTES: usize = 256 * 1024;
/// Read buffer size of a tunnel until `register` succeeded: a register with
/// a token and a few datasets fits; a longer one gets a buffer of its exact
/// size, at most `limits.control_message_bytes_max` (the frame limit until
/// then). An unauthenticated socket holds no more than that.
pub const CONNECTOR_REGISTER_CHUNK_BYTES: usize = 2048;
const _: () = assert!(CONNECTOR_REGISTER_CHUNK_BYTES < CONNECTOR_READ_CHUNK_BYTES);
// Tunnels align their reads on frames (`conn::ReadShape`).
const _: () = assert!(CONNECTOR_READ_CHUNK_BYTES >= crate::conn::READ_ALIGN_MIN_CHUNK_BYTES);
/// Commands drained per wake.
pub const COMMANDS_BATCH_MAX: usize = 64;
/// Budget of a tunnel's outgoing ring (control messages only).
pub const TUNNEL_RING_BYTES_MAX: usize = 1 << 20;

struct TunnelStream {
    stream: Arc<Stream>,
    sequence: u64,
    total_bytes: u64,
}

struct Tunnel {
    handle: Arc<ConnectorHandle>,
    ring: Rc<RefCell<Ring>>,
    streams: RefCell<HashMap<u32, TunnelStream>>,
    /// Level 1: streams waiting for the tunnel, and the one being served.
    queue: RefCell<VecDeque<Arc<Stream>>>,
    current: Cell<Option<u32>>,
    last_seen: Cell<Instant>,
}

impl Tunnel {
    fn send(&self, command: &GatewayCommand) {
        self.ring.borrow_mut().push_text(&command.to_json());
    }
}

fn stream_id_of(request_id: &str) -> Option<u32> {
    request_id.get(1..).and_then(|n| n.parse().ok())
}

/// Serves one upgraded connector connection until it closes.
pub async fn run<R: ConnRead, W: ConnWrite + 'static>(
    worker: Rc<Worker>,
    read: R,
    write: W,
    leftover: BytesMut,
    ctl: Rc<ConnCtl>,
) {
    let shared = worker.shared.clone();
    let limits = shared.limits.clone();
    // A tunnel's ring carries control messages only: its cap is its budget.
    let ring =
        Rc::new(RefCell::new(Ring::new(TUNNEL_RING_BYTES_MAX, TUNNEL_RING_BYTES_MAX, shared.ring_totals.clone())));
    let writer = {
        let ctl = ctl.clone();
        let ring = ring.clone();
        crate::task::spawn(&worker, "tunnel writer", async move {
            let _kill = KillOnDrop::new(ctl.clone());
            let _ = run_writer(ring, write, ctl, |_, _| {}).await;
        })
    };
    // Until `register` succeeds the peer is unauthenticated: it may send
    // nothing larger than a control message (a larger frame is refused with
    // 1009 on its header, before anything is allocated for it), into a small
    // read buffer. The connector limits apply once it is registered.
    let decoder = FrameDecoder::new(Role::Server, limits.control_message_bytes_max);
    let assembler =
        MessageAssembler::new(limits.control_message_bytes_max, limits.control_message_bytes_max, limits.fragments_max);
    let mut reader = WsReader::new(read, leftover, decoder, assembler, CONNECTOR_REGISTER_CHUNK_BYTES, ctl.clone());

    // First message: register.
    let register = match reader.next().await {
        Ok(Some(Message::Text(text))) => {
            let text = std::str::from_utf8(&text).unwrap_or_default();
            match ConnectorMessage::parse(text, limits.id_bytes_max) {
                Ok(ConnectorMessage::Register(register)) => Some(register),
                Ok(_) => {
                    refuse(&ring, ErrorCode::BadRequest, "the first message on a tunnel must be register");
                    None
                }
                Err(e) => {
                    refuse(&ring, e.code, &e.message);
                    None
                }
            }
        }
        Ok(Some(_)) => {
            refuse(&ring, ErrorCode::BadRequest, "the first message on a tunnel must be a text register");
            None
        }
        Ok(None) | Err(ReadError::Io(_)) => None,
        Err(ReadError::Ws(e)) => {
            ring.borrow_mut().push_close(e.close_code(), &e.to_string());
            None
        }
    };
    let Some(register) = register else {
        finish(ctl, ring, writer).await;
        return;
    };
    let credential = match authenticate(&worker, &register) {
        Ok(credential) => credential,
        Err((code, message)) => {
            log::warn!("connector for tenant {:?} refused: {message}", register.tenant_id);
            refuse(&ring, code, &message);
            finish(ctl, ring, writer).await;
            return;
        }
    };
    reader.set_limits(limits.connector_frame_bytes_max, limits.message_bytes_max, CONNECTOR_READ_CHUNK_BYTES);
    let level = if register.protocol == Some(2) { Level::Two } else { Level::One };
    let handle = Arc::new(ConnectorHandle {
        id: shared.next_id(),
        tenant: register.tenant_id.clone(),
        worker: worker.index,
        level,
        datasets: register.datasets.clone(),
        live: register.live.iter().filter(|d| register.datasets.contains(d)).cloned().collect(),
        compression: Codec::known(&register.compression),
        mailbox: Mailbox::new(shared.config.limits.connector_queue_max),
        active_streams: Default::default(),
        credential_exp: credential.as_ref().map(|(_, exp)| *exp),
        credential_jti: credential.map(|(jti, _)| jti),
    });
    let reply = RegisterReply::Ok(RegisterOk {
        session_id: format!("c-{}", handle.id),
        protocol: (level == Level::Two).then_some(2),
        heartbeat_seconds: (level == Level::Two).then_some(shared.config.limits.heartbeat_seconds),
        credit_bytes: (level == Level::Two).then_some(shared.config.limits.credit_bytes),
    });
    ring.borrow_mut().push_text(&reply.to_json());
    ctl.mark_ready();
    shared.registry.add_connector(handle.clone());
    log::info!(
        "connector c-{} registered: tenant {:?}, level {}, datasets {:?}, compression {:?}",
        handle.id,
        handle.tenant,
        if level == Level::Two { 2 } else { 1 },
        handle.datasets,
        handle.compression
    );

    let tunnel = Rc::new(Tunnel {
        handle: handle.clone(),
        ring: ring.clone(),
        streams: RefCell::new(HashMap::new()),
        queue: RefCell::new(VecDeque::new()),
        current: Cell::new(None),
        last_seen: Cell::new(Instant::now()),
    });
    // Until the teardown below has run, dropping this task (a panic) still
    // takes the tunnel out of the registry and ends its streams.
    let mut registered = Registered { worker: worker.clone(), tunnel: tunnel.clone(), ctl: ctl.clone(), done: false };
    let commands =
        crate::task::spawn(&worker, "tunnel commands", command_loop(worker.clone(), tunnel.clone(), ctl.clone()));
    let heartbeat =
        crate::task::spawn(&worker, "tunnel heartbeat", heartbeat(worker.clone(), tunnel.clone(), ctl.clone()));

    loop {
        let message = match reader.next().await {
            Ok(Some(message)) => message,
            Ok(None) | Err(ReadError::Io(_)) => break,
            Err(ReadError::Ws(e)) => {
                ring.borrow_mut().push_close(e.close_code(), &e.to_string());
                break;
            }
        };
        let read_at = Instant::now();
        tunnel.last_seen.set(read_at);
        match message {
            Message::Binary(payload) => {
                if let Err((code, text)) = on_binary(&worker, &tunnel, payload, read_at).await {
                    log::warn!("connector c-{}: {text}", handle.id);
                    ring.borrow_mut().push_close(code, &text);
                    break;
                }
            }
            Message::Text(text) => {
                let text = std::str::from_utf8(&text).unwrap_or_default();
                match ConnectorMessage::parse(text, limits.id_bytes_max) {
                    Ok(message) => on_message(&worker, &tunnel, message).await,
                    Err(e) => {
                        log::warn!("connector c-{}: bad message: {e}", handle.id);
                        let error =
                            ConnectorMessage::Error { request_id: None, error: ErrorBody::new(e.code, e.message) };
                        ring.borrow_mut().push_text(&error.to_json());
                    }
                }
            }
            Message::Ping(payload) => ring.borrow_mut().push(OutItem::Encoded(encode_frame(OpCode::Pong, &payload))),
            Message::Pong(_) => {}
            Message::Close(close) => {
                let code = close.map(|(code, _)| code).unwrap_or(close_code::NORMAL);
                ring.borrow_mut().push_close(code, "");
                break;
            }
        }
        // Closing (its replies passed the ring's cap, or a command closed
        // it): nothing more the connector sends is read.
        if ring.borrow().is_closing() {
            break;
        }
    }
    worker.metrics.borrow_mut().read_carry_bytes += reader.carried_bytes;
    log::info!("connector c-{} of tenant {:?} disconnected", handle.id, handle.tenant);
    shared.registry.remove_connector(&handle);
    handle.mailbox.close();
    end_orphans(&worker, &tunnel).await;
    registered.done = true;
    finish(ctl.clone(), ring, writer).await;
    let _ = commands.await;
    let _ = heartbeat.await;
}

/// Ends every stream a closed tunnel carried, queued or running, with
/// `connector_gone`.
async fn end_orphans(worker: &Rc<Worker>, tunnel: &Tunnel) {
    let handle = &tunnel.handle;
    let gone = ErrorBody::new(
        ErrorCode::ConnectorGone,
        format!("the connector serving tenant {:?} disconnected", handle.tenant),
    );
    let mut orphans: Vec<Arc<Stream>> = tunnel.streams.borrow_mut().drain().map(|(_, s)| s.stream).collect();
    orphans.extend(tunnel.queue.borrow_mut().drain(..));
    let mut pending = Vec::new();
    handle.mailbox.recv_batch(&mut pending, usize::MAX).await;
    for cmd in pending {
        if let ConnectorCmd::Open(stream) = cmd {
            orphans.push(stream);
        }
    }
    for stream in orphans {
        end_stream(worker, &stream, 0, Some(gone.clone())).await;
    }
}

/// A registered tunnel whose task has not run its teardown yet. Dropped
/// before that (the task panicked and was dropped), it does the teardown
/// itself: the connection is killed, the tunnel leaves the registry (no
/// query is routed to it again) and its streams end with `connector_gone`
/// in a task of their own.
struct Registered {
    worker: Rc<Worker>,
    tunnel: Rc<Tunnel>,
    ctl: Rc<ConnCtl>,
    done: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.ctl.kill();
        self.worker.shared.registry.remove_connector(&self.tunnel.handle);
        self.tunnel.handle.mailbox.close();
        if self.worker.shared.is_stopping() {
            return;
        }
        let (worker, tunnel) = (self.worker.clone(), self.tunnel.clone());
        crate::task::spawn(&self.worker, "tunnel teardown", async move { end_orphans(&worker, &tunnel).await });
    }
}

async fn finish(ctl: Rc<ConnCtl>, ring: Rc<RefCell<Ring>>, writer: monoio::task::JoinHandle<()>) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !ctl.killed() && ring.borrow().bytes() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    ctl.kill();
    ring.borrow_mut().wake();
    let _ = writer.await;
}

fn refuse(ring: &Rc<RefCell<Ring>>, code: ErrorCode, message: &str) {
    let mut ring = ring.borrow_mut();
    ring.push_text(&RegisterReply::Refused(ErrorBody::new(code, message)).to_json());
    let close = if matches!(
        code,
        ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::TokenExpired | ErrorCode::Revoked
    ) {
        close_code::POLICY_VIOLATION
    } else {
        close_code::PROTOCOL_ERROR
    };
    ring.push_close(close, message);
}

/// Verifies the credential and its revocations; returns its `jti` and `exp`.
fn authenticate(worker: &Worker, register: &Register) -> Result<Option<(String, i64)>, (ErrorCode, String)> {
    let shared = &worker.shared;
    let credential = authenticate_token(worker, register)?;
    let presented = credential.as_ref().map(|(jti, exp)| (jti.as_str(), *exp));
    if shared.revocations.check_connector(presented, &register.tenant_id, crate::clock::unix_now()) {
        return Err((ErrorCode::Revoked, "the tenant or this connector credential is revoked".to_owned()));
    }
    Ok(credential)
}

/// Verifies the credential; returns its `jti` and `exp` (none for a seed-style connector).
fn authenticate_token(worker: &Worker, register: &Register) -> Result<Option<(String, i64)>, (ErrorCode, String)> {
    let shared = &worker.shared;
    match &register.token {
        None if shared.config.allow_unauthenticated_connectors => {
            log::warn!(
                "connector for tenant {:?} registered without a token (allow_unauthenticated_connectors is on)",
                register.tenant_id
            );
            Ok(None)
        }
        // A seed-style connector: name both fixes.
        None => Err((
            ErrorCode::Unauthorized,
            format!(
                "register must carry a connector token: put one from `volley token --connector --tenant {}` in \
                 tenant.token, or set `allow_unauthenticated_connectors: true` on the gateway",
                register.tenant_id.escape_debug()
            ),
        )),
        Some(token) => {
            let secrets: Vec<&[u8]> = shared.connector_secrets.iter().map(Vec::as_slice).collect();
            let validation = Validation {
                secrets: &secrets,
                now: crate::clock::unix_now(),
                leeway_seconds: i64::try_from(shared.limits.token_leeway_seconds).unwrap_or(0),
                token_bytes_max: shared.limits.token_bytes_max,
            };
            let claims =
                verify_connector(token, &validation).map_err(|e| (e.code(), format!("connector token: {e}")))?;
            if claims.cuenta_id != register.tenant_id {
                return Err((ErrorCode::Forbidden, "the connector token belongs to another tenant".to_owned()));
            }
            Ok(Some((claims.jti, claims.exp)))
        }
    }
}

async fn on_binary(
    worker: &Rc<Worker>,
    tunnel: &Rc<Tunnel>,
    payload: Bytes,
    read_at: Instant,
) -> Result<(), (u16, String)> {
    worker.metrics.borrow_mut().frames_in += 1;
    match tunnel.handle.level {
        Level::Two => {
            let header = FrameHeader::decode(&payload)
                .map_err(|e| (close_code::PROTOCOL_ERROR, format!("bad_frame_header: {e}")))?;
            let (stream, mut mask) = {
                let mut streams = tunnel.streams.borrow_mut();
                let Some(entry) = streams.get_mut(&header.stream_id) else {
                    // A cancelled stream's frames may still be in flight: drop them.
                    return Ok(());
                };
                entry.sequence += 1;
                entry.total_bytes += payload.len().saturating_sub(volley_protocol::limits::FRAME_HEADER_BYTES) as u64;
                (entry.stream.clone(), entry.stream.destinations())
            };
            if !stream.live {
                // A level-2 connector sends within its credit (PROTOCOL.md §4.2); one
                // frame of overdraft is allowed. Past that the ring of a stalled
                // browser would grow without bound, so the tunnel is refused.
                let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
                let left = stream.credit_available.fetch_sub(len, Ordering::AcqRel) - len;
                let overdraft_max = i64::try_from(worker.shared.limits.connector_frame_bytes_max).unwrap_or(i64::MAX);
                if left < -overdraft_max {
                    return Err((
                        close_code::POLICY_VIOLATION,
                        format!("stream {} exceeded its credit by {} bytes", header.stream_id, -left),
                    ));
                }
            }
            let frame = SharedFrame::from_level2(payload, header, read_at);
            if stream.live && matches!(header.kind, FrameKind::Schema | FrameKind::Dictionary) {
                let limits = RetainLimits {
                    stream_bytes_max: worker.shared.config.live_retained_bytes_max(),
                    total_bytes_max: worker.shared.config.rings.total_bytes_max,
                };
                let queued = worker.shared.ring_totals.data.load(Ordering::Relaxed);
                let kept = {
                    let mut state = stream.state.lock();
                    // Read under the lock late joiners take: a joiner either finds
                    // this frame in its snapshot or is in the mask (never neither;
                    // both is deduplicated by `LocalSub::snapshot_through`).
                    mask = stream.destinations();
                    if state.ended {
                        Ok(())
                    } else {
                        state.retained.keep(&frame, limits, queued)
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
        Level::One => {
            let Some(stream_id) = tunnel.current.get() else {
                return Err((close_code::PROTOCOL_ERROR, "binary frame outside a stream".to_owned()));
            };
            let (stream, sequence) = {
                let mut streams = tunnel.streams.borrow_mut();
                let Some(entry) = streams.get_mut(&stream_id) else { return Ok(()) };
                let sequence = entry.sequence;
                entry.sequence += 1;
                entry.total_bytes += payload.len() as u64;
                (entry.stream.clone(), sequence)
            };
            let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
            let frame = SharedFrame::from_level1(payload, stream_id, sequence, read_at);
            worker.route(stream.destinations(), WorkerMsg::Frame(frame)).await;
            // Level-1 flow control: stop reading the socket until browsers drain.
            let left = stream.credit_available.fetch_sub(len, Ordering::AcqRel) - len;
            if left <= 0 {
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
            Ok(())
        }
    }
}

/// A live stream's schema and dictionaries passed what the gateway keeps
/// (PROTOCOL.md §5.2): the stream ends for its subscribers with
/// `retained_limit` and is cancelled upstream; the tunnel's other streams go on.
async fn retained_limit(worker: &Rc<Worker>, tunnel: &Rc<Tunnel>, stream: &Arc<Stream>, refused: RetainRefused) {
    log::warn!("connector c-{}: live stream {} of {:?} ended: {refused}", tunnel.handle.id, stream.id, stream.dataset);
    let total = tunnel.streams.borrow_mut().remove(&stream.id).map(|entry| entry.total_bytes).unwrap_or(0);
    tunnel.send(&GatewayCommand::Cancel { request_id: format!("r{}", stream.id) });
    let error = ErrorBody::new(
        ErrorCode::RetainedLimit,
        format!("{refused}: the live stream was ended and cancelled upstream; {}", refused.advice()),
    );
    end_stream(worker, stream, total, Some(error)).await;
}

async fn on_message(worker: &Rc<Worker>, tunnel: &Rc<Tunnel>, message: ConnectorMessage) {
    match message {
        ConnectorMessage::FlightInfo { request_id, data } => {
            let Some(id) = stream_id_of(&request_id) else { return };
            let Some(stream) = tunnel.streams.borrow().get(&id).map(|s| s.stream.clone()) else { return };
            worker
                .route(
                    stream.destinations(),
                    WorkerMsg::Event(id, StreamEvent::FlightInfo { schema: data.schema, records: data.records }),
                )
                .await;
            let level2 = tunnel.handle.level == Level::Two;
            tunnel.send(&GatewayCommand::DoGet {
                request_id: format!("r{id}"),
                ticket: stream.dataset.clone(),
                stream_id: level2.then_some(id),
                credit_bytes: (level2 && !stream.live).then_some(worker.shared.config.limits.credit_bytes),
                live: stream.live,
                compression: stream.compression.map(|codec| codec.as_str().to_owned()),
            });
        }
        ConnectorMessage::StreamStart { request_id, schema, .. } => {
            let Some(id) = stream_id_of(&request_id) else { return };
            let Some(stream) = tunnel.streams.borrow().get(&id).map(|s| s.stream.clone()) else { return };
            // Mask read under the lock that late joiners take, so each
            // subscriber gets exactly one stream_start.
            let mask = {
                let mut state = stream.state.lock();
                state.started = true;
                state.schema_b64 = Some(schema.clone());
                stream.destinations()
            };
            worker.route(mask, WorkerMsg::Event(id, StreamEvent::Start { schema })).await;
        }
        ConnectorMessage::StreamEnd { request_id, total_bytes, error, .. } => {
            let Some(id) = stream_id_of(&request_id) else { return };
            let entry = tunnel.streams.borrow_mut().remove(&id);
            if let Some(entry) = entry {
                let total = if total_bytes > 0 { total_bytes } else { entry.total_bytes };
                end_stream(worker, &entry.stream, total, error).await;
            }
            if tunnel.current.get() == Some(id) {
                tunnel.current.set(None);
                start_next(worker, tunnel);
            }
        }
        ConnectorMessage::Error { request_id, error } => {
            let Some(id) = request_id.as_deref().and_then(stream_id_of) else {
                log::warn!("connector c-{} reported: {} {}", tunnel.handle.id, error.code, error.message);
                return;
            };
            let entry = tunnel.streams.borrow_mut().remove(&id);
            if let Some(entry) = entry {
                end_stream(worker, &entry.stream, 0, Some(error)).await;
            }
            if tunnel.current.get() == Some(id) {
                tunnel.current.set(None);
                start_next(worker, tunnel);
            }
        }
        ConnectorMessage::Ping => tunnel.ring.borrow_mut().push_text(r#"{"type":"pong"}"#),
        ConnectorMessage::Pong => {}
        ConnectorMessage::Register(_) => {
            let error = ConnectorMessage::Error {
                request_id: None,
                error: ErrorBody::new(ErrorCode::BadRequest, "already registered"),
            };
            tunnel.ring.borrow_mut().push_text(&error.to_json());
        }
    }
}

async fn end_stream(worker: &Rc<Worker>, stream: &Arc<Stream>, total_bytes: u64, error: Option<ErrorBody>) {
    let mask = stream.destinations();
    worker.shared.registry.end_stream(stream);
    worker.route(mask, WorkerMsg::Event(stream.id, StreamEvent::End { total_bytes, error })).await;
}

fn begin(worker: &Rc<Worker>, tunnel: &Rc<Tunnel>, stream: Arc<Stream>) {
    let id = stream.id;
    if stream.state.lock().ended {
        return;
    }
    tunnel.streams.borrow_mut().insert(id, TunnelStream { stream: stream.clone(), sequence: 0, total_bytes: 0 });
    if tunnel.handle.level == Level::One {
        tunnel.current.set(Some(id));
    }
    let _ = worker;
    tunnel.send(&GatewayCommand::GetFlightInfo {
        request_id: format!("f{id}"),
        descriptor: Descriptor { path: vec![stream.dataset.clone()] },
    });
}

fn start_next(worker: &Rc<Worker>, tunnel: &Rc<Tunnel>) {
    while tunnel.current.get().is_none() {
        let Some(stream) = tunnel.queue.borrow_mut().pop_front() else { return };
        if stream.state.lock().ended {
            continue;
        }
        begin(worker, tunnel, stream);
    }
}

async fn command_loop(worker: Rc<Worker>, tunnel: Rc<Tunnel>, ctl: Rc<ConnCtl>) {
    // Killed only if dropped mid-way (a panic): at its normal end the
    // tunnel is closing and its close frame must still go out.
    let mut kill = KillOnDrop::new(ctl.clone());
    let mut batch = Vec::new();
    loop {
        batch.clear();
        if tunnel.handle.mailbox.recv_batch(&mut batch, COMMANDS_BATCH_MAX).await == 0 || ctl.killed() {
            kill.disarm();
            return;
        }
        for cmd in batch.drain(..) {
            match cmd {
                ConnectorCmd::Open(stream) => {
                    if tunnel.handle.level == Level::One && tunnel.current.get().is_some() {
                        tunnel.queue.borrow_mut().push_back(stream);
                    } else {
                        begin(&worker, &tunnel, stream);
                    }
                }
                ConnectorCmd::Cancel(id) => {
                    tunnel.queue.borrow_mut().retain(|s| s.id != id);
                    let known = tunnel.streams.borrow().get(&id).map(|s| s.stream.clone());
                    if let Some(stream) = known {
                        tunnel.send(&GatewayCommand::Cancel { request_id: format!("r{id}") });
                        // Unblock a level-1 reader waiting for credit nobody will return.
                        stream.return_credit(u64::MAX / 4);
                        if tunnel.handle.level == Level::Two {
                            tunnel.streams.borrow_mut().remove(&id);
                        }
                    }
                }
                ConnectorCmd::Credit { stream_id, bytes } => {
                    let known = tunnel.streams.borrow().get(&stream_id).map(|s| s.stream.clone());
                    if let Some(stream) = known {
                        stream.return_credit(bytes);
                        tunnel.send(&GatewayCommand::Credit { stream_id, bytes });
                    }
                }
                ConnectorCmd::Close { code, reason } => {
                    tunnel.ring.borrow_mut().push_close(code, &reason);
                }
            }
        }
    }
}

async fn heartbeat(worker: Rc<Worker>, tunnel: Rc<Tunnel>, ctl: Rc<ConnCtl>) {
    let _kill = KillOnDrop::new(ctl.clone());
    let limits = &worker.shared.config.limits;
    let interval = Duration::from_secs(limits.heartbeat_seconds);
    let allowance = interval * limits.heartbeat_misses_max.max(1);
    let tick = Duration::from_millis(250).min(interval);
    let mut last_ping = Instant::now();
    loop {
        monoio::time::sleep(tick).await;
        if ctl.killed() {
            return;
        }
        if tunnel.last_seen.get().elapsed() > allowance {
            log::warn!("connector c-{}: no heartbeat for {:?}, closing", tunnel.handle.id, allowance);
            tunnel.ring.borrow_mut().push_close(close_code::HEARTBEAT_TIMEOUT, "heartbeat timeout");
            monoio::time::sleep(Duration::from_millis(200)).await;
            ctl.kill();
            return;
        }
        if last_ping.elapsed() >= interval {
            last_ping = Instant::now();
            tunnel.ring.borrow_mut().push(OutItem::Encoded(encode_frame(OpCode::Ping, b"")));
        }
    }
}
