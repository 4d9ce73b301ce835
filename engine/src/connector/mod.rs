//! A connector tunnel: `/ws/connect` after the upgrade.
//!
//! The conversation's rules — streams by id, request ids, the level-1
//! queue, credit, cancel, end — are the protocol crate's
//! [`GatewayEnd`]; this module is its IO:
//! - `mod.rs`: the tunnel's task — `register`, then the read loop, teardown;
//! - `register`: the first message and the credential it carries;
//! - `frames`: binary frames to the streams' subscribers (the hot path:
//!   read → [`SharedFrame`](crate::frame::SharedFrame) → [`Worker::route`]);
//! - `commands`: what the connector's text messages mean for the streams,
//!   registry commands (`Open`, `Cancel`, `Credit`, `Close`) turned into
//!   messages to the connector, and the heartbeat.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

mod commands;
mod frames;
mod register;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use volley_protocol::message::{ErrorBody, ErrorCode, RegisterOk, RegisterReply};
use volley_protocol::tunnel::GatewayEnd;
use volley_protocol::ws::{FrameDecoder, Message, MessageAssembler, Role};
use volley_protocol::Codec;

use crate::conn::transport::{ConnRead, ConnWrite};
use crate::conn::{ConnCtl, Ring, WsReader};
use crate::connection::{answer, finish, spawn_writer, Read};
use crate::frame::Level;
use crate::mailbox::Mailbox;
use crate::registry::{ConnectorCmd, ConnectorHandle, Stream};
use crate::retained::RetainLimits;
use crate::worker::Worker;

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

/// One registered tunnel, shared by its reader, command and heartbeat tasks.
struct Tunnel {
    handle: Arc<ConnectorHandle>,
    ring: Rc<RefCell<Ring>>,
    /// The conversation; each stream's value is its registry entry.
    conversation: RefCell<GatewayEnd<Arc<Stream>>>,
    last_seen: Cell<Instant>,
    /// What its live streams keep for joiners, from the configuration
    /// once (the frame path reads it per frame). Its window is also
    /// `do_get`'s `history_bytes`, so the first subscriber gets no more
    /// history than a later one is replayed (PROTOCOL.md §5.2).
    retain_limits: RetainLimits,
}

impl Tunnel {
    /// Runs `f` on the conversation, then queues what it has to send.
    fn converse<R>(&self, f: impl FnOnce(&mut GatewayEnd<Arc<Stream>>) -> R) -> R {
        let mut conversation = self.conversation.borrow_mut();
        let result = f(&mut conversation);
        let mut ring = self.ring.borrow_mut();
        while let Some(transmit) = conversation.poll_transmit() {
            ring.push_text(&transmit.to_json());
        }
        result
    }

    /// The registry entry of an open stream.
    fn stream(&self, stream_id: u32) -> Option<Arc<Stream>> {
        self.conversation.borrow().stream(stream_id).cloned()
    }
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
    let limits = shared.config.limits.protocol.clone();
    // A tunnel's ring carries control messages only: its cap is its budget.
    let ring =
        Rc::new(RefCell::new(Ring::new(TUNNEL_RING_BYTES_MAX, TUNNEL_RING_BYTES_MAX, shared.ring_totals.clone())));
    let writer = spawn_writer(&worker, "tunnel writer", ring.clone(), write, ctl.clone(), |_, _| {});
    // Until `register` succeeds the peer is unauthenticated: it may send
    // nothing larger than a control message (a larger frame is refused with
    // 1009 on its header, before anything is allocated for it), into a small
    // read buffer. The connector limits apply once it is registered.
    let decoder = FrameDecoder::new(Role::Server, limits.control_message_bytes_max);
    let assembler =
        MessageAssembler::new(limits.control_message_bytes_max, limits.control_message_bytes_max, limits.fragments_max);
    let mut reader = WsReader::new(read, leftover, decoder, assembler, CONNECTOR_REGISTER_CHUNK_BYTES, ctl.clone());

    let Some((register, credential)) = register::accept(&worker, &mut reader, &ring).await else {
        finish(&ctl, &ring, writer).await;
        return;
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
    let credit_bytes = shared.config.limits.credit_bytes;
    let reply = RegisterReply::Ok(RegisterOk {
        session_id: format!("c-{}", handle.id),
        protocol: (level == Level::Two).then_some(2),
        heartbeat_seconds: (level == Level::Two).then_some(shared.config.limits.heartbeat_seconds),
        credit_bytes: (level == Level::Two).then_some(credit_bytes),
    });
    ring.borrow_mut().push_text(&reply.to_json());
    ctl.mark_ready();
    shared.registry.add_connector(handle.clone());
    // The cluster's directory writes the registration (a new epoch) now.
    shared.cluster.as_ref().inspect(|directory| directory.wake());
    // New slots: queries waiting for one may have them.
    worker.admit_queued(&handle.tenant);
    log::info!(
        "connector c-{} registered: tenant {:?}, level {}, datasets {:?}, compression {:?}",
        handle.id,
        handle.tenant,
        if level == Level::Two { 2 } else { 1 },
        handle.datasets,
        handle.compression
    );

    let conversation =
        GatewayEnd::new(level == Level::Two, credit_bytes, limits.connector_frame_bytes_max, limits.id_bytes_max);
    let tunnel = Rc::new(Tunnel {
        handle: handle.clone(),
        ring: ring.clone(),
        conversation: RefCell::new(conversation),
        last_seen: Cell::new(Instant::now()),
        retain_limits: RetainLimits::from_config(&shared.config),
    });
    // Until the teardown below has run, dropping this task (a panic) still
    // takes the tunnel out of the registry and ends its streams.
    let mut registered = Registered { worker: worker.clone(), tunnel: tunnel.clone(), ctl: ctl.clone(), done: false };
    let commands = crate::task::spawn(&worker, "tunnel commands", commands::command_loop(tunnel.clone(), ctl.clone()));
    let heartbeat = crate::task::spawn(
        &worker,
        "tunnel heartbeat",
        commands::heartbeat(worker.clone(), tunnel.clone(), ctl.clone()),
    );

    loop {
        let read = reader.next().await;
        let read_at = Instant::now();
        // Any frame, control frames included, is a sign of life.
        if matches!(read, Ok(Some(_))) {
            tunnel.last_seen.set(read_at);
        }
        let message = match answer(read, &ring) {
            Read::Data(message) => message,
            Read::Control => continue,
            Read::End => break,
        };
        match message {
            Message::Binary(payload) => {
                if let Err(violation) = frames::on_binary(&worker, &tunnel, payload, read_at).await {
                    log::warn!("connector c-{}: {violation}", handle.id);
                    ring.borrow_mut().push_close(violation.close_code, &violation.message);
                    break;
                }
            }
            Message::Text(text) => {
                let text = std::str::from_utf8(&text).unwrap_or_default();
                commands::on_text(&worker, &tunnel, text).await;
            }
            _ => {}
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
    shared.cluster.as_ref().inspect(|directory| directory.wake());
    handle.mailbox.close();
    end_orphans(&worker, &tunnel).await;
    registered.done = true;
    finish(&ctl, &ring, writer).await;
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
    let mut orphans: Vec<Arc<Stream>> =
        tunnel.conversation.borrow_mut().drain().into_iter().map(|(_, stream, _)| stream).collect();
    let mut pending = Vec::new();
    handle.mailbox.recv_batch(&mut pending, usize::MAX).await;
    for cmd in pending {
        if let ConnectorCmd::Open(stream) = cmd {
            orphans.push(stream);
        }
    }
    for stream in orphans {
        worker.end_stream(&stream, 0, Some(gone.clone())).await;
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
