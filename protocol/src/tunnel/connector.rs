//! The connector's end of one tunnel connection.

use std::collections::{HashMap, VecDeque};

use crate::message::{Codec, ConnectorMessage, ErrorBody, ErrorCode, FlightData, GatewayCommand};

use super::UNCOUNTED_CREDIT;

/// A stream the gateway asked for (`do_get`), accepted: produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOrder {
    /// The key the stream is tracked by: `do_get`'s `stream_id` at level 2,
    /// at level 1 (whose `do_get` carries none) a number of the connector's.
    pub id: u32,
    /// The `do_get`'s request id, repeated in `stream_start` and `stream_end`.
    pub request_id: String,
    /// The dataset (`ticket`).
    pub dataset: String,
    /// Level 2: the id to write in frame headers and in `stream_start`/`stream_end`.
    pub header_stream_id: Option<u32>,
    /// Follow new data.
    pub live: bool,
    /// IPC body compression to apply (one the connector offered).
    pub compression: Option<Codec>,
    /// Payload bytes the producer may send before it waits for `credit`
    /// ([`UNCOUNTED_CREDIT`] where nothing is counted).
    pub credit_bytes: u64,
    /// Live: the most bytes of record batches from before the live edge to
    /// send at the start, the newest ones (`do_get`'s `history_bytes`); `None`: no bound.
    pub history_bytes: Option<u64>,
}

/// The gateway is draining (`reconnect`, PROTOCOL.md §4.2): open a tunnel
/// to another gateway now, and close this one once its streams ended (see
/// [`ConnectorEnd::may_leave`]), at the latest after `grace_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOrder {
    /// The gateway's reason, for the log.
    pub reason: String,
    /// How long the gateway still serves this tunnel; `None`: unsaid.
    pub grace_seconds: Option<u64>,
}

/// What the connector must do about a command from the gateway.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectorAction<'a, S> {
    /// Answer `get_flight_info` with [`ConnectorEnd::described`].
    Describe {
        /// The request to answer.
        request_id: String,
        /// The dataset it names.
        dataset: String,
    },
    /// Start producing the stream, then record it with [`ConnectorEnd::started`].
    Start(StreamOrder),
    /// Let this stream's producer send `bytes` more.
    Credit {
        /// The stream's value.
        stream: &'a S,
        /// Payload bytes.
        bytes: u64,
    },
    /// Stop this stream's producer: it ends with `stream_end` (`cancelled`).
    Stop(&'a S),

    /// Nothing (an answer may be queued: [`ConnectorEnd::poll_transmit`]).
    Nothing,
    /// A command this connector does not understand or that names nothing
    /// open; worth a log line, not an answer.
    Ignored(String),
}

/// The connector's end of one tunnel connection (see the module docs).
#[derive(Debug)]
pub struct ConnectorEnd<S> {
    level2: bool,
    offered: Vec<Codec>,
    /// By stream id (see [`StreamOrder::id`]): the request id and the value.
    by_id: HashMap<u32, (String, S)>,
    /// `request_id` → stream id.
    ids: HashMap<String, u32>,
    /// Where the search for the next level-1 stream's number starts.
    next_local_id: u32,
    transmit: VecDeque<ConnectorMessage>,
    /// The gateway asked this connection to move (`reconnect`).
    moving: bool,
    /// That request, until [`ConnectorEnd::take_move`] takes it.
    move_order: Option<MoveOrder>,
}

impl<S> ConnectorEnd<S> {
    /// A registered connection at level 2 or 1, which offered `offered` codecs in `register`.
    pub fn new(level2: bool, offered: Vec<Codec>) -> ConnectorEnd<S> {
        ConnectorEnd {
            level2,
            offered,
            by_id: HashMap::new(),
            ids: HashMap::new(),
            next_local_id: 1,
            transmit: VecDeque::new(),
            moving: false,
            move_order: None,
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ConnectorMessage> {
        self.transmit.pop_front()
    }

    /// A text message from the gateway.
    pub fn handle_text(&mut self, text: &str) -> ConnectorAction<'_, S> {
        match GatewayCommand::parse(text) {
            Ok(command) => self.handle_command(command),
            Err(e) => ConnectorAction::Ignored(format!("a command the connector does not understand: {e}")),
        }
    }

    /// A parsed command from the gateway.
    pub fn handle_command(&mut self, command: GatewayCommand) -> ConnectorAction<'_, S> {
        match command {
            GatewayCommand::Ping => {
                self.transmit.push_back(ConnectorMessage::Pong);
                ConnectorAction::Nothing
            }
            GatewayCommand::GetFlightInfo { request_id, descriptor } => {
                let dataset = GatewayCommand::descriptor_dataset(&descriptor).unwrap_or_default().to_owned();
                ConnectorAction::Describe { request_id, dataset }
            }
            GatewayCommand::DoGet { request_id, ticket, stream_id, credit_bytes, live, compression, history_bytes } => {
                // Only a codec offered in `register` may be asked for: anything
                // else is a gateway bug, answered, not ignored (an uncompressed
                // stream announced as compressed would mislead).
                let compression = match compression.as_deref() {
                    None => None,
                    Some(name) => match Codec::from_name(name).filter(|codec| self.offered.contains(codec)) {
                        Some(codec) => Some(codec),
                        None => {
                            let message = format!(
                                "compression {name:?} was not offered in register (offered: {:?})",
                                self.offered
                            );
                            return self.refuse(request_id, message);
                        }
                    },
                };
                // Level 2 writes the stream id in every frame header and credit
                // names the stream by it: a do_get without one cannot be served.
                let (id, header_stream_id) = match (self.level2, stream_id) {
                    (true, Some(id)) => (id, Some(id)),
                    (true, None) => {
                        return self
                            .refuse(request_id, "do_get at protocol level 2 needs a stream_id (PROTOCOL.md §4.2)")
                    }
                    (false, _) => (self.local_id(), None),
                };
                let credit_bytes = match (self.level2, credit_bytes) {
                    (true, Some(bytes)) if !live => bytes,
                    _ => UNCOUNTED_CREDIT,
                };
                ConnectorAction::Start(StreamOrder {
                    id,
                    request_id,
                    dataset: ticket,
                    header_stream_id,
                    live,
                    compression,
                    credit_bytes,
                    history_bytes: history_bytes.filter(|_| live),
                })
            }
            // Level 1 has no credit (and its stream ids are the connector's own).
            GatewayCommand::Credit { stream_id, .. } if !self.level2 => {
                ConnectorAction::Ignored(format!("credit for stream {stream_id}: a level-1 tunnel has no credit"))
            }
            GatewayCommand::Credit { stream_id, bytes } => match self.by_id.get(&stream_id) {
                Some((_, stream)) => ConnectorAction::Credit { stream, bytes },
                // A stream that just ended, or a gateway bug: nothing to credit.
                None => ConnectorAction::Ignored(format!(
                    "credit of {bytes} bytes for stream {stream_id}, which is not open"
                )),
            },
            GatewayCommand::Reconnect { .. } if self.moving => {
                ConnectorAction::Ignored("reconnect: this tunnel is already moving to another gateway".into())
            }
            // Not an action of its own (connectors that do not move, such as
            // test and bench ones, need not know it): `take_move` hands it out.
            GatewayCommand::Reconnect { reason, grace_seconds } => {
                self.moving = true;
                self.move_order = Some(MoveOrder { reason, grace_seconds });
                ConnectorAction::Nothing
            }
            GatewayCommand::Cancel { request_id } => {
                match self.ids.get(&request_id).and_then(|id| self.by_id.get(id)) {
                    Some((_, stream)) => ConnectorAction::Stop(stream),
                    None => ConnectorAction::Ignored(format!("cancel {request_id}, which is not open")),
                }
            }
        }
    }

    /// The gateway's request to move to another gateway, once: after a
    /// command was handled, the connector asks whether it was `reconnect`.
    pub fn take_move(&mut self) -> Option<MoveOrder> {
        self.move_order.take()
    }

    /// The gateway asked this connection to move to another gateway.
    pub fn is_moving(&self) -> bool {
        self.moving
    }

    /// Whether a connection asked to move may close now: its streams have
    /// ended (`done` says which have) and its replacement is settled —
    /// registered with another gateway, or the attempt failed (then waiting
    /// longer only delays the streams' end). A connection that was not
    /// asked to move stays.
    pub fn may_leave(&self, replacement_settled: bool, mut done: impl FnMut(&S) -> bool) -> bool {
        self.moving && replacement_settled && self.by_id.values().all(|(_, value)| done(value))
    }

    /// The answer to a [`ConnectorAction::Describe`]: the dataset's schema
    /// and rows, or why not.
    pub fn described(&mut self, request_id: String, answer: Result<FlightData, ErrorBody>) {
        self.transmit.push_back(match answer {
            Ok(data) => ConnectorMessage::FlightInfo { request_id, data },
            Err(error) => ConnectorMessage::Error { request_id: Some(request_id), error },
        });
    }

    /// Records the stream of `order` with its producer's value. Streams it
    /// displaces — one still open under the same stream id or request id —
    /// are handed back to be stopped: the gateway reuses an id only after
    /// that stream's `stream_end`, so it is ending anyway, or the gateway
    /// lost track of it.
    pub fn started(&mut self, order: &StreamOrder, value: S) -> Vec<(String, S)> {
        let same_request = self.ids.get(&order.request_id).copied();
        let displaced = [Some(order.id), same_request].into_iter().flatten().filter_map(|id| self.remove(id)).collect();
        self.ids.insert(order.request_id.clone(), order.id);
        self.by_id.insert(order.id, (order.request_id.clone(), value));
        displaced
    }

    /// Forgets the streams whose producer is done.
    pub fn reap(&mut self, mut done: impl FnMut(&S) -> bool) {
        self.by_id.retain(|_, (_, value)| !done(value));
        let by_id = &self.by_id;
        self.ids.retain(|_, id| by_id.contains_key(id));
    }

    /// The open streams' values.
    pub fn streams(&self) -> impl Iterator<Item = &S> {
        self.by_id.values().map(|(_, value)| value)
    }

    /// The connection ended: every stream's value.
    pub fn drain(&mut self) -> Vec<S> {
        self.ids.clear();
        self.by_id.drain().map(|(_, (_, value))| value).collect()
    }

    fn refuse(&mut self, request_id: String, message: impl Into<String>) -> ConnectorAction<'_, S> {
        let error = ErrorBody::new(ErrorCode::BadRequest, message);
        self.transmit.push_back(ConnectorMessage::Error { request_id: Some(request_id), error });
        ConnectorAction::Nothing
    }

    /// A stream id no open stream has, for a level-1 stream.
    fn local_id(&mut self) -> u32 {
        while self.by_id.contains_key(&self.next_local_id) {
            self.next_local_id = self.next_local_id.wrapping_add(1);
        }
        let id = self.next_local_id;
        self.next_local_id = id.wrapping_add(1);
        id
    }

    fn remove(&mut self, id: u32) -> Option<(String, S)> {
        let (request_id, value) = self.by_id.remove(&id)?;
        self.ids.remove(&request_id);
        Some((request_id, value))
    }
}
