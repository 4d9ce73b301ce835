//! Arrow IPC streams cut into their messages, and the golden IPC files of the
//! shared test data.
//!
//! arrow-ipc reads a stream into batches but keeps the reader of single
//! messages to itself, so [`split`] cuts a stream here: the encapsulation is
//! a length prefix (after the `0xFFFFFFFF` continuation marker, or without it
//! in streams written before Arrow 0.15) and the body length is one field of
//! the `Message` flatbuffer, read from its vtable so that the engine's tests
//! need no Arrow dependency. The tests below check it against arrow-ipc's own
//! reading of every golden stream.

use std::ops::Range;
use std::path::PathBuf;

/// The continuation marker in front of an encapsulated message's length.
pub const CONTINUATION: u32 = 0xFFFF_FFFF;

/// `header_type` of an IPC `Message` (the `MessageHeader` union of
/// Message.fbs); the end-of-stream marker has no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The end-of-stream marker (a zero metadata length).
    EndOfStream,
    /// `Schema` (1).
    Schema,
    /// `DictionaryBatch` (2).
    DictionaryBatch,
    /// `RecordBatch` (3).
    RecordBatch,
}

/// One encapsulated message of an IPC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulated {
    /// What it holds.
    pub header: Header,
    /// Where it stands in the stream: prefix, metadata and body.
    pub range: Range<usize>,
    /// False for a message without the continuation marker (pre-0.15 streams).
    pub continuation: bool,
}

fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u16(buf: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(buf[at..at + 2].try_into().expect("2 bytes")))
}

fn to_usize(v: impl TryInto<usize>) -> usize {
    v.try_into().ok().expect("fits usize")
}

/// (header type, body length) of an IPC `Message` flatbuffer: field 1 is
/// `header_type` (u8), field 3 `bodyLength` (i64).
fn message_meta(meta: &[u8]) -> (u8, usize) {
    let table = to_usize(le_u32(meta, 0));
    let soffset = i32::from_le_bytes(meta[table..table + 4].try_into().expect("4 bytes"));
    let vtable = to_usize(i64::try_from(table).expect("i64") - i64::from(soffset));
    let vtable_len = le_u16(meta, vtable);
    let field = |id: usize| -> usize {
        let at = vtable + 4 + 2 * id;
        if at + 2 <= vtable + vtable_len {
            le_u16(meta, at)
        } else {
            0
        }
    };
    let header_type = match field(1) {
        0 => 0,
        off => meta[table + off],
    };
    let body_len = match field(3) {
        0 => 0,
        off => to_usize(i64::from_le_bytes(meta[table + off..table + off + 8].try_into().expect("8 bytes"))),
    };
    (header_type, body_len)
}

/// Cuts `data` (one or more IPC streams, or a part of one made of whole
/// messages) into its encapsulated messages; panics on anything else. The
/// ranges follow each other and cover `data`.
pub fn split(data: &[u8]) -> Vec<Encapsulated> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        assert!(pos + 4 <= data.len(), "truncated IPC message prefix at {pos}");
        let first = le_u32(data, pos);
        pos += 4;
        let continuation = first == CONTINUATION;
        let meta_len = if continuation {
            assert!(pos + 4 <= data.len(), "truncated IPC message prefix at {start}");
            let len = le_u32(data, pos);
            pos += 4;
            to_usize(len)
        } else {
            to_usize(first)
        };
        if meta_len == 0 {
            out.push(Encapsulated { header: Header::EndOfStream, range: start..pos, continuation });
            continue;
        }
        assert!(pos + meta_len <= data.len(), "IPC message metadata at {start} overruns the data");
        let (header_type, body_len) = message_meta(&data[pos..pos + meta_len]);
        pos += meta_len + body_len;
        assert!(pos <= data.len(), "IPC message at {start} overruns the data");
        let header = match header_type {
            1 => Header::Schema,
            2 => Header::DictionaryBatch,
            3 => Header::RecordBatch,
            other => panic!("unexpected IPC message header type {other} at {start}"),
        };
        out.push(Encapsulated { header, range: start..pos, continuation });
    }
    out
}

/// Path of a golden Arrow IPC file (`arrow-ipc/…` of the shared test data).
pub fn golden_path(relative: &str) -> PathBuf {
    crate::files::testdata().join("arrow-ipc").join(relative)
}

/// Bytes of a golden Arrow IPC stream file.
pub fn golden(relative: &str) -> Vec<u8> {
    let path = golden_path(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("golden file {}: {e}", path.display()))
}

/// The primitive golden stream used by most tests.
pub const PRIMITIVE: &str = "1.0.0-littleendian/generated_primitive.stream";
/// A second, different golden stream.
pub const LARGE_OFFSETS: &str = "1.0.0-littleendian/generated_primitive_large_offsets.stream";

#[cfg(feature = "ipc")]
pub use frames::*;

#[cfg(feature = "ipc")]
mod frames {
    use bytes::Bytes;
    use volley_protocol::header::FrameKind;

    use super::{split, Header};

    /// The frame kind that carries a message with this header.
    pub fn frame_kind(header: Header) -> FrameKind {
        match header {
            Header::EndOfStream => FrameKind::EndOfStream,
            Header::Schema => FrameKind::Schema,
            Header::DictionaryBatch => FrameKind::Dictionary,
            Header::RecordBatch => FrameKind::RecordBatch,
        }
    }

    /// [`split`] as frames: each message with its frame kind; the pieces
    /// concatenate to `data`.
    pub fn ipc_messages(data: &[u8]) -> Vec<(FrameKind, Bytes)> {
        split(data).into_iter().map(|m| (frame_kind(m.header), Bytes::copy_from_slice(&data[m.range]))).collect()
    }

    /// Splits `data` into arbitrary chunks of `size` bytes (level-1 style).
    pub fn chunks(data: &[u8], size: usize) -> Vec<(FrameKind, Bytes)> {
        data.chunks(size).map(|c| (FrameKind::Chunk, Bytes::copy_from_slice(c))).collect()
    }

    /// `n` synthetic record-batch frames of `size` bytes each, with a fixed
    /// pattern that encodes the frame number (the engine never decodes them).
    pub fn synthetic_frames(n: usize, size: usize) -> Vec<(FrameKind, Bytes)> {
        let pattern: Vec<u8> = (0..size).map(|j| u8::try_from(j % 251).expect("byte")).collect();
        (0..n)
            .map(|i| {
                let mut body = pattern.clone();
                let stamp = (i as u64).to_le_bytes();
                let len = stamp.len().min(size);
                body[..len].copy_from_slice(&stamp[..len]);
                (FrameKind::RecordBatch, Bytes::from(body))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every `.stream` of the golden IPC files but the deliberately malformed ones.
    fn golden_streams() -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != "fuzz-malformed") {
                        walk(&path, out);
                    }
                } else if path.extension().is_some_and(|e| e == "stream") {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&golden_path(""), &mut out);
        out.sort();
        out
    }

    /// The message headers arrow-ipc reads, and where each message ends.
    fn arrow_reading(data: &[u8]) -> Vec<(Header, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let mut prefix = 4;
            let mut len = le_u32(data, pos);
            if len == CONTINUATION {
                len = le_u32(data, pos + 4);
                prefix = 8;
            }
            let meta = pos + prefix..pos + prefix + to_usize(len);
            if meta.is_empty() {
                pos = meta.end;
                out.push((Header::EndOfStream, pos));
                continue;
            }
            let message = arrow_ipc::root_as_message(&data[meta.clone()]).expect("arrow-ipc reads the metadata");
            let header = match message.header_type() {
                arrow_ipc::MessageHeader::Schema => Header::Schema,
                arrow_ipc::MessageHeader::DictionaryBatch => Header::DictionaryBatch,
                arrow_ipc::MessageHeader::RecordBatch => Header::RecordBatch,
                other => panic!("header {other:?}"),
            };
            pos = meta.end + to_usize(message.bodyLength());
            out.push((header, pos));
        }
        out
    }

    #[test]
    fn every_golden_stream_splits_as_arrow_ipc_reads_it() {
        let streams = golden_streams();
        assert!(streams.len() >= 20, "golden streams under {}: {streams:?}", golden_path("").display());
        for path in streams {
            let data = std::fs::read(&path).expect("read golden");
            let messages = split(&data);
            let ours: Vec<(Header, usize)> = messages.iter().map(|m| (m.header, m.range.end)).collect();
            assert_eq!(ours, arrow_reading(&data), "{}", path.display());
            assert_eq!(messages.first().map(|m| m.header), Some(Header::Schema), "{}", path.display());
            assert_eq!(messages.last().map(|m| m.header), Some(Header::EndOfStream), "{}", path.display());
            let mut end = 0;
            for m in &messages {
                assert_eq!(m.range.start, end, "{}: pieces follow each other", path.display());
                end = m.range.end;
            }
            assert_eq!(end, data.len(), "{}: the pieces cover the stream", path.display());
            let legacy = path.to_string_lossy().contains("/0.14.1/");
            assert!(messages.iter().all(|m| m.continuation != legacy), "{}: continuation markers", path.display());
        }
    }

    #[test]
    fn concatenated_streams_and_single_messages_split_too() {
        let data = golden(PRIMITIVE);
        let once = split(&data);
        let twice = split(&[data.as_slice(), data.as_slice()].concat());
        assert_eq!(twice.len(), 2 * once.len());
        for m in &once {
            let alone = split(&data[m.range.clone()]);
            assert_eq!(alone.len(), 1);
            assert_eq!((alone[0].header, alone[0].range.len()), (m.header, m.range.len()));
        }
    }

    #[test]
    #[should_panic(expected = "overruns the data")]
    fn a_cut_message_is_refused() {
        let data = golden(PRIMITIVE);
        let second = split(&data)[1].range.clone();
        split(&data[..second.end - 1]);
    }
}
