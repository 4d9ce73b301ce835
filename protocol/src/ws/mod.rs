//! RFC 6455 framing as a sans-IO codec.
//!
//! - [`FrameDecoder::decode`] takes bytes from a `BytesMut` the IO layer
//!   filled, and returns whole frames whose payload is unmasked in place and
//!   frozen into `Bytes` that share the read buffer's allocation (no copy).
//!   "Need more bytes" is `Ok(None)`; every declared length is checked against
//!   the limit before anything is reserved.
//! - [`MessageAssembler`] turns frames into messages: continuation order,
//!   interleaved control frames, fragment and size limits, UTF-8 of text
//!   (checked as fragments arrive, so a bad byte fails fast), close payloads.
//! - [`encode_header`] builds the 2–14 header bytes of an outgoing frame, so
//!   the IO layer can write header and payload with one vectored write.
//!
//! One file per step: `decode` (the [`FrameDecoder`]), `assemble` (the
//! [`MessageAssembler`] and [`Message`]), `encode` ([`encode_header`] and the
//! whole-frame encoders) and `close` (the [`close_code`]s, the close payload
//! and which codes a peer may send). The vocabulary they share — opcodes,
//! role, frame, error and the mask — is here, and every public item is
//! re-exported here: callers name `ws::X` whichever file defines it.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

mod assemble;
mod close;
mod decode;
mod encode;

use bytes::Bytes;

pub use assemble::{Message, MessageAssembler};
pub use close::{close_code, close_payload, is_valid_close_code};
pub use decode::FrameDecoder;
pub use encode::{encode_frame, encode_header, encode_masked_frame, HeaderBytes};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Which end of the connection this codec serves; decides masking rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames from clients (RFC 6455 §5.1).
    Server,
    /// Receives unmasked frames from a server.
    Client,
}

/// A frame or message was refused. Each variant maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// RSV1–3 set without a negotiated extension.
    #[error("reserved bits {0:#05b} set without an extension")]
    ReservedBits(u8),
    /// Opcode 3–7 or 0xB–0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A client frame without a mask (server role).
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server frame with a mask (client role).
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// A 64-bit length with the most significant bit set.
    #[error("frame length has its most significant bit set")]
    LengthMsbSet,
    /// A control frame with more than 125 payload bytes.
    #[error("control frame of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A control frame without FIN.
    #[error("control frame is fragmented")]
    FragmentedControlFrame,
    /// A frame over the configured frame limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Declared payload length.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// A reassembled message over the limit, or too many fragments.
    #[error("message exceeds the limit of {limit} bytes or fragments")]
    MessageTooLarge {
        /// Configured limit.
        limit: usize,
    },
    /// A continuation frame with no message started.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// Text that is not UTF-8.
    #[error("text payload is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose payload is 1 byte, has an invalid code, or a non-UTF-8 reason.
    #[error("invalid close frame payload")]
    InvalidClosePayload,
}

impl WsError {
    /// The close code to send when this error ends a connection.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => close_code::MESSAGE_TOO_BIG,
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// One decoded frame; `payload` is already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: OpCode,
    /// Unmasked payload, sharing the read buffer's allocation.
    pub payload: Bytes,
}

/// XORs `data` with the 4-byte `mask` (RFC 6455 §5.3), 8 bytes at a time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(raw) ^ word).to_ne_bytes());
    }
    // Each full chunk is 8 bytes, a multiple of 4, so the tail (at most 7
    // bytes) starts at mask index 0.
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;

    #[test]
    fn mask_matches_bytewise_definition_at_every_length() {
        for len in 0..40 {
            let original: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let mut fast = original.clone();
            apply_mask(&mut fast, [0xde, 0xad, 0xbe, 0xef]);
            let slow: Vec<u8> = original.iter().enumerate().map(|(i, b)| b ^ [0xde, 0xad, 0xbe, 0xef][i % 4]).collect();
            assert_eq!(fast, slow);
        }
    }
}
