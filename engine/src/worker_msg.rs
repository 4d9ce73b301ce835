//! What workers send each other, and what the revocation feed and the
//! gateway send every worker: [`WorkerMsg`], through each worker's inbox
//! ([`crate::mailbox::Mailbox`]).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::sync::Arc;
use std::time::Duration;

use volley_protocol::message::ErrorBody;

use crate::frame::SharedFrame;
use crate::registry::{Opened, Subscriber};
use crate::revocation::Revocation;

/// A stream-level event, turned into one browser message per local subscriber.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// `get_flight_info` answered.
    FlightInfo {
        /// Base64 schema.
        schema: String,
        /// Rows, -1 unknown.
        records: i64,
    },
    /// `stream_start`.
    Start {
        /// Base64 schema.
        schema: String,
    },
    /// `stream_end`, or the stream failed.
    End {
        /// IPC bytes.
        total_bytes: u64,
        /// Failure.
        error: Option<ErrorBody>,
    },
}

/// What workers send each other.
#[derive(Debug, Clone)]
pub enum WorkerMsg {
    /// A frame for the local subscribers of its stream.
    Frame(Arc<SharedFrame>),
    /// An event for the local subscribers of a stream.
    Event(u32, StreamEvent),
    /// A revocation from the Redis feed: close the matching local sessions
    /// (4000) and the tunnels owned by this worker that it covers (a tenant's,
    /// or those registered with a revoked connector credential).
    Revoke(Arc<Revocation>),
    /// The revocation set gained entries from the Redis record (a start or a
    /// reconnect): close every local session and tunnel it now covers.
    Recheck,
    /// A query that waited in its tenant's admission queue got a stream
    /// (a new one, or a shared one it joined, with it attached): the
    /// session's worker sends `Open` for a new one, or detaches it if the
    /// query is gone. The `u64` is the wait's ticket (`registry::Waiter::ticket`).
    Admitted(Subscriber, u64, Opened),
    /// Drain pass (SIGTERM; sent every `DRAIN_TICK` until the gateway
    /// stops): stop accepting, close with 1012 each session that has no
    /// running query, count those that have one.
    Drain,
    /// Stop: close every connection (sessions with 1012 when draining,
    /// else 1001; tunnels with 1001) and exit.
    Shutdown,
    /// Test-only fault injection: block this worker's thread for this long,
    /// as a worker busy with other work would be, so that its inbox backs
    /// up. Ignored unless `test_fault_routes` is on; only code in the
    /// gateway's process can send it.
    #[doc(hidden)]
    Stall(Duration),
}

impl WorkerMsg {
    /// Bytes a connector sent that this message holds while it waits in an
    /// inbox, counted against `limits.inbox_bytes_max`
    /// ([`crate::inbox_bytes`]): a frame's payload, an event's schema or
    /// error text. Commands from the gateway itself count 0.
    pub fn inbox_bytes(&self) -> usize {
        match self {
            WorkerMsg::Frame(frame) => frame.read_len(),
            WorkerMsg::Event(_, StreamEvent::FlightInfo { schema, .. } | StreamEvent::Start { schema }) => schema.len(),
            WorkerMsg::Event(_, StreamEvent::End { error, .. }) => error.as_ref().map_or(0, |e| e.message.len()),
            WorkerMsg::Revoke(_)
            | WorkerMsg::Recheck
            | WorkerMsg::Admitted(..)
            | WorkerMsg::Drain
            | WorkerMsg::Shutdown
            | WorkerMsg::Stall(_) => 0,
        }
    }
}
