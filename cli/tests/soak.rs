//! Soak under attack: a `volley gateway` process serves a live dataset (a
//! followed CSV, through the real connector) to 50 browsers for a minute
//! while every attack of the hardening work runs against it at once:
//!
//! 1. requests whose session path has `%a` + a multi-byte character (they
//!    once panicked a worker);
//! 2. sessions of another tenant that ask for replies (`list`, `ping`,
//!    WebSocket pings) and never read them;
//! 3. unauthenticated tunnels announcing 16 MiB frames before `register`;
//! 4. a registered connector whose live stream sends 1 MiB dictionaries
//!    without end (retained for late joiners);
//! 5. sessions that query a large dataset, read nothing and close.
//!
//! The gateway must stay up, every legitimate subscriber must receive every
//! frame in order (no gap, no close), and the process's peak RSS must stay
//! under the worst-case bound ARCHITECTURE.md states for this configuration
//! and these connection counts. `VOLLEY_SOAK_SECONDS` shortens or lengthens
//! the run (default 60).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::ws::{encode_masked_frame, OpCode};
use volley_testkit::browser::{Browser, Received};
use volley_testkit::connector::{connector_yaml, InProcessConnector};
use volley_testkit::files::{aggregate_csv, big_parquet, TempDir};
use volley_testkit::http::wait_health_connectors;
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::{connector_token, session_token, SECRET};
use volley_testkit::wait_until;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

const SUBSCRIBERS: usize = 50;
const TENANT: &str = "acme";
const ATTACKER: &str = "mallory";
const MASK: [u8; 4] = [0x3c, 0x91, 0x0e, 0x5b];
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

// The gateway's configuration, and the bound ARCHITECTURE.md derives from it.
const SESSION_BYTES_MAX: u64 = 4 * MIB;
const TOTAL_BYTES_MAX: u64 = 64 * MIB;
const SESSION_CONTROL_BYTES_MAX: u64 = 256 * KIB;
const CONNECTOR_FRAME_BYTES_MAX: u64 = 4 * MIB;
const LIVE_RETAINED_BYTES_MAX: u64 = 2 * MIB;
const CREDIT_BYTES: u64 = 4 * MIB;
const INBOX_BYTES_MAX: u64 = 16 * MIB;

// Attackers (each reconnects when the gateway closes it).
const FLOODERS: usize = 6;
const PRE_AUTH_TUNNELS: usize = 10;
const QUIT_QUERIES: usize = 5;

fn soak_duration() -> Duration {
    let seconds = std::env::var("VOLLEY_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(seconds)
}

fn gateway_yaml() -> String {
    json!({
        "listen": "127.0.0.1:0",
        "workers": 2,
        "tableros_secret_key": SECRET,
        "rings": {
            "session_bytes_max": SESSION_BYTES_MAX,
            "total_bytes_max": TOTAL_BYTES_MAX,
            "session_control_bytes_max": SESSION_CONTROL_BYTES_MAX,
        },
        "limits": {
            "connector_frame_bytes_max": CONNECTOR_FRAME_BYTES_MAX,
            "live_retained_bytes_max": LIVE_RETAINED_BYTES_MAX,
            "credit_bytes": CREDIT_BYTES,
            "message_bytes_max": CONNECTOR_FRAME_BYTES_MAX,
            "inbox_bytes_max": INBOX_BYTES_MAX,
        },
    })
    .to_string()
}

/// ARCHITECTURE.md "Worst-case memory" for this configuration, with the
/// most connections of each kind the soak ever has open at once.
fn worst_case_rss() -> u64 {
    let handshake_bytes_max = 8 * KIB;
    let control_message_bytes_max = 64 * KIB;
    let browser_frame_bytes_max = 64 * KIB;
    let workers = 2;
    let browsers = (SUBSCRIBERS + FLOODERS + QUIT_QUERIES + 1) as u64; // + the dictionary subscriber
    let registered_tunnels = 3 + 1; // the real connector's tunnels + the dictionary connector
    let unregistered_tunnels = PRE_AUTH_TUNNELS as u64;
    let handshakes = 4 + FLOODERS as u64 + PRE_AUTH_TUNNELS as u64 + QUIT_QUERIES as u64; // reconnects in flight
    let connections = browsers + registered_tunnels + unregistered_tunnels + handshakes;
    let query_streams = QUIT_QUERIES as u64;
    let heap = connections * 16 * KIB
        + handshakes * handshake_bytes_max
        + unregistered_tunnels * (2 * KIB + control_message_bytes_max)
        + registered_tunnels * (CONNECTOR_FRAME_BYTES_MAX + MIB)
        + browsers * (browser_frame_bytes_max + control_message_bytes_max + SESSION_CONTROL_BYTES_MAX)
        + TOTAL_BYTES_MAX
        + query_streams * (CREDIT_BYTES + CONNECTOR_FRAME_BYTES_MAX)
        + workers * INBOX_BYTES_MAX
        + static_set_bytes();
    48 * MIB + heap + heap / 4
}

/// The dashboard's files the gateway holds in memory (it finds this
/// checkout's `web/dist`, when built): their sizes, within the engine's
/// 64 MiB static-set budget. Heads of the ready-made responses are in the
/// allowance for slack.
fn static_set_bytes() -> u64 {
    let mut total = 0;
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => dirs.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total.min(64 * MIB)
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * KIB)
}

/// Upgrades `path` on a fresh socket; `None` if the gateway refused.
fn raw_upgrade(addr: SocketAddr, path: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(stream)
}

/// The status of a raw request, 0 when the connection closed unanswered.
fn status_of(addr: SocketAddr, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(request).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// What one attack did, for the report.
#[derive(Debug, Default)]
struct Tally {
    attempts: AtomicU64,
    ended_by_gateway: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

impl Tally {
    fn unexpected(&self, what: String) {
        let mut list = self.unexpected.lock().expect("lock");
        if list.len() < 10 {
            list.push(what);
        }
    }
}

/// Runs `attack` in a loop on its own thread until `stop`.
fn attacker(stop: &Arc<AtomicBool>, tally: &Arc<Tally>, attack: impl Fn(&Tally) + Send + 'static) -> JoinHandle<()> {
    let (stop, tally) = (stop.clone(), tally.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            tally.attempts.fetch_add(1, Ordering::Relaxed);
            attack(&tally);
        }
    })
}

/// (1) Malformed percent-escapes in both session paths: each must get 400.
fn bad_escape_attack(addr: SocketAddr) -> impl Fn(&Tally) + Send + 'static {
    move |tally| {
        let upgrade: &[u8] = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        for (prefix, headers) in [("GET /session-check/", &b""[..]), ("GET /stream/", upgrade)] {
            let mut request = prefix.as_bytes().to_vec();
            request.extend_from_slice(b"%a\xc3\xa9 HTTP/1.1\r\nHost: soak\r\n");
            request.extend_from_slice(headers);
            request.extend_from_slice(b"\r\n");
            let status = status_of(addr, &request);
            if status != 400 {
                tally.unexpected(format!("{prefix}%a\\xc3\\xa9 answered {status}"));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (2) A session that sends `frame` over and over and never reads.
fn flood_attack(addr: SocketAddr, frame: Vec<u8>) -> impl Fn(&Tally) + Send + 'static {
    let token = session_token(ATTACKER, &["*"]);
    let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 256).collect();
    move |tally| {
        let Some(mut socket) = raw_upgrade(addr, &format!("/stream/{token}")) else {
            tally.unexpected("a flooding session was refused".into());
            std::thread::sleep(Duration::from_millis(100));
            return;
        };
        let _ = socket.set_write_timeout(Some(Duration::from_millis(500)));
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(20) {
            match socket.write(&batch) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => {
                    tally.ended_by_gateway.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// (3) An unauthenticated tunnel announcing a 16 MiB frame, then trickling it.
fn pre_auth_attack(addr: SocketAddr) -> impl Fn(&Tally) + Send + 'static {
    move |tally| {
        let Some(mut socket) = raw_upgrade(addr, "/ws/connect") else {
            tally.unexpected("an unauthenticated upgrade was refused".into());
            return;
        };
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(16u64 << 20).to_be_bytes());
        header.extend_from_slice(&MASK);
        let _ = socket.set_write_timeout(Some(Duration::from_secs(2)));
        let chunk = vec![0x42u8; 64 * 1024];
        let began = Instant::now();
        let mut written = socket.write_all(&header);
        while written.is_ok() && began.elapsed() < Duration::from_secs(12) {
            written = socket.write_all(&chunk);
        }
        if written.is_err() {
            tally.ended_by_gateway.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (4) A registered connector of `ATTACKER` whose live dataset `dicts` sends
/// a schema and then 1 MiB dictionaries as fast as it may, for as long as
/// the gateway lets the stream run; plus one subscriber that keeps the
/// stream wanted (re-subscribing whenever it ends).
fn dictionary_attack(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> Vec<JoinHandle<()>> {
    let connector = {
        let (stop, tally) = (stop.clone(), tally.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                tally.attempts.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = dictionary_connector(addr, &stop, &tally) {
                    tally.unexpected(format!("dictionary connector: {e}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        })
    };
    let subscriber = std::thread::spawn(move || {
        let token = session_token(ATTACKER, &["dicts"]);
        while !stop.load(Ordering::Acquire) {
            let Ok(mut browser) = Browser::try_connect(addr, &token, true) else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            browser.send(json!({"action": "subscribe", "dataset": "dicts", "query_id": "d"}));
            while !stop.load(Ordering::Acquire) {
                match browser.next(Duration::from_millis(500)) {
                    Some(Received::Json(v)) if v["type"] == "stream_end" || v["type"] == "error" => break,
                    Some(Received::Close(_)) => break,
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    vec![connector, subscriber]
}

fn dictionary_connector(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    // A gateway that stopped answering must fail the soak, not hang it.
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let request = format!("ws://{addr}/ws/connect").into_client_request().map_err(|e| e.to_string())?;
    let (mut ws, _) = tungstenite::client::client(request, stream).map_err(|e| e.to_string())?;
    let register = json!({
        "action": "register", "tenant_id": ATTACKER, "version": "soak", "protocol": 2,
        "token": connector_token(ATTACKER), "datasets": ["dicts"], "live": ["dicts"],
    });
    ws.send(Message::text(register.to_string())).map_err(|e| e.to_string())?;
    ws.get_ref().set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
    let schema_b64 = "/////w==";
    let dictionary = vec![0x5du8; 1 << 20];
    let mut streaming: Option<(u32, u64)> = None;
    while !stop.load(Ordering::Acquire) {
        loop {
            let message = match ws.read() {
                Ok(Message::Text(text)) => serde_json::from_str::<Value>(&text).unwrap_or_default(),
                Ok(Message::Close(_)) => return Ok(()),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(_) => return Ok(()),
            };
            let request_id = message["request_id"].clone();
            match message["action"].as_str() {
                Some("get_flight_info") => {
                    let reply = json!({"request_id": request_id, "data": {"schema": schema_b64, "records": -1}});
                    let _ = ws.send(Message::text(reply.to_string()));
                }
                Some("do_get") => {
                    let stream_id = message["stream_id"].as_u64().and_then(|id| u32::try_from(id).ok());
                    let Some(stream_id) = stream_id else { return Err("do_get without stream_id".into()) };
                    let start = json!({"request_id": request_id, "type": "stream_start", "schema": schema_b64, "stream_id": stream_id});
                    let _ = ws.send(Message::text(start.to_string()));
                    streaming = Some((stream_id, 0));
                }
                Some("cancel") => {
                    tally.ended_by_gateway.fetch_add(1, Ordering::Relaxed);
                    streaming = None;
                }
                _ => {}
            }
        }
        if let Some((stream_id, sequence)) = streaming.as_mut() {
            let kind = if *sequence == 0 { FrameKind::Schema } else { FrameKind::Dictionary };
            let body: &[u8] = if *sequence == 0 { &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0] } else { &dictionary };
            let header = FrameHeader { kind, flags: 0, stream_id: *stream_id, sequence: *sequence };
            let mut frame = header.encode().to_vec();
            frame.extend_from_slice(body);
            *sequence += 1;
            if ws.send(Message::Binary(frame.into())).is_err() {
                return Ok(());
            }
        }
    }
    let _ = ws.close(None);
    Ok(())
}

/// (5) Sessions that query the large dataset, read nothing, and close.
fn quit_query_attack(addr: SocketAddr) -> impl Fn(&Tally) + Send + 'static {
    let token = session_token(TENANT, &["big"]);
    move |tally| {
        let sockets: Vec<TcpStream> =
            (0..QUIT_QUERIES).filter_map(|_| raw_upgrade(addr, &format!("/stream/{token}"))).collect();
        if sockets.len() < QUIT_QUERIES {
            tally.unexpected("a quitting session was refused".into());
        }
        let query = encode_masked_frame(OpCode::Text, br#"{"action":"query","dataset":"big","query_id":"q"}"#, MASK);
        for mut socket in &sockets {
            let _ = socket.write_all(&query);
        }
        std::thread::sleep(Duration::from_millis(300));
        drop(sockets);
    }
}

/// One legitimate subscriber: every frame of the live stream, in order,
/// no gap, no close, until `stop`. Returns the last sequence it received.
fn subscriber(addr: SocketAddr, ready: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut browser = Browser::connect(addr, &session_token(TENANT, &["ticks"]), true);
        browser.send(json!({"action": "subscribe", "dataset": "ticks", "query_id": "t"}));
        let mut next_sequence = 0u64;
        let mut joined = false;
        let mut started = false;
        let mut quiet_since = None;
        loop {
            match browser.next(Duration::from_millis(200)) {
                Some(Received::Binary(data)) => {
                    quiet_since = None;
                    let header = FrameHeader::decode(&data).map_err(|e| format!("bad header: {e}"))?;
                    // A late joiner gets the stream's schema (and
                    // dictionaries), then the next record batch: from there
                    // on, every frame, in order.
                    let snapshot = matches!(header.kind, FrameKind::Schema | FrameKind::Dictionary);
                    let joining = !joined && (snapshot || header.sequence >= next_sequence);
                    if header.sequence != next_sequence && !joining {
                        return Err(format!("expected sequence {next_sequence}, got {}", header.sequence));
                    }
                    joined |= !snapshot;
                    next_sequence = header.sequence + 1;
                }
                Some(Received::Json(v)) => match v["type"].as_str() {
                    Some("stream_start") if !started => {
                        started = true;
                        ready.fetch_add(1, Ordering::AcqRel);
                    }
                    Some("flight_info") => {}
                    _ => return Err(format!("unexpected message after {next_sequence} frames: {v}")),
                },
                Some(other) => return Err(format!("unexpected {other:?} after {next_sequence} frames")),
                None if stop.load(Ordering::Acquire) => {
                    // Done once the stream has been quiet for a second after the stop.
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(1) {
                        return Ok(next_sequence);
                    }
                }
                None => {}
            }
        }
    })
}

#[test]
fn a_gateway_under_every_attack_at_once_keeps_serving_live_subscribers_within_its_memory_bound() {
    let dir = TempDir::new("soak");
    let (mut gateway, url) = VolleyProcess::gateway(VOLLEY, &dir, &gateway_yaml(), "warn");
    let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().expect("address");
    let pid = gateway.child.id();

    // The legitimate tenant: a followed CSV and a large Parquet file.
    let ticks = dir.join("ticks.csv");
    std::fs::write(&ticks, "seq,symbol,price\n0,START,1.0\n").expect("write ticks");
    let datasets = json!({
        "ticks": {"type": "csv", "path": ticks, "live": {"follow": true, "poll_ms": 50}},
        "big": {"type": "parquet", "path": big_parquet()},
    });
    let performance = json!({"parallel_connections": 3, "reconnect_delay": 0.1});
    let _connector = InProcessConnector::start(
        &connector_yaml(addr, TENANT, &connector_token(TENANT), performance, datasets),
        dir.path(),
    );
    // The attacker's tenant has a connector too: its sessions' `list` replies are not empty.
    let attacker_datasets = json!({"ventas_por_region": {"type": "csv", "path": aggregate_csv()},
                                   "inventario_diario": {"type": "csv", "path": aggregate_csv()}});
    let _attacker_connector = InProcessConnector::start(
        &connector_yaml(
            addr,
            ATTACKER,
            &connector_token(ATTACKER),
            json!({"parallel_connections": 1}),
            attacker_datasets,
        ),
        dir.path(),
    );
    assert!(
        wait_health_connectors(addr, 4, Duration::from_secs(20)),
        "connectors did not register: {}",
        gateway.output()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let subscribers: Vec<_> = (0..SUBSCRIBERS).map(|_| subscriber(addr, ready.clone(), stop.clone())).collect();
    assert!(
        wait_until(Duration::from_secs(30), || ready.load(Ordering::Acquire) == SUBSCRIBERS as u64),
        "only {} of {SUBSCRIBERS} subscribers started",
        ready.load(Ordering::Acquire)
    );

    // The live source: rows appended every 20 ms for the whole soak.
    let appender = {
        let (stop, ticks) = (stop.clone(), ticks.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().append(true).open(&ticks).expect("open ticks");
            let mut seq = 1u64;
            while !stop.load(Ordering::Acquire) {
                for _ in 0..5 {
                    writeln!(file, "{seq},SYM{},{}.25", seq % 97, seq % 1000).expect("append");
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seq
        })
    };

    let attack_stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<(&str, Arc<Tally>)> =
        ["bad escapes", "reply floods", "pre-auth tunnels", "dictionaries", "quit queries"]
            .into_iter()
            .map(|name| (name, Arc::new(Tally::default())))
            .collect();
    let mut attackers = vec![attacker(&attack_stop, &tallies[0].1, bad_escape_attack(addr))];
    let list = encode_masked_frame(OpCode::Text, br#"{"action":"list"}"#, MASK).to_vec();
    let ping = encode_masked_frame(OpCode::Text, br#"{"action":"ping"}"#, MASK).to_vec();
    let ws_ping = encode_masked_frame(OpCode::Ping, &[7u8; 125], MASK).to_vec();
    for i in 0..FLOODERS {
        let frame = [&list, &ping, &ws_ping][i % 3].clone();
        attackers.push(attacker(&attack_stop, &tallies[1].1, flood_attack(addr, frame)));
    }
    for _ in 0..PRE_AUTH_TUNNELS {
        attackers.push(attacker(&attack_stop, &tallies[2].1, pre_auth_attack(addr)));
    }
    attackers.extend(dictionary_attack(addr, attack_stop.clone(), tallies[3].1.clone()));
    attackers.push(attacker(&attack_stop, &tallies[4].1, quit_query_attack(addr)));

    let began = Instant::now();
    let (mut peak_rss, mut health_checks, mut unhealthy) = (0, 0, 0);
    let health = b"GET /health HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n";
    while began.elapsed() < soak_duration() {
        let rss = rss_of(pid).unwrap_or_else(|| panic!("the gateway process is gone:\n{}", gateway.output()));
        peak_rss = peak_rss.max(rss);
        if health_checks < began.elapsed().as_secs() {
            health_checks += 1;
            if status_of(addr, health) != 200 {
                unhealthy += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    attack_stop.store(true, Ordering::Release);
    for attacker in attackers {
        attacker.join().expect("attacker thread");
    }
    stop.store(true, Ordering::Release);
    let rows = appender.join().expect("appender");
    let received: Vec<Result<u64, String>> = subscribers.into_iter().map(|s| s.join().expect("subscriber")).collect();

    let bound = worst_case_rss();
    eprintln!(
        "soak: {:?}, {rows} rows appended; peak RSS {} MiB, bound {} MiB",
        soak_duration(),
        peak_rss >> 20,
        bound >> 20
    );
    for (name, tally) in &tallies {
        eprintln!(
            "  {name}: {} attempts, {} ended by the gateway, unexpected: {:?}",
            tally.attempts.load(Ordering::Relaxed),
            tally.ended_by_gateway.load(Ordering::Relaxed),
            tally.unexpected.lock().expect("lock")
        );
    }
    assert_eq!(unhealthy, 0, "/health failed {unhealthy} of {health_checks} times during the soak");
    let failures: Vec<&String> = received.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "legitimate subscribers lost frames or were closed: {failures:?}");
    let last: Vec<u64> = received.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let most = last.iter().copied().max().unwrap_or(0);
    assert!(most > 100, "the live stream barely moved: {most} frames");
    assert!(last.iter().all(|&n| n == most), "every subscriber got every frame: {last:?}");
    for (name, tally) in &tallies {
        assert!(tally.attempts.load(Ordering::Relaxed) > 0, "{name} never ran");
        assert!(tally.unexpected.lock().expect("lock").is_empty(), "{name}: {:?}", tally.unexpected.lock());
    }
    for name in ["reply floods", "pre-auth tunnels", "dictionaries"] {
        let (_, tally) = tallies.iter().find(|(n, _)| *n == name).expect("tally");
        assert!(tally.ended_by_gateway.load(Ordering::Relaxed) > 0, "the gateway never stopped the {name}");
    }
    assert!(peak_rss <= bound, "peak RSS {peak_rss} over the ARCHITECTURE.md bound {bound}");
    assert_eq!(status_of(addr, health), 200);
    gateway.signal("-TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0), "{}", gateway.output());
}
