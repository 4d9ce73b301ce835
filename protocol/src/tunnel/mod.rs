//! The tunnel conversation (PROTOCOL.md §4), sans-IO: the rules both ends of
//! a tunnel follow, in one place, with no socket and no thread.
//!
//! - [`GatewayEnd`]: what the gateway tracks about one registered tunnel —
//!   its streams by `stream_id`, the `request_id`s it gave each of them, the
//!   level-1 queue (one stream at a time), level-2 credit and its overdraft
//!   bound, cancel and end.
//! - [`ConnectorEnd`]: what the connector tracks about one connection — the
//!   streams the gateway opened, found by `request_id` for `cancel` and by
//!   `stream_id` for `credit`; which `do_get` it may serve at all.
//! - [`Framer`]: the frames of one stream as the connector sends them.
//!
//! The two ids are never derived from one another: the gateway names
//! requests from a counter of its own and the connector records the pair
//! `do_get` carries (the spec's example pairs request `r3` with stream `9`).
//!
//! Each end is driven the same way: the IO code hands it what arrived
//! (`handle_*`, or a call for something the local side decided), acts on what
//! it returns, and sends what [`GatewayEnd::poll_transmit`] /
//! [`ConnectorEnd::poll_transmit`] hand out. A value `S` of the caller's
//! (the engine's stream, the connector's producer thread) rides with each
//! stream so that a frame costs one table lookup.

mod connector;
mod framer;
mod gateway;

pub use connector::{ConnectorAction, ConnectorEnd, MoveOrder, StreamOrder};
pub use framer::Framer;
pub use gateway::{Binary, GatewayEnd, OpenStream, Transmit, TunnelEvent, Violation};

/// Credit a stream has when nobody counts it (level 1, and live streams):
/// large enough never to run out, small enough never to overflow when added to.
pub const UNCOUNTED_CREDIT: u64 = u64::MAX / 4;

/// What one record batch counts against `do_get`'s `history_bytes` beside
/// its IPC message bytes: at least what the gateway counts per frame it
/// keeps in a live stream's window (the 16-byte frame header and its
/// bookkeeping), so that a history within `history_bytes` always fits the
/// window it is sized to (PROTOCOL.md §5.2).
pub const HISTORY_FRAME_OVERHEAD_BYTES: u64 = 256;
