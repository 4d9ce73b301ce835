//! The browser socket's control messages: the requests a browser sends
//! ([`BrowserRequest`]) and the events the gateway sends it
//! ([`BrowserEvent`]).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ErrorBody, ErrorCode, ParseError};
use super::json::{check_id, parse_object, tag, typed};

/// Requests a browser sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BrowserRequest {
    /// Read a dataset once.
    Query {
        /// Dataset name.
        dataset: String,
        /// Client's id for the query; the gateway makes one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query_id: Option<String>,
        /// IPC body compression codecs the client can decode ([`Codec`](super::Codec)
        /// names; unknown names are ignored). Absent: the gateway assumes
        /// `compression.assume_client_codecs` (none by default); `[]`: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<Vec<String>>,
    },
    /// Datasets the session may read.
    List,
    /// Follow a live dataset.
    Subscribe {
        /// Dataset name.
        dataset: String,
        /// Client's id for the subscription.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query_id: Option<String>,
        /// Codecs the client can decode, as in [`BrowserRequest::Query`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<Vec<String>>,
    },
    /// Stop following.
    Unsubscribe {
        /// The subscription.
        query_id: String,
    },
    /// Stop a query.
    Cancel {
        /// The query.
        query_id: String,
    },
    /// Application-level heartbeat (browsers cannot send WebSocket pings).
    Ping,
}

impl BrowserRequest {
    /// Parses one text message from a browser.
    pub fn parse(text: &str, id_bytes_max: usize) -> Result<BrowserRequest, ParseError> {
        let map = parse_object(text)?;
        let request: BrowserRequest = match tag(&map, "action")? {
            Some("query" | "list" | "subscribe" | "unsubscribe" | "cancel" | "ping") => typed(map, "request")?,
            Some(other) => return Err(ParseError::new(ErrorCode::UnknownAction, format!("unknown action {other:?}"))),
            None => return Err(ParseError::new(ErrorCode::BadRequest, "request has no action")),
        };
        match &request {
            BrowserRequest::Query { dataset, query_id, compression }
            | BrowserRequest::Subscribe { dataset, query_id, compression } => {
                check_id("dataset", dataset, id_bytes_max)?;
                if let Some(id) = query_id {
                    check_id("query_id", id, id_bytes_max)?;
                }
                for name in compression.iter().flatten() {
                    check_id("compression codec name", name, id_bytes_max)?;
                }
            }
            BrowserRequest::Unsubscribe { query_id } | BrowserRequest::Cancel { query_id } => {
                check_id("query_id", query_id, id_bytes_max)?;
            }
            BrowserRequest::List | BrowserRequest::Ping => {}
        }
        Ok(request)
    }

    /// The JSON text of this request.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One entry of a `datasets` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Dataset name.
    pub name: String,
    /// Whether it can be subscribed to.
    pub live: bool,
}

/// Events the gateway sends a browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrowserEvent {
    /// First message on a level-2 socket.
    Hello {
        /// Protocol level (2).
        protocol: u8,
        /// User id from the token.
        user: String,
        /// Tenant from the token.
        tenant: String,
        /// Token expiry, Unix seconds.
        expires_at: i64,
        /// Limits the client should respect.
        limits: Value,
    },
    /// Answer to `list`.
    Datasets {
        /// Readable datasets online now.
        datasets: Vec<DatasetInfo>,
    },
    /// Unasked, level 2: the session's readable online datasets changed
    /// (connectors came or went). The whole list, as `list` would answer.
    DatasetsChanged {
        /// Readable datasets online now.
        datasets: Vec<DatasetInfo>,
    },
    /// Schema and row count, before `stream_start` of a query.
    FlightInfo {
        /// The query.
        query_id: String,
        /// Dataset name.
        dataset: String,
        /// Base64 IPC schema message.
        schema: String,
        /// Row count, `-1` when unknown.
        records: i64,
    },
    /// A stream begins.
    StreamStart {
        /// The query or subscription.
        query_id: String,
        /// Same as `query_id` (seed compatibility).
        request_id: String,
        /// Dataset name.
        dataset: String,
        /// Base64 IPC schema message.
        schema: String,
        /// Level 2: stream id in frame headers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<u32>,
        /// Whether the stream follows live data.
        live: bool,
        /// The IPC body compression of this stream's dictionary and record
        /// batch messages (a [`Codec`](super::Codec) name the request accepted); absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<String>,
    },
    /// A stream ends (with `error` when it failed).
    StreamEnd {
        /// The query or subscription.
        query_id: String,
        /// Same as `query_id` (seed compatibility).
        request_id: String,
        /// Level 2: stream id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<u32>,
        /// IPC bytes delivered, headers excluded.
        total_bytes: u64,
        /// Why the stream failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    /// Level 2: a live subscription's stream ended because its connector
    /// went away (or stopped the stream). The subscription stays open and
    /// waits; when a connector serving the dataset is back, a new
    /// `stream_start` (new `stream_id`, schema again) follows for the same
    /// `query_id` (PROTOCOL.md §5.3).
    LiveWaiting {
        /// The subscription.
        query_id: String,
        /// The stream that ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<u32>,
        /// Dataset name.
        dataset: String,
        /// Why the stream ended.
        error: ErrorBody,
    },
    /// A query waits for a stream slot: every tunnel serving its dataset is
    /// at its stream limit (PROTOCOL.md §5.1). `flight_info` or
    /// `stream_start` follows when it is admitted, an `error`
    /// `too_many_requests` if it waits too long.
    Queued {
        /// The query.
        query_id: String,
        /// Dataset name.
        dataset: String,
        /// Its place among all the tenant's waiting queries when it joined (1: next).
        position: u64,
    },
    /// Frames were skipped for a slow live subscriber.
    Gap {
        /// The subscription.
        query_id: String,
        /// Stream id.
        stream_id: u32,
        /// Sequence of the next frame delivered.
        next_sequence: u64,
        /// How many frames were dropped.
        skipped_frames: u64,
    },
    /// Answer to `unsubscribe`.
    Unsubscribed {
        /// The subscription.
        query_id: String,
    },
    /// A refusal or failure.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The query it concerns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query_id: Option<String>,
    },
    /// Answer to `ping`.
    Pong,
}

impl BrowserEvent {
    /// An error event.
    pub fn error(code: ErrorCode, message: impl Into<String>, query_id: Option<String>) -> BrowserEvent {
        BrowserEvent::Error { code, message: message.into(), query_id }
    }

    /// The JSON text of this event.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses an event (client side).
    pub fn parse(text: &str) -> Result<BrowserEvent, ParseError> {
        let map = parse_object(text)?;
        typed(map, "event")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_compression_lists_are_optional_and_distinguish_empty_from_absent() {
        let parse = |text: &str| BrowserRequest::parse(text, 64).unwrap();
        let BrowserRequest::Query { compression, .. } = parse(r#"{"action":"query","dataset":"v"}"#) else {
            panic!("not a query")
        };
        assert_eq!(compression, None);
        let BrowserRequest::Subscribe { compression, .. } =
            parse(r#"{"action":"subscribe","dataset":"v","compression":[]}"#)
        else {
            panic!("not a subscribe")
        };
        assert_eq!(compression, Some(Vec::new()));
        let empty = parse(r#"{"action":"query","dataset":"v","compression":[]}"#);
        assert!(empty.to_json().contains(r#""compression":[]"#), "[] survives a round trip: {}", empty.to_json());
        for bad in [
            r#"{"action":"query","dataset":"v","compression":"zstd"}"#,
            r#"{"action":"query","dataset":"v","compression":[""]}"#,
            r#"{"action":"query","dataset":"v","compression":[7]}"#,
        ] {
            assert_eq!(BrowserRequest::parse(bad, 64).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }
}
