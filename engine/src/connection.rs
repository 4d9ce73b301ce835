//! The life every WebSocket connection of the engine shares — connector
//! tunnels, browser sessions and the echo route — so it is written once:
//! - [`spawn_writer`]: the writer task that drains the connection's ring
//!   (and kills the connection when it ends, however it ends);
//! - [`answer`]: what a read means — a text or binary message to handle, or
//!   a control frame answered here (ping → pong, close → close echoed, a
//!   broken frame → the close code RFC 6455 asks for);
//! - [`finish`]: the end — a close frame queued last, the writer given
//!   [`DRAIN_MAX`] to send what is queued, woken as it writes (never
//!   polled), then the connection killed.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use volley_protocol::ws::{close_code, encode_frame, Message, OpCode};

use crate::conn::transport::ConnWrite;
use crate::conn::writev::OutItem;
use crate::conn::{run_writer, ConnCtl, KillOnDrop, ReadError, Ring};
use crate::worker::Worker;

/// How long a connection's end waits for its writer to send what is
/// queued, the close frame last, before the connection is killed.
pub const DRAIN_MAX: Duration = Duration::from_secs(1);

/// Spawns the connection's writer (named `what` in logs): it drains `ring`
/// into `write`, `on_written` seeing each written batch with the ring's
/// occupancy when it was taken. The writer ending — the ring closed and
/// drained, a failed write, a panic — kills the connection.
pub fn spawn_writer<W, F>(
    worker: &Rc<Worker>,
    what: &'static str,
    ring: Rc<RefCell<Ring>>,
    write: W,
    ctl: Rc<ConnCtl>,
    on_written: F,
) -> monoio::task::JoinHandle<()>
where
    W: ConnWrite + 'static,
    F: FnMut(&[OutItem], usize) + 'static,
{
    // The task keeps only what it needs while idle: `what` stays with the
    // task's panic guard, not in this block (16 bytes per idle session).
    crate::task::spawn(worker, what, async move {
        let _kill = KillOnDrop::new(ctl.clone());
        if let Err(e) = run_writer(ring, write, ctl, on_written).await {
            log::debug!("a connection's writer ended: {e}");
        }
    })
}

/// What a connection does with one read ([`answer`]).
#[derive(Debug)]
pub enum Read {
    /// A text or binary message, for the connection to handle.
    Data(Message),
    /// A control frame, answered; read on.
    Control,
    /// The connection is ending (the peer closed or broke the protocol, or
    /// an answer passed the control cap); read no more.
    End,
}

/// Answers what the reader returned, the same way on every connection:
/// pings with their pong, a close with the close echoed, a frame that
/// breaks RFC 6455 or a limit with its close code and reason. A function
/// the read loop calls on each read, not an async wrapper around the read,
/// so an idle connection's task holds no extra future state.
pub fn answer(read: Result<Option<Message>, ReadError>, ring: &RefCell<Ring>) -> Read {
    let message = match read {
        Ok(Some(message)) => message,
        Ok(None) | Err(ReadError::Io(_)) => return Read::End,
        Err(ReadError::Ws(e)) => {
            ring.borrow_mut().push_close(e.close_code(), &e.to_string());
            return Read::End;
        }
    };
    match message {
        Message::Ping(payload) => {
            let mut ring = ring.borrow_mut();
            ring.push(OutItem::Encoded(encode_frame(OpCode::Pong, &payload)));
            // A pong past the control cap closed the connection.
            if ring.is_closing() {
                Read::End
            } else {
                Read::Control
            }
        }
        Message::Pong(_) => Read::Control,
        Message::Close(close) => {
            let code = close.map(|(code, _)| code).unwrap_or(close_code::NORMAL);
            ring.borrow_mut().push_close(code, "");
            Read::End
        }
        data @ (Message::Text(_) | Message::Binary(_)) => Read::Data(data),
    }
}

/// Ends a connection: a normal close is queued unless a close already is,
/// the writer gets [`DRAIN_MAX`] to send everything queued (it ends by
/// itself once the close frame is out), then the connection is killed and
/// the writer awaited.
pub async fn finish(ctl: &ConnCtl, ring: &RefCell<Ring>, mut writer: monoio::task::JoinHandle<()>) {
    ring.borrow_mut().push_close(close_code::NORMAL, "");
    let sent = !ctl.killed() && monoio::time::timeout(DRAIN_MAX, &mut writer).await.is_ok();
    ctl.kill();
    if !sent {
        ring.borrow_mut().wake();
        let _ = writer.await;
    }
}
