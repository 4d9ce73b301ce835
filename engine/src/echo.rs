//! Test-only `/echo` WebSocket route (config `test_echo_route: true`): echoes
//! every message through the engine's own codec, reader and writer, so the
//! Autobahn conformance suite exercises exactly the code browsers meet.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;
use volley_protocol::ws::{encode_frame, FrameDecoder, Message, MessageAssembler, OpCode, Role};

use crate::conn::transport::{ConnRead, ConnWrite};
use crate::conn::writev::OutItem;
use crate::conn::{ConnCtl, Ring, WsReader};
use crate::connection::{answer, finish, spawn_writer, Read};
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
    let writer = spawn_writer(&worker, "echo writer", ring.clone(), write, ctl.clone(), |_, _| {});
    let decoder = FrameDecoder::new(Role::Server, limits.message_bytes_max);
    let assembler = MessageAssembler::new(limits.message_bytes_max, limits.message_bytes_max, usize::MAX);
    let mut reader = WsReader::new(read, leftover, decoder, assembler, ECHO_READ_CHUNK_BYTES, ctl.clone());
    loop {
        Ring::wait_for_room(&ring).await;
        let message = match answer(reader.next().await, &ring) {
            Read::Data(message) => message,
            Read::Control => continue,
            Read::End => break,
        };
        let (opcode, payload) = match &message {
            Message::Text(payload) => (OpCode::Text, payload),
            Message::Binary(payload) => (OpCode::Binary, payload),
            _ => continue,
        };
        ring.borrow_mut().push(OutItem::Encoded(encode_frame(opcode, payload)));
    }
    finish(&ctl, &ring, writer).await;
}
