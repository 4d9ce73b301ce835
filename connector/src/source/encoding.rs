//! Text files in any encoding, read as UTF-8: [`TextReader`] wraps a byte
//! reader and yields UTF-8, dropping a byte-order mark at the start.
//!
//! UTF-8 (the default) passes through unchanged, without a copy of the
//! checking kind: an invalid byte stays invalid, so the parser reports it
//! (with a hint to set `encoding:`) instead of it turning silently into
//! U+FFFD. Every other encoding goes through `encoding_rs`, whose decoder
//! also sniffs a byte-order mark (a UTF-8 or UTF-16 BOM wins over the
//! configured encoding, as in browsers); bytes that do not decode become
//! U+FFFD.
//!
//! End of input is never final: a followed file may grow, so a multi-byte
//! sequence cut by the current end waits in the decoder for its rest. At the
//! true end of a plain file such a cut sequence (a truncated file) is
//! dropped.

use std::io::{self, Read};

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_8};

/// Bytes read from the inner reader per refill when decoding.
pub const DECODE_CHUNK_BYTES: usize = 64 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A reader of UTF-8 over a reader of text in `encoding`.
pub struct TextReader<R> {
    inner: R,
    mode: Mode,
    /// Decoded (or passed-through) bytes not yet handed out, from `start`.
    pending: Vec<u8>,
    start: usize,
}

enum Mode {
    /// UTF-8: the first bytes are held until it is known whether they are a BOM.
    Utf8 {
        head: Vec<u8>,
        decided: bool,
    },
    Decode {
        decoder: Box<Decoder>,
        input: Vec<u8>,
    },
}

impl<R: Read> TextReader<R> {
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        let mode = if encoding == UTF_8 {
            Mode::Utf8 { head: Vec::with_capacity(UTF8_BOM.len()), decided: false }
        } else {
            Mode::Decode { decoder: Box::new(encoding.new_decoder()), input: vec![0; DECODE_CHUNK_BYTES] }
        };
        TextReader { inner, mode, pending: Vec::new(), start: 0 }
    }

    /// Refills `pending`; returns false at the current end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        self.pending.clear();
        self.start = 0;
        match &mut self.mode {
            Mode::Utf8 { head, decided } => {
                // Only reached until the BOM question is decided.
                let mut byte = [0u8; 1];
                while !*decided {
                    if read_some(&mut self.inner, &mut byte)? == 0 {
                        return Ok(false);
                    }
                    head.push(byte[0]);
                    if head.len() == UTF8_BOM.len() || !UTF8_BOM.starts_with(head) {
                        *decided = true;
                        if head != UTF8_BOM {
                            self.pending.extend_from_slice(head);
                        }
                        head.clear();
                    }
                }
                Ok(!self.pending.is_empty())
            }
            Mode::Decode { decoder, input } => loop {
                let read = read_some(&mut self.inner, input)?;
                if read == 0 {
                    return Ok(false);
                }
                let mut source = input.get(..read).unwrap_or_default();
                while !source.is_empty() {
                    let room = decoder.max_utf8_buffer_length(source.len()).unwrap_or(source.len() * 3 + 16);
                    let filled = self.pending.len();
                    self.pending.resize(filled + room, 0);
                    let target = self.pending.get_mut(filled..).unwrap_or_default();
                    let (result, consumed, written, _) = decoder.decode_to_utf8(source, target, false);
                    self.pending.truncate(filled + written);
                    source = source.get(consumed..).unwrap_or_default();
                    if result == CoderResult::InputEmpty {
                        break;
                    }
                }
                if !self.pending.is_empty() {
                    return Ok(true);
                }
                // Only part of a multi-byte sequence so far: read on.
            },
        }
    }
}

/// One `read`, retried when interrupted.
fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl<R: Read> Read for TextReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.start == self.pending.len() {
            let passing_through = |mode: &Mode| matches!(mode, Mode::Utf8 { decided: true, .. });
            if passing_through(&self.mode) {
                return self.inner.read(buf);
            }
            if !self.refill()? {
                // A dropped BOM leaves nothing pending: the rest passes through.
                return if passing_through(&self.mode) { self.inner.read(buf) } else { Ok(0) };
            }
        }
        let available = self.pending.get(self.start..).unwrap_or_default();
        let n = available.len().min(buf.len());
        for (to, from) in buf.iter_mut().zip(available) {
            *to = *from;
        }
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves.
    #![allow(clippy::indexing_slicing)]
    use super::*;

    /// Hands out one byte per read, and `0` (end for now) every third call,
    /// like a file that is still being written.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        calls: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) || self.at == self.bytes.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.bytes[self.at];
            self.at += 1;
            Ok(1)
        }
    }

    /// Reads until `expected_len` bytes came out, treating `0` as "not yet".
    fn read_all(reader: &mut impl Read, expected_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        for _ in 0..10_000 {
            if out.len() >= expected_len {
                break;
            }
            let n = reader.read(&mut buf).expect("read");
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn windows_1252_becomes_utf8_even_a_byte_at_a_time() {
        let source = b"nombre;importe\nPe\xf1a;12,5\n\x80 \xfa\n".to_vec();
        let expected = "nombre;importe\nPeña;12,5\n€ ú\n";
        let trickle = Trickle { bytes: source.clone(), at: 0, calls: 0 };
        let mut reader = TextReader::new(trickle, encoding_rs::WINDOWS_1252);
        assert_eq!(String::from_utf8(read_all(&mut reader, expected.len())).unwrap(), expected);
        let mut whole = String::new();
        TextReader::new(&source[..], encoding_rs::WINDOWS_1252).read_to_string(&mut whole).unwrap();
        assert_eq!(whole, expected);
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_wins() {
        let expected = "a,b\n1,2\n";
        let with_bom = [UTF8_BOM, expected.as_bytes()].concat();
        for encoding in [UTF_8, encoding_rs::WINDOWS_1252] {
            let trickle = Trickle { bytes: with_bom.clone(), at: 0, calls: 0 };
            let out = read_all(&mut TextReader::new(trickle, encoding), expected.len());
            assert_eq!(out, expected.as_bytes(), "{}", encoding.name());
        }
        // UTF-16LE with its BOM, configured as Windows-1252.
        let utf16: Vec<u8> =
            [0xFF, 0xFE].into_iter().chain(expected.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        let trickle = Trickle { bytes: utf16, at: 0, calls: 0 };
        let out = read_all(&mut TextReader::new(trickle, encoding_rs::WINDOWS_1252), expected.len());
        assert_eq!(out, expected.as_bytes());
    }

    #[test]
    fn utf8_passes_through_unchanged_invalid_bytes_included() {
        for (source, expected) in [
            (&b"x\xf1y\n"[..], &b"x\xf1y\n"[..]),
            (b"\xEF\xBBz", b"\xEF\xBBz"),
            (b"\xEF\xBB\xBFa,b\n", b"a,b\n"),
            (b"", b""),
            // A file cut inside what could be a BOM: those bytes are dropped.
            (b"\xEF", b""),
        ] {
            let mut out = Vec::new();
            TextReader::new(source, UTF_8).read_to_end(&mut out).unwrap();
            assert_eq!(out, expected, "{source:?}");
        }
    }
}
