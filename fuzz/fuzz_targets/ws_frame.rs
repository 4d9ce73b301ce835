//! FrameDecoder + MessageAssembler on arbitrary bytes, in both roles, with the
//! default limits and with tiny ones, fed whole and in three pieces. Binary
//! messages also go through the level-2 FrameHeader decoder.
//!
//! Seeds: fuzz/seeds/ws_frame (RFC 6455 §5.7 examples and Volley frames).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use volley_protocol::header::FrameHeader;
use volley_protocol::limits::CONTROL_FRAME_BYTES_MAX;
use volley_protocol::ws::{is_valid_close_code, FrameDecoder, Message, MessageAssembler, Role};

/// (frame_bytes_max, message_bytes_max, text_bytes_max, fragments_max)
const LIMITS: [(usize, usize, usize, usize); 2] = [(1 << 20, 1 << 20, 1 << 16, 1024), (64, 128, 32, 3)];

fuzz_target!(|data: &[u8]| {
    for role in [Role::Server, Role::Client] {
        for limits in LIMITS {
            run(role, limits, &[data]);
        }
        let (first, rest) = data.split_at(data.len() / 3);
        let (second, third) = rest.split_at(rest.len() / 2);
        run(role, LIMITS[0], &[first, second, third]);
    }
});

/// Feeds `pieces` one after another, decoding and assembling everything that
/// completes, until the first error (where a connection would be closed).
fn run(role: Role, limits: (usize, usize, usize, usize), pieces: &[&[u8]]) {
    let (frame_bytes_max, message_bytes_max, text_bytes_max, fragments_max) = limits;
    let mut decoder = FrameDecoder::new(role, frame_bytes_max);
    let mut assembler = MessageAssembler::new(message_bytes_max, text_bytes_max, fragments_max);
    let mut buf = BytesMut::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => return,
            };
            assert!(buf.len() + 2 <= before, "a frame took fewer than 2 bytes");
            assert!(frame.payload.len() <= frame_bytes_max, "frame over the limit");
            if frame.opcode.is_control() {
                assert!(frame.fin && frame.payload.len() <= CONTROL_FRAME_BYTES_MAX, "bad control frame");
            }
            match assembler.push(frame) {
                Ok(Some(Message::Text(text))) => {
                    assert!(text.len() <= text_bytes_max, "text over the limit");
                    assert!(std::str::from_utf8(&text).is_ok(), "text is not UTF-8");
                }
                Ok(Some(Message::Binary(data))) => {
                    assert!(data.len() <= message_bytes_max, "message over the limit");
                    if let Ok(header) = FrameHeader::decode(&data) {
                        assert_eq!(&header.encode()[..], &data[..16]);
                    }
                }
                Ok(Some(Message::Close(Some((code, _))))) => assert!(is_valid_close_code(code)),
                Ok(_) => {}
                Err(e) => {
                    let _ = e.close_code();
                    return;
                }
            }
        }
    }
}
