//! Control messages (PROTOCOL.md §4): JSON text frames on both sockets.
//!
//! Four directions, four types: [`ConnectorMessage`] (connector → gateway),
//! [`GatewayCommand`] (gateway → connector), [`BrowserRequest`] (browser →
//! gateway) and [`BrowserEvent`] (gateway → browser), plus the register reply
//! [`RegisterReply`]. Parsing classifies failures into the protocol's error
//! codes (`invalid_json`, `unknown_action`, `bad_request`) and checks id
//! lengths; unknown fields are ignored for forward compatibility.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    fn new(code: ErrorCode, message: impl Into<String>) -> ParseError {
        ParseError { code, message: message.into() }
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::new(ErrorCode::InvalidJson, "a control message must be a JSON object")),
        Err(e) => Err(ParseError::new(ErrorCode::InvalidJson, format!("not JSON: {e}"))),
    }
}

fn typed<T: for<'de> Deserialize<'de>>(map: Map<String, Value>, what: &str) -> Result<T, ParseError> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ParseError::new(ErrorCode::BadRequest, format!("{what}: {e}")))
}

fn tag<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ParseError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::new(ErrorCode::BadRequest, format!("{key} must be a string"))),
    }
}

fn check_id(field: &str, value: &str, id_bytes_max: usize) -> Result<(), ParseError> {
    if value.is_empty() || value.len() > id_bytes_max {
        return Err(ParseError::new(
            ErrorCode::BadRequest,
            format!("{field} must be 1 to {id_bytes_max} bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

fn to_json_with(tag_key: &str, tag_value: &str, body: &impl Serialize) -> String {
    let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        // Put the tag first so logs read naturally.
        let mut ordered = Map::new();
        ordered.insert(tag_key.to_owned(), Value::String(tag_value.to_owned()));
        ordered.append(map);
        return Value::Object(ordered).to_string();
    }
    value.to_string()
}

// ------------------------------------------------------------- compression

/// An IPC body compression codec (Arrow's `BodyCompression`), by its wire
/// name. Codec names travel as strings in the messages so that a name this
/// version does not know is ignored, not refused (forward compatibility);
/// [`Codec::from_name`] reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// `lz4`: Arrow's `LZ4_FRAME` (each buffer one LZ4 frame).
    Lz4,
    /// `zstd`: Arrow's `ZSTD` (each buffer one Zstandard frame).
    Zstd,
}

impl Codec {
    /// Every codec this version knows.
    pub const ALL: [Codec; 2] = [Codec::Zstd, Codec::Lz4];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec a wire name denotes; `None` for a name this version does not know.
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|codec| codec.as_str() == name)
    }

    /// The known codecs among `names`, in their order, each once.
    pub fn known(names: &[String]) -> Vec<Codec> {
        let mut out: Vec<Codec> = Vec::with_capacity(Codec::ALL.len());
        for codec in names.iter().filter_map(|name| Codec::from_name(name)) {
            if !out.contains(&codec) {
                out.push(codec);
            }
        }
        out
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------- tunnel, up

/// `register` (connector → gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Tenant the connector serves.
    pub tenant_id: String,
    /// Connector software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Datasets this connector serves.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// The subset of `datasets` that are live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<String>,
    /// Protocol level; absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Connector credential (`volley token --connector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// IPC body compression codecs the connector can produce ([`Codec`]
    /// names; unknown names are ignored). The gateway asks a connector only
    /// for a codec it listed here (PROTOCOL.md §5.4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compression: Vec<String>,
}

/// The `data` of a `get_flight_info` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlightData {
    /// Base64 IPC schema message.
    pub schema: String,
    /// Row count, `-1` when unknown.
    pub records: i64,
}

/// Messages a connector sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorMessage {
    /// `{"action":"register",…}`
    Register(Register),
    /// `{"request_id","data":{"schema","records"}}`
    FlightInfo {
        /// The `get_flight_info` it answers.
        request_id: String,
        /// Schema and row count.
        data: FlightData,
    },
    /// `{"type":"stream_start",…}`
    StreamStart {
        /// The `do_get` it answers.
        request_id: String,
        /// Base64 IPC schema message.
        schema: String,
        /// Level 2: the stream id from `do_get`.
        stream_id: Option<u32>,
    },
    /// `{"type":"stream_end",…}`
    StreamEnd {
        /// The `do_get` it ends.
        request_id: String,
        /// IPC bytes sent, headers excluded.
        total_bytes: u64,
        /// Level 2: the stream id.
        stream_id: Option<u32>,
        /// Set when the stream failed.
        error: Option<ErrorBody>,
    },
    /// `{"type":"error",…}`
    Error {
        /// The request it answers.
        request_id: Option<String>,
        /// Code and message.
        error: ErrorBody,
    },
    /// `{"type":"pong"}`
    Pong,
    /// `{"action":"ping"}`
    Ping,
}

#[derive(Serialize, Deserialize)]
struct StreamStartBody {
    request_id: String,
    schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream_id: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct StreamEndBody {
    request_id: String,
    total_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

#[derive(Serialize, Deserialize)]
struct ErrorMessageBody {
    code: ErrorCode,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct FlightInfoBody {
    request_id: String,
    data: FlightData,
}

impl ConnectorMessage {
    /// Parses one text message from a connector.
    pub fn parse(text: &str, id_bytes_max: usize) -> Result<ConnectorMessage, ParseError> {
        let map = parse_object(text)?;
        if let Some(action) = tag(&map, "action")? {
            return match action {
                "register" => {
                    let register: Register = typed(map, "register")?;
                    check_id("tenant_id", &register.tenant_id, id_bytes_max)?;
                    for name in &register.datasets {
                        check_id("dataset name", name, id_bytes_max)?;
                    }
                    Ok(ConnectorMessage::Register(register))
                }
                "ping" => Ok(ConnectorMessage::Ping),
                other => Err(ParseError::new(ErrorCode::UnknownAction, format!("unknown action {other:?}"))),
            };
        }
        let message = match tag(&map, "type")? {
            Some("stream_start") => {
                let body: StreamStartBody = typed(map, "stream_start")?;
                check_id("request_id", &body.request_id, id_bytes_max)?;
                ConnectorMessage::StreamStart {
                    request_id: body.request_id,
                    schema: body.schema,
                    stream_id: body.stream_id,
                }
            }
            Some("stream_end") => {
                let body: StreamEndBody = typed(map, "stream_end")?;
                check_id("request_id", &body.request_id, id_bytes_max)?;
                ConnectorMessage::StreamEnd {
                    request_id: body.request_id,
                    total_bytes: body.total_bytes,
                    stream_id: body.stream_id,
                    error: body.error,
                }
            }
            Some("error") => {
                let body: ErrorMessageBody = typed(map, "error")?;
                ConnectorMessage::Error {
                    request_id: body.request_id,
                    error: ErrorBody { code: body.code, message: body.message },
                }
            }
            Some("pong") => ConnectorMessage::Pong,
            Some(other) => {
                return Err(ParseError::new(ErrorCode::UnknownAction, format!("unknown message type {other:?}")))
            }
            None if map.contains_key("data") => {
                let body: FlightInfoBody = typed(map, "flight info")?;
                check_id("request_id", &body.request_id, id_bytes_max)?;
                ConnectorMessage::FlightInfo { request_id: body.request_id, data: body.data }
            }
            None => return Err(ParseError::new(ErrorCode::BadRequest, "message has no action, type or data")),
        };
        Ok(message)
    }

    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        match self {
            ConnectorMessage::Register(register) => to_json_with("action", "register", register),
            ConnectorMessage::FlightInfo { request_id, data } => {
                serde_json::json!({"request_id": request_id, "data": data}).to_string()
            }
            ConnectorMessage::StreamStart { request_id, schema, stream_id } => to_json_with(
                "type",
                "stream_start",
                &StreamStartBody { request_id: request_id.clone(), schema: schema.clone(), stream_id: *stream_id },
            ),
            ConnectorMessage::StreamEnd { request_id, total_bytes, stream_id, error } => to_json_with(
                "type",
                "stream_end",
                &StreamEndBody {
                    request_id: request_id.clone(),
                    total_bytes: *total_bytes,
                    stream_id: *stream_id,
                    error: error.clone(),
                },
            ),
            ConnectorMessage::Error { request_id, error } => to_json_with(
                "type",
                "error",
                &ErrorMessageBody {
                    code: error.code,
                    message: error.message.clone(),
                    request_id: request_id.clone(),
                    query_id: None,
                },
            ),
            ConnectorMessage::Pong => r#"{"type":"pong"}"#.to_owned(),
            ConnectorMessage::Ping => r#"{"action":"ping"}"#.to_owned(),
        }
    }
}

/// `data` of a successful register reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOk {
    /// The tunnel's id.
    pub session_id: String,
    /// Level 2 when agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Heartbeat interval the gateway uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds: Option<u64>,
    /// Default initial credit per stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_bytes: Option<u64>,
}

/// The gateway's reply to `register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterReply {
    /// `{"status":"ok","data":{…}}`
    Ok(RegisterOk),
    /// `{"status":"error","type":"error","code","message"}`
    Refused(ErrorBody),
}

impl RegisterReply {
    /// The JSON text of this reply.
    pub fn to_json(&self) -> String {
        match self {
            RegisterReply::Ok(data) => serde_json::json!({"status": "ok", "data": data}).to_string(),
            RegisterReply::Refused(error) => serde_json::json!({
                "status": "error", "type": "error", "code": error.code, "message": error.message
            })
            .to_string(),
        }
    }

    /// Parses a register reply (connector side).
    pub fn parse(text: &str) -> Result<RegisterReply, ParseError> {
        let map = parse_object(text)?;
        match tag(&map, "status")? {
            Some("ok") => {
                #[derive(Deserialize)]
                struct Body {
                    data: RegisterOk,
                }
                let body: Body = typed(map, "register reply")?;
                Ok(RegisterReply::Ok(body.data))
            }
            Some(_) => {
                let body: ErrorMessageBody = typed(map, "register refusal")?;
                Ok(RegisterReply::Refused(ErrorBody { code: body.code, message: body.message }))
            }
            None => Err(ParseError::new(ErrorCode::BadRequest, "register reply has no status")),
        }
    }
}

// -------------------------------------------------------------- tunnel, down

/// `descriptor` of `get_flight_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Dataset path; Volley uses one element, the dataset name.
    pub path: Vec<String>,
}

/// Commands the gateway sends a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum GatewayCommand {
    /// Schema and row count of a dataset.
    GetFlightInfo {
        /// Correlates the answer.
        request_id: String,
        /// Which dataset.
        descriptor: Descriptor,
    },
    /// Stream a dataset.
    DoGet {
        /// Correlates the stream.
        request_id: String,
        /// Dataset name.
        ticket: String,
        /// Level 2: the id to write in frame headers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<u32>,
        /// Level 2: initial credit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credit_bytes: Option<u64>,
        /// Keep the stream open and follow new data.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        live: bool,
        /// IPC body compression the connector must apply to this stream
        /// (a [`Codec`] name it listed in `register`); absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<String>,
    },
    /// More credit for a stream (level 2).
    Credit {
        /// Which stream.
        stream_id: u32,
        /// Additional bytes allowed.
        bytes: u64,
    },
    /// Stop a stream.
    Cancel {
        /// The `do_get` to stop.
        request_id: String,
    },
    /// Heartbeat.
    Ping,
}

impl GatewayCommand {
    /// Parses one text message from the gateway (connector side).
    pub fn parse(text: &str) -> Result<GatewayCommand, ParseError> {
        let map = parse_object(text)?;
        match tag(&map, "action")? {
            Some("get_flight_info" | "do_get" | "credit" | "cancel" | "ping") => typed(map, "command"),
            Some(other) => Err(ParseError::new(ErrorCode::UnknownAction, format!("unknown action {other:?}"))),
            None => Err(ParseError::new(ErrorCode::BadRequest, "command has no action")),
        }
    }

    /// The JSON text of this command.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The dataset a `get_flight_info` names (its single path element).
    pub fn descriptor_dataset(descriptor: &Descriptor) -> Option<&str> {
        match descriptor.path.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------ browser

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
        /// IPC body compression codecs the client can decode ([`Codec`]
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
        /// batch messages (a [`Codec`] name the request accepted); absent: none.
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
    fn garbage_is_classified() {
        assert_eq!(BrowserRequest::parse("{nope", 64).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(BrowserRequest::parse("[1,2]", 64).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(BrowserRequest::parse(r#"{"action":"drop"}"#, 64).unwrap_err().code, ErrorCode::UnknownAction);
        assert_eq!(BrowserRequest::parse(r#"{"action":"query"}"#, 64).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(BrowserRequest::parse(r#"{"action":7}"#, 64).unwrap_err().code, ErrorCode::BadRequest);
        let long = format!(r#"{{"action":"query","dataset":"{}"}}"#, "x".repeat(65));
        assert_eq!(BrowserRequest::parse(&long, 64).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(ConnectorMessage::parse(r#"{"hello":1}"#, 64).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn seed_register_without_level_fields() {
        let text = r#"{"action": "register", "tenant_id": "abc-123", "version": "1.0.0", "datasets": ["ventas"]}"#;
        let ConnectorMessage::Register(register) = ConnectorMessage::parse(text, 64).unwrap() else {
            panic!("not a register")
        };
        assert_eq!(register.protocol, None);
        assert_eq!(register.token, None);
        assert_eq!(register.datasets, vec!["ventas".to_owned()]);
    }

    #[test]
    fn codec_names_are_read_and_unknown_ones_ignored() {
        let names: Vec<String> = ["lz4", "brotli", "zstd", "lz4"].iter().map(|n| (*n).to_owned()).collect();
        assert_eq!(Codec::known(&names), [Codec::Lz4, Codec::Zstd]);
        for codec in Codec::ALL {
            assert_eq!(Codec::from_name(codec.as_str()), Some(codec));
            assert_eq!(serde_json::to_value(codec).unwrap(), serde_json::json!(codec.as_str()));
        }
        assert_eq!(Codec::from_name("LZ4"), None, "names are exact");
    }

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

    #[test]
    fn unknown_error_codes_are_tolerated() {
        let text = r#"{"type":"error","code":"brand_new_code","message":"m"}"#;
        let ConnectorMessage::Error { error, .. } = ConnectorMessage::parse(text, 64).unwrap() else {
            panic!("not an error")
        };
        assert_eq!(error.code, ErrorCode::Other);
    }
}
