//! A gateway played by the test itself, for the connector's and the CLI's
//! tests: the connector's socket, accepted from a listener and upgraded,
//! spoken to in the JSON of PROTOCOL.md §4 on a real socket.
//!
//! The engine names its requests from a counter of its own and grants
//! credit its own way; a scripted gateway sends what the protocol allows and
//! the engine never does (a `do_get` whose `request_id` is unrelated to its
//! `stream_id`, small credit granted only once spent, a `cancel` at a chosen
//! moment) and checks every message the connector answers with.
//! [`ScriptedGateway::serve`] plays the level-2 stream side: it files every
//! frame under the stream its header names, checks the credit rule, and
//! grants credit the way a gateway with a fast browser does.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};
use volley_protocol::header::FrameHeader;
use volley_protocol::limits::FRAME_HEADER_BYTES;

use crate::is_timeout;

/// How long a scripted gateway waits for the connector's next message
/// before the test fails: a connector that stalls (e.g. on credit it never
/// received) fails the test instead of hanging it.
pub const SCRIPTED_GATEWAY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One message from the connector.
#[derive(Debug, Clone)]
pub enum FromConnector {
    /// A JSON text message.
    Json(Value),
    /// A binary frame, whole (level 2: header included).
    Binary(Bytes),
}

/// A gateway played by the test: the connector's socket, upgraded.
pub struct ScriptedGateway {
    ws: WebSocket<TcpStream>,
}

impl ScriptedGateway {
    /// Waits for the connector to dial and upgrades its socket.
    pub fn accept(listener: &TcpListener) -> ScriptedGateway {
        let (stream, _) = listener.accept().expect("the connector dials");
        stream.set_read_timeout(Some(SCRIPTED_GATEWAY_READ_TIMEOUT)).expect("timeout");
        ScriptedGateway { ws: tungstenite::accept(stream).expect("upgrade") }
    }

    /// [`ScriptedGateway::accept`], then reads the connector's `register`
    /// (which must ask for level 2) and accepts it at level 2. Returns the
    /// gateway and the `register` message.
    pub fn accept_level2(listener: &TcpListener) -> (ScriptedGateway, Value) {
        let mut gateway = ScriptedGateway::accept(listener);
        let register = gateway.read_json();
        assert_eq!(register["action"], "register", "{register}");
        assert_eq!(register["protocol"], 2, "the connector asks for level 2: {register}");
        gateway.send(json!({"status": "ok", "data": {"session_id": "c-1", "protocol": 2, "heartbeat_seconds": 15}}));
        (gateway, register)
    }

    /// Sends one JSON text message.
    pub fn send(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).expect("send");
    }

    /// The next text or binary message; `Err` says why there is none (the
    /// read timed out, or the socket failed or closed).
    pub fn try_read(&mut self) -> Result<FromConnector, String> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))?;
                    return Ok(FromConnector::Json(value));
                }
                Ok(Message::Binary(data)) => return Ok(FromConnector::Binary(data)),
                Ok(Message::Close(frame)) => return Err(format!("the connector closed the socket: {frame:?}")),
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => {
                    return Err(format!("the connector sent nothing for {SCRIPTED_GATEWAY_READ_TIMEOUT:?}"))
                }
                Err(e) => return Err(format!("the connector's socket failed: {e}")),
            }
        }
    }

    /// The next text or binary message (panics when there is none).
    pub fn read(&mut self) -> FromConnector {
        self.try_read().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next text message (a binary frame here is a test failure).
    pub fn read_json(&mut self) -> Value {
        match self.read() {
            FromConnector::Json(value) => value,
            FromConnector::Binary(data) => panic!("unexpected binary frame of {} bytes", data.len()),
        }
    }

    /// Binary frames up to the next text message, and that message.
    pub fn read_stream(&mut self) -> (Vec<Bytes>, Value) {
        let mut frames = Vec::new();
        loop {
            match self.read() {
                FromConnector::Binary(data) => frames.push(data),
                FromConnector::Json(value) => return (frames, value),
            }
        }
    }

    /// Plays the gateway's side of the level-2 `streams` until `done` says
    /// so: files each message under the stream it names (a `request_id` for
    /// text, the header's `stream_id` for frames; one this test did not open
    /// fails it), checks that every frame begins within the stream's credit
    /// (PROTOCOL.md §4.2: one frame may overdraw it), and grants a stream
    /// whose [`CreditedStream::granting`] is set another
    /// [`CreditedStream::window`] bytes each time it has sent all it was
    /// granted. Credit counts whole frames, header included, as the engine
    /// counts it. Panics, saying where each stream stands, when the connector
    /// goes silent for [`SCRIPTED_GATEWAY_READ_TIMEOUT`].
    pub fn serve(&mut self, streams: &mut [CreditedStream], done: impl Fn(&[CreditedStream]) -> bool) {
        while !done(streams) {
            for stream in streams.iter_mut() {
                if stream.granting && stream.start.is_some() && stream.end.is_none() && stream.sent >= stream.granted {
                    self.send(json!({"action": "credit", "stream_id": stream.stream_id, "bytes": stream.window}));
                    stream.granted += stream.window;
                }
            }
            let message = self.try_read().unwrap_or_else(|e| {
                let states: Vec<String> = streams.iter().map(CreditedStream::state).collect();
                panic!("{e}; {}", states.join("; "))
            });
            match message {
                FromConnector::Json(value) => {
                    let Some(request_id) = value["request_id"].as_str() else {
                        assert_eq!(value["type"], "pong", "a message that names no request: {value}");
                        continue;
                    };
                    let Some(stream) = streams.iter_mut().find(|s| s.request_id == request_id) else {
                        panic!("a message for request {request_id:?}, which the test did not send: {value}")
                    };
                    stream.receive_text(value);
                }
                FromConnector::Binary(data) => {
                    let header = FrameHeader::decode(&data).unwrap_or_else(|e| panic!("bad frame header: {e}"));
                    let Some(stream) = streams.iter_mut().find(|s| s.stream_id == header.stream_id) else {
                        panic!("a frame of stream {}, which the test did not open", header.stream_id)
                    };
                    stream.receive_frame(data);
                }
            }
        }
    }
}

/// One level-2 stream as a scripted gateway sees it: the ids its `do_get`
/// gave it, the credit granted and spent, and what arrived.
#[derive(Debug, Clone)]
pub struct CreditedStream {
    /// The `do_get`'s `request_id`.
    pub request_id: String,
    /// The `do_get`'s `stream_id`.
    pub stream_id: u32,
    /// The initial credit, and what each `credit` message grants.
    pub window: u64,
    /// Whether [`ScriptedGateway::serve`] grants more once the credit is spent.
    pub granting: bool,
    /// Credit granted so far, the initial credit included.
    pub granted: u64,
    /// Bytes of the frames received, headers included.
    pub sent: u64,
    /// `stream_start`.
    pub start: Option<Value>,
    /// Payloads of the frames, in order (headers stripped).
    pub payloads: Vec<Bytes>,
    /// `stream_end`, or the `error` that answered the `do_get`.
    pub end: Option<Value>,
}

impl CreditedStream {
    /// A stream the test opens with `request_id` and `stream_id`, granted
    /// `window` bytes at the start and each time it spent its credit.
    pub fn new(request_id: &str, stream_id: u32, window: u64) -> CreditedStream {
        CreditedStream {
            request_id: request_id.to_owned(),
            stream_id,
            window,
            granting: true,
            granted: window,
            sent: 0,
            start: None,
            payloads: Vec::new(),
            end: None,
        }
    }

    /// The `do_get` that opens this stream of `ticket`.
    pub fn do_get(&self, ticket: &str) -> Value {
        json!({"action": "do_get", "request_id": self.request_id, "ticket": ticket,
               "stream_id": self.stream_id, "credit_bytes": self.window})
    }

    /// True when the stream started, has not ended, and spent its credit:
    /// the connector must wait for more.
    pub fn waits_for_credit(&self) -> bool {
        self.start.is_some() && self.end.is_none() && self.sent >= self.granted
    }

    /// The payloads concatenated: one Arrow IPC stream.
    pub fn bytes(&self) -> Vec<u8> {
        self.payloads.iter().flat_map(|p| p.iter().copied()).collect()
    }

    /// The error code of the end message, if any.
    pub fn error_code(&self) -> Option<&str> {
        let end = self.end.as_ref()?;
        match end["type"].as_str() {
            Some("error") => end["code"].as_str(),
            _ => end["error"]["code"].as_str(),
        }
    }

    fn state(&self) -> String {
        let phase = match (&self.start, &self.end) {
            (_, Some(end)) => format!("ended with {end}"),
            (None, None) => "not started".to_owned(),
            (Some(_), None) if self.sent >= self.granted => "spent its credit and waits for more".to_owned(),
            (Some(_), None) if self.granted > self.window => format!(
                "has {} granted bytes left yet sends nothing: the connector did not apply the `credit` for stream {}",
                self.granted - self.sent,
                self.stream_id
            ),
            (Some(_), None) => "sending".to_owned(),
        };
        format!(
            "stream {} (request {:?}): {} frames, {} of {} granted bytes sent, {phase}",
            self.stream_id,
            self.request_id,
            self.payloads.len(),
            self.sent,
            self.granted
        )
    }

    fn receive_text(&mut self, value: Value) {
        assert!(self.end.is_none(), "a message after the end of request {:?}: {value}", self.request_id);
        match value["type"].as_str() {
            Some("stream_start") => {
                assert!(self.start.is_none(), "a second stream_start: {value}");
                assert_eq!(value["stream_id"], self.stream_id, "stream_start names the do_get's stream: {value}");
                self.start = Some(value);
            }
            Some("stream_end") => {
                assert_eq!(value["stream_id"], self.stream_id, "stream_end names the do_get's stream: {value}");
                self.end = Some(value);
            }
            Some("error") => {
                assert!(self.start.is_none(), "an error after stream_start instead of a stream_end: {value}");
                self.end = Some(value);
            }
            _ => panic!("an unexpected message for request {:?}: {value}", self.request_id),
        }
    }

    fn receive_frame(&mut self, data: Bytes) {
        assert!(self.start.is_some() && self.end.is_none(), "a frame outside the stream: {}", self.state());
        assert!(
            self.sent < self.granted,
            "a frame of {} bytes began after the credit was spent: {}",
            data.len(),
            self.state()
        );
        self.sent += data.len() as u64;
        self.payloads.push(data.slice(FRAME_HEADER_BYTES..));
    }
}
