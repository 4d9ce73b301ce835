//! The tunnel's control messages: what a connector sends
//! ([`ConnectorMessage`]), the gateway's reply to `register`
//! ([`RegisterReply`]) and the commands the gateway sends a connector
//! ([`GatewayCommand`]).

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::{Deserialize, Serialize};

use super::error::{ErrorBody, ErrorCode, ParseError};
use super::json::{check_id, parse_object, tag, to_json_with, typed};

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
    /// IPC body compression codecs the connector can produce ([`Codec`](super::Codec)
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
        /// (a [`Codec`](super::Codec) name it listed in `register`); absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<String>,
        /// Live, level 2: at most this many bytes of record batches from
        /// before the live edge (the data the source already had) are sent
        /// at the stream's start — the newest ones; absent: no bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_bytes: Option<u64>,
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
    /// The gateway is going away (a drain, PROTOCOL.md §4.2): open a tunnel
    /// to another gateway now, then close this one once its streams ended,
    /// at the latest after `grace_seconds`.
    Reconnect {
        /// Why, for the connector's log.
        reason: String,
        /// How long the gateway still serves this tunnel's streams; absent:
        /// the connector's own bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_seconds: Option<u64>,
    },
}

impl GatewayCommand {
    /// Parses one text message from the gateway (connector side).
    pub fn parse(text: &str) -> Result<GatewayCommand, ParseError> {
        let map = parse_object(text)?;
        match tag(&map, "action")? {
            Some("get_flight_info" | "do_get" | "credit" | "cancel" | "ping" | "reconnect") => typed(map, "command"),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reconnect_round_trips_and_its_grace_is_optional() {
        let command = GatewayCommand::Reconnect { reason: "gateway draining".into(), grace_seconds: Some(20) };
        let text = command.to_json();
        assert_eq!(text, r#"{"action":"reconnect","reason":"gateway draining","grace_seconds":20}"#);
        assert_eq!(GatewayCommand::parse(&text).unwrap(), command);
        let bare = GatewayCommand::parse(r#"{"action":"reconnect","reason":"x","later":1}"#).unwrap();
        assert_eq!(bare, GatewayCommand::Reconnect { reason: "x".into(), grace_seconds: None });
    }
}
