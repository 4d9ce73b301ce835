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

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::{CONTROL_FRAME_BYTES_MAX, WS_HEADER_BYTES_MAX};

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

/// Parses frames out of a byte buffer; see the module docs.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    role: Role,
    frame_bytes_max: usize,
}

impl FrameDecoder {
    /// A decoder for `role` refusing frames larger than `frame_bytes_max`.
    pub fn new(role: Role, frame_bytes_max: usize) -> FrameDecoder {
        FrameDecoder { role, frame_bytes_max }
    }

    /// The frame limit in force.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Changes the frame limit for the frames still to be decoded: a tunnel
    /// reads with the control-message limit until `register` succeeds, then
    /// raises it to the connector frame limit.
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        self.frame_bytes_max = frame_bytes_max;
    }

    /// How many bytes the frame at the start of `buf` needs in total, once its
    /// header is complete; `None` while the header itself is incomplete. The IO
    /// layer uses it to reserve exactly once for a large frame.
    pub fn frame_len_hint(&self, buf: &[u8]) -> Option<usize> {
        match parse_header(buf, self.role, self.frame_bytes_max) {
            Ok(Some(h)) => h.header_len.checked_add(h.payload_len),
            _ => None,
        }
    }

    /// Takes one frame off the front of `buf`, or `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WsError> {
        let Some(header) = parse_header(buf, self.role, self.frame_bytes_max)? else {
            return Ok(None);
        };
        let Some(total) = header.header_len.checked_add(header.payload_len) else {
            return Err(WsError::FrameTooLarge { size: u64::MAX, limit: self.frame_bytes_max });
        };
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(header.header_len);
        let mut payload = buf.split_to(header.payload_len);
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask);
        }
        Ok(Some(Frame { fin: header.fin, opcode: header.opcode, payload: payload.freeze() }))
    }
}

struct ParsedHeader {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

fn parse_header(buf: &[u8], role: Role, frame_bytes_max: usize) -> Result<Option<ParsedHeader>, WsError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0b111;
    if rsv != 0 {
        return Err(WsError::ReservedBits(rsv));
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(WsError::ReservedOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(WsError::UnmaskedClientFrame),
        (Role::Client, true) => return Err(WsError::MaskedServerFrame),
        _ => {}
    }
    let len7 = b1 & 0x7F;
    let (payload_len, mut offset): (u64, usize) = match len7 {
        126 => {
            let Some(bytes) = array_at::<2>(buf, 2) else { return Ok(None) };
            (u64::from(u16::from_be_bytes(bytes)), 4)
        }
        127 => {
            let Some(bytes) = array_at::<8>(buf, 2) else { return Ok(None) };
            let len = u64::from_be_bytes(bytes);
            if len & (1 << 63) != 0 {
                return Err(WsError::LengthMsbSet);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() {
        if payload_len > CONTROL_FRAME_BYTES_MAX as u64 {
            return Err(WsError::ControlFrameTooLong(payload_len));
        }
        if !fin {
            return Err(WsError::FragmentedControlFrame);
        }
    }
    let too_large = WsError::FrameTooLarge { size: payload_len, limit: frame_bytes_max };
    let payload_len = usize::try_from(payload_len).map_err(|_| too_large.clone())?;
    if payload_len > frame_bytes_max {
        return Err(too_large);
    }
    let mask = if masked {
        let Some(key) = array_at::<4>(buf, offset) else { return Ok(None) };
        offset += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(ParsedHeader { fin, opcode, mask, header_len: offset, payload_len }))
}

/// The `N` bytes of `buf` starting at `at`, or `None` when `buf` ends sooner.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..)?.first_chunk::<N>().copied()
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

/// The header bytes of one outgoing frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBytes {
    bytes: [u8; WS_HEADER_BYTES_MAX],
    len: u8,
}

impl HeaderBytes {
    /// The encoded header.
    // `len` is 2, 4, 6, 8, 10 or 14: `encode_header` is the only constructor
    // and sets it to a header length that fits `bytes` (WS_HEADER_BYTES_MAX).
    #[allow(clippy::indexing_slicing)]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Encodes the header of a frame with `payload_len` bytes. With `mask`
/// (client role) the caller must mask the payload with the same key.
pub fn encode_header(fin: bool, opcode: OpCode, payload_len: usize, mask: Option<[u8; 4]>) -> HeaderBytes {
    let b0 = (if fin { 0x80 } else { 0 }) | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    // The key follows the length; without a mask its four bytes stay zero,
    // like the unused tail, and `len` does not count them.
    let [k0, k1, k2, k3] = mask.unwrap_or_default();
    // Header length without the key: 2, 4 or 10, so a u8.
    let (bytes, len): ([u8; WS_HEADER_BYTES_MAX], u8) = if let Ok(small @ 0..=125) = u8::try_from(payload_len) {
        ([b0, mask_bit | small, k0, k1, k2, k3, 0, 0, 0, 0, 0, 0, 0, 0], 2)
    } else if let Ok(medium) = u16::try_from(payload_len) {
        let [m0, m1] = medium.to_be_bytes();
        ([b0, mask_bit | 126, m0, m1, k0, k1, k2, k3, 0, 0, 0, 0, 0, 0], 4)
    } else {
        // usize is at most 64 bits on every supported target (asserted below),
        // so the conversion cannot fail and the fallback is never taken.
        let wide = u64::try_from(payload_len).unwrap_or(u64::MAX);
        let [w0, w1, w2, w3, w4, w5, w6, w7] = wide.to_be_bytes();
        ([b0, mask_bit | 127, w0, w1, w2, w3, w4, w5, w6, w7, k0, k1, k2, k3], 10)
    };
    let len = if mask.is_some() { len + 4 } else { len };
    HeaderBytes { bytes, len }
}

const _: () = assert!(usize::BITS <= u64::BITS);

/// Encodes a whole unmasked (server) frame into one buffer; for small control
/// and text messages. Data frames are written as header + shared payload instead.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = encode_header(true, opcode, payload.len(), None);
    let mut out = BytesMut::with_capacity(header.as_slice().len() + payload.len());
    out.extend_from_slice(header.as_slice());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Encodes a whole masked (client) frame into one buffer.
pub fn encode_masked_frame(opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Bytes {
    let header = encode_header(true, opcode, payload.len(), Some(mask));
    let mut out = BytesMut::with_capacity(header.as_slice().len() + payload.len());
    out.extend_from_slice(header.as_slice());
    let start = out.len();
    out.extend_from_slice(payload);
    // `start` is the length before the payload was appended, so in bounds.
    #[allow(clippy::indexing_slicing)]
    apply_mask(&mut out[start..], mask);
    out.freeze()
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

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Text, already checked to be UTF-8.
    Text(Bytes),
    /// Binary data.
    Binary(Bytes),
    /// Ping with its payload.
    Ping(Bytes),
    /// Pong with its payload.
    Pong(Bytes),
    /// Close with its code and reason, if any.
    Close(Option<(u16, String)>),
}

impl Message {
    /// The text of a `Text` message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            // Text payloads are validated by the assembler before they are built.
            Message::Text(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// Reassembles fragmented messages; see the module docs.
#[derive(Debug)]
pub struct MessageAssembler {
    message_bytes_max: usize,
    text_bytes_max: usize,
    fragments_max: usize,
    /// The message being assembled from fragments. Boxed: fragmented
    /// messages are rare, and an idle connection keeps only the pointer.
    partial: Option<Box<Partial>>,
}

#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    data: BytesMut,
    fragments: usize,
    utf8_checked: usize,
}

impl MessageAssembler {
    /// An assembler with a limit for any message, a (smaller or equal) limit
    /// for text messages, and a fragment count limit.
    pub fn new(message_bytes_max: usize, text_bytes_max: usize, fragments_max: usize) -> MessageAssembler {
        MessageAssembler { message_bytes_max, text_bytes_max, fragments_max, partial: None }
    }

    /// Changes the limit for binary messages still to be assembled (text
    /// keeps its own limit); see [`FrameDecoder::set_frame_bytes_max`].
    pub fn set_message_bytes_max(&mut self, message_bytes_max: usize) {
        self.message_bytes_max = message_bytes_max;
    }

    /// Feeds one frame; returns a message when one is complete. Control frames
    /// may arrive between fragments and are returned at once.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, WsError> {
        match frame.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(frame.payload))),
            OpCode::Pong => Ok(Some(Message::Pong(frame.payload))),
            OpCode::Close => parse_close(&frame.payload).map(|close| Some(Message::Close(close))),
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(WsError::ExpectedContinuation);
                }
                let limit = if frame.opcode == OpCode::Text { self.text_bytes_max } else { self.message_bytes_max };
                if frame.payload.len() > limit {
                    return Err(WsError::MessageTooLarge { limit });
                }
                if frame.fin {
                    return Ok(Some(finish(frame.opcode, frame.payload)?));
                }
                let mut partial = Box::new(Partial {
                    opcode: frame.opcode,
                    data: BytesMut::from(&frame.payload[..]),
                    fragments: 1,
                    utf8_checked: 0,
                });
                partial.check_utf8()?;
                self.partial = Some(partial);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                let limit = if partial.opcode == OpCode::Text { self.text_bytes_max } else { self.message_bytes_max };
                let size = partial.data.len().saturating_add(frame.payload.len());
                if size > limit {
                    return Err(WsError::MessageTooLarge { limit });
                }
                partial.fragments += 1;
                if partial.fragments > self.fragments_max {
                    return Err(WsError::MessageTooLarge { limit: self.fragments_max });
                }
                partial.data.extend_from_slice(&frame.payload);
                partial.check_utf8()?;
                if !frame.fin {
                    return Ok(None);
                }
                let Some(done) = self.partial.take() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                Ok(Some(finish(done.opcode, done.data.freeze())?))
            }
        }
    }
}

impl Partial {
    /// Validates newly arrived text, failing as soon as a byte is certainly invalid.
    fn check_utf8(&mut self) -> Result<(), WsError> {
        if self.opcode != OpCode::Text {
            return Ok(());
        }
        // `utf8_checked` only ever grows to a length of `data`, which only
        // grows, so the tail exists; were it missing, the whole message is
        // still checked again by `finish`.
        let unchecked = self.data.get(self.utf8_checked..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(e) if e.error_len().is_some() => return Err(WsError::InvalidUtf8),
            Err(e) => self.utf8_checked += e.valid_up_to(),
        }
        Ok(())
    }
}

fn finish(opcode: OpCode, payload: Bytes) -> Result<Message, WsError> {
    if opcode == OpCode::Text {
        if std::str::from_utf8(&payload).is_err() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::InvalidClosePayload);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidClosePayload)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;

    fn decode_all(role: Role, bytes: &[u8]) -> Result<Vec<Frame>, WsError> {
        let mut decoder = FrameDecoder::new(role, 1 << 20);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    // RFC 6455 §5.7 examples.
    #[test]
    fn rfc6455_single_frame_unmasked_text() {
        let frames = decode_all(Role::Client, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(frames, vec![Frame { fin: true, opcode: OpCode::Text, payload: Bytes::from_static(b"Hello") }]);
        assert_eq!(encode_frame(OpCode::Text, b"Hello").as_ref(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc6455_single_frame_masked_text() {
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let frames = decode_all(Role::Server, &wire).unwrap();
        assert_eq!(frames[0].payload, Bytes::from_static(b"Hello"));
        assert_eq!(encode_masked_frame(OpCode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]).as_ref(), &wire);
    }

    #[test]
    fn rfc6455_fragmented_unmasked_text() {
        let frames = decode_all(Role::Client, &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]).unwrap();
        let mut assembler = MessageAssembler::new(1024, 1024, 8);
        assert_eq!(assembler.push(frames[0].clone()).unwrap(), None);
        assert_eq!(assembler.push(frames[1].clone()).unwrap(), Some(Message::Text(Bytes::from_static(b"Hello"))));
    }

    #[test]
    fn rfc6455_ping_and_pong() {
        let ping = decode_all(Role::Client, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(ping[0].opcode, OpCode::Ping);
        let pong =
            decode_all(Role::Server, &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]).unwrap();
        assert_eq!(pong[0].opcode, OpCode::Pong);
        assert_eq!(pong[0].payload, Bytes::from_static(b"Hello"));
    }

    #[test]
    fn rfc6455_256_byte_and_64k_binary_lengths() {
        let header = encode_header(true, OpCode::Binary, 256, None);
        assert_eq!(header.as_slice(), &[0x82, 0x7E, 0x01, 0x00]);
        let header = encode_header(true, OpCode::Binary, 65536, None);
        assert_eq!(header.as_slice(), &[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        let mut wire = header.as_slice().to_vec();
        wire.extend(std::iter::repeat_n(7u8, 65536));
        let frames = decode_all(Role::Client, &wire).unwrap();
        assert_eq!(frames[0].payload.len(), 65536);
    }

    #[test]
    fn decoded_payload_shares_the_read_buffer() {
        let wire = encode_frame(OpCode::Binary, &[1u8; 4096]);
        let mut buf = BytesMut::from(&wire[..]);
        let base = buf.as_ptr() as usize;
        let frame = FrameDecoder::new(Role::Client, 1 << 20).decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.payload.as_ptr() as usize, base + 4, "payload must be a view of the read buffer");
    }

    #[test]
    fn truncated_input_needs_more_bytes() {
        let wire = encode_masked_frame(OpCode::Binary, &[9u8; 300], [1, 2, 3, 4]);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(FrameDecoder::new(Role::Server, 1 << 20).decode(&mut buf), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_frames_are_refused_with_typed_errors() {
        assert_eq!(decode_all(Role::Server, &[0xC1, 0x80, 0, 0, 0, 0]), Err(WsError::ReservedBits(0b100)));
        assert_eq!(decode_all(Role::Server, &[0x83, 0x80, 0, 0, 0, 0]), Err(WsError::ReservedOpcode(3)));
        assert_eq!(decode_all(Role::Server, &[0x81, 0x00]), Err(WsError::UnmaskedClientFrame));
        assert_eq!(decode_all(Role::Client, &[0x81, 0x80, 0, 0, 0, 0]), Err(WsError::MaskedServerFrame));
        assert_eq!(decode_all(Role::Server, &[0x89, 0xFE, 0, 126]), Err(WsError::ControlFrameTooLong(126)));
        assert_eq!(decode_all(Role::Server, &[0x09, 0x80, 0, 0, 0, 0]), Err(WsError::FragmentedControlFrame));
        let huge = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_all(Role::Server, &huge), Err(WsError::LengthMsbSet));
        let big = [0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(decode_all(Role::Server, &big), Err(WsError::FrameTooLarge { .. })));
    }

    #[test]
    fn a_raised_frame_limit_applies_to_the_next_header_and_a_lowered_one_refuses_on_the_header() {
        // A header announcing 16 MiB, with none of its payload: refused on the
        // header alone (before anything is reserved for the payload).
        let mut big = vec![0x82, 0x80 | 127];
        big.extend_from_slice(&(16u64 << 20).to_be_bytes());
        big.extend_from_slice(&[1, 2, 3, 4]);
        let mut decoder = FrameDecoder::new(Role::Server, 64 * 1024);
        let mut buf = BytesMut::from(&big[..]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::FrameTooLarge { size: 16 << 20, limit: 64 * 1024 }));
        assert_eq!(decoder.frame_len_hint(&big), None, "no length hint past the limit");
        decoder.set_frame_bytes_max(16 << 20);
        assert_eq!(decoder.frame_bytes_max(), 16 << 20);
        let mut buf = BytesMut::from(&big[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "now only more bytes are needed");
        assert_eq!(decoder.frame_len_hint(&big), Some(14 + (16 << 20)));

        let frame = |fin, opcode, payload: &'static [u8]| Frame { fin, opcode, payload: Bytes::from_static(payload) };
        let mut a = MessageAssembler::new(4, 4, 8);
        assert_eq!(a.push(frame(true, OpCode::Binary, b"12345")), Err(WsError::MessageTooLarge { limit: 4 }));
        a.set_message_bytes_max(8);
        assert_eq!(
            a.push(frame(true, OpCode::Binary, b"12345")),
            Ok(Some(Message::Binary(Bytes::from_static(b"12345"))))
        );
        assert_eq!(a.push(frame(true, OpCode::Text, b"12345")), Err(WsError::MessageTooLarge { limit: 4 }));
    }

    #[test]
    fn assembler_refuses_bad_sequences_and_text() {
        let frame = |fin, opcode, payload: &'static [u8]| Frame { fin, opcode, payload: Bytes::from_static(payload) };
        let mut a = MessageAssembler::new(16, 8, 4);
        assert_eq!(a.push(frame(true, OpCode::Continuation, b"x")), Err(WsError::UnexpectedContinuation));
        let mut a = MessageAssembler::new(16, 8, 4);
        a.push(frame(false, OpCode::Binary, b"x")).unwrap();
        assert_eq!(a.push(frame(true, OpCode::Text, b"y")), Err(WsError::ExpectedContinuation));
        let mut a = MessageAssembler::new(16, 8, 4);
        assert_eq!(a.push(frame(true, OpCode::Text, b"\xff")), Err(WsError::InvalidUtf8));
        // Fails on the fragment carrying the bad byte, before the message ends.
        let mut a = MessageAssembler::new(16, 8, 4);
        assert_eq!(a.push(frame(false, OpCode::Text, b"\xce\xba\xe1")), Ok(None));
        assert_eq!(a.push(frame(false, OpCode::Continuation, b"\xff")), Err(WsError::InvalidUtf8));
        // A code point split across fragments is fine.
        let mut a = MessageAssembler::new(16, 8, 4);
        assert_eq!(a.push(frame(false, OpCode::Text, b"\xce")), Ok(None));
        assert_eq!(
            a.push(frame(true, OpCode::Continuation, b"\xba")),
            Ok(Some(Message::Text(Bytes::from_static("κ".as_bytes()))))
        );
        let mut a = MessageAssembler::new(16, 8, 4);
        assert_eq!(a.push(frame(true, OpCode::Text, b"123456789")), Err(WsError::MessageTooLarge { limit: 8 }));
        let mut a = MessageAssembler::new(1000, 1000, 2);
        a.push(frame(false, OpCode::Binary, b"a")).unwrap();
        a.push(frame(false, OpCode::Continuation, b"b")).unwrap();
        assert!(matches!(a.push(frame(false, OpCode::Continuation, b"c")), Err(WsError::MessageTooLarge { .. })));
        let mut a = MessageAssembler::new(16, 8, 4);
        assert_eq!(a.push(frame(true, OpCode::Close, b"\x03")), Err(WsError::InvalidClosePayload));
        assert_eq!(a.push(frame(true, OpCode::Close, b"\x03\xed")), Err(WsError::InvalidClosePayload));
        assert_eq!(a.push(frame(true, OpCode::Close, b"\x03\xe8\xff")), Err(WsError::InvalidClosePayload));
        assert_eq!(
            a.push(frame(true, OpCode::Close, b"\x03\xe8ok")),
            Ok(Some(Message::Close(Some((1000, "ok".into())))))
        );
    }

    #[test]
    fn close_payload_cuts_reason_at_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(1000, &reason);
        assert!(payload.len() <= CONTROL_FRAME_BYTES_MAX);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

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
