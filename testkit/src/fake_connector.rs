//! A connector played by the test, for the engine's tests: it registers
//! (level 1 or 2) over a real socket, serves datasets whose frames the test
//! gives, and records every command the gateway sent it.
//!
//! It hands each command to the protocol's [`ConnectorEnd`] and frames with
//! [`Framer`], as the real connector does, so the `do_get` rules (stream id
//! and request id pairing, offered codecs, level-2 credit) are the
//! protocol's. What the test scripts on top is what a connector may do
//! wrong or slowly ([`Behaviour`]): stall, vanish mid-stream, ignore a
//! `cancel` the machine says to obey, or read credit more strictly than the
//! real connector.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message as WsMessage, WebSocket};
use volley_protocol::header::FrameKind;
use volley_protocol::message::{Codec, ConnectorMessage, ErrorBody, ErrorCode, FlightData, Register, RegisterReply};
use volley_protocol::tunnel::{ConnectorAction, ConnectorEnd, Framer, StreamOrder};

use crate::tokens::{connector_token, TENANT};
use crate::{is_timeout, wait_until};

/// A schema string the fake connector hands out (the engine treats it as opaque).
pub const SCHEMA_B64: &str = "/////w==";
/// Most frames one stream sends before the next stream's turn.
const FRAMES_PER_TURN: usize = 8;

/// What a dataset's stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Sends every message, then `stream_end`.
    Normal,
    /// Sends `stream_start`, then nothing (query timeout tests).
    Stall,
    /// Sends this many frames, then the connector drops its socket without a close frame.
    VanishAfter(usize),
    /// Never overdraws its credit: sends a frame only if it fits in what is
    /// left (PROTOCOL.md §4.2 allows this reading; the real connector sends
    /// while any credit is left).
    StrictCredit,
    /// Ignores `cancel` and goes on sending the stream's frames (a
    /// misbehaving connector; live frames too).
    IgnoreCancel,
    /// Sends one frame, then waits this many milliseconds (a slow source:
    /// the stream runs long enough for others to join it). The wait holds
    /// the connector's thread, so its other streams wait too.
    Paced(u64),
}

/// One dataset the fake connector serves.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// Name (ticket).
    pub name: String,
    /// Live (subscribe) dataset: frames come from [`ConnectorHandle::live_frame`].
    pub live: bool,
    /// The frames of the stream (level 1: chunks; level 2: whole IPC messages).
    pub frames: Vec<(FrameKind, Bytes)>,
    /// Behaviour of a query stream.
    pub behaviour: Behaviour,
}

impl DatasetSpec {
    /// A query dataset.
    pub fn query(name: &str, frames: Vec<(FrameKind, Bytes)>) -> DatasetSpec {
        DatasetSpec { name: name.into(), live: false, frames, behaviour: Behaviour::Normal }
    }

    /// A live dataset (frames pushed by the test).
    pub fn live(name: &str) -> DatasetSpec {
        DatasetSpec { name: name.into(), live: true, frames: Vec::new(), behaviour: Behaviour::Normal }
    }

    /// Same, with a behaviour.
    pub fn with(mut self, behaviour: Behaviour) -> DatasetSpec {
        self.behaviour = behaviour;
        self
    }
}

/// How the fake connector registers.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Tenant.
    pub tenant: String,
    /// Credential (level 2 always sends one in these tests; `None` for seed style).
    pub token: Option<String>,
    /// 1 or 2.
    pub level: u8,
    /// Datasets.
    pub datasets: Vec<DatasetSpec>,
    /// Codec names listed in `register`'s `compression` (omitted when empty).
    /// The fake connector sends its frames as they are, whatever offered
    /// codec `do_get` asks for (the connector end refuses one not offered).
    pub compression: Vec<String>,
}

impl ConnectorSpec {
    /// A seed-style (level 1, no token) connector.
    pub fn level1(datasets: Vec<DatasetSpec>) -> ConnectorSpec {
        ConnectorSpec { tenant: TENANT.into(), token: None, level: 1, datasets, compression: Vec::new() }
    }

    /// A level-2 connector with a valid credential.
    pub fn level2(datasets: Vec<DatasetSpec>) -> ConnectorSpec {
        ConnectorSpec {
            tenant: TENANT.into(),
            token: Some(connector_token(TENANT)),
            level: 2,
            datasets,
            compression: Vec::new(),
        }
    }

    /// Same, for `tenant` with that tenant's valid credential.
    pub fn of_tenant(mut self, tenant: &str) -> ConnectorSpec {
        self.tenant = tenant.into();
        self.token = Some(connector_token(tenant));
        self
    }

    /// Same, offering these compression codecs in `register`.
    pub fn offering(mut self, codecs: &[&str]) -> ConnectorSpec {
        self.compression = codecs.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    fn register(&self) -> Register {
        Register {
            tenant_id: self.tenant.clone(),
            version: Some("0.0.0-test".into()),
            datasets: self.datasets.iter().map(|d| d.name.clone()).collect(),
            live: self.datasets.iter().filter(|d| d.live).map(|d| d.name.clone()).collect(),
            protocol: (self.level == 2).then_some(2),
            token: self.token.clone(),
            compression: self.compression.clone(),
        }
    }
}

enum Control {
    Live { dataset: String, kind: FrameKind, body: Bytes },
    EndLive { dataset: String, error: Option<ErrorBody> },
    Vanish,
    Stop,
}

/// A running fake connector.
pub struct ConnectorHandle {
    control: Sender<Control>,
    /// Every text message the gateway sent it, parsed.
    pub received: Arc<Mutex<Vec<Value>>>,
    /// IPC bytes sent per `request_id`.
    pub sent_bytes: Arc<Mutex<HashMap<String, u64>>>,
    /// The register reply.
    pub reply: Value,
    /// False once its socket is gone.
    pub alive: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConnectorHandle {
    /// Queues a frame for the live stream of `dataset` (sent once the stream runs).
    pub fn live_frame(&self, dataset: &str, kind: FrameKind, body: Bytes) {
        let _ = self.control.send(Control::Live { dataset: dataset.into(), kind, body });
    }

    /// Ends every running live stream of `dataset` with `stream_end`
    /// (carrying `error`, if any), as a connector whose source stopped
    /// does; the tunnel stays open.
    pub fn end_live(&self, dataset: &str, error: Option<ErrorBody>) {
        let _ = self.control.send(Control::EndLive { dataset: dataset.into(), error });
    }

    /// Drops the socket at once, without a close frame.
    pub fn vanish(&self) {
        let _ = self.control.send(Control::Vanish);
    }

    /// Commands received with this `action`.
    pub fn commands(&self, action: &str) -> Vec<Value> {
        self.received.lock().expect("lock").iter().filter(|v| v["action"] == action).cloned().collect()
    }

    /// Waits for a command with this action (and returns it).
    pub fn wait_command(&self, action: &str, timeout: Duration) -> Option<Value> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.commands(action).into_iter().next();
            found.is_some()
        });
        found
    }
}

impl Drop for ConnectorHandle {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Ws = WebSocket<TcpStream>;

/// A test connector's WebSocket to `/ws/connect` (no subprotocol).
fn connector_socket(addr: SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).expect("connector connects");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let request = format!("ws://{addr}/ws/connect").into_client_request().expect("request");
    tungstenite::client::client(request, stream).expect("connector handshake").0
}

/// Starts a fake connector; returns once the gateway answered `register`.
pub fn spawn_connector(addr: SocketAddr, spec: ConnectorSpec) -> ConnectorHandle {
    let mut ws = connector_socket(addr);
    let register = ConnectorMessage::Register(spec.register());
    ws.send(WsMessage::text(register.to_json())).expect("send register");
    let text = loop {
        match ws.read().expect("register reply") {
            WsMessage::Text(text) => break text,
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("unexpected reply to register: {other:?}"),
        }
    };
    let reply: Value = serde_json::from_str(&text).expect("reply is JSON");
    let (control, control_rx) = std::sync::mpsc::channel();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sent_bytes = Arc::new(Mutex::new(HashMap::new()));
    let alive = Arc::new(AtomicBool::new(true));
    let thread = match RegisterReply::parse(&text) {
        Ok(RegisterReply::Ok(ok)) => {
            // Like the real connector, the level is the one the gateway agreed to.
            let end = ConnectorEnd::new(ok.protocol.unwrap_or(1) >= 2, Codec::known(&spec.compression));
            let mut fake = Fake {
                ws,
                spec,
                end,
                active: Vec::new(),
                live_backlog: HashMap::new(),
                received: received.clone(),
                sent_bytes: sent_bytes.clone(),
            };
            let alive = alive.clone();
            Some(std::thread::spawn(move || {
                fake.run(&control_rx);
                alive.store(false, Ordering::Release);
            }))
        }
        _ => {
            alive.store(false, Ordering::Release);
            None
        }
    };
    ConnectorHandle { control, received, sent_bytes, reply, alive, thread }
}

/// Registers with `register` and returns the reply and the close code that follows (if any).
pub fn register_refused(addr: SocketAddr, register: Value) -> (Value, Option<u16>) {
    let mut ws = connector_socket(addr);
    ws.send(WsMessage::text(register.to_string())).expect("send register");
    let mut reply = Value::Null;
    let mut code = None;
    loop {
        match ws.read() {
            Ok(WsMessage::Text(text)) => reply = serde_json::from_str(&text).expect("JSON"),
            Ok(WsMessage::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (reply, code)
}

/// A stream the gateway opened and the fake connector serves.
struct Active {
    /// Its key in the [`ConnectorEnd`] ([`StreamOrder::id`]).
    id: u32,
    request_id: String,
    /// Level 2: the id in its frame headers, `stream_start` and `stream_end`.
    stream_id: Option<u32>,
    dataset: usize,
    live: bool,
    /// The next of the dataset's frames to send (query streams).
    next: usize,
    framer: Framer,
    credit: u64,
    /// Payload bytes sent.
    sent: u64,
    pending_live: VecDeque<(FrameKind, Bytes)>,
}

impl Active {
    /// True when it has a frame to send now.
    fn can_send(&self, dataset: &DatasetSpec) -> bool {
        if self.live {
            return !self.pending_live.is_empty();
        }
        if dataset.behaviour == Behaviour::Stall {
            return false;
        }
        let Some((_, next)) = dataset.frames.get(self.next) else { return false };
        if dataset.behaviour == Behaviour::StrictCredit {
            return self.sent + next.len() as u64 <= self.credit;
        }
        self.sent < self.credit
    }
}

/// The connector's thread: its socket, its end of the tunnel and its streams.
struct Fake {
    ws: Ws,
    spec: ConnectorSpec,
    end: ConnectorEnd<u32>,
    active: Vec<Active>,
    /// Live frames queued before their dataset's stream started.
    live_backlog: HashMap<String, VecDeque<(FrameKind, Bytes)>>,
    received: Arc<Mutex<Vec<Value>>>,
    sent_bytes: Arc<Mutex<HashMap<String, u64>>>,
}

impl Fake {
    fn run(&mut self, control: &Receiver<Control>) {
        let _ = self.ws.get_ref().set_read_timeout(Some(Duration::from_millis(5)));
        loop {
            // Test commands.
            while let Ok(cmd) = control.try_recv() {
                match cmd {
                    Control::Live { dataset, kind, body } => self.live(dataset, kind, body),
                    Control::EndLive { dataset, error } => self.end_live(&dataset, error),
                    Control::Vanish => {
                        let _ = self.ws.get_ref().shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    Control::Stop => {
                        let _ = self.ws.close(None);
                        let _ = self.ws.flush();
                        return;
                    }
                }
            }
            // Gateway messages: non-blocking when there is data to send, else a short wait.
            let busy = self.active.iter().any(|a| a.can_send(&self.spec.datasets[a.dataset]));
            let _ = self.ws.get_ref().set_nonblocking(busy);
            loop {
                match self.ws.read() {
                    Ok(WsMessage::Text(text)) => {
                        let msg: Value = serde_json::from_str(&text).expect("gateway sends JSON");
                        self.received.lock().expect("lock").push(msg);
                        self.handle(&text);
                    }
                    Ok(WsMessage::Close(_)) => return,
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => break,
                    Err(_) => return,
                }
                if !busy {
                    break;
                }
            }
            let _ = self.ws.get_ref().set_nonblocking(false);
            let _ = self.ws.flush();
            if !self.send_turn() {
                return;
            }
        }
    }

    /// Every live stream of `dataset` gets the frame (the gateway runs one
    /// per codec it chose); with none running yet, the first to start does.
    fn live(&mut self, dataset: String, kind: FrameKind, body: Bytes) {
        let mut fed = false;
        for a in self.active.iter_mut().filter(|a| a.live && self.spec.datasets[a.dataset].name == dataset) {
            a.pending_live.push_back((kind, body.clone()));
            fed = true;
        }
        if !fed {
            self.live_backlog.entry(dataset).or_default().push_back((kind, body));
        }
    }

    fn end_live(&mut self, dataset: &str, error: Option<ErrorBody>) {
        let ending: Vec<u32> = self
            .active
            .iter()
            .filter(|a| a.live && self.spec.datasets[a.dataset].name == dataset)
            .map(|a| a.id)
            .collect();
        for id in ending {
            let Some(pos) = self.active.iter().position(|a| a.id == id) else { continue };
            let a = self.active.remove(pos);
            self.end.reap(|stream| *stream == id);
            self.send(&ConnectorMessage::StreamEnd {
                request_id: a.request_id,
                total_bytes: a.sent,
                stream_id: a.stream_id,
                error: error.clone(),
            });
        }
    }

    fn dataset(&self, name: &str) -> Option<usize> {
        self.spec.datasets.iter().position(|d| d.name == name)
    }

    /// A command from the gateway: the connector end says what to do, and
    /// what to answer.
    fn handle(&mut self, text: &str) {
        match self.end.handle_text(text) {
            ConnectorAction::Describe { request_id, dataset } => {
                let answer = match self.dataset(&dataset) {
                    Some(_) => Ok(FlightData { schema: SCHEMA_B64.into(), records: -1 }),
                    None => Err(not_found(&dataset)),
                };
                self.end.described(request_id, answer);
            }
            ConnectorAction::Start(order) => self.start(order),
            ConnectorAction::Credit { stream, bytes } => {
                let id = *stream;
                if let Some(a) = self.active.iter_mut().find(|a| a.id == id) {
                    a.credit = a.credit.saturating_add(bytes);
                }
            }
            ConnectorAction::Stop(stream) => {
                let id = *stream;
                self.cancel(id);
            }
            ConnectorAction::Nothing | ConnectorAction::Ignored(_) => {}
        }
        while let Some(message) = self.end.poll_transmit() {
            self.send(&message);
        }
    }

    fn send(&mut self, message: &ConnectorMessage) -> bool {
        self.ws.send(WsMessage::text(message.to_json())).is_ok()
    }

    fn start(&mut self, order: StreamOrder) {
        let Some(index) = self.dataset(&order.dataset) else {
            let error = not_found(&order.dataset);
            self.send(&ConnectorMessage::Error { request_id: Some(order.request_id), error });
            return;
        };
        // A stream still open under either id is forgotten: the gateway reuses
        // an id only after that stream's stream_end.
        for (_, displaced) in self.end.started(&order, order.id) {
            self.active.retain(|a| a.id != displaced);
        }
        let dataset = &self.spec.datasets[index];
        self.sent_bytes.lock().expect("lock").insert(order.request_id.clone(), 0);
        self.active.push(Active {
            id: order.id,
            request_id: order.request_id.clone(),
            stream_id: order.header_stream_id,
            dataset: index,
            live: dataset.live,
            next: 0,
            framer: Framer::new(order.header_stream_id),
            credit: order.credit_bytes,
            sent: 0,
            pending_live: self.live_backlog.remove(&dataset.name).unwrap_or_default(),
        });
        self.send(&ConnectorMessage::StreamStart {
            request_id: order.request_id,
            schema: SCHEMA_B64.into(),
            stream_id: order.header_stream_id,
        });
    }

    /// The gateway cancelled stream `id`: it ends with `cancelled`, unless
    /// its dataset is scripted to ignore that.
    fn cancel(&mut self, id: u32) {
        let Some(pos) = self.active.iter().position(|a| a.id == id) else { return };
        if self.spec.datasets[self.active[pos].dataset].behaviour == Behaviour::IgnoreCancel {
            return;
        }
        let a = self.active.remove(pos);
        self.end.reap(|stream| *stream == id);
        let error = Some(ErrorBody::new(ErrorCode::Cancelled, "cancelled by the gateway"));
        self.send(&ConnectorMessage::StreamEnd {
            request_id: a.request_id,
            total_bytes: a.sent,
            stream_id: a.stream_id,
            error,
        });
    }

    /// Sends round robin, a few frames per stream, within credit; ends the
    /// query streams that sent their last frame. False once the socket is gone.
    fn send_turn(&mut self) -> bool {
        let mut finished = Vec::new();
        for (index, a) in self.active.iter_mut().enumerate() {
            let dataset = &self.spec.datasets[a.dataset];
            for _ in 0..FRAMES_PER_TURN {
                if !a.can_send(dataset) {
                    break;
                }
                if let Behaviour::VanishAfter(n) = dataset.behaviour {
                    if !a.live && a.next >= n {
                        let _ = self.ws.get_ref().shutdown(std::net::Shutdown::Both);
                        return false;
                    }
                }
                let (kind, body) = if a.live {
                    a.pending_live.pop_front().expect("can_send checked")
                } else {
                    a.next += 1;
                    dataset.frames[a.next - 1].clone()
                };
                let frame = a.framer.frame(kind, &body);
                a.sent += body.len() as u64;
                *self.sent_bytes.lock().expect("lock").entry(a.request_id.clone()).or_default() += body.len() as u64;
                if self.ws.send(WsMessage::Binary(frame)).is_err() {
                    return false;
                }
                if let Behaviour::Paced(ms) = dataset.behaviour {
                    std::thread::sleep(Duration::from_millis(ms));
                    break;
                }
            }
            let ends = matches!(
                dataset.behaviour,
                Behaviour::Normal | Behaviour::StrictCredit | Behaviour::IgnoreCancel | Behaviour::Paced(_)
            );
            if !a.live && ends && a.next == dataset.frames.len() {
                finished.push(index);
            }
        }
        for index in finished.into_iter().rev() {
            let a = self.active.remove(index);
            self.end.reap(|stream| *stream == a.id);
            let end = ConnectorMessage::StreamEnd {
                request_id: a.request_id,
                total_bytes: a.sent,
                stream_id: a.stream_id,
                error: None,
            };
            if !self.send(&end) {
                return false;
            }
        }
        true
    }
}

fn not_found(dataset: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::DatasetNotFound, format!("no dataset {dataset:?}"))
}
