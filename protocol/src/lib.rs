//! volley-protocol: the sans-IO core every Volley component shares.
//!
//! No sockets, no runtime, no clock: bytes and times go in as arguments,
//! messages and bytes come out. `PROTOCOL.md` beside this crate is the
//! normative wire spec; this crate implements it.
//!
//! Modules, in the order a frame meets them:
//! - [`handshake`]: parse the HTTP upgrade request, choose the level
//!   (`volley.v2` subprotocol), build the 101 or error response.
//! - [`route`]: which endpoint a request head names; the session id in the
//!   path decoded strictly by [`percent`].
//! - [`ws`]: RFC 6455 frames. [`ws::FrameDecoder`] unmasks client payloads in
//!   place and hands them out as `Bytes` views of the read buffer (the
//!   zero-copy start of the data path); [`ws::MessageAssembler`] handles
//!   fragmentation, control frames and UTF-8; [`ws::encode_header`] builds the
//!   header the engine writes once per outgoing frame. A file per step:
//!   `decode`, `assemble`, `encode`, `close` (close codes and payloads).
//! - [`header`]: the 16-byte level-2 binary frame header (stream id, kind,
//!   sequence) that lets one frame go unchanged to many browsers.
//! - [`message`]: the JSON control messages of both sockets and the error
//!   codes, a file each: `browser` (requests, events), `tunnel` (connector
//!   messages, register reply, gateway commands), `error` (codes, bodies,
//!   parse errors), `codec` (compression names) and `json` (the parsing
//!   helpers they share).
//! - [`token`]: HS256 session tokens and connector credentials.
//! - [`tunnel`]: the tunnel conversation's rules, one state machine per end
//!   (the gateway's streams, request ids, level-1 queue, credit, cancel; the
//!   connector's stream table) and the framer of a stream's frames.
//! - [`limits`]: every bound applied to peer input, with defaults and reasons.
//!
//! Data path of one IPC message: connector encodes it, prefixes a
//! [`header::FrameHeader`], masks it into a binary frame → the engine's
//! [`ws::FrameDecoder`] unmasks it into `Bytes` → the engine checks the header
//! with [`header::FrameHeader::decode`] and writes [`ws::encode_header`] +
//! the same `Bytes` to every subscribed browser → the browser strips the
//! header and feeds the payload to its Arrow IPC reader.

// Production code: a panic here is a bug, so errors are returned or handled
// with a reason. Unit tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod handshake;
pub mod header;
pub mod limits;
pub mod message;
pub mod percent;
pub mod route;
pub mod token;
pub mod tunnel;
pub mod ws;

pub use header::{FrameHeader, FrameKind};
pub use limits::Limits;
pub use message::{
    BrowserEvent, BrowserRequest, Codec, ConnectorMessage, DatasetInfo, ErrorBody, ErrorCode, GatewayCommand,
    ParseError, Register, RegisterOk, RegisterReply,
};
