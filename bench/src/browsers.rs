//! Simulated level-2 browsers. A *group* is many browser sockets driven by
//! one thread with epoll (mio): connect and upgrade each (blocking, one after
//! the other), send the action, then read every socket as it becomes
//! readable, parse frames without copying payloads, and record counters,
//! completion times and HDR histograms. A *fleet* is several groups, as
//! threads of this process or as child processes (the current executable
//! re-invoked with the hidden `bench-worker` subcommand) so that thousands of
//! readers get more than one core and their own file-descriptor table.
//!
//! Also [`open_idle`]: many idle sessions on plain std sockets, without a
//! thread per socket.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use volley_protocol::message::BrowserEvent;

use crate::hist;
use crate::wire::{self, Event, Parser, OP_PONG};

/// What each browser of a group does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Action {
    /// `subscribe` to a live dataset; done at the frame flagged LAST or `stream_end`.
    Subscribe {
        /// Dataset.
        dataset: String,
    },
    /// `queries` queries, one after the other, of `dataset`.
    Query {
        /// Dataset.
        dataset: String,
        /// Queries per browser.
        queries: u32,
    },
}

/// One group of browsers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Gateway address.
    pub addr: SocketAddr,
    /// Session token.
    pub token: String,
    /// Browsers in the group.
    pub count: usize,
    /// What they do.
    pub action: Action,
    /// Frames carry send-time stamps (latency scenario).
    pub stamped: bool,
    /// Give up after this many seconds.
    pub timeout_seconds: u64,
}

/// What one group measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GroupResult {
    /// Browsers that connected.
    pub browsers: usize,
    /// Browsers that reached their end.
    pub completed: usize,
    /// Binary payload bytes received (WebSocket payloads, level-2 headers included).
    pub bytes: u64,
    /// Binary frames received.
    pub frames: u64,
    /// `gap` messages received.
    pub gaps: u64,
    /// Frames the gateway reported skipped in `gap` messages.
    pub skipped_frames: u64,
    /// Unix nanos each browser reached its end (live: LAST frame or `stream_end`).
    pub end_nanos: Vec<u64>,
    /// Earliest and latest binary frame arrival, Unix nanos.
    pub first_frame_nanos: u64,
    /// Latest binary frame arrival.
    pub last_frame_nanos: u64,
    /// Up to 10 errors seen.
    pub errors: Vec<String>,
    /// Errors in all.
    pub error_count: u64,
    /// HDR V2 base64: latency from scheduled send time, ns.
    pub latency_scheduled_ns: Option<String>,
    /// HDR V2 base64: latency from actual send time, ns.
    pub latency_sent_ns: Option<String>,
    /// HDR V2 base64: query time to first binary frame, µs.
    pub ttfb_us: Option<String>,
    /// HDR V2 base64: query completion (send → `stream_end`), µs.
    pub query_us: Option<String>,
}

impl GroupResult {
    fn error(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < 10 {
            self.errors.push(message);
        }
    }
}

struct Session {
    socket: mio::net::TcpStream,
    parser: Parser,
    done: bool,
    queries_left: u32,
    query_sent: Option<Instant>,
    first_frame: bool,
    query_n: u32,
}

fn action_message(action: &Action, n: u32) -> Value {
    match action {
        Action::Subscribe { dataset } => json!({"action": "subscribe", "dataset": dataset, "query_id": "s1"}),
        Action::Query { dataset, .. } => json!({"action": "query", "dataset": dataset, "query_id": format!("q{n}")}),
    }
}

/// Connects one level-2 browser; returns its socket and the events after `hello`.
fn connect(addr: SocketAddr, token: &str) -> Result<(TcpStream, Parser, Vec<Event>), String> {
    let (mut stream, rest) = wire::handshake(addr, &format!("/stream/{token}"), Some("volley.v2"))
        .map_err(|e| format!("browser connect: {e}"))?;
    let mut parser = Parser::default();
    let mut pending = Vec::new();
    parser.feed(&rest, |e| pending.push(e));
    stream.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    let hello = wire::read_text(&mut stream, &mut parser, &mut pending).map_err(|e| format!("hello: {e}"))?;
    if !matches!(BrowserEvent::parse(&hello), Ok(BrowserEvent::Hello { .. })) {
        return Err(format!("expected hello, got {hello}"));
    }
    Ok((stream, parser, pending))
}

/// Runs one group to its end; `ready` is called once every browser is
/// connected and (for subscriptions) has its `stream_start`.
pub fn run_group(spec: &GroupSpec, ready: &dyn Fn()) -> GroupResult {
    let mut result = GroupResult::default();
    let mut latency_scheduled = hist::new_ns();
    let mut latency_sent = hist::new_ns();
    let mut ttfb = hist::new_us();
    let mut query = hist::new_us();
    let queries = match &spec.action {
        Action::Query { queries, .. } => *queries,
        Action::Subscribe { .. } => 1,
    };
    let deadline = Instant::now() + Duration::from_secs(spec.timeout_seconds);
    let mut streams = Vec::with_capacity(spec.count);
    for _ in 0..spec.count {
        match connect(spec.addr, &spec.token) {
            Ok(s) => streams.push(s),
            Err(e) => result.error(e),
        }
    }
    result.browsers = streams.len();
    let subscribe = matches!(spec.action, Action::Subscribe { .. });
    if subscribe {
        for (stream, _, _) in streams.iter_mut() {
            if let Err(e) = stream.write_all(&wire::text_frame(&action_message(&spec.action, 0))) {
                result.error(format!("subscribe: {e}"));
            }
        }
        for (stream, parser, pending) in streams.iter_mut() {
            loop {
                match wire::read_text(stream, parser, pending) {
                    Ok(text) => match BrowserEvent::parse(&text) {
                        Ok(BrowserEvent::StreamStart { .. }) => break,
                        Ok(BrowserEvent::Error { .. }) | Err(_) => {
                            result.error(text);
                            break;
                        }
                        Ok(_) => continue,
                    },
                    Err(e) => {
                        result.error(format!("waiting for stream_start: {e}"));
                        break;
                    }
                }
            }
        }
    }
    ready();
    let poll = mio::Poll::new();
    let mut poll = match poll {
        Ok(p) => p,
        Err(e) => {
            result.error(format!("epoll: {e}"));
            return result;
        }
    };
    let mut sessions = Vec::with_capacity(streams.len());
    for (index, (stream, parser, pending)) in streams.into_iter().enumerate() {
        let _ = stream.set_nonblocking(true);
        let mut socket = mio::net::TcpStream::from_std(stream);
        if let Err(e) = poll.registry().register(&mut socket, mio::Token(index), mio::Interest::READABLE) {
            result.error(format!("register socket: {e}"));
        }
        let mut session = Session {
            socket,
            parser,
            done: false,
            queries_left: queries,
            query_sent: None,
            first_frame: false,
            query_n: 0,
        };
        if !subscribe {
            session.query_sent = Some(Instant::now());
            session.queries_left -= 1;
            let _ = session.socket.write_all(&wire::text_frame(&action_message(&spec.action, 0)));
        }
        sessions.push((session, pending));
    }
    let mut open = sessions.len();
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut backlog: Vec<Event> = Vec::new();
    // Events already parsed during the connect phase.
    let mut initial: Vec<usize> = (0..sessions.len()).filter(|i| !sessions[*i].1.is_empty()).collect();
    while open > 0 && Instant::now() < deadline {
        let mut ready_tokens: Vec<usize> = std::mem::take(&mut initial);
        if ready_tokens.is_empty() {
            if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
                if e.kind() != ErrorKind::Interrupted {
                    result.error(format!("poll: {e}"));
                    break;
                }
            }
            ready_tokens.extend(events.iter().map(|e| e.token().0));
        }
        for index in ready_tokens {
            let Some((session, pending)) = sessions.get_mut(index) else { continue };
            if session.done {
                continue;
            }
            backlog.clear();
            backlog.append(pending);
            let mut closed = false;
            loop {
                if !backlog.is_empty() {
                    let now_ns = wire::now_nanos();
                    for event in backlog.drain(..) {
                        let finished = handle_event(
                            spec,
                            session,
                            event,
                            now_ns,
                            &mut result,
                            &mut latency_scheduled,
                            &mut latency_sent,
                            &mut ttfb,
                            &mut query,
                        );
                        if finished && !session.done {
                            session.done = true;
                            result.completed += 1;
                            result.end_nanos.push(now_ns);
                        }
                    }
                }
                if session.done {
                    break;
                }
                match session.socket.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => session.parser.feed(&buf[..n], |e| backlog.push(e)),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        result.error(format!("read: {e}"));
                        closed = true;
                        break;
                    }
                }
            }
            if closed && !session.done {
                session.done = true;
                result.error("gateway closed a browser socket before its end".into());
            }
            if session.done {
                open -= 1;
                let _ = poll.registry().deregister(&mut session.socket);
            }
        }
    }
    if open > 0 {
        result.error(format!("{open} browsers did not finish within {} s", spec.timeout_seconds));
    }
    if spec.stamped {
        result.latency_scheduled_ns = Some(hist::encode(&latency_scheduled));
        result.latency_sent_ns = Some(hist::encode(&latency_sent));
    }
    if !subscribe {
        result.ttfb_us = Some(hist::encode(&ttfb));
        result.query_us = Some(hist::encode(&query));
    }
    result
}

/// Handles one event; returns true when the browser reached its end.
#[allow(clippy::too_many_arguments)] // one call site; the histograms are the group's
fn handle_event(
    spec: &GroupSpec,
    session: &mut Session,
    event: Event,
    now_ns: u64,
    result: &mut GroupResult,
    latency_scheduled: &mut Histogram<u64>,
    latency_sent: &mut Histogram<u64>,
    ttfb: &mut Histogram<u64>,
    query: &mut Histogram<u64>,
) -> bool {
    match event {
        Event::Binary { len, prefix } => {
            result.frames += 1;
            result.bytes += len as u64;
            if result.first_frame_nanos == 0 || now_ns < result.first_frame_nanos {
                result.first_frame_nanos = now_ns;
            }
            result.last_frame_nanos = result.last_frame_nanos.max(now_ns);
            if spec.stamped && len >= wire::PREFIX_BYTES {
                let scheduled = wire::le_u64(&prefix, 16);
                let sent = wire::le_u64(&prefix, 24);
                hist::record(latency_scheduled, now_ns.saturating_sub(scheduled));
                hist::record(latency_sent, now_ns.saturating_sub(sent));
            }
            if !session.first_frame {
                session.first_frame = true;
                if let Some(sent) = session.query_sent {
                    hist::record(ttfb, crate::sat_u64(sent.elapsed().as_micros()));
                }
            }
            matches!(spec.action, Action::Subscribe { .. }) && len >= 4 && prefix[3] & 1 == 1
        }
        Event::Text(text) => {
            let Ok(msg) = serde_json::from_str::<Value>(&text) else { return false };
            match msg["type"].as_str() {
                Some("gap") => {
                    result.gaps += 1;
                    result.skipped_frames += msg["skipped_frames"].as_u64().unwrap_or(0);
                    false
                }
                Some("stream_end") | Some("error") => {
                    if msg["type"] == "error" || msg["error"].is_object() {
                        result.error(text.chars().take(300).collect());
                    }
                    if let Some(sent) = session.query_sent.take() {
                        hist::record(query, crate::sat_u64(sent.elapsed().as_micros()));
                    }
                    if session.queries_left == 0 {
                        return true;
                    }
                    session.queries_left -= 1;
                    session.query_n += 1;
                    session.first_frame = false;
                    session.query_sent = Some(Instant::now());
                    let message = wire::text_frame(&action_message(&spec.action, session.query_n));
                    if let Err(e) = write_small(&mut session.socket, &message) {
                        result.error(format!("query: {e}"));
                        return true;
                    }
                    false
                }
                _ => false,
            }
        }
        Event::Ping(payload) => {
            let _ = write_small(&mut session.socket, &wire::client_frame(OP_PONG, &payload));
            false
        }
        Event::Close(code) => {
            result.error(format!("gateway closed a browser with code {code:?}"));
            true
        }
    }
}

/// Writes a small message on a nonblocking socket, retrying briefly on WouldBlock.
fn write_small(socket: &mut mio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Several groups running at once, in threads or child processes.
pub struct Fleet {
    ready: Arc<AtomicUsize>,
    groups: usize,
    threads: Vec<JoinHandle<Result<GroupResult, String>>>,
    children: Vec<Child>,
}

impl Fleet {
    /// Starts `specs`, each in a thread (`processes == false`) or in a
    /// child process running `exe bench-worker` (the current executable).
    pub fn start(specs: Vec<GroupSpec>, processes: bool) -> Result<Fleet, String> {
        let ready = Arc::new(AtomicUsize::new(0));
        let groups = specs.len();
        let mut threads = Vec::new();
        let mut children = Vec::new();
        for spec in specs {
            let ready = ready.clone();
            if processes {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let spec_json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
                let mut child = Command::new(exe)
                    .arg(crate::WORKER_SUBCOMMAND)
                    .arg(spec_json)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("spawning a browser process: {e}"))?;
                let stdout = child.stdout.take().ok_or("child stdout")?;
                threads.push(std::thread::spawn(move || {
                    let mut lines = BufReader::new(stdout).lines();
                    let mut last = None;
                    while let Some(Ok(line)) = lines.next() {
                        if line == "ready" {
                            ready.fetch_add(1, Ordering::AcqRel);
                        } else if line.starts_with('{') {
                            last = Some(line);
                        }
                    }
                    let line = last.ok_or_else(|| "a browser process ended without a result".to_owned())?;
                    serde_json::from_str(&line).map_err(|e| format!("browser process result: {e}"))
                }));
                children.push(child);
            } else {
                threads.push(std::thread::spawn(move || {
                    Ok(run_group(&spec, &|| {
                        ready.fetch_add(1, Ordering::AcqRel);
                    }))
                }));
            }
        }
        Ok(Fleet { ready, groups, threads, children })
    }

    /// Waits until every group is connected (and subscribed).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.ready.load(Ordering::Acquire) < self.groups {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {} browser groups were ready within {timeout:?}",
                    self.ready.load(Ordering::Acquire),
                    self.groups
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits for every group's result.
    pub fn join(mut self) -> Result<Vec<GroupResult>, String> {
        let mut out = Vec::new();
        for thread in self.threads.drain(..) {
            out.push(thread.join().map_err(|_| "a browser group panicked".to_owned())??);
        }
        for mut child in self.children.drain(..) {
            let _ = child.wait();
        }
        Ok(out)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Entry point of the hidden `bench-worker` subcommand: runs one group from
/// its JSON spec, prints `ready` when connected and the result as one JSON line.
pub fn worker_main(spec_json: &str) -> Result<(), String> {
    let spec: GroupSpec = serde_json::from_str(spec_json).map_err(|e| format!("worker spec: {e}"))?;
    let result = run_group(&spec, &|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    });
    let line = serde_json::to_string(&result).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// Opens `count` idle level-2 sessions with plain std sockets: connects and
/// writes the upgrade request for a batch, then reads each `101` head (and
/// whatever follows). Returns the open sockets and the errors seen.
/// Connections opened from one loopback source address before moving to the
/// next (127.0.0.1, .2, …): one address has about 28k ephemeral ports.
pub const IDLE_CONNECTIONS_PER_SOURCE: usize = 20_000;

/// Connects to `addr` from source address `source` (any port).
fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

pub fn open_idle(
    addr: SocketAddr,
    token: &str,
    count: usize,
    progress: &dyn Fn(usize),
) -> (Vec<TcpStream>, Vec<String>) {
    const BATCH: usize = 256;
    let request = wire::upgrade_request(addr, &format!("/stream/{token}"), Some("volley.v2"));
    let mut open = Vec::with_capacity(count);
    let mut errors = Vec::new();
    let mut buf = [0u8; 4096];
    while open.len() + errors.len() < count {
        let n = BATCH.min(count - open.len() - errors.len());
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let index = open.len() + errors.len() + batch.len();
            let connected = if addr.ip().is_loopback() && addr.is_ipv4() {
                // Spread over 127.0.0.x so 100k sessions do not run out of ports.
                let step = u8::try_from(index / IDLE_CONNECTIONS_PER_SOURCE + 1).unwrap_or(u8::MAX);
                connect_from(std::net::IpAddr::from([127, 0, 0, step]), addr)
            } else {
                TcpStream::connect(addr)
            };
            match connected.and_then(|mut s| s.write_all(request.as_bytes()).map(|()| s)) {
                Ok(s) => batch.push(s),
                Err(e) => errors.push(format!("idle connect: {e}")),
            }
        }
        for mut s in batch {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            match s.read(&mut buf) {
                Ok(k) if buf[..k].starts_with(b"HTTP/1.1 101") => open.push(s),
                Ok(k) => errors.push(format!("idle upgrade: {}", String::from_utf8_lossy(&buf[..k.min(80)]))),
                Err(e) => errors.push(format!("idle upgrade: {e}")),
            }
        }
        progress(open.len());
    }
    (open, errors)
}
