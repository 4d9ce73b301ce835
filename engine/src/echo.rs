//! Test-only `/echo` WebSocket route (config `test_echo_route: true`): echoes
//! every message through the engine's own codec, reader and writer, so the
//! Autobahn conformance suite exercises exactly the code browsers meet.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;
use volley_protocol::ws::{close_code, encode_frame, FrameDecoder, Message, MessageAssembler, OpCode, Role};

use crate::conn::transport::{ConnRead, ConnWrite};
use crate::conn::writev::OutItem;
use crate::conn::{run_writer, ConnCtl, KillOnDrop, ReadError, Ring, WsReader};
use crate::worker::Worker;

/// Echo read buffer.
pub const ECHO_READ_CHUNK_BYTES: usize = 64 * 1024;

/// Echoes until the peer closes.
pub async fn run<R: ConnRead, W: ConnWrite + 'static>(
    worker: Rc<Worker>,
    read: R,
    write: W,
    leftover: BytesMut,
    ctl: Rc<ConnCtl>,
) {
    let limits = worker.shared.config.limits.protocol.clone();
    // Everything echoed is control output here: the cap is the budget.
    let budget = limits.message_bytes_max * 2;
    let ring = Rc::new(RefCell::new(Ring::new(budget, budget, worker.shared.ring_totals.clone())));
    let writer = {
        let ring = ring.clone();
        let ctl = ctl.clone();
        crate::task::spawn(&worker, "echo writer", async move {
            let _kill = KillOnDrop::new(ctl.clone());
            let _ = run_writer(ring, write, ctl, |_, _| {}).await;
        })
    };
    let decoder = FrameDecoder::new(Role::Server, limits.message_bytes_max);
    let assembler = MessageAssembler::new(limits.message_bytes_max, limits.message_bytes_max, usize::MAX);
    let mut reader = WsReader::new(read, leftover, decoder, assembler, ECHO_READ_CHUNK_BYTES, ctl.clone());
    loop {
        Ring::wait_for_room(&ring).await;
        let message = match reader.next().await {
            Ok(Some(message)) => message,
            Ok(None) | Err(ReadError::Io(_)) => break,
            Err(ReadError::Ws(e)) => {
                ring.borrow_mut().push_close(e.close_code(), "");
                break;
            }
        };
        let mut ring = ring.borrow_mut();
        match message {
            Message::Text(payload) => ring.push(OutItem::Encoded(encode_frame(OpCode::Text, &payload))),
            Message::Binary(payload) => ring.push(OutItem::Encoded(encode_frame(OpCode::Binary, &payload))),
            Message::Ping(payload) => ring.push(OutItem::Encoded(encode_frame(OpCode::Pong, &payload))),
            Message::Pong(_) => {}
            Message::Close(close) => {
                ring.push_close(close.map(|(code, _)| code).unwrap_or(close_code::NORMAL), "");
                break;
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !ctl.killed() && ring.borrow().bytes() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    ctl.kill();
    ring.borrow_mut().wake();
    let _ = writer.await;
}
