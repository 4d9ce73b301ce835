//! Which endpoint a request head asks for (PROTOCOL.md §10), sans-IO.
//!
//! The gateway serves a handful of paths; the two that carry a session id
//! in the path (`/stream/{session}`, `/session-check/{session}`) have it
//! percent-decoded here, strictly ([`crate::percent`]), so a malformed
//! escape is a 400 before any token code sees it.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use crate::handshake::{HandshakeError, Request};
use crate::percent;

/// Path of the connectors' tunnel endpoint.
pub const CONNECT_PATH: &str = "/ws/connect";
/// Prefix of the browsers' session endpoint.
pub const STREAM_PREFIX: &str = "/stream/";
/// Prefix of the session pre-check endpoint.
pub const SESSION_CHECK_PREFIX: &str = "/session-check/";
/// Path of the conformance echo endpoint (served only when enabled).
pub const ECHO_PATH: &str = "/echo";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /ws/connect`: a connector's tunnel.
    Connect,
    /// `GET /stream/{session}`: a browser session, the id decoded.
    Stream {
        /// The session token or opaque session id.
        session: String,
    },
    /// `GET|HEAD /session-check/{session}`, not an upgrade: would this session be admitted?
    SessionCheck {
        /// The session token or opaque session id.
        session: String,
    },
    /// `/echo`: the conformance echo (when the gateway enables it).
    Echo,
    /// Anything else: `/health`, `/metrics`, static files, or a 404/405.
    Other,
}

/// Routes a parsed request head; a path segment with a malformed
/// percent-escape is refused with 400.
pub fn route(request: &Request) -> Result<Route, HandshakeError> {
    let path = request.path();
    let decode = |segment: &str| {
        percent::decode(segment).map_err(|e| HandshakeError::new(400, format!("bad session id in the path: {e}")))
    };
    if path == CONNECT_PATH {
        return Ok(Route::Connect);
    }
    if let Some(session) = path.strip_prefix(STREAM_PREFIX) {
        return Ok(Route::Stream { session: decode(session)? });
    }
    if path == ECHO_PATH {
        return Ok(Route::Echo);
    }
    if let Some(session) = path.strip_prefix(SESSION_CHECK_PREFIX) {
        if (request.method == "GET" || request.method == "HEAD") && !request.wants_upgrade() {
            return Ok(Route::SessionCheck { session: decode(session)? });
        }
    }
    Ok(Route::Other)
}

/// A request path fit for logs: the session id in `/stream/{session}` and
/// `/session-check/{session}` is replaced by its length, so logs never
/// carry a credential.
pub fn redact_path(path: &str) -> String {
    for prefix in [STREAM_PREFIX, SESSION_CHECK_PREFIX] {
        if let Some(session) = path.strip_prefix(prefix) {
            return format!("{prefix}<redacted {} bytes>", session.len());
        }
    }
    path.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, upgrade: bool) -> Request {
        Request { method: method.into(), target: target.into(), upgrade_websocket: upgrade, ..Request::default() }
    }

    #[test]
    fn each_endpoint_is_recognised() {
        assert_eq!(route(&request("GET", "/ws/connect", true)), Ok(Route::Connect));
        assert_eq!(route(&request("GET", "/stream/a%2Eb?x=1", true)), Ok(Route::Stream { session: "a.b".into() }));
        assert_eq!(route(&request("HEAD", "/session-check/t", false)), Ok(Route::SessionCheck { session: "t".into() }));
        assert_eq!(route(&request("POST", "/session-check/t", false)), Ok(Route::Other));
        assert_eq!(route(&request("GET", "/session-check/t", true)), Ok(Route::Other));
        assert_eq!(route(&request("GET", "/echo", true)), Ok(Route::Echo));
        assert_eq!(route(&request("GET", "/health", false)), Ok(Route::Other));
    }

    #[test]
    fn a_malformed_escape_in_a_session_id_is_a_400() {
        for target in ["/session-check/%a\u{e9}", "/stream/%a\u{e9}", "/stream/%", "/session-check/%zz"] {
            let error = route(&request("GET", target, target.starts_with("/stream/"))).expect_err(target);
            assert_eq!(error.status, 400, "{target}");
            assert!(error.reason.contains("percent-escape"), "{target}: {}", error.reason);
        }
    }

    #[test]
    fn redacted_paths_keep_only_the_length() {
        assert_eq!(redact_path("/stream/abc.def"), "/stream/<redacted 7 bytes>");
        assert_eq!(redact_path("/session-check/x"), "/session-check/<redacted 1 bytes>");
        assert_eq!(redact_path("/health"), "/health");
    }
}
