//! The level-2 binary frame header (PROTOCOL.md §3): 16 little-endian bytes
//! in front of every binary frame's IPC payload.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use crate::limits::FRAME_HEADER_BYTES;

/// First byte of every level-2 binary frame (`'V'`).
pub const MAGIC: u8 = 0x56;
/// Header version written in byte 1.
pub const VERSION: u8 = 2;
/// Flag bit 0: the last data frame of the stream.
pub const FLAG_LAST: u8 = 0b0000_0001;
const FLAGS_KNOWN: u8 = FLAG_LAST;

/// What a frame's payload holds (PROTOCOL.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// An arbitrary chunk of the IPC stream (level-1 upstream).
    Chunk = 0,
    /// Exactly one IPC schema message.
    Schema = 1,
    /// One or more whole dictionary batch messages.
    Dictionary = 2,
    /// One or more whole record batch messages.
    RecordBatch = 3,
    /// The IPC end-of-stream marker.
    EndOfStream = 4,
}

impl FrameKind {
    /// The kind for a header byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            0 => Some(FrameKind::Chunk),
            1 => Some(FrameKind::Schema),
            2 => Some(FrameKind::Dictionary),
            3 => Some(FrameKind::RecordBatch),
            4 => Some(FrameKind::EndOfStream),
            _ => None,
        }
    }
}

/// A decoded level-2 frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload kind.
    pub kind: FrameKind,
    /// Flag bits ([`FLAG_LAST`]).
    pub flags: u8,
    /// Stream id assigned by the gateway; never 0.
    pub stream_id: u32,
    /// Frame number within the stream.
    pub sequence: u64,
}

/// Why a header was refused; each maps to error code `bad_frame_header`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 16 bytes.
    #[error("binary frame of {0} bytes is shorter than the 16-byte level-2 header")]
    Short(usize),
    /// Byte 0 is not `0x56`.
    #[error("frame header magic is {0:#04x}, expected 0x56")]
    Magic(u8),
    /// Byte 1 is not 2.
    #[error("frame header version is {0}, expected 2")]
    Version(u8),
    /// Byte 2 names no kind.
    #[error("frame header kind {0} is unknown")]
    Kind(u8),
    /// A reserved flag bit is set.
    #[error("frame header flags {0:#010b} set reserved bits")]
    Flags(u8),
    /// Stream id 0 is never assigned.
    #[error("frame header stream id is 0")]
    StreamZero,
}

impl FrameHeader {
    /// Encodes the header into its 16 bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = self.kind as u8;
        out[3] = self.flags;
        out[4..8].copy_from_slice(&self.stream_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out
    }

    /// Decodes the header at the start of `frame`; the payload is `&frame[16..]`.
    pub fn decode(frame: &[u8]) -> Result<FrameHeader, HeaderError> {
        let Some(&[magic, version, kind, flags, s0, s1, s2, s3, q0, q1, q2, q3, q4, q5, q6, q7]) =
            frame.first_chunk::<FRAME_HEADER_BYTES>()
        else {
            return Err(HeaderError::Short(frame.len()));
        };
        if magic != MAGIC {
            return Err(HeaderError::Magic(magic));
        }
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let kind = FrameKind::from_byte(kind).ok_or(HeaderError::Kind(kind))?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(HeaderError::Flags(flags));
        }
        let stream_id = u32::from_le_bytes([s0, s1, s2, s3]);
        if stream_id == 0 {
            return Err(HeaderError::StreamZero);
        }
        let sequence = u64::from_le_bytes([q0, q1, q2, q3, q4, q5, q6, q7]);
        Ok(FrameHeader { kind, flags, stream_id, sequence })
    }

    /// True when the `LAST` flag is set.
    pub fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_bytes_match() {
        // PROTOCOL.md §3.2: stream 7, frame 3, one record batch.
        let header = FrameHeader { kind: FrameKind::RecordBatch, flags: 0, stream_id: 7, sequence: 3 };
        let bytes = header.encode();
        assert_eq!(bytes, [0x56, 2, 3, 0, 7, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(FrameHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = FrameHeader { kind: FrameKind::Schema, flags: FLAG_LAST, stream_id: 1, sequence: 0 }.encode();
        assert_eq!(FrameHeader::decode(&good[..15]), Err(HeaderError::Short(15)));
        let mut bad = good;
        bad[0] = 0;
        assert_eq!(FrameHeader::decode(&bad), Err(HeaderError::Magic(0)));
        let mut bad = good;
        bad[1] = 1;
        assert_eq!(FrameHeader::decode(&bad), Err(HeaderError::Version(1)));
        let mut bad = good;
        bad[2] = 5;
        assert_eq!(FrameHeader::decode(&bad), Err(HeaderError::Kind(5)));
        let mut bad = good;
        bad[3] = 0b10;
        assert_eq!(FrameHeader::decode(&bad), Err(HeaderError::Flags(0b10)));
        let mut bad = good;
        bad[4] = 0;
        assert_eq!(FrameHeader::decode(&bad), Err(HeaderError::StreamZero));
        assert!(FrameHeader::decode(&good).unwrap().is_last());
    }
}
