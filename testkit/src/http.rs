//! Raw HTTP and WebSocket requests on real sockets, for what the browser
//! client never sends (malformed requests, refusals, half-open upgrades) and
//! for the gateway's `/health` and `/metrics.json`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// How long a raw request waits for the server's answer.
pub const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The status of an HTTP response text (0 when there is none).
fn status_of(text: &str) -> u16 {
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends `request` raw and reads the response until the server closes (or
/// [`HTTP_READ_TIMEOUT`]): the status (0 when nothing came back) and the
/// text read. `None` when nothing accepts the connection.
pub fn try_http_raw(addr: SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(HTTP_READ_TIMEOUT)).expect("timeout");
    if stream.write_all(request).is_err() {
        return Some((0, String::new()));
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    Some((status_of(&text), text))
}

/// [`try_http_raw`], panicking when nothing accepts the connection.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    try_http_raw(addr, request).unwrap_or_else(|| panic!("connect to {addr}"))
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

/// `GET path` with `Connection: close`: the status and the whole response text.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_raw(addr, get_request(path).as_bytes())
}

/// The body of an HTTP response text.
pub fn http_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// Reads `/metrics.json`.
pub fn metrics_json(addr: SocketAddr) -> Value {
    let (status, text) = http_get(addr, "/metrics.json");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(http_body(&text)).expect("metrics.json is JSON")
}

/// `GET /health`: the `connectors` count, `None` when nothing answers.
pub fn health_connectors(addr: SocketAddr) -> Option<u64> {
    let (_, text) = try_http_raw(addr, get_request("/health").as_bytes())?;
    serde_json::from_str::<Value>(http_body(&text)).ok()?["connectors"].as_u64()
}

/// Waits until `/health` reports at least `n` connectors.
pub fn wait_health_connectors(addr: SocketAddr, n: u64, timeout: Duration) -> bool {
    crate::wait_until(timeout, || health_connectors(addr).is_some_and(|c| c >= n))
}

/// `/health`'s `connectors` of several gateways sampled on a thread of its
/// own, every `every`, until [`ConnectorSamples::stop`]: each sample is the
/// instant it was taken and each gateway's count (`None`: it did not answer).
pub struct ConnectorSamples {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(std::time::Instant, Vec<Option<u64>>)>>,
}

impl ConnectorSamples {
    /// Starts sampling `addrs`.
    pub fn start(addrs: Vec<SocketAddr>, every: Duration) -> ConnectorSamples {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Acquire) {
                let counts = addrs.iter().map(|addr| health_connectors(*addr)).collect();
                samples.push((std::time::Instant::now(), counts));
                std::thread::sleep(every);
            }
            samples
        });
        ConnectorSamples { stop, thread }
    }

    /// Stops sampling; every sample taken.
    pub fn stop(self) -> Vec<(std::time::Instant, Vec<Option<u64>>)> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().expect("the sampler does not panic")
    }
}

/// A WebSocket upgrade request for `path`, with `extra` header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Sends an upgrade request for `path` (with `extra` header lines) from a raw
/// socket and reads the answer: a refusal whole, a 101's head only (its
/// socket is then dropped). Returns the status and the text read.
pub fn upgrade_head(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(HTTP_READ_TIMEOUT)).expect("timeout");
    stream.write_all(upgrade_request(path, extra).as_bytes()).expect("write upgrade");
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
        // A 101 stays open: its head is all there is to read.
        if text.starts_with(b"HTTP/1.1 101") && text.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    (status_of(&text), text)
}

/// Asks to open a browser session with `token` from a raw socket: the HTTP
/// status and the error body's `code` and `message` (`""` for a 101, whose
/// socket is then dropped).
pub fn session_verdict(addr: SocketAddr, token: &str) -> (u16, String, String) {
    let (status, text) = upgrade_head(addr, &format!("/stream/{token}"), "");
    let body: Value = serde_json::from_str(http_body(&text)).unwrap_or(Value::Null);
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

/// Upgrades `path` on a raw socket; returns the socket positioned after the 101 head.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(HTTP_READ_TIMEOUT)).expect("timeout");
    stream.write_all(upgrade_request(path, "").as_bytes()).expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read upgrade response");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    stream
}

/// Reads one server (unmasked) frame: (opcode, payload). `None` at EOF/timeout.
pub fn read_raw_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let opcode = head[0] & 0x0F;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            usize::try_from(u64::from_be_bytes(b)).expect("fits usize")
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((opcode, payload))
}

/// Reads frames until a close frame; returns its code (`None`: the socket ended first).
pub fn raw_close_code(stream: &mut TcpStream) -> Option<u16> {
    while let Some((opcode, payload)) = read_raw_frame(stream) {
        if opcode == 0x8 {
            return payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A server that answers one connection with `response` and closes.
    fn answer_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && socket.read(&mut byte).is_ok_and(|n| n == 1) {
                request.push(byte[0]);
            }
            socket.write_all(response.as_bytes()).expect("answer");
        });
        addr
    }

    #[test]
    fn a_get_reads_the_status_and_the_body() {
        let addr = answer_once("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"connectors\":3}");
        assert_eq!(health_connectors(addr), Some(3));
        let addr = answer_once("HTTP/1.1 404 Not Found\r\n\r\nnope");
        let (status, text) = http_get(addr, "/x");
        assert_eq!((status, http_body(&text)), (404, "nope"));
    }

    #[test]
    fn nothing_listening_is_no_answer() {
        let addr = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        assert_eq!(health_connectors(addr), None);
        assert_eq!(try_http_raw(addr, b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
