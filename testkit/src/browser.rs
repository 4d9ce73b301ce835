//! A browser client for the tests, on a real socket: a blocking
//! tungstenite WebSocket to `/stream/{token}`, level 1 (no subprotocol) or
//! level 2 (`volley.v2`, which starts with a `hello`), over plain TCP or
//! rustls. One client for the engine's and the CLI's tests, so both read
//! the gateway the same way; and crowds of them: stalled browsers that
//! leave what they are sent in the gateway, live subscribers on threads.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::limits::FRAME_HEADER_BYTES;

use crate::tokens::{session_token, TENANT};
use crate::wait_until;

/// The level-2 subprotocol a browser offers.
pub const LEVEL2_SUBPROTOCOL: &str = "volley.v2";
/// How long the handshake and the first `hello` may take.
pub const BROWSER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Browser::query`] waits for a query's end.
pub const BROWSER_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The browser's socket.
pub type BrowserSocket = WebSocket<MaybeTlsStream<TcpStream>>;

/// One message a browser received.
#[derive(Debug, Clone)]
pub enum Received {
    /// A JSON control message.
    Json(Value),
    /// A binary frame.
    Binary(Bytes),
    /// A close frame's code (`None`: no code); the socket ending without a
    /// close frame also maps here.
    Close(Option<u16>),
}

/// A browser client on a real socket.
pub struct Browser {
    /// The socket.
    pub ws: BrowserSocket,
    /// True when `volley.v2` was negotiated.
    pub level2: bool,
    /// The `hello` message (level 2).
    pub hello: Option<Value>,
}

/// A finished (or failed) query as one browser saw it.
#[derive(Debug, Default, Clone)]
pub struct QueryResult {
    /// `flight_info`, if any.
    pub flight_info: Option<Value>,
    /// `stream_start`.
    pub start: Option<Value>,
    /// Payload of every binary frame (level 2: the header stripped), in order.
    pub payloads: Vec<Bytes>,
    /// Level-2 headers, in order.
    pub headers: Vec<FrameHeader>,
    /// `stream_end` or `error`.
    pub end: Option<Value>,
    /// The order in which messages arrived: each JSON message's `type`, or `binary`.
    pub order: Vec<String>,
}

impl QueryResult {
    /// The payloads concatenated: one Arrow IPC stream.
    pub fn bytes(&self) -> Vec<u8> {
        self.payloads.iter().flat_map(|p| p.iter().copied()).collect()
    }

    /// The error code of the end message, if any.
    pub fn error_code(&self) -> Option<String> {
        let end = self.end.as_ref()?;
        if end["type"] == "error" {
            return end["code"].as_str().map(str::to_owned);
        }
        end["error"]["code"].as_str().map(str::to_owned)
    }
}

pub use crate::is_timeout;

impl Browser {
    /// Connects a level-1 (`level2 == false`) or level-2 browser with `token`; panics on failure.
    pub fn connect(addr: SocketAddr, token: &str, level2: bool) -> Browser {
        Browser::try_connect(addr, token, level2).expect("browser connects")
    }

    /// Same, returning the connect or handshake error.
    pub fn try_connect(addr: SocketAddr, token: &str, level2: bool) -> Result<Browser, String> {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Browser::connect_on(stream, addr, token, level2)
    }

    /// Connects over an already connected socket (e.g. one with a small receive buffer).
    pub fn connect_on(stream: TcpStream, addr: SocketAddr, token: &str, level2: bool) -> Result<Browser, String> {
        Browser::handshake(stream, &format!("ws://{addr}/stream/{token}"), level2, None)
    }

    /// A browser on `wss://{host}:{port}` trusting `tls`'s roots (`host`
    /// names the certificate; the socket goes to `addr`); panics on failure.
    pub fn connect_tls(
        addr: SocketAddr,
        host: &str,
        token: &str,
        level2: bool,
        tls: Arc<rustls::ClientConfig>,
    ) -> Browser {
        let stream = TcpStream::connect(addr).expect("browser connects");
        stream.set_nodelay(true).expect("nodelay");
        let url = format!("wss://{host}:{}/stream/{token}", addr.port());
        Browser::handshake(stream, &url, level2, Some(tls)).expect("browser handshake")
    }

    fn handshake(
        stream: TcpStream,
        url: &str,
        level2: bool,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Browser, String> {
        stream.set_read_timeout(Some(BROWSER_HANDSHAKE_TIMEOUT)).map_err(|e| e.to_string())?;
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if level2 {
            request.headers_mut().insert("Sec-WebSocket-Protocol", LEVEL2_SUBPROTOCOL.parse().expect("header value"));
        }
        let connector = match tls {
            Some(config) => tungstenite::Connector::Rustls(config),
            None => tungstenite::Connector::Plain,
        };
        let (ws, response) =
            tungstenite::client_tls_with_config(request, stream, None, Some(connector)).map_err(|e| e.to_string())?;
        let selected =
            response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut browser = Browser { ws, level2, hello: None };
        if level2 {
            assert_eq!(selected.as_deref(), Some(LEVEL2_SUBPROTOCOL), "the gateway selects {LEVEL2_SUBPROTOCOL}");
            match browser.next(BROWSER_HANDSHAKE_TIMEOUT) {
                Some(Received::Json(hello)) if hello["type"] == "hello" => browser.hello = Some(hello),
                other => panic!("expected hello first, got {other:?}"),
            }
        } else {
            assert_eq!(selected, None, "no subprotocol at level 1");
        }
        Ok(browser)
    }

    /// The TCP socket under the WebSocket (and TLS).
    pub fn tcp(&self) -> &TcpStream {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp,
            MaybeTlsStream::Rustls(tls) => tls.get_ref(),
            _ => unreachable!("only plain and rustls streams are built here"),
        }
    }

    /// Sends a JSON control message.
    pub fn send(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).expect("browser sends");
    }

    /// The next message within `timeout` (pings are answered and skipped);
    /// `None` when nothing came in time.
    pub fn next(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = self.tcp().set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return Some(Received::Json(serde_json::from_str(&text).expect("gateway sends JSON")))
                }
                Ok(Message::Binary(data)) => return Some(Received::Binary(data)),
                Ok(Message::Close(frame)) => return Some(Received::Close(frame.map(|f| u16::from(f.code)))),
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => return None,
                Err(_) => return Some(Received::Close(None)),
            }
        }
    }

    /// The next JSON message within `timeout` (panics on anything else).
    pub fn next_json(&mut self, timeout: Duration) -> Value {
        match self.next(timeout) {
            Some(Received::Json(v)) => v,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// Reads until a close frame (or the end of the socket); returns its code.
    pub fn expect_close(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).expect("close frame in time");
            match self.next(left) {
                Some(Received::Close(code)) => return code,
                Some(_) => continue,
                None => panic!("no close frame within {timeout:?}"),
            }
        }
    }

    /// `list` → the dataset names, sorted.
    pub fn list(&mut self) -> Vec<String> {
        self.send(json!({"action": "list"}));
        loop {
            let reply = self.next_json(BROWSER_HANDSHAKE_TIMEOUT);
            if reply["type"] == "datasets" {
                let mut names: Vec<String> = reply["datasets"]
                    .as_array()
                    .expect("datasets array")
                    .iter()
                    .map(|d| d["name"].as_str().expect("name").to_owned())
                    .collect();
                names.sort();
                return names;
            }
        }
    }

    /// Runs one query to its end on this socket (nothing else in flight).
    pub fn query(&mut self, dataset: &str, query_id: &str) -> QueryResult {
        self.send(json!({"action": "query", "dataset": dataset, "query_id": query_id}));
        self.collect(query_id, BROWSER_QUERY_TIMEOUT)
    }

    /// Collects one query's messages until its `stream_end` or `error`.
    pub fn collect(&mut self, query_id: &str, timeout: Duration) -> QueryResult {
        let mut result = QueryResult::default();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("query {query_id} did not end within {timeout:?}: {result:?}"));
            match self.next(left) {
                Some(Received::Json(v)) => {
                    let kind = v["type"].as_str().unwrap_or_default().to_owned();
                    result.order.push(kind.clone());
                    match kind.as_str() {
                        "flight_info" => result.flight_info = Some(v),
                        "stream_start" => result.start = Some(v),
                        "stream_end" | "error" => {
                            result.end = Some(v);
                            return result;
                        }
                        _ => {}
                    }
                }
                Some(Received::Binary(data)) => {
                    result.order.push("binary".into());
                    if self.level2 {
                        let header = FrameHeader::decode(&data).expect("valid level-2 header");
                        result.headers.push(header);
                        result.payloads.push(data.slice(FRAME_HEADER_BYTES..));
                    } else {
                        result.payloads.push(data);
                    }
                }
                Some(Received::Close(code)) => panic!("socket closed ({code:?}) during query {query_id}"),
                None => {}
            }
        }
    }
}

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

/// Many live subscribers, a few threads each holding a group of browsers.
pub struct LiveClients {
    threads: Vec<JoinHandle<usize>>,
    ready: Arc<AtomicUsize>,
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
    let ready = Arc::new(AtomicUsize::new(0));
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
                                    data.slice(FRAME_HEADER_BYTES..)
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
