//! Control messages (PROTOCOL.md §4): JSON text frames on both sockets.
//!
//! Four directions, four types: [`ConnectorMessage`] (connector → gateway),
//! [`GatewayCommand`] (gateway → connector), [`BrowserRequest`] (browser →
//! gateway) and [`BrowserEvent`] (gateway → browser), plus the register reply
//! [`RegisterReply`]. Parsing classifies failures into the protocol's error
//! codes (`invalid_json`, `unknown_action`, `bad_request`) and checks id
//! lengths; unknown fields are ignored for forward compatibility.
//!
//! One file per concern: [`ErrorCode`], [`ErrorBody`] and [`ParseError`] in
//! `error`; the JSON helpers every parser shares (object, tag, typed body,
//! id length) in `json`; the compression [`Codec`] names in `codec`; the
//! tunnel's messages (connector → gateway, the register reply, gateway →
//! connector) in `tunnel`; the browser socket's requests and events in
//! `browser`. Every public item is re-exported here: callers name
//! `message::X` whichever file defines it.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

mod browser;
mod codec;
mod error;
mod json;
mod tunnel;

pub use browser::{BrowserEvent, BrowserRequest, DatasetInfo};
pub use codec::Codec;
pub use error::{ErrorBody, ErrorCode, ParseError};
pub use tunnel::{ConnectorMessage, Descriptor, FlightData, GatewayCommand, Register, RegisterOk, RegisterReply};
