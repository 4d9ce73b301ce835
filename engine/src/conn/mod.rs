//! Connection plumbing shared by tunnels, browser sessions and the echo
//! route, one concern per file:
//! - `ctl`: the kill switch ([`ConnCtl`], `or_killed!`) and [`KillOnDrop`];
//! - `reader`: [`WsReader`], one task per connection for its whole life,
//!   its reads shaped by [`reader::ReadShape`];
//! - `ring`: the outgoing [`Ring`] with its byte budget;
//! - `writer`: the writer task ([`run_writer`]) and [`writer::write_all`];
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
pub use ctl::{ConnCtl, KillOnDrop, Side};
pub use reader::{ReadError, WsReader, READ_ALIGN_MIN_CHUNK_BYTES};
pub use ring::{Ring, RingTotals, CLOSE_GRACE};
pub use writer::run_writer;
