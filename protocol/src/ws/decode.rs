//! [`FrameDecoder::decode`] takes bytes from a `BytesMut` the IO layer
//! filled, and returns whole frames whose payload is unmasked in place and
//! frozen into `Bytes` that share the read buffer's allocation (no copy).
//! "Need more bytes" is `Ok(None)`; every declared length is checked against
//! the limit before anything is reserved.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{Buf, BytesMut};

use super::{apply_mask, Frame, OpCode, Role, WsError};
use crate::limits::CONTROL_FRAME_BYTES_MAX;

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

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use bytes::Bytes;

    use super::*;
    use crate::ws::{encode_frame, encode_header, encode_masked_frame, Message, MessageAssembler};

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
}
