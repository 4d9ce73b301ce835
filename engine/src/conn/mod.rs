//! Connection plumbing shared by tunnels, browser sessions and the echo
//! route, one concern per file:
//! - `ctl`: the kill switch ([`ConnCtl`], `or_killed!`) and [`KillOnDrop`];
//! - `reader`: [`WsReader`], one task per connection for its whole life,
//!   its reads shaped by [`ReadShape`];
//! - `ring`: the outgoing [`Ring`] with its byte budget;
//! - `writer`: the writer task ([`run_writer`]) and [`write_all`];
//! - lowest, used by the above: [`writev`] (the write batch, vectored),
//!   [`transport`] (plain TCP halves and the read/write traits), [`tls`]
//!   (`wss://` on the same traits).

pub mod tls;
pub mod transport;
pub mod writev;

mod ctl;
mod reader;
mod ring;
mod writer;

pub(crate) use ctl::or_killed;
pub use ctl::{killed_error, ConnCtl, KillOnDrop, Side};
pub use reader::{ReadError, ReadShape, WsReader, READ_ALIGN_MIN_CHUNK_BYTES};
pub use ring::{Ring, RingTotals, BATCH_BYTES_MAX, BATCH_ITEMS_MAX, CLOSE_GRACE, CONTROL_OVERFLOW_REASON};
pub use writer::{close_frame, run_writer, write_all};
