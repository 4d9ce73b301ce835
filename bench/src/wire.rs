//! The bench's own minimal WebSocket client side, built for speed rather than
//! generality (tungstenite is used for the control-only paths):
//!
//! - [`handshake`]: a blocking HTTP upgrade on a `TcpStream`; returns the
//!   bytes that arrived after the `101` head (a `hello` often does).
//! - [`client_frame`]: a masked client frame with the all-zero mask key. RFC
//!   6455 requires the mask bit, not an unpredictable key from a load
//!   generator; a zero key leaves the payload unchanged, so a frame is built
//!   once and only its sequence/stamp bytes are patched before each write.
//! - [`Parser`]: a streaming parser of server frames that never copies a
//!   binary payload: it keeps the first [`PREFIX_BYTES`] (level-2 header and
//!   the timestamps) and skips the rest.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bytes of a binary payload the parser keeps: the 16-byte level-2 header,
/// then the scheduled and the actual send time (u64 nanoseconds each).
pub const PREFIX_BYTES: usize = 32;
/// Level-2 frame header length.
pub const HEADER_BYTES: usize = 16;

/// WebSocket opcodes the bench uses.
pub const OP_TEXT: u8 = 0x1;
/// Binary.
pub const OP_BINARY: u8 = 0x2;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping.
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// The upgrade request for `path`.
pub fn upgrade_request(addr: SocketAddr, path: &str, subprotocol: Option<&str>) -> String {
    let protocol = subprotocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}\r\n"
    )
}

/// Reads an HTTP response head from `stream`; returns (head, bytes after it).
pub fn read_head(stream: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "gateway closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "handshake response head too long"));
        }
    }
}

/// `GET path` over plain HTTP/1.1 (`Connection: close`); the body when the
/// status is 200. For the gateway's `/metrics.json`.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    io::Read::take(&mut stream, 64 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        let first = head.lines().next().unwrap_or_default().to_owned();
        return Err(io::Error::other(format!("GET {path}: {first}")));
    }
    Ok(body.to_owned())
}

/// Connects and upgrades; returns the socket (blocking, nodelay) and leftover bytes.
pub fn handshake(addr: SocketAddr, path: &str, subprotocol: Option<&str>) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(upgrade_request(addr, path, subprotocol).as_bytes())?;
    let (head, rest) = read_head(&mut stream)?;
    if !head.starts_with("HTTP/1.1 101") {
        let first = head.lines().next().unwrap_or_default().to_owned();
        return Err(io::Error::other(format!("upgrade of {path} refused: {first}")));
    }
    stream.set_read_timeout(None)?;
    Ok((stream, rest))
}

/// Header of a masked client frame with the zero mask key.
pub fn client_frame_header(opcode: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | u8::try_from(len).unwrap_or(125));
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A whole masked client frame (zero key: the payload is sent as is).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = client_frame_header(opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A text frame holding `json`.
pub fn text_frame(json: &serde_json::Value) -> Vec<u8> {
    client_frame(OP_TEXT, json.to_string().as_bytes())
}

/// One parsed server frame (binary payloads are not kept, only their prefix).
#[derive(Debug, Clone)]
pub enum Event {
    /// A text message.
    Text(String),
    /// A binary frame: total payload length and its first bytes.
    Binary {
        /// Payload length.
        len: usize,
        /// First `min(len, PREFIX_BYTES)` bytes.
        prefix: [u8; PREFIX_BYTES],
    },
    /// A ping (payload to echo in the pong).
    Ping(Vec<u8>),
    /// A close frame (code if any).
    Close(Option<u16>),
}

/// Streaming parser of unmasked server frames; see the module docs.
#[derive(Debug, Default)]
pub struct Parser {
    head: [u8; 14],
    head_len: usize,
    opcode: u8,
    remaining: usize,
    len: usize,
    in_payload: bool,
    prefix: [u8; PREFIX_BYTES],
    kept: Vec<u8>,
}

fn header_len(head: &[u8]) -> Option<(usize, usize)> {
    if head.len() < 2 {
        return None;
    }
    match head[1] & 0x7F {
        126 => (head.len() >= 4).then(|| (4, usize::from(u16::from_be_bytes([head[2], head[3]])))),
        127 => (head.len() >= 10).then(|| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&head[2..10]);
            (10, usize::try_from(u64::from_be_bytes(raw)).unwrap_or(usize::MAX))
        }),
        n => Some((2, usize::from(n))),
    }
}

impl Parser {
    /// Feeds bytes; calls `on_event` for every completed frame.
    pub fn feed(&mut self, mut data: &[u8], mut on_event: impl FnMut(Event)) {
        while !data.is_empty() {
            if !self.in_payload {
                // Accumulate header bytes one needed slice at a time.
                let need = match header_len(&self.head[..self.head_len]) {
                    Some((h, _)) => h,
                    None if self.head_len < 2 => 2,
                    None => match self.head[1] & 0x7F {
                        126 => 4,
                        _ => 10,
                    },
                };
                let take = (need - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if let Some((h, len)) = header_len(&self.head[..self.head_len]) {
                    if self.head_len == h {
                        self.opcode = self.head[0] & 0x0F;
                        self.len = len;
                        self.remaining = len;
                        self.in_payload = true;
                        self.kept.clear();
                        self.prefix = [0; PREFIX_BYTES];
                    }
                }
                if !self.in_payload {
                    continue;
                }
                if self.remaining == 0 {
                    self.finish(&mut on_event);
                }
                continue;
            }
            let take = self.remaining.min(data.len());
            let done = self.len - self.remaining;
            if self.opcode == OP_BINARY || self.opcode == 0 {
                if done < PREFIX_BYTES {
                    let keep = (PREFIX_BYTES - done).min(take);
                    self.prefix[done..done + keep].copy_from_slice(&data[..keep]);
                }
            } else {
                self.kept.extend_from_slice(&data[..take]);
            }
            self.remaining -= take;
            data = &data[take..];
            if self.remaining == 0 {
                self.finish(&mut on_event);
            }
        }
    }

    fn finish(&mut self, on_event: &mut impl FnMut(Event)) {
        self.in_payload = false;
        self.head_len = 0;
        let event = match self.opcode {
            OP_TEXT => Event::Text(String::from_utf8_lossy(&self.kept).into_owned()),
            OP_PING => Event::Ping(std::mem::take(&mut self.kept)),
            OP_CLOSE => Event::Close(self.kept.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))),
            OP_PONG => return,
            _ => Event::Binary { len: self.len, prefix: self.prefix },
        };
        on_event(event);
    }
}

/// Current time as nanoseconds since the Unix epoch: the clock every process
/// of one bench run shares (same host), used for latency stamps.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Little-endian u64 at `at` of `bytes`.
pub fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Reads one whole text message (skipping pings/binary) from a blocking socket.
pub fn read_text(stream: &mut TcpStream, parser: &mut Parser, pending: &mut Vec<Event>) -> io::Result<String> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(pos) = pending.iter().position(|e| matches!(e, Event::Text(_) | Event::Close(_))) {
            return match pending.remove(pos) {
                Event::Text(text) => Ok(text),
                _ => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "gateway closed the socket")),
            };
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "gateway closed the socket"));
        }
        parser.feed(&buf[..n], |e| pending.push(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = client_frame_header(opcode, payload.len());
        out[1] &= 0x7F;
        out.truncate(out.len() - 4);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parser_handles_frames_split_at_every_byte() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = server_frame(OP_TEXT, b"{\"type\":\"hello\"}");
        stream.extend(server_frame(OP_BINARY, &big));
        stream.extend(server_frame(OP_BINARY, &big[..200]));
        stream.extend(server_frame(OP_BINARY, &[]));
        for step in [1, 3, 7, 4096, stream.len()] {
            let mut parser = Parser::default();
            let mut events = Vec::new();
            for chunk in stream.chunks(step) {
                parser.feed(chunk, |e| events.push(e));
            }
            assert_eq!(events.len(), 4, "step {step}");
            assert!(matches!(&events[0], Event::Text(t) if t.contains("hello")));
            assert!(matches!(&events[1], Event::Binary { len: 70_000, prefix } if prefix[..] == big[..PREFIX_BYTES]));
            assert!(matches!(&events[2], Event::Binary { len: 200, .. }));
            assert!(matches!(&events[3], Event::Binary { len: 0, .. }));
        }
    }
}
