//! A tunnel's control side: what the connector's text messages mean for the
//! streams, the registry's commands turned into messages to the connector,
//! and the heartbeat.

use std::rc::Rc;
use std::time::{Duration, Instant};

use volley_protocol::tunnel::{OpenStream, TunnelEvent, UNCOUNTED_CREDIT};
use volley_protocol::ws::{close_code, encode_frame, OpCode};

use super::{Tunnel, COMMANDS_BATCH_MAX};
use crate::conn::writev::OutItem;
use crate::conn::{ConnCtl, KillOnDrop};
use crate::registry::ConnectorCmd;
use crate::worker::{StreamEvent, Worker, WorkerMsg};

/// One text message from the connector.
pub async fn on_text(worker: &Rc<Worker>, tunnel: &Rc<Tunnel>, text: &str) {
    let Some(event) = tunnel.converse(|conversation| conversation.handle_text(text)) else { return };
    match event {
        TunnelEvent::Described { stream_id, schema, records } => {
            let Some(stream) = tunnel.stream(stream_id) else { return };
            // A shared query's readers get it from its log, whenever they join.
            let mask = {
                let mut state = stream.state.lock();
                if let Some(log) = state.share.as_mut() {
                    log.set_info(schema.clone(), records);
                }
                stream.destinations()
            };
            stream.share_changed();
            let event = StreamEvent::FlightInfo { schema, records };
            worker.route(mask, WorkerMsg::Event(stream_id, event)).await;
        }
        TunnelEvent::Started { stream_id, schema } => {
            let Some(stream) = tunnel.stream(stream_id) else { return };
            // Mask read under the lock that late joiners take, so each
            // subscriber gets exactly one stream_start.
            let mask = {
                let mut state = stream.state.lock();
                state.started = true;
                state.schema_b64 = Some(schema.clone());
                if let Some(log) = state.share.as_mut() {
                    log.set_schema(schema.clone());
                }
                stream.destinations()
            };
            stream.share_changed();
            worker.route(mask, WorkerMsg::Event(stream_id, StreamEvent::Start { schema })).await;
        }
        TunnelEvent::Ended { value: stream, total_bytes, error, .. } => {
            worker.end_stream(&stream, total_bytes, error).await;
        }
        TunnelEvent::Reported(error) => {
            log::warn!("connector c-{} reported: {} {}", tunnel.handle.id, error.code, error.message);
        }
        TunnelEvent::Refused(error) => {
            log::warn!("connector c-{}: bad message: {}: {}", tunnel.handle.id, error.code, error.message);
        }
    }
}

/// Turns the registry's commands for this tunnel into the conversation's inputs.
pub async fn command_loop(tunnel: Rc<Tunnel>, ctl: Rc<ConnCtl>) {
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
                    // Ended while it waited in the mailbox: nobody reads it.
                    if stream.state.lock().ended {
                        continue;
                    }
                    let open = OpenStream {
                        dataset: stream.dataset.clone(),
                        live: stream.live,
                        compression: stream.compression,
                        // The first subscriber gets no more history than
                        // the window a later one is replayed (§5.2).
                        history_bytes: stream
                            .live
                            .then(|| u64::try_from(tunnel.retain_limits.window_bytes_max).unwrap_or(u64::MAX)),
                    };
                    let opened = tunnel.converse(|conversation| conversation.open(stream.id, open, stream.clone()));
                    debug_assert!(opened.is_ok(), "stream ids are unique in the gateway");
                }
                ConnectorCmd::Cancel(stream_id) => {
                    // Unblock a level-1 reader waiting for readers that left.
                    if let Some(stream) = tunnel.stream(stream_id) {
                        stream.return_credit(UNCOUNTED_CREDIT);
                    }
                    tunnel.converse(|conversation| conversation.cancel(stream_id));
                }
                ConnectorCmd::Credit { stream_id, bytes } => {
                    tunnel.converse(|conversation| conversation.credit(stream_id, bytes));
                }
                ConnectorCmd::Close { code, reason } => {
                    tunnel.ring.borrow_mut().push_close(code, &reason);
                }
            }
        }
    }
}

/// Why a draining gateway asks its connectors to move (`reconnect`'s reason).
pub const DRAIN_REASON: &str = "gateway draining (SIGTERM): moving to another gateway";

/// Pings the connector and closes a tunnel that stopped answering; once the
/// gateway drains, asks the connector to move (`reconnect`, once).
pub async fn heartbeat(worker: Rc<Worker>, tunnel: Rc<Tunnel>, ctl: Rc<ConnCtl>) {
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
        if worker.shared.is_draining() {
            let grace = worker.shared.config.shutdown_grace_seconds;
            if tunnel.converse(|conversation| conversation.reconnect(DRAIN_REASON, grace)) {
                log::info!("connector c-{}: asked to move to another gateway (draining)", tunnel.handle.id);
            }
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
