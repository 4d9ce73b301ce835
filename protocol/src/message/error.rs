//! The stable error codes of PROTOCOL.md §8, the `{"code","message"}` body
//! that carries one, and the error a control message that cannot be
//! accepted parses into.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::{Deserialize, Serialize};

/// Stable error codes (PROTOCOL.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A text frame is not a JSON object.
    InvalidJson,
    /// A field is missing, has the wrong type, or is too long.
    BadRequest,
    /// `action` is not known.
    UnknownAction,
    /// Missing, malformed or badly signed token.
    Unauthorized,
    /// The token's `exp` has passed.
    TokenExpired,
    /// Valid credentials refused (other tenant, role mismatch).
    Forbidden,
    /// Revoked session, user or tenant.
    Revoked,
    /// No such dataset.
    DatasetNotFound,
    /// The token does not allow the dataset.
    DatasetForbidden,
    /// `subscribe` to a dataset that is not live.
    NotLive,
    /// The tenant has no connector online.
    ConnectorOffline,
    /// The connector disconnected mid-stream.
    ConnectorGone,
    /// The stream outlived `timeouts.query_seconds`.
    QueryTimeout,
    /// The stream was cancelled.
    Cancelled,
    /// Level 1: a query is already streaming on this socket.
    Busy,
    /// A per-session or per-connector limit was reached.
    TooManyRequests,
    /// `cancel`/`unsubscribe` names no open query.
    UnknownQuery,
    /// A frame or credit names a stream the socket does not own.
    UnknownStream,
    /// A level-2 binary frame header is malformed.
    BadFrameHeader,
    /// The connector failed reading its data source.
    SourceError,
    /// The browser fell behind its ring.
    SlowConsumer,
    /// A live stream's schema and dictionary frames passed what the gateway
    /// keeps for late joiners (the stream ends), or a late joiner's ring has
    /// no room for them (the subscription is refused).
    RetainedLimit,
    /// A bug.
    Internal,
    /// A service the gateway depends on (control plane, revocation feed) is
    /// unreachable and its policy is to fail closed; retry later.
    Unavailable,
    /// A code this version does not know (forward compatibility).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Revoked => "revoked",
            ErrorCode::DatasetNotFound => "dataset_not_found",
            ErrorCode::DatasetForbidden => "dataset_forbidden",
            ErrorCode::NotLive => "not_live",
            ErrorCode::ConnectorOffline => "connector_offline",
            ErrorCode::ConnectorGone => "connector_gone",
            ErrorCode::QueryTimeout => "query_timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Busy => "busy",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::UnknownQuery => "unknown_query",
            ErrorCode::UnknownStream => "unknown_stream",
            ErrorCode::BadFrameHeader => "bad_frame_header",
            ErrorCode::SourceError => "source_error",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::RetainedLimit => "retained_limit",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"code","message"}`: the error inside `stream_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody { code, message: message.into() }
    }
}

/// A control message that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ParseError {
    /// `invalid_json`, `unknown_action` or `bad_request`.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl ParseError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> ParseError {
        ParseError { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ConnectorMessage;

    #[test]
    fn unknown_error_codes_are_tolerated() {
        let text = r#"{"type":"error","code":"brand_new_code","message":"m"}"#;
        let ConnectorMessage::Error { error, .. } = ConnectorMessage::parse(text, 64).unwrap() else {
            panic!("not an error")
        };
        assert_eq!(error.code, ErrorCode::Other);
    }
}
