//! HTTP/1.1 request parsing and the WebSocket opening handshake (RFC 6455 §4),
//! sans-IO: bytes in, a parsed [`Request`] out; responses are built as bytes.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::limits::Limits;

/// The GUID RFC 6455 §1.3 appends to the client's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The level-2 subprotocol name a browser offers.
pub const SUBPROTOCOL_V2: &str = "volley.v2";

/// A parsed HTTP request head: only what routing and the upgrade need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// `Host`.
    pub host: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Upgrade` contains the `websocket` token.
    pub upgrade_websocket: bool,
    /// `Connection` contains the `upgrade` token.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub websocket_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub websocket_version: Option<String>,
    /// Offered subprotocols, in order.
    pub protocols: Vec<String>,
    /// `Content-Length`, when present.
    pub content_length: Option<u64>,
    /// `Authorization`, when present.
    pub authorization: Option<String>,
}

impl Request {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// True when the request asks for a WebSocket upgrade.
    pub fn wants_upgrade(&self) -> bool {
        self.upgrade_websocket
    }
}

/// A refused request: the HTTP status to answer with and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {reason}")]
pub struct HandshakeError {
    /// Status code to send.
    pub status: u16,
    /// Human-readable reason (sent in the body).
    pub reason: String,
}

impl HandshakeError {
    /// A refusal with `status` and `reason`.
    pub fn new(status: u16, reason: impl Into<String>) -> HandshakeError {
        HandshakeError { status, reason: reason.into() }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes
/// are needed; on success returns the request and how many bytes it used.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.handshake_headers_max];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = match parsed.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::new(431, "too many request headers"));
        }
        Err(e) => return Err(HandshakeError::new(400, format!("malformed request: {e}"))),
    };
    let used = match status {
        httparse::Status::Complete(used) => used,
        httparse::Status::Partial => {
            if buf.len() >= limits.handshake_bytes_max {
                return Err(HandshakeError::new(431, "request head exceeds the handshake limit"));
            }
            return Ok(None);
        }
    };
    if used > limits.handshake_bytes_max {
        return Err(HandshakeError::new(431, "request head exceeds the handshake limit"));
    }
    let mut request = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        target: parsed.path.unwrap_or_default().to_owned(),
        ..Request::default()
    };
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HandshakeError::new(400, format!("header {} is not UTF-8", header.name)))?
            .trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            request.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            request.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            request.upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            request.connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            request.websocket_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            request.websocket_version = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            request.protocols.extend(value.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned));
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| HandshakeError::new(400, "bad Content-Length"))?;
            request.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("authorization") {
            request.authorization = Some(value.to_owned());
        }
    }
    Ok(Some((request, used)))
}

fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// The subprotocol the server selects, if any.
    pub protocol: Option<&'static str>,
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and chooses the subprotocol:
/// `volley.v2` when offered, otherwise none (level 1).
pub fn validate_upgrade(request: &Request) -> Result<Upgrade, HandshakeError> {
    if request.method != "GET" {
        return Err(HandshakeError::new(405, "WebSocket upgrades use GET"));
    }
    if !request.upgrade_websocket || !request.connection_upgrade {
        return Err(HandshakeError::new(400, "missing Upgrade: websocket / Connection: Upgrade"));
    }
    match request.websocket_version.as_deref() {
        Some("13") => {}
        _ => return Err(HandshakeError::new(426, "Sec-WebSocket-Version must be 13")),
    }
    let Some(key) = request.websocket_key.as_deref() else {
        return Err(HandshakeError::new(400, "missing Sec-WebSocket-Key"));
    };
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::new(400, "Sec-WebSocket-Key must be 16 bytes in base64")),
    }
    let protocol = request.protocols.iter().any(|p| p == SUBPROTOCOL_V2).then_some(SUBPROTOCOL_V2);
    Ok(Upgrade { accept: accept_key(key), protocol })
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` response for an accepted upgrade.
pub fn upgrade_response(upgrade: &Upgrade) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        upgrade.accept
    );
    if let Some(protocol) = upgrade.protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(protocol);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn http_response(status: u16, content_type: &str, body: &[u8], extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A JSON error response: `{"type":"error","code":…,"message":…}`.
pub fn http_error(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"type": "error", "code": code, "message": message}).to_string();
    http_response(status, "application/json", body.as_bytes(), &[])
}

/// The standard reason phrase of the statuses Volley sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves; a panic there fails the test.
    #![allow(clippy::indexing_slicing, clippy::string_slice)]

    use super::*;

    #[test]
    fn rfc6455_accept_key_example() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accept_key_agrees_with_tungstenite() {
        for key in ["dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "x3JJHMbDL1EzLkh9GBhXDw=="] {
            assert_eq!(accept_key(key), tungstenite::handshake::derive_accept_key(key.as_bytes()));
        }
    }

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, volley.v2\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc6455_opening_handshake_parses_and_selects_level_two() {
        let (request, used) = parse_request(RFC_REQUEST, &Limits::DEFAULT).unwrap().unwrap();
        assert_eq!(used, RFC_REQUEST.len());
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.origin.as_deref(), Some("http://example.com"));
        let upgrade = validate_upgrade(&request).unwrap();
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(upgrade.protocol, Some(SUBPROTOCOL_V2));
        let response = String::from_utf8(upgrade_response(&upgrade)).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: volley.v2\r\n"));
    }

    #[test]
    fn partial_and_oversized_requests() {
        for cut in 0..RFC_REQUEST.len() {
            assert_eq!(parse_request(&RFC_REQUEST[..cut], &Limits::DEFAULT), Ok(None));
        }
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(parse_request(&huge, &Limits::DEFAULT).unwrap_err().status, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse_request(&many, &Limits::DEFAULT).unwrap_err().status, 431);
        assert_eq!(parse_request(b"\x00\x01garbage\r\n\r\n", &Limits::DEFAULT).unwrap_err().status, 400);
    }

    #[test]
    fn bad_upgrades_get_the_right_status() {
        let (good, _) = parse_request(RFC_REQUEST, &Limits::DEFAULT).unwrap().unwrap();
        let mut r = good.clone();
        r.method = "POST".into();
        assert_eq!(validate_upgrade(&r).unwrap_err().status, 405);
        let mut r = good.clone();
        r.websocket_version = Some("8".into());
        assert_eq!(validate_upgrade(&r).unwrap_err().status, 426);
        let mut r = good.clone();
        r.websocket_key = Some("short".into());
        assert_eq!(validate_upgrade(&r).unwrap_err().status, 400);
        let mut r = good.clone();
        r.connection_upgrade = false;
        assert_eq!(validate_upgrade(&r).unwrap_err().status, 400);
        let mut r = good;
        r.protocols = vec!["chat".into()];
        assert_eq!(validate_upgrade(&r).unwrap().protocol, None);
    }
}
