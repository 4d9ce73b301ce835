//! Shared helpers for the engine's end-to-end tests: a gateway started
//! in-process on real sockets, a fake connector (level 1 or 2) and browser
//! clients written with sync `tungstenite` over `std::net::TcpStream`, raw
//! HTTP/WebSocket helpers for malformed input, an Arrow IPC splitter, and
//! (in [`heap`]) a counting allocator for memory tests.
//!
//! No mocks: every byte crosses a loopback TCP socket and the gateway's
//! io_uring workers.

#![allow(dead_code)]

pub mod heap;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message as WsMessage, WebSocket};
use volley_engine::{Gateway, GatewayConfig, StartOptions};
use volley_protocol::header::{FrameHeader, FrameKind, FLAG_LAST};
use volley_protocol::token::{sign, ConnectorClaims, SessionClaims, ROLE_CONNECTOR};
use volley_testkit::browser::is_timeout;

/// The gateway secret every test uses.
pub const SECRET: &str = "volley-e2e-secret";
/// The tenant most tests use.
pub const TENANT: &str = "acme";
/// A schema string the fake connector hands out (the engine treats it as opaque).
pub const SCHEMA_B64: &str = "/////w==";

// ------------------------------------------------------------------ gateway

/// A config for tests: 127.0.0.1:0, two workers, a secret, seed connectors allowed.
pub fn config() -> GatewayConfig {
    GatewayConfig {
        listen: Some("127.0.0.1:0".into()),
        workers: Some(2),
        tableros_secret_key: Some(volley_engine::config::Secrets::One(SECRET.into())),
        allow_unauthenticated_connectors: true,
        ..GatewayConfig::default()
    }
}

/// Starts a gateway with `config`.
pub fn start(config: GatewayConfig) -> Gateway {
    volley_engine::start(config, StartOptions::default()).expect("gateway starts")
}

fn now() -> i64 {
    volley_engine::unix_now()
}

/// A browser session token for `tenant` allowed to read `permisos`.
pub fn session_token(tenant: &str, permisos: &[&str]) -> String {
    session_token_with(tenant, permisos, now() + 3600, SECRET)
}

/// A browser session token with an explicit expiry and secret.
pub fn session_token_with(tenant: &str, permisos: &[&str], exp: i64, secret: &str) -> String {
    sign_session("ana", tenant, permisos, &format!("s-{}", fastrand_id()), exp, secret)
}

/// A session token for user `sub` of `tenant`, every dataset, with session
/// id (revocation key) `jti`, valid for an hour.
pub fn session_token_of(sub: &str, tenant: &str, jti: &str) -> String {
    sign_session(sub, tenant, &["*"], jti, now() + 3600, SECRET)
}

/// A session token for `tenant`, every dataset, issued for edge `edge_id`
/// (`""`: no edge), valid for an hour.
pub fn session_token_on_edge(tenant: &str, edge_id: &str) -> String {
    sign_session_on(edge_id, "ana", tenant, &["*"], &format!("s-{}", fastrand_id()), now() + 3600, SECRET)
}

fn sign_session(sub: &str, tenant: &str, permisos: &[&str], jti: &str, exp: i64, secret: &str) -> String {
    sign_session_on("", sub, tenant, permisos, jti, exp, secret)
}

fn sign_session_on(
    edge_id: &str,
    sub: &str,
    tenant: &str,
    permisos: &[&str],
    jti: &str,
    exp: i64,
    secret: &str,
) -> String {
    let claims = SessionClaims {
        sub: sub.into(),
        cuenta_id: tenant.into(),
        edge_id: edge_id.into(),
        permisos: permisos.iter().map(|p| (*p).to_owned()).collect(),
        jti: jti.into(),
        iat: now() - 10,
        exp,
        nbf: None,
        role: None,
    };
    sign(&claims, secret.as_bytes()).expect("sign session")
}

/// A connector credential for `tenant`, signed with `secret`.
pub fn connector_token_with(tenant: &str, secret: &str) -> String {
    connector_token_jti(tenant, secret, &format!("c-{}", fastrand_id()))
}

/// A connector credential for `tenant` with a chosen `jti`.
pub fn connector_token_jti(tenant: &str, secret: &str, jti: &str) -> String {
    let claims = ConnectorClaims {
        cuenta_id: tenant.into(),
        role: ROLE_CONNECTOR.into(),
        jti: jti.into(),
        iat: now() - 10,
        exp: now() + 3600,
        nbf: None,
    };
    sign(&claims, secret.as_bytes()).expect("sign connector")
}

/// A valid connector credential for `tenant`.
pub fn connector_token(tenant: &str) -> String {
    connector_token_with(tenant, SECRET)
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Samples `measure` of the gateway every millisecond until the returned flag
/// is set; the thread returns the largest value seen.
pub fn max_sampler(
    gateway: &Gateway,
    measure: impl Fn(&volley_engine::Shared) -> usize + Send + 'static,
) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let shared = gateway.shared().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut max = 0;
        while !flag.load(Ordering::Acquire) {
            max = max.max(measure(&shared));
            std::thread::sleep(Duration::from_millis(1));
        }
        max
    });
    (stop, thread)
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the gateway counts `n` connectors online.
pub fn wait_connectors(gateway: &Gateway, n: usize) {
    let shared = gateway.shared().clone();
    assert!(
        wait_until(Duration::from_secs(5), || shared.registry.connectors_online.load(Ordering::Relaxed) == n),
        "expected {n} connectors online, have {}",
        shared.registry.connectors_online.load(Ordering::Relaxed)
    );
}

// --------------------------------------------------------------- arrow data

/// Path of a golden Arrow IPC file.
pub fn golden_path(relative: &str) -> PathBuf {
    PathBuf::from("/work/shared/testdata/arrow-ipc").join(relative)
}

/// Bytes of a golden Arrow IPC stream file.
pub fn golden(relative: &str) -> Vec<u8> {
    std::fs::read(golden_path(relative)).expect("golden file")
}

/// The primitive golden stream used by most tests.
pub const PRIMITIVE: &str = "1.0.0-littleendian/generated_primitive.stream";
/// A second, different golden stream.
pub const LARGE_OFFSETS: &str = "1.0.0-littleendian/generated_primitive_large_offsets.stream";

fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(buf[at..at + 2].try_into().expect("2 bytes"))
}

fn to_usize(v: impl TryInto<usize>) -> usize {
    v.try_into().ok().expect("fits usize")
}

/// (header type, body length) of an IPC `Message` flatbuffer: field 1 is
/// `header_type` (u8: 1 Schema, 2 DictionaryBatch, 3 RecordBatch), field 3
/// `bodyLength` (i64). Read straight from the flatbuffer's vtable so the
/// engine's tests need no Arrow dependency.
fn parse_message_meta(meta: &[u8]) -> (u8, usize) {
    let table = to_usize(le_u32(meta, 0));
    let soffset = i32::from_le_bytes(meta[table..table + 4].try_into().expect("4 bytes"));
    let vtable = to_usize(i64::try_from(table).expect("i64") - i64::from(soffset));
    let vtable_len = to_usize(le_u16(meta, vtable));
    let field = |id: usize| -> usize {
        let at = vtable + 4 + 2 * id;
        if at + 2 <= vtable + vtable_len {
            to_usize(le_u16(meta, at))
        } else {
            0
        }
    };
    let header_type = match field(1) {
        0 => 0,
        off => meta[table + off],
    };
    let body_len = match field(3) {
        0 => 0,
        off => to_usize(i64::from_le_bytes(meta[table + off..table + off + 8].try_into().expect("8 bytes"))),
    };
    (header_type, body_len)
}

/// Splits an Arrow IPC stream into whole messages (encapsulated format with
/// the 0xFFFFFFFF continuation marker), each tagged with its frame kind; the
/// last is the 8-byte end-of-stream marker. The pieces concatenate to `data`.
pub fn ipc_messages(data: &[u8]) -> Vec<(FrameKind, Bytes)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        let first = le_u32(data, pos);
        pos += 4;
        let meta_len = if first == 0xFFFF_FFFF {
            let len = le_u32(data, pos);
            pos += 4;
            to_usize(len)
        } else {
            to_usize(first)
        };
        if meta_len == 0 {
            out.push((FrameKind::EndOfStream, Bytes::copy_from_slice(&data[start..pos])));
            break;
        }
        let (header_type, body_len) = parse_message_meta(&data[pos..pos + meta_len]);
        pos += meta_len + body_len;
        let kind = match header_type {
            1 => FrameKind::Schema,
            2 => FrameKind::Dictionary,
            3 => FrameKind::RecordBatch,
            other => panic!("unexpected IPC message header type {other}"),
        };
        out.push((kind, Bytes::copy_from_slice(&data[start..pos])));
    }
    assert_eq!(out.iter().map(|(_, b)| b.len()).sum::<usize>(), data.len(), "split covers the whole stream");
    out
}

/// Splits `data` into arbitrary chunks of `size` bytes (level-1 style).
pub fn chunks(data: &[u8], size: usize) -> Vec<(FrameKind, Bytes)> {
    data.chunks(size).map(|c| (FrameKind::Chunk, Bytes::copy_from_slice(c))).collect()
}

/// `n` synthetic record-batch frames of `size` bytes each, with a fixed
/// pattern that encodes the frame number (the engine never decodes them).
pub fn synthetic_frames(n: usize, size: usize) -> Vec<(FrameKind, Bytes)> {
    let pattern: Vec<u8> = (0..size).map(|j| u8::try_from(j % 251).expect("byte")).collect();
    (0..n)
        .map(|i| {
            let mut body = pattern.clone();
            let stamp = (i as u64).to_le_bytes();
            let len = stamp.len().min(size);
            body[..len].copy_from_slice(&stamp[..len]);
            (FrameKind::RecordBatch, Bytes::from(body))
        })
        .collect()
}

/// Runs pyarrow on IPC stream files; returns one `rows checksum` line per file.
pub fn pyarrow_summary(paths: &[&std::path::Path]) -> Vec<String> {
    let script = r#"
import sys, hashlib, pyarrow.ipc as ipc
for p in sys.argv[1:]:
    with open(p, 'rb') as f:
        t = ipc.open_stream(f).read_all()
    h = hashlib.sha256()
    for name in t.column_names:
        h.update(name.encode())
        h.update(repr(t.column(name).to_pylist()).encode())
    print(t.num_rows, t.num_columns, h.hexdigest())
"#;
    let output =
        std::process::Command::new("python3").arg("-c").arg(script).args(paths).output().expect("python3 runs");
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf8").lines().map(str::to_owned).collect()
}

// ---------------------------------------------------------------- connector

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
    /// The fake connector sends its frames as they are whatever `do_get` asks.
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
}

enum Control {
    Live { dataset: String, kind: FrameKind, body: Bytes },
    Vanish,
    Stop,
}

struct Active {
    request_id: String,
    stream_id: Option<u32>,
    dataset: usize,
    live: bool,
    next: usize,
    sequence: u64,
    credit: u64,
    sent: u64,
    pending_live: VecDeque<(FrameKind, Bytes)>,
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
    let mut register = json!({
        "action": "register",
        "tenant_id": spec.tenant,
        "version": "0.0.0-test",
        "datasets": spec.datasets.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
    });
    let live: Vec<String> = spec.datasets.iter().filter(|d| d.live).map(|d| d.name.clone()).collect();
    if !live.is_empty() {
        register["live"] = json!(live);
    }
    if spec.level == 2 {
        register["protocol"] = json!(2);
    }
    if let Some(token) = &spec.token {
        register["token"] = json!(token);
    }
    if !spec.compression.is_empty() {
        register["compression"] = json!(spec.compression);
    }
    ws.send(WsMessage::text(register.to_string())).expect("send register");
    let reply = loop {
        match ws.read().expect("register reply") {
            WsMessage::Text(text) => break serde_json::from_str::<Value>(&text).expect("reply is JSON"),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("unexpected reply to register: {other:?}"),
        }
    };
    let (control, control_rx) = std::sync::mpsc::channel();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sent_bytes = Arc::new(Mutex::new(HashMap::new()));
    let alive = Arc::new(AtomicBool::new(true));
    let thread = if reply["status"] == "ok" {
        let received = received.clone();
        let sent_bytes = sent_bytes.clone();
        let alive = alive.clone();
        Some(std::thread::spawn(move || {
            connector_loop(ws, spec, control_rx, received, sent_bytes);
            alive.store(false, Ordering::Release);
        }))
    } else {
        alive.store(false, Ordering::Release);
        None
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

fn connector_loop(
    mut ws: Ws,
    spec: ConnectorSpec,
    control: Receiver<Control>,
    received: Arc<Mutex<Vec<Value>>>,
    sent_bytes: Arc<Mutex<HashMap<String, u64>>>,
) {
    let level2 = spec.level == 2;
    let mut active: Vec<Active> = Vec::new();
    let mut live_backlog: HashMap<String, VecDeque<(FrameKind, Bytes)>> = HashMap::new();
    let _ = ws.get_ref().set_read_timeout(Some(Duration::from_millis(5)));
    loop {
        // Test commands.
        while let Ok(cmd) = control.try_recv() {
            match cmd {
                Control::Live { dataset, kind, body } => {
                    // Every live stream of the dataset gets the frame (the
                    // gateway runs one per codec it chose).
                    let mut fed = false;
                    for a in active.iter_mut().filter(|a| a.live && spec.datasets[a.dataset].name == dataset) {
                        a.pending_live.push_back((kind, body.clone()));
                        fed = true;
                    }
                    if !fed {
                        live_backlog.entry(dataset).or_default().push_back((kind, body));
                    }
                }
                Control::Vanish => {
                    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
                    return;
                }
                Control::Stop => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return;
                }
            }
        }
        // Gateway messages: non-blocking when there is data to send, else a short wait.
        let busy = active.iter().any(|a| can_send(a, &spec));
        let _ = ws.get_ref().set_nonblocking(busy);
        loop {
            match ws.read() {
                Ok(WsMessage::Text(text)) => {
                    let msg: Value = serde_json::from_str(&text).expect("gateway sends JSON");
                    received.lock().expect("lock").push(msg.clone());
                    handle_command(&mut ws, &spec, &mut active, &mut live_backlog, &sent_bytes, msg);
                }
                Ok(WsMessage::Close(_)) => return,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => break,
                Err(_) => return,
            }
            if busy {
                continue;
            }
            break;
        }
        let _ = ws.get_ref().set_nonblocking(false);
        let _ = ws.flush();
        // Send: round robin, a few frames per stream per turn, within credit.
        let mut finished = Vec::new();
        for (index, a) in active.iter_mut().enumerate() {
            let dataset = &spec.datasets[a.dataset];
            for _ in 0..8 {
                if !can_send(a, &spec) {
                    break;
                }
                if let Behaviour::VanishAfter(n) = dataset.behaviour {
                    if !a.live && a.next >= n {
                        let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
                let (kind, body) = if a.live {
                    a.pending_live.pop_front().expect("can_send checked")
                } else {
                    let frame = dataset.frames[a.next].clone();
                    a.next += 1;
                    frame
                };
                let last = !a.live && a.next == dataset.frames.len();
                let payload = if level2 {
                    let header = FrameHeader {
                        kind,
                        flags: if last { FLAG_LAST } else { 0 },
                        stream_id: a.stream_id.expect("level 2 stream id"),
                        sequence: a.sequence,
                    };
                    let mut buf = Vec::with_capacity(16 + body.len());
                    buf.extend_from_slice(&header.encode());
                    buf.extend_from_slice(&body);
                    Bytes::from(buf)
                } else {
                    body.clone()
                };
                a.sequence += 1;
                a.sent += body.len() as u64;
                *sent_bytes.lock().expect("lock").entry(a.request_id.clone()).or_default() += body.len() as u64;
                if ws.send(WsMessage::Binary(payload)).is_err() {
                    return;
                }
            }
            let ends =
                matches!(dataset.behaviour, Behaviour::Normal | Behaviour::StrictCredit | Behaviour::IgnoreCancel);
            if !a.live && ends && a.next == dataset.frames.len() {
                finished.push(index);
            }
        }
        for index in finished.into_iter().rev() {
            let a = active.remove(index);
            let mut end = json!({"request_id": a.request_id, "type": "stream_end", "total_bytes": a.sent});
            if let Some(id) = a.stream_id {
                end["stream_id"] = json!(id);
            }
            if ws.send(WsMessage::text(end.to_string())).is_err() {
                return;
            }
        }
    }
}

fn can_send(a: &Active, spec: &ConnectorSpec) -> bool {
    let dataset = &spec.datasets[a.dataset];
    if a.live {
        return !a.pending_live.is_empty();
    }
    if dataset.behaviour == Behaviour::Stall {
        return false;
    }
    let Some((_, next)) = dataset.frames.get(a.next) else { return false };
    if dataset.behaviour == Behaviour::StrictCredit {
        return a.sent + next.len() as u64 <= a.credit;
    }
    a.sent < a.credit
}

fn handle_command(
    ws: &mut Ws,
    spec: &ConnectorSpec,
    active: &mut Vec<Active>,
    live_backlog: &mut HashMap<String, VecDeque<(FrameKind, Bytes)>>,
    sent_bytes: &Arc<Mutex<HashMap<String, u64>>>,
    msg: Value,
) {
    let request_id = msg["request_id"].as_str().unwrap_or_default().to_owned();
    let dataset_of = |name: &str| spec.datasets.iter().position(|d| d.name == name);
    let reply = match msg["action"].as_str() {
        Some("get_flight_info") => {
            let name = msg["descriptor"]["path"][0].as_str().unwrap_or_default();
            match dataset_of(name) {
                Some(_) => json!({"request_id": request_id, "data": {"schema": SCHEMA_B64, "records": -1}}),
                None => json!({"type": "error", "request_id": request_id, "code": "dataset_not_found",
                               "message": format!("no dataset {name:?}")}),
            }
        }
        Some("do_get") => {
            let name = msg["ticket"].as_str().unwrap_or_default();
            let Some(index) = dataset_of(name) else {
                let error = json!({"type": "error", "request_id": request_id, "code": "dataset_not_found",
                                   "message": format!("no dataset {name:?}")});
                let _ = ws.send(WsMessage::text(error.to_string()));
                return;
            };
            let stream_id = msg["stream_id"].as_u64().map(|id| u32::try_from(id).expect("u32 stream id"));
            let live = spec.datasets[index].live;
            let credit = if spec.level == 2 && !live { msg["credit_bytes"].as_u64().unwrap_or(0) } else { u64::MAX };
            sent_bytes.lock().expect("lock").insert(request_id.clone(), 0);
            active.push(Active {
                request_id: request_id.clone(),
                stream_id,
                dataset: index,
                live,
                next: 0,
                sequence: 0,
                credit,
                sent: 0,
                pending_live: live_backlog.remove(name).unwrap_or_default(),
            });
            let mut start = json!({"request_id": request_id, "type": "stream_start", "schema": SCHEMA_B64});
            if let Some(id) = stream_id {
                start["stream_id"] = json!(id);
            }
            start
        }
        Some("credit") => {
            let id = msg["stream_id"].as_u64();
            if let Some(a) = active.iter_mut().find(|a| a.stream_id.map(u64::from) == id) {
                a.credit = a.credit.saturating_add(msg["bytes"].as_u64().unwrap_or(0));
            }
            return;
        }
        Some("cancel") => {
            let Some(pos) = active.iter().position(|a| a.request_id == request_id) else { return };
            if spec.datasets[active[pos].dataset].behaviour == Behaviour::IgnoreCancel {
                return;
            }
            let a = active.remove(pos);
            let mut end = json!({"request_id": request_id, "type": "stream_end", "total_bytes": a.sent,
                                 "error": {"code": "cancelled", "message": "cancelled by the gateway"}});
            if let Some(id) = a.stream_id {
                end["stream_id"] = json!(id);
            }
            end
        }
        Some("ping") => json!({"type": "pong"}),
        _ => return,
    };
    let _ = ws.send(WsMessage::text(reply.to_string()));
}

// ------------------------------------------------------------------ browser

/// The browser client is shared with the CLI's tests.
#[allow(unused_imports)] // each test binary uses its own part
pub use volley_testkit::browser::{Browser, QueryResult, Received};

/// A level-2 browser whose socket has a tiny receive buffer, so that what
/// it does not read stays in its ring in the gateway.
pub fn stalled_browser(addr: SocketAddr, token: &str) -> Browser {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    Browser::connect_on(stream, addr, token, true).expect("stalled browser connects")
}

/// Asserts a fresh level-2 browser can still run `dataset` to completion with `expected` bytes.
pub fn assert_healthy(addr: SocketAddr, dataset: &str, expected: &[u8]) {
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = browser.query(dataset, "health-check");
    assert_eq!(result.error_code(), None, "healthy query failed: {:?}", result.end);
    assert!(result.bytes() == expected, "healthy query returned different bytes");
}

// ------------------------------------------------------------------ raw HTTP

/// Sends `request` raw and reads the response until the server closes (or 5 s).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(request).expect("write request");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// `GET path` with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_raw(addr, format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
}

/// The body of an HTTP response text.
pub fn http_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// A WebSocket upgrade request for `path`.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Sends an upgrade request for `path` (with `extra` header lines) from a raw
/// socket and reads the answer: a refusal whole, a 101's head only (its
/// socket is then dropped). Returns the status and the text read.
pub fn upgrade_head(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(upgrade_request(path, extra).as_bytes()).expect("write upgrade");
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
        // A 101 stays open: its head is all there is to read.
        if text.starts_with(b"HTTP/1.1 101") && text.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Asks to open a browser session with `token` from a raw socket: the HTTP
/// status and the error body's `code` and `message` (`""` for a 101, whose
/// socket is then dropped).
pub fn session_verdict(addr: SocketAddr, token: &str) -> (u16, String, String) {
    let (status, text) = upgrade_head(addr, &format!("/stream/{token}"), "");
    let body: Value = serde_json::from_str(http_body(&text)).unwrap_or(Value::Null);
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

/// Upgrades `path` on a raw socket; returns the socket positioned after the 101 head.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(upgrade_request(path, "").as_bytes()).expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read upgrade response");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    stream
}

/// Reads one server (unmasked) frame: (opcode, payload). `None` at EOF/timeout.
pub fn read_raw_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let opcode = head[0] & 0x0F;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            to_usize(u64::from_be_bytes(b))
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((opcode, payload))
}

/// Reads frames until a close frame; returns its code (`None`: the socket ended first).
pub fn raw_close_code(stream: &mut TcpStream) -> Option<u16> {
    while let Some((opcode, payload)) = read_raw_frame(stream) {
        if opcode == 0x8 {
            return payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        }
    }
    None
}

/// Converts a tungstenite close code.
pub fn code_of(code: CloseCode) -> u16 {
    u16::from(code)
}

/// Reads `/metrics.json`.
pub fn metrics_json(addr: SocketAddr) -> Value {
    let (status, text) = http_get(addr, "/metrics.json");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(http_body(&text)).expect("metrics.json is JSON")
}

// ------------------------------------------------------------- live fan-out

/// Many live subscribers, a few threads each holding a group of browsers.
pub struct LiveClients {
    threads: Vec<JoinHandle<usize>>,
    ready: Arc<std::sync::atomic::AtomicUsize>,
    /// Browsers in all groups.
    pub total: usize,
}

impl LiveClients {
    /// Waits until every browser has its `stream_start`.
    pub fn wait_ready(&self, timeout: Duration) {
        assert!(
            wait_until(timeout, || self.ready.load(Ordering::Acquire) == self.total),
            "only {} of {} subscribers started",
            self.ready.load(Ordering::Acquire),
            self.total
        );
    }

    /// Joins the threads; returns how many browsers received every expected frame.
    pub fn join(self) -> usize {
        self.threads.into_iter().map(|t| t.join().expect("client thread")).sum()
    }
}

/// Starts `groups` of (browsers, level2) subscribing to live `dataset`; each
/// browser must receive exactly `expected`, in order, byte-identical.
pub fn spawn_live_clients(
    addr: SocketAddr,
    dataset: &str,
    groups: Vec<(usize, bool)>,
    expected: Arc<Vec<(FrameKind, Bytes)>>,
) -> LiveClients {
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = groups.iter().map(|(n, _)| n).sum();
    let threads = groups
        .into_iter()
        .map(|(n, level2)| {
            let ready = ready.clone();
            let expected = expected.clone();
            let dataset = dataset.to_owned();
            std::thread::spawn(move || {
                let token = session_token(TENANT, &[&dataset]);
                let mut browsers: Vec<Browser> = (0..n).map(|_| Browser::connect(addr, &token, level2)).collect();
                for b in browsers.iter_mut() {
                    b.send(json!({"action": "subscribe", "dataset": dataset, "query_id": "s1"}));
                }
                let mut stream_ids = Vec::with_capacity(n);
                for b in browsers.iter_mut() {
                    let mut start = b.next_json(Duration::from_secs(20));
                    if start["type"] == "flight_info" {
                        // Subscribers present when the connector answers get_flight_info get it first.
                        start = b.next_json(Duration::from_secs(20));
                    }
                    assert_eq!(start["type"], "stream_start", "{start}");
                    assert_eq!(start["live"], true);
                    stream_ids.push(start["stream_id"].as_u64());
                    ready.fetch_add(1, Ordering::AcqRel);
                }
                let mut complete = 0;
                for (b, stream_id) in browsers.iter_mut().zip(stream_ids) {
                    let mut got = 0;
                    while got < expected.len() {
                        match b.next(Duration::from_secs(30)) {
                            Some(Received::Binary(data)) => {
                                let payload = if level2 {
                                    let h = FrameHeader::decode(&data).expect("header");
                                    assert_eq!(Some(u64::from(h.stream_id)), stream_id);
                                    assert_eq!(h.sequence, got as u64, "frames in order, none missing");
                                    assert_eq!(h.kind, expected[got].0);
                                    data.slice(16..)
                                } else {
                                    data
                                };
                                assert!(payload == expected[got].1, "frame {got} differs");
                                got += 1;
                            }
                            other => panic!("subscriber got {other:?} after {got} frames"),
                        }
                    }
                    complete += 1;
                }
                complete
            })
        })
        .collect();
    LiveClients { threads, ready, total }
}

/// Waits for both workers to publish metrics and returns each one's `frames_out`.
pub fn frames_out_per_worker(gateway: &Gateway, at_least_total: u64) -> Vec<u64> {
    let shared = gateway.shared().clone();
    let mut per = Vec::new();
    wait_until(Duration::from_secs(4), || {
        per = (0..shared.workers).map(|w| shared.metrics.worker(w).map(|m| m.frames_out).unwrap_or(0)).collect();
        per.iter().sum::<u64>() >= at_least_total
    });
    per
}
