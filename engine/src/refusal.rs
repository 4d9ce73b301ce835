//! Refusals: every way the gateway turns away a request or a connection it
//! has not admitted. Before an upgrade the answer is an HTTP error response
//! (PROTOCOL.md §10); on a tunnel, a refused `register` is answered by an
//! error reply and a WebSocket close (§4.1).
//!
//! Each [`RefusalKind`] fixes the error code (§8) and the HTTP status or
//! close code of its answer, in one table (the `refusal_kinds!` invocation
//! below): a site that refuses says only which kind and why
//! ([`Refusal::message`]), and the code that answers
//! ([`Refusal::http_response`], [`Refusal::register_reply`]) reads the rest
//! from the value. `engine/tests/refusal_table.rs` checks the
//! table against PROTOCOL.md's, both ways.

use volley_protocol::handshake::{http_error, HandshakeError};
use volley_protocol::message::{ErrorBody, ErrorCode, RegisterReply};
use volley_protocol::ws::close_code;

/// How a refusal reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    /// An HTTP response with this status and a JSON error body, instead of
    /// the upgrade; then the connection closes (PROTOCOL.md §10).
    Http(u16),
    /// A `register` reply `{"status":"error",…}`, then a WebSocket close with
    /// this code (PROTOCOL.md §4.1).
    Close(u16),
}

/// Declares [`RefusalKind`], its list [`RefusalKind::ALL`] and its
/// [`RefusalKind::parts`] from one table, so that no kind can be left out of
/// the list or lack its code and answer.
macro_rules! refusal_kinds {
    ($($(#[doc = $doc:literal])* $kind:ident => ($code:ident, $answer:expr),)*) => {
        /// Why a request or a connection is refused; each kind has one error
        /// code and one HTTP status or close code ([`RefusalKind::parts`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RefusalKind {
            $($(#[doc = $doc])* $kind,)*
        }

        impl RefusalKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [RefusalKind] = &[$(RefusalKind::$kind),*];

            /// The error code and the answer of this kind.
            pub fn parts(self) -> (ErrorCode, Answer) {
                match self {
                    $(RefusalKind::$kind => (ErrorCode::$code, $answer),)*
                }
            }
        }
    };
}

refusal_kinds! {
    // Before the upgrade: an HTTP error response.
    /// A malformed request head, missing or bad WebSocket headers, or a
    /// session id in the path that does not decode.
    Malformed => (BadRequest, Answer::Http(400)),
    /// An upgrade to a path with no WebSocket endpoint.
    NoEndpoint => (BadRequest, Answer::Http(404)),
    /// A method other than `GET`.
    NotGet => (BadRequest, Answer::Http(405)),
    /// `Sec-WebSocket-Version` other than 13.
    WrongVersion => (BadRequest, Answer::Http(426)),
    /// A request head over `handshake_bytes_max` or `handshake_headers_max`.
    HeadTooLarge => (BadRequest, Answer::Http(431)),
    /// A browser token missing, too long, malformed or badly signed, or one
    /// the control plane does not know.
    Unauthorized => (Unauthorized, Answer::Http(401)),
    /// A browser token (or control-plane session) past its `exp`.
    TokenExpired => (TokenExpired, Answer::Http(401)),
    /// A valid browser token refused: origin, role, edge, or the control
    /// plane's verdict.
    Forbidden => (Forbidden, Answer::Http(403)),
    /// The session, its user or its tenant is revoked.
    Revoked => (Revoked, Answer::Http(403)),
    /// The client's control-plane lookups are over
    /// `control_plane.lookups_per_ip_per_minute`.
    LookupsOverLimit => (TooManyRequests, Answer::Http(429)),
    /// `connections_max`, `connections_per_ip_max` or
    /// `sessions_per_tenant_max` reached.
    AtLimit => (TooManyRequests, Answer::Http(503)),
    /// A service needed to admit the session (control plane, revocation
    /// feed) is unreachable, and the policy is to fail closed.
    Unavailable => (Unavailable, Answer::Http(503)),
    // On a tunnel: an error reply to `register`, then a close.
    /// The first message is not a JSON object.
    RegisterInvalidJson => (InvalidJson, Answer::Close(close_code::PROTOCOL_ERROR)),
    /// The first message is not a text `register`, or a field of it is
    /// missing, of the wrong type or too long.
    RegisterBadRequest => (BadRequest, Answer::Close(close_code::PROTOCOL_ERROR)),
    /// The first message's `action` is not one this level knows.
    RegisterUnknownAction => (UnknownAction, Answer::Close(close_code::PROTOCOL_ERROR)),
    /// No connector token (unauthenticated connectors not allowed), or one
    /// that is malformed or badly signed.
    RegisterUnauthorized => (Unauthorized, Answer::Close(close_code::POLICY_VIOLATION)),
    /// A connector token past its `exp`.
    RegisterTokenExpired => (TokenExpired, Answer::Close(close_code::POLICY_VIOLATION)),
    /// A browser session presented as a connector token, or a token of
    /// another tenant.
    RegisterForbidden => (Forbidden, Answer::Close(close_code::POLICY_VIOLATION)),
    /// The tenant or the connector credential is revoked.
    RegisterRevoked => (Revoked, Answer::Close(close_code::POLICY_VIOLATION)),
}

impl RefusalKind {
    /// The error code sent with the refusal.
    pub fn code(self) -> ErrorCode {
        self.parts().0
    }

    /// The HTTP status or the close code.
    pub fn answer(self) -> Answer {
        self.parts().1
    }

    /// A refusal of this kind, saying why.
    pub fn with(self, message: impl Into<String>) -> Refusal {
        Refusal { kind: self, message: message.into() }
    }

    /// The `register` refusal that sends `code`: parse errors and token
    /// errors carry the protocol's code. A code no register refusal sends
    /// (none today) is answered as `bad_request`.
    pub fn at_register(code: ErrorCode) -> RefusalKind {
        RefusalKind::ALL
            .iter()
            .copied()
            .find(|kind| matches!(kind.answer(), Answer::Close(_)) && kind.code() == code)
            .unwrap_or(RefusalKind::RegisterBadRequest)
    }
}

/// A refusal: its kind (code and answer) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is refused, which fixes the code and the answer.
    pub kind: RefusalKind,
    /// Why, for people: sent as the error's `message` (and the close reason).
    pub message: String,
}

impl Refusal {
    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.kind.code()
    }

    /// A request the protocol's handshake or router refuses, as the kind
    /// with its status (`bad_request` with 400, 405, 426 or 431). A status
    /// none of them has is answered 400.
    pub fn from_handshake(error: HandshakeError) -> Refusal {
        let kind = RefusalKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.parts() == (ErrorCode::BadRequest, Answer::Http(error.status)))
            .unwrap_or(RefusalKind::Malformed);
        kind.with(error.reason)
    }

    /// The HTTP response: `{"type":"error","code":…,"message":…}` with the
    /// kind's status. A register kind has no HTTP status; sent before an
    /// upgrade (a bug) it is answered 400.
    pub fn http_response(&self) -> Vec<u8> {
        let status = match self.kind.answer() {
            Answer::Http(status) => status,
            Answer::Close(_) => {
                debug_assert!(false, "{:?} refuses a register, not an HTTP request", self.kind);
                400
            }
        };
        http_error(status, self.code().as_str(), &self.message)
    }

    /// The `register` reply (JSON text) and the close code that follows it.
    /// An HTTP kind has no close code; sent on a tunnel (a bug) it closes
    /// with 1008, policy violation.
    pub fn register_reply(&self) -> (String, u16) {
        let close = match self.kind.answer() {
            Answer::Close(code) => code,
            Answer::Http(_) => {
                debug_assert!(false, "{:?} refuses an HTTP request, not a register", self.kind);
                close_code::POLICY_VIOLATION
            }
        };
        (RegisterReply::Refused(ErrorBody::new(self.code(), self.message.as_str())).to_json(), close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_keep_their_status() {
        for status in [400, 404, 405, 426, 431] {
            let refusal = Refusal::from_handshake(HandshakeError::new(status, "why"));
            assert_eq!(refusal.kind.parts(), (ErrorCode::BadRequest, Answer::Http(status)));
        }
        assert_eq!(Refusal::from_handshake(HandshakeError::new(418, "teapot")).kind, RefusalKind::Malformed);
    }

    #[test]
    fn register_kinds_follow_the_protocol_code() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::BadRequest,
            ErrorCode::UnknownAction,
            ErrorCode::Unauthorized,
            ErrorCode::TokenExpired,
            ErrorCode::Forbidden,
            ErrorCode::Revoked,
        ] {
            assert_eq!(RefusalKind::at_register(code).code(), code);
        }
        assert_eq!(RefusalKind::at_register(ErrorCode::Internal), RefusalKind::RegisterBadRequest);
        let (text, close) = RefusalKind::RegisterRevoked.with("gone").register_reply();
        assert_eq!(close, close_code::POLICY_VIOLATION);
        assert_eq!(text, r#"{"code":"revoked","message":"gone","status":"error","type":"error"}"#);
    }

    #[test]
    fn http_response_carries_status_code_and_message() {
        let response = String::from_utf8(RefusalKind::Revoked.with("this user was revoked").http_response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{response}");
        assert!(
            response.ends_with(r#"{"code":"revoked","message":"this user was revoked","type":"error"}"#),
            "{response}"
        );
    }
}
