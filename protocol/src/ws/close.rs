//! Closing: the close codes Volley sends, the payload of a close frame, and
//! which codes a peer may send.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use crate::limits::CONTROL_FRAME_BYTES_MAX;

/// WebSocket close codes used by Volley (PROTOCOL.md §9).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Bad framing or protocol violation.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame where only text is accepted.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Authentication, authorisation or origin refused.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message over its limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// A bug or an unexpected failure.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Service restart: the gateway is draining (SIGTERM); reconnect, to
    /// another gateway when there is one. Sent only: [`super::is_valid_close_code`]
    /// refuses it from a peer (unassigned in RFC 6455; Autobahn case 7.9).
    pub const SERVICE_RESTART: u16 = 1012;
    /// The session was revoked.
    pub const REVOKED: u16 = 4000;
    /// The token expired while connected.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The reader fell behind its ring (policy `close`).
    pub const SLOW_CONSUMER: u16 = 4002;
    /// No pong within the heartbeat allowance.
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    /// Connector replaced or refused at `register`.
    pub const CONNECTOR_REFUSED: u16 = 4004;
    /// Idle for too long.
    pub const IDLE_TIMEOUT: u16 = 4008;
}

/// The payload of a close frame: code and a reason cut to fit in 125 bytes
/// at a character boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let room = reason.len().min(CONTROL_FRAME_BYTES_MAX - 2);
    // The longest prefix within `room` that ends on a character boundary
    // (`get` refuses the others; the empty prefix always exists).
    let kept = (0..=room).rev().find_map(|end| reason.get(..end)).unwrap_or_default();
    let mut out = Vec::with_capacity(2 + kept.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(kept.as_bytes());
    out
}

/// True for close codes a peer may send (RFC 6455 §7.4, as Autobahn checks them).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;

    #[test]
    fn close_payload_cuts_reason_at_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(1000, &reason);
        assert!(payload.len() <= CONTROL_FRAME_BYTES_MAX);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
