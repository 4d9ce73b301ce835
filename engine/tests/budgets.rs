//! Every byte queued to a browser counts against its budget (PROTOCOL.md §7,
//! `rings.session_bytes_max` and `rings.session_control_bytes_max`):
//! control replies a peer asks for and never reads close it at a cap, a
//! session over its budget is not read until it drains, and a closed
//! session's ring and state are freed at once — no timer holds them.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use volley_engine::config::SlowReaderPolicy;
use volley_protocol::ws::{encode_masked_frame, OpCode};
use volley_testkit::browser::{spawn_live_clients, Browser};
use volley_testkit::engine::{config, max_sampler, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::http::raw_upgrade;
use volley_testkit::ipc::{golden, ipc_messages, synthetic_frames, PRIMITIVE};
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

const MASK: [u8; 4] = [0x5a, 0x11, 0xc3, 0x7e];
/// The tenant whose sessions misbehave.
const ATTACKER: &str = "mallory";

/// Samples the gateway's queued control bytes every millisecond until
/// stopped; returns the maximum.
fn control_sampler(gateway: &volley_engine::Gateway) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    max_sampler(gateway, |shared| shared.ring_totals.control.load(Ordering::Relaxed))
}

/// Resident set size of this process (the gateway runs in it), bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A session of `ATTACKER` that sends `frame` over and over and never reads,
/// for at most `limit`. Returns how long until the gateway ended the
/// connection, or `None` if it was still open at the end.
fn flood_without_reading(addr: SocketAddr, frame: Vec<u8>, limit: Duration) -> Option<Duration> {
    let token = session_token(ATTACKER, &["*"]);
    let mut socket = raw_upgrade(addr, &format!("/stream/{token}"));
    socket.set_write_timeout(Some(Duration::from_millis(500))).expect("write timeout");
    let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 512).collect();
    let began = Instant::now();
    while began.elapsed() < limit {
        match socket.write(&batch) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(began.elapsed()),
        }
    }
    None
}

/// PROTOCOL.md §7: sessions that ask for replies (`list`, `ping`, WebSocket
/// pings) and never read them are closed once their unread control output
/// passes `rings.session_control_bytes_max`; the gateway's queued control
/// bytes stay within that cap per attacker, and another tenant's live
/// subscribers — under the strict `close` policy and a small gateway-wide
/// budget — lose no frame and are not closed.
#[test]
fn unread_control_replies_close_the_session_at_its_cap_and_cost_another_tenant_nothing() {
    const ATTACKERS: usize = 6;
    const FRAMES: usize = 300;
    let mut config = config();
    config.rings.total_bytes_max = 32 << 20;
    config.rings.slow_reader_policy = SlowReaderPolicy::Close;
    let cap = config.rings.session_control_bytes_max;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticks")]));
    // The attacker's tenant serves four datasets: each `list` reply is
    // several times the size of its request.
    let names = ["ventas_por_region", "inventario_diario", "clientes_activos", "pedidos_pendientes"];
    let datasets = names.iter().map(|n| DatasetSpec::query(n, synthetic_frames(1, 64))).collect();
    let _attacker_connector = spawn_connector(addr, ConnectorSpec::level2(datasets).of_tenant(ATTACKER));
    wait_connectors(&gateway, 2);

    let mut frames = vec![ipc_messages(&golden(PRIMITIVE))[0].clone()];
    frames.extend(synthetic_frames(FRAMES - 1, 16 * 1024));
    let expected = Arc::new(frames.clone());
    let bystanders = spawn_live_clients(addr, "ticks", vec![(5, true), (5, true)], expected);
    bystanders.wait_ready(Duration::from_secs(20));

    let rss_before = rss_bytes();
    let (stop, sampler) = control_sampler(&gateway);
    let list = encode_masked_frame(OpCode::Text, br#"{"action":"list"}"#, MASK).to_vec();
    let ping = encode_masked_frame(OpCode::Text, br#"{"action":"ping"}"#, MASK).to_vec();
    let ws_ping = encode_masked_frame(OpCode::Ping, &[7u8; 125], MASK).to_vec();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|i| {
            let frame = [&list, &ping, &ws_ping][i % 3].clone();
            std::thread::spawn(move || flood_without_reading(addr, frame, Duration::from_secs(20)))
        })
        .collect();
    for (kind, body) in frames {
        connector.live_frame("ticks", kind, body);
        std::thread::sleep(Duration::from_millis(5));
    }
    let complete = bystanders.join();
    let ended: Vec<Option<Duration>> = attackers.into_iter().map(|a| a.join().expect("attacker")).collect();
    stop.store(true, Ordering::Release);
    let control_peak = sampler.join().expect("sampler");
    let rss_after = rss_bytes();
    eprintln!(
        "attackers ended after {ended:?}; queued control bytes peaked at {} KiB; RSS {} -> {} MiB",
        control_peak / 1024,
        rss_before >> 20,
        rss_after >> 20
    );
    assert_eq!(complete, 10, "every bystander received every frame, in order, and stayed open");
    assert!(ended.iter().all(Option::is_some), "every flooding session is closed by the gateway: {ended:?}");
    let bound = ATTACKERS * (cap + 64 * 1024) + (1 << 20);
    assert!(control_peak <= bound, "queued control bytes peaked at {control_peak}, over {bound}");
    let shared = gateway.shared().clone();
    assert!(
        wait_until(Duration::from_secs(5), || shared.registry.sessions_online.load(Ordering::Relaxed) == 0),
        "sessions still open: {}",
        shared.registry.sessions_online.load(Ordering::Relaxed)
    );
    assert!(wait_until(Duration::from_secs(5), || shared.ring_bytes() == 0), "queued: {}", shared.ring_bytes());
}

/// A browser with a tiny receive buffer, so the gateway's writes to it stall
/// as soon as it stops reading.
fn stalled_socket(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// While a session's queue holds its budget, the gateway reads nothing more
/// from it: its requests wait in TCP (the sender's writes block) instead of
/// turning into queued replies, and the session is neither closed nor grown.
#[test]
fn a_session_at_its_budget_is_not_read_until_its_queue_drains() {
    let mut config = config();
    config.rings.session_bytes_max = 1 << 20;
    config.rings.session_control_bytes_max = 1 << 20;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticks")]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["*"]);
    let mut browser = Browser::connect_on(stalled_socket(addr), addr, &token, true).expect("connects");
    browser.send(json!({"action": "subscribe", "dataset": "ticks", "query_id": "s"}));
    // Fill the session's ring with live frames it does not read (it skips the rest).
    let mut frames = vec![ipc_messages(&golden(PRIMITIVE))[0].clone()];
    frames.extend(synthetic_frames(199, 64 * 1024));
    for (kind, body) in frames {
        connector.live_frame("ticks", kind, body);
    }
    let shared = gateway.shared().clone();
    assert!(
        wait_until(Duration::from_secs(5), || shared.metrics.merged().frames_skipped > 0),
        "the stalled session never filled its ring"
    );
    // Now ask for replies, many megabytes of requests, and read none.
    let mut socket = browser.tcp().try_clone().expect("clone the socket");
    socket.set_write_timeout(Some(Duration::from_secs(2))).expect("write timeout");
    let list = encode_masked_frame(OpCode::Text, br#"{"action":"list"}"#, MASK).to_vec();
    let requests: Vec<u8> = list.iter().copied().cycle().take(list.len() * 400_000).collect();
    let written = socket.write_all(&requests);
    let control = shared.ring_totals.control.load(Ordering::Relaxed);
    eprintln!("writing {} MiB of requests: {written:?}; queued control bytes {control}", requests.len() >> 20);
    let blocked = written.as_ref().err().map(std::io::Error::kind);
    assert!(
        matches!(blocked, Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the requests must back up in TCP, not be read: {written:?}"
    );
    // Replies are queued only until they take the ring to its budget: at
    // most the room one live frame (64 KiB) left, plus one reply.
    assert!(control <= 65 * 1024, "replies queued while the ring was full: {control} bytes");
    assert_eq!(shared.registry.sessions_online.load(Ordering::Relaxed), 1, "the session is slowed, not closed");
}

/// A session that closes with a query in flight frees its ring at once: no
/// query timer (`timeouts.query_seconds`, 60 s) keeps it, its queued frames
/// or its state alive. Before, four rounds of "open 15 sessions, query a
/// large dataset, read nothing, close" left 245 MB queued for a minute.
#[test]
fn a_closed_session_frees_its_ring_and_state_at_once() {
    const SESSIONS: usize = 15;
    let config = config();
    assert_eq!(config.timeouts.query_seconds, 60, "the default query timeout");
    let gateway = start(config);
    let addr = gateway.local_addr();
    let _connector =
        spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("big", synthetic_frames(64, 256 * 1024))]));
    wait_connectors(&gateway, 1);
    let shared = gateway.shared().clone();
    let token = session_token(TENANT, &["*"]);
    for round in 0..4 {
        let mut browsers: Vec<Browser> = (0..SESSIONS)
            .map(|_| Browser::connect_on(stalled_socket(addr), addr, &token, true).expect("connects"))
            .collect();
        for browser in browsers.iter_mut() {
            browser.send(json!({"action": "query", "dataset": "big", "query_id": "q"}));
        }
        assert!(
            wait_until(Duration::from_secs(10), || shared.ring_bytes() > SESSIONS * (1 << 20)),
            "round {round}: the stalled queries did not fill their rings ({} queued)",
            shared.ring_bytes()
        );
        let queued = shared.ring_bytes();
        drop(browsers);
        // One ring stays: the connector's tunnel.
        let freed = wait_until(Duration::from_secs(5), || shared.ring_bytes() == 0 && rings(&shared) == 1);
        assert!(
            freed,
            "round {round}: {queued} bytes were queued; 5 s after every browser closed, {} bytes and {} rings remain",
            shared.ring_bytes(),
            rings(&shared)
        );
    }
    // Well-behaved sessions, read to the end and closed, leave nothing either.
    for _ in 0..20 {
        let mut browser = Browser::connect(addr, &token, true);
        let result = browser.query("big", "q");
        assert_eq!(result.error_code(), None, "{:?}", result.end);
    }
    assert!(
        wait_until(Duration::from_secs(5), || rings(&shared) == 1),
        "{} rings held after 20 finished queries (one is the tunnel's)",
        rings(&shared)
    );
}

/// Connection rings in memory (sessions, open or held, and tunnels).
fn rings(shared: &volley_engine::Shared) -> usize {
    shared.ring_totals.rings.load(Ordering::Relaxed)
}
