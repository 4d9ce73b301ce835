//! [`MessageAssembler`] turns frames into messages: continuation order,
//! interleaved control frames, fragment and size limits, UTF-8 of text
//! (checked as fragments arrive, so a bad byte fails fast), close payloads.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{Bytes, BytesMut};

use super::close::is_valid_close_code;
use super::{Frame, OpCode, WsError};

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
    /// keeps its own limit); see
    /// [`FrameDecoder::set_frame_bytes_max`](super::FrameDecoder::set_frame_bytes_max).
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
}
