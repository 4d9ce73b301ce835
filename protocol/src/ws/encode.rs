//! [`encode_header`] builds the 2–14 header bytes of an outgoing frame, so
//! the IO layer can write header and payload with one vectored write; whole
//! small frames, unmasked (server) or masked (client), are encoded into one
//! buffer.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{Bytes, BytesMut};

use super::{apply_mask, OpCode};
use crate::limits::WS_HEADER_BYTES_MAX;

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
