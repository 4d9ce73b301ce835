//! A connector that never pauses does not take its worker from everyone else
//! (the epoll fallback).
//!
//! On epoll a read of a socket that always has data completes without
//! suspending; a tunnel whose frames go to a subscriber that is skipped
//! (live stream, slow reader) never waits on a ring either. Without a turn
//! for the other tasks, every other connection of that worker — new
//! connections, `/health`, other sessions — waits until the connector
//! pauses. Here the connector writes pre-encoded small frames as fast as
//! loopback takes them (far faster than the gateway can handle them), and
//! `/health` on the same (only) worker must be answered while the flood
//! still runs. On io_uring every read suspends, so the test runs on both
//! drivers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message as WsMessage;
use volley_engine::RuntimeChoice;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_testkit::browser::stalled_browser;
use volley_testkit::engine::{config, start};
use volley_testkit::fake_connector::SCHEMA_B64;
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

/// How long the flood may last: the health request must be answered before
/// it ends by itself.
const FLOOD_LIMIT: Duration = Duration::from_secs(20);
/// Body bytes per flood frame: small, so the gateway spends its time per frame.
const BODY_BYTES: usize = 48;
/// Frames per pre-encoded buffer the flooder writes again and again.
const FRAMES_PER_BUFFER: u64 = 16 * 1024;

/// One masked client binary frame (mask key 0: the payload is sent as is).
fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x82];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | u8::try_from(len).expect("short"));
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&u16::try_from(len).expect("fits u16").to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// `GET /health` on a fresh connection, waiting as long as the flood may last.
fn health(addr: SocketAddr) -> (Duration, String) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect for /health");
    stream.set_read_timeout(Some(FLOOD_LIMIT + Duration::from_secs(10))).expect("timeout");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    (started.elapsed(), response)
}

fn flood_does_not_starve_health(runtime: RuntimeChoice) {
    let mut config = config();
    config.workers = Some(1);
    config.pin_workers = false;
    config.runtime = runtime;
    let gateway = start(config);
    let addr = gateway.local_addr();

    // A level-2 connector with one live dataset, on a raw socket.
    let stream = TcpStream::connect(addr).expect("connector connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let request = format!("ws://{addr}/ws/connect").into_client_request().expect("request");
    let mut ws = tungstenite::client::client(request, stream).expect("handshake").0;
    let register = json!({"action": "register", "tenant_id": TENANT, "version": "0.0.0-test",
                          "datasets": ["ticker"], "live": ["ticker"], "protocol": 2});
    ws.send(WsMessage::text(register.to_string())).expect("register");
    let next_json = |ws: &mut tungstenite::WebSocket<TcpStream>| loop {
        match ws.read().expect("gateway message") {
            WsMessage::Text(text) => return serde_json::from_str::<Value>(&text).expect("JSON"),
            _ => continue,
        }
    };
    assert_eq!(next_json(&mut ws)["status"], "ok", "register accepted");

    // A subscriber that does not read: its frames are skipped, so the
    // tunnel never waits for room.
    let mut subscriber = stalled_browser(addr, &session_token(TENANT, &["*"]));
    subscriber.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "s1"}));
    let stream_id = loop {
        let command = next_json(&mut ws);
        match command["action"].as_str() {
            Some("get_flight_info") => {
                let reply = json!({"request_id": command["request_id"], "data": {"schema": SCHEMA_B64, "records": -1}});
                ws.send(WsMessage::text(reply.to_string())).expect("flight info");
            }
            Some("do_get") => {
                let stream_id = command["stream_id"].as_u64().expect("level-2 do_get carries stream_id");
                let start = json!({"request_id": command["request_id"], "type": "stream_start",
                                   "schema": SCHEMA_B64, "stream_id": stream_id});
                ws.send(WsMessage::text(start.to_string())).expect("stream_start");
                break u32::try_from(stream_id).expect("u32");
            }
            _ => {}
        }
    };

    // Pre-encoded frames, written as fast as the socket takes them.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let mut socket = ws.get_ref().try_clone().expect("clone connector socket");
    let flooder = {
        let stop = stop.clone();
        let written = written.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut sequence = 0u64;
            while !stop.load(Ordering::Acquire) && started.elapsed() < FLOOD_LIMIT {
                let mut buffer = Vec::new();
                for _ in 0..FRAMES_PER_BUFFER {
                    let header = FrameHeader { kind: FrameKind::RecordBatch, flags: 0, stream_id, sequence };
                    sequence += 1;
                    let mut payload = header.encode().to_vec();
                    payload.extend_from_slice(&[0x5A; BODY_BYTES]);
                    buffer.extend_from_slice(&masked_frame(&payload));
                }
                if socket.write_all(&buffer).is_err() {
                    break;
                }
                written.fetch_add(FRAMES_PER_BUFFER, Ordering::Relaxed);
            }
            started.elapsed() >= FLOOD_LIMIT
        })
    };
    // The flood is under way once a few buffers went out.
    assert!(
        wait_until(Duration::from_secs(10), || written.load(Ordering::Relaxed) >= 4 * FRAMES_PER_BUFFER),
        "the flood did not start"
    );
    let (took, response) = health(addr);
    stop.store(true, Ordering::Release);
    let flood_ran_out = flooder.join().expect("flooder");
    let frames = written.load(Ordering::Relaxed);
    eprintln!("{runtime:?}: /health answered after {took:?} with {frames} frames flooded");
    assert!(response.starts_with("HTTP/1.1 200"), "/health during the flood: {response:?}");
    assert!(
        !flood_ran_out,
        "/health was answered only after the flood ended by itself ({FLOOD_LIMIT:?}, {took:?}): the \
         connector's reads kept the worker from its other connections"
    );
    drop(ws);
    drop(subscriber);
    gateway.shutdown();
}

#[test]
fn a_connector_that_never_pauses_does_not_starve_its_worker_on_epoll() {
    flood_does_not_starve_health(RuntimeChoice::Epoll);
}

#[test]
fn a_connector_that_never_pauses_does_not_starve_its_worker_on_io_uring() {
    if volley_engine::probe_io_uring().is_err() {
        eprintln!("io_uring is refused here: the io_uring case is covered by the run where it is allowed");
        return;
    }
    flood_does_not_starve_health(RuntimeChoice::IoUring);
}
