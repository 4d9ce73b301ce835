//! The gateway's end of one registered tunnel: the values it takes and
//! returns, then the state machine. One file, past 400 lines, because the
//! machine and its vocabulary are read together; the connector's end is the
//! sibling `connector.rs`.

use std::collections::{HashMap, VecDeque};

use crate::header::FrameHeader;
use crate::limits::FRAME_HEADER_BYTES;
use crate::message::{Codec, ConnectorMessage, Descriptor, ErrorBody, GatewayCommand};
use crate::ws::close_code;

/// What the gateway asks of the connector for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenStream {
    /// The dataset (`get_flight_info`'s path, `do_get`'s ticket).
    pub dataset: String,
    /// Follow new data (a live subscription) rather than send the table once.
    pub live: bool,
    /// IPC body compression to ask for (a codec the connector offered).
    pub compression: Option<Codec>,
    /// Live, level 2: the most history to ask for (`do_get`'s `history_bytes`).
    pub history_bytes: Option<u64>,
}

/// Something to send to the connector, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A command.
    Command(GatewayCommand),
    /// The answer to the connector's `ping`.
    Pong,
    /// A message of the connector's that was not accepted.
    Error(ErrorBody),
}

impl Transmit {
    /// The JSON text to send.
    pub fn to_json(&self) -> String {
        match self {
            Transmit::Command(command) => command.to_json(),
            Transmit::Pong => ConnectorMessage::Pong.to_json(),
            Transmit::Error(error) => ConnectorMessage::Error { request_id: None, error: error.clone() }.to_json(),
        }
    }
}

/// What a control message from the connector meant for the gateway's streams.
#[derive(Debug, PartialEq, Eq)]
pub enum TunnelEvent<S> {
    /// `flight_info`: the dataset's schema and row count; `do_get` is queued.
    Described {
        /// The stream.
        stream_id: u32,
        /// Base64 IPC schema message.
        schema: String,
        /// Rows, `-1` when unknown.
        records: i64,
    },
    /// `stream_start`: frames follow.
    Started {
        /// The stream.
        stream_id: u32,
        /// Base64 IPC schema message.
        schema: String,
    },
    /// The stream is over (`stream_end`, or an `error` naming its request);
    /// the tunnel forgot it and hands its value back.
    Ended {
        /// The stream.
        stream_id: u32,
        /// The caller's value.
        value: S,
        /// IPC bytes of the stream (the connector's count, else what arrived).
        total_bytes: u64,
        /// Set when it failed.
        error: Option<ErrorBody>,
    },
    /// An error the connector reported about no stream of this tunnel.
    Reported(ErrorBody),
    /// A message that was not accepted; an `error` naming why is queued.
    Refused(ErrorBody),
}

/// What a binary frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Binary<'a, S> {
    /// A frame of an open stream, to route.
    Frame {
        /// The stream.
        stream_id: u32,
        /// Its position in the stream: the header's at level 2, counted at level 1.
        sequence: u64,
        /// Level 2: the decoded header.
        header: Option<FrameHeader>,
        /// The caller's value for the stream.
        stream: &'a S,
    },
    /// A frame of a stream the gateway cancelled: dropped (PROTOCOL.md §4.2).
    Dropped,
}

/// The connector broke the protocol: the tunnel must close with this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Violation {
    /// WebSocket close code.
    pub close_code: u16,
    /// What the connector did.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Level 1: queued behind the stream the tunnel is serving.
    Waiting,
    /// `get_flight_info` sent.
    Describing,
    /// `do_get` sent, no `stream_start` yet.
    Getting,
    /// `stream_start` received.
    Streaming,
}

#[derive(Debug)]
struct Entry<S> {
    value: S,
    open: OpenStream,
    phase: Phase,
    /// The request that names the stream now: `get_flight_info`'s, then `do_get`'s.
    request_id: Option<String>,
    /// `cancel` sent; its frames are dropped until it ends (level 1).
    cancelled: bool,
    /// Level-2 queries: payload bytes the connector may still send.
    credit: i64,
    frames: u64,
    body_bytes: u64,
}

/// The gateway's end of one registered tunnel (see the module docs).
#[derive(Debug)]
pub struct GatewayEnd<S> {
    level2: bool,
    credit_bytes: u64,
    overdraft_max: i64,
    id_bytes_max: usize,
    streams: HashMap<u32, Entry<S>>,
    /// `request_id` → stream id, for the requests outstanding.
    requests: HashMap<String, u32>,
    /// Level 1: streams waiting, in order, and the one being served.
    waiting: VecDeque<u32>,
    current: Option<u32>,
    next_request: u64,
    transmit: VecDeque<Transmit>,
    /// `reconnect` was sent.
    asked_to_move: bool,
}

impl<S> GatewayEnd<S> {
    /// A registered tunnel. `credit_bytes`: a level-2 query's initial credit;
    /// `overdraft_max`: how far past its credit one frame may go (the
    /// tunnel's frame limit); `id_bytes_max`: the longest id accepted.
    pub fn new(level2: bool, credit_bytes: u64, overdraft_max: usize, id_bytes_max: usize) -> GatewayEnd<S> {
        GatewayEnd {
            level2,
            credit_bytes,
            overdraft_max: i64::try_from(overdraft_max).unwrap_or(i64::MAX),
            id_bytes_max,
            streams: HashMap::new(),
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            current: None,
            next_request: 0,
            transmit: VecDeque::new(),
            asked_to_move: false,
        }
    }

    /// Level 2 (frame headers, credit, streams in parallel).
    pub fn is_level2(&self) -> bool {
        self.level2
    }

    /// The caller's value of an open stream.
    pub fn stream(&self, stream_id: u32) -> Option<&S> {
        self.streams.get(&stream_id).map(|entry| &entry.value)
    }

    /// Streams open or waiting.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// No stream open or waiting.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// The gateway is draining: asks the connector to move to another
    /// gateway (`reconnect`, PROTOCOL.md §4.2), once per tunnel and at level
    /// 2 only (a level-1 connector knows no such command). True when it
    /// was queued now.
    pub fn reconnect(&mut self, reason: &str, grace_seconds: u64) -> bool {
        if self.asked_to_move || !self.level2 {
            return false;
        }
        self.asked_to_move = true;
        let command = GatewayCommand::Reconnect { reason: reason.to_owned(), grace_seconds: Some(grace_seconds) };
        self.transmit.push_back(Transmit::Command(command));
        true
    }

    /// Opens a stream under `stream_id` (unique in the gateway): asks for its
    /// flight info now, or at level 1 once the streams before it ended. An id
    /// already open is refused and `value` handed back.
    pub fn open(&mut self, stream_id: u32, open: OpenStream, value: S) -> Result<(), S> {
        if self.streams.contains_key(&stream_id) {
            return Err(value);
        }
        let entry = Entry {
            value,
            open,
            phase: Phase::Waiting,
            request_id: None,
            cancelled: false,
            credit: 0,
            frames: 0,
            body_bytes: 0,
        };
        self.streams.insert(stream_id, entry);
        if !self.level2 && self.current.is_some() {
            self.waiting.push_back(stream_id);
        } else {
            self.describe(stream_id);
        }
        Ok(())
    }

    /// Cancels a stream. Returns its value and the IPC bytes that arrived
    /// when the stream is forgotten now: one still waiting or being
    /// described, and any at level 2 (its frames still in flight are
    /// dropped). A level-1 stream the connector is sending stays the
    /// tunnel's current one, its frames dropped, until its `stream_end`.
    pub fn cancel(&mut self, stream_id: u32) -> Option<(S, u64)> {
        let entry = self.streams.get_mut(&stream_id)?;
        let sent_get = matches!(entry.phase, Phase::Getting | Phase::Streaming);
        if sent_get && !entry.cancelled {
            entry.cancelled = true;
            if let Some(request_id) = entry.request_id.clone() {
                self.transmit.push_back(Transmit::Command(GatewayCommand::Cancel { request_id }));
            }
        }
        if sent_get && !self.level2 {
            return None;
        }
        self.forget(stream_id).map(|entry| (entry.value, entry.body_bytes))
    }

    /// Returns `bytes` of credit to a level-2 query the connector is serving
    /// (queues `credit`). False when there is nothing to credit.
    pub fn credit(&mut self, stream_id: u32, bytes: u64) -> bool {
        let level2 = self.level2;
        let Some(entry) = self.streams.get_mut(&stream_id) else { return false };
        if !level2 || entry.open.live || entry.cancelled || !matches!(entry.phase, Phase::Getting | Phase::Streaming) {
            return false;
        }
        entry.credit = entry.credit.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.transmit.push_back(Transmit::Command(GatewayCommand::Credit { stream_id, bytes }));
        true
    }

    /// A text message from the connector.
    pub fn handle_text(&mut self, text: &str) -> Option<TunnelEvent<S>> {
        match ConnectorMessage::parse(text, self.id_bytes_max) {
            Ok(message) => self.handle_message(message),
            Err(e) => {
                let error = ErrorBody::new(e.code, e.message);
                self.transmit.push_back(Transmit::Error(error.clone()));
                Some(TunnelEvent::Refused(error))
            }
        }
    }

    /// A parsed message from the connector.
    pub fn handle_message(&mut self, message: ConnectorMessage) -> Option<TunnelEvent<S>> {
        match message {
            ConnectorMessage::FlightInfo { request_id, data } => {
                let stream_id = self.stream_of(&request_id, &[Phase::Describing])?;
                self.get(stream_id);
                Some(TunnelEvent::Described { stream_id, schema: data.schema, records: data.records })
            }
            ConnectorMessage::StreamStart { request_id, schema, .. } => {
                let stream_id = self.stream_of(&request_id, &[Phase::Getting])?;
                if let Some(entry) = self.streams.get_mut(&stream_id) {
                    entry.phase = Phase::Streaming;
                }
                Some(TunnelEvent::Started { stream_id, schema })
            }
            ConnectorMessage::StreamEnd { request_id, total_bytes, error, .. } => {
                let stream_id = self.stream_of(&request_id, &[Phase::Getting, Phase::Streaming])?;
                self.end(stream_id, Some(total_bytes), error)
            }
            ConnectorMessage::Error { request_id, error } => {
                match request_id.as_deref().and_then(|id| self.requests.get(id).copied()) {
                    Some(stream_id) => self.end(stream_id, None, Some(error)),
                    None => Some(TunnelEvent::Reported(error)),
                }
            }
            ConnectorMessage::Ping => {
                self.transmit.push_back(Transmit::Pong);
                None
            }
            ConnectorMessage::Pong => None,
            ConnectorMessage::Register(_) => {
                let error = ErrorBody::new(crate::message::ErrorCode::BadRequest, "already registered");
                self.transmit.push_back(Transmit::Error(error.clone()));
                Some(TunnelEvent::Refused(error))
            }
        }
    }

    /// A binary frame from the connector (its payload, the level-2 header included).
    pub fn handle_binary(&mut self, payload: &[u8]) -> Result<Binary<'_, S>, Violation> {
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
        if self.level2 {
            let header = FrameHeader::decode(payload).map_err(|e| Violation {
                close_code: close_code::PROTOCOL_ERROR,
                message: format!("bad_frame_header: {e}"),
            })?;
            let overdraft_max = self.overdraft_max;
            // A cancelled level-2 stream is forgotten at once (`cancel`), so
            // its frames still in flight find no entry.
            let Some(entry) = self.streams.get_mut(&header.stream_id) else { return Ok(Binary::Dropped) };
            entry.frames += 1;
            entry.body_bytes += payload.len().saturating_sub(FRAME_HEADER_BYTES) as u64;
            if !entry.open.live {
                // Whole frames within credit; one frame of overdraft (§4.2).
                entry.credit = entry.credit.saturating_sub(len);
                if entry.credit < -overdraft_max {
                    return Err(Violation {
                        close_code: close_code::POLICY_VIOLATION,
                        message: format!("stream {} exceeded its credit by {} bytes", header.stream_id, -entry.credit),
                    });
                }
            }
            let sequence = header.sequence;
            return Ok(Binary::Frame {
                stream_id: header.stream_id,
                sequence,
                header: Some(header),
                stream: &entry.value,
            });
        }
        let outside = || Violation {
            close_code: close_code::PROTOCOL_ERROR,
            message: "binary frame outside a stream".to_owned(),
        };
        let stream_id = self.current.ok_or_else(outside)?;
        let entry = self.streams.get_mut(&stream_id).ok_or_else(outside)?;
        // Seed connectors may send right after `do_get`'s answer is on its way.
        if !matches!(entry.phase, Phase::Getting | Phase::Streaming) {
            return Err(outside());
        }
        if entry.cancelled {
            return Ok(Binary::Dropped);
        }
        let sequence = entry.frames;
        entry.frames += 1;
        entry.body_bytes += payload.len() as u64;
        Ok(Binary::Frame { stream_id, sequence, header: None, stream: &entry.value })
    }

    /// The tunnel closed: every stream it had, open or waiting, with the
    /// IPC bytes that arrived for it.
    pub fn drain(&mut self) -> Vec<(u32, S, u64)> {
        self.requests.clear();
        self.waiting.clear();
        self.current = None;
        self.streams.drain().map(|(id, entry)| (id, entry.value, entry.body_bytes)).collect()
    }

    fn next_request_id(&mut self, prefix: char) -> String {
        self.next_request += 1;
        format!("{prefix}{}", self.next_request)
    }

    fn describe(&mut self, stream_id: u32) {
        let request_id = self.next_request_id('f');
        let Some(entry) = self.streams.get_mut(&stream_id) else { return };
        entry.phase = Phase::Describing;
        entry.request_id = Some(request_id.clone());
        let descriptor = Descriptor { path: vec![entry.open.dataset.clone()] };
        self.requests.insert(request_id.clone(), stream_id);
        if !self.level2 {
            self.current = Some(stream_id);
        }
        self.transmit.push_back(Transmit::Command(GatewayCommand::GetFlightInfo { request_id, descriptor }));
    }

    fn get(&mut self, stream_id: u32) {
        let request_id = self.next_request_id('r');
        let (level2, credit_bytes) = (self.level2, self.credit_bytes);
        let Some(entry) = self.streams.get_mut(&stream_id) else { return };
        if let Some(old) = entry.request_id.replace(request_id.clone()) {
            self.requests.remove(&old);
        }
        entry.phase = Phase::Getting;
        let counted = level2 && !entry.open.live;
        entry.credit = if counted { i64::try_from(credit_bytes).unwrap_or(i64::MAX) } else { 0 };
        let command = GatewayCommand::DoGet {
            request_id: request_id.clone(),
            ticket: entry.open.dataset.clone(),
            stream_id: level2.then_some(stream_id),
            credit_bytes: counted.then_some(credit_bytes),
            live: entry.open.live,
            compression: entry.open.compression.map(|codec| codec.as_str().to_owned()),
            history_bytes: entry.open.history_bytes.filter(|_| level2 && entry.open.live),
        };
        self.requests.insert(request_id, stream_id);
        self.transmit.push_back(Transmit::Command(command));
    }

    /// The stream a request id names, if it is in one of `phases`.
    fn stream_of(&self, request_id: &str, phases: &[Phase]) -> Option<u32> {
        let stream_id = *self.requests.get(request_id)?;
        let entry = self.streams.get(&stream_id)?;
        phases.contains(&entry.phase).then_some(stream_id)
    }

    fn end(&mut self, stream_id: u32, total_bytes: Option<u64>, error: Option<ErrorBody>) -> Option<TunnelEvent<S>> {
        let entry = self.forget(stream_id)?;
        let total_bytes = total_bytes.filter(|&total| total > 0).unwrap_or(entry.body_bytes);
        Some(TunnelEvent::Ended { stream_id, value: entry.value, total_bytes, error })
    }

    /// Removes a stream; at level 1 the next waiting one starts if it was current.
    fn forget(&mut self, stream_id: u32) -> Option<Entry<S>> {
        let entry = self.streams.remove(&stream_id)?;
        if let Some(request_id) = &entry.request_id {
            self.requests.remove(request_id);
        }
        if entry.phase == Phase::Waiting {
            self.waiting.retain(|&id| id != stream_id);
        }
        if self.current == Some(stream_id) {
            self.current = None;
            while let Some(next) = self.waiting.pop_front() {
                if self.streams.contains_key(&next) {
                    self.describe(next);
                    break;
                }
            }
        }
        Some(entry)
    }
}
