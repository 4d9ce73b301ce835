//! Session lifecycle: cancel/unsubscribe/close propagate upstream (§5.1–5.2),
//! tokens expiring while connected (4001), idle sessions (4008), and the
//! subprotocol negotiation that picks the level (§2).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use volley_engine::Gateway;
use volley_testkit::browser::Browser;
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, Behaviour, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::http::{read_raw_frame, upgrade_request};
use volley_testkit::ipc::{golden, ipc_messages, PRIMITIVE};
use volley_testkit::tokens::{session_token, session_token_with, SECRET, TENANT};
use volley_testkit::wait_until;

fn wait_stream_start(browser: &mut Browser) -> serde_json::Value {
    loop {
        let v = browser.next_json(Duration::from_secs(5));
        if v["type"] == "stream_start" {
            return v;
        }
        assert_eq!(v["type"], "flight_info", "{v}");
    }
}

/// A gateway with one level-2 connector serving `slow` (a query that never
/// sends), `prim` (the primitive golden file) and `ticker` (live).
fn gateway_with_slow_prim_and_ticker() -> (Gateway, ConnectorHandle) {
    let gateway = start(config());
    let source = golden(PRIMITIVE);
    let connector = spawn_connector(
        gateway.local_addr(),
        ConnectorSpec::level2(vec![
            DatasetSpec::query("slow", ipc_messages(&source)).with(Behaviour::Stall),
            DatasetSpec::query("prim", ipc_messages(&source)),
            DatasetSpec::live("ticker"),
        ]),
    );
    wait_connectors(&gateway, 1);
    (gateway, connector)
}

#[test]
fn cancel_unsubscribe_and_disconnect_cancel_the_upstream_stream() {
    let (gateway, connector) = gateway_with_slow_prim_and_ticker();
    let addr = gateway.local_addr();
    let source = golden(PRIMITIVE);
    let token = session_token(TENANT, &["*"]);
    let mut browser = Browser::connect(addr, &token, true);

    // cancel → stream_end(cancelled) to the browser, cancel upstream.
    browser.send(json!({"action": "query", "dataset": "slow", "query_id": "q1"}));
    let start = wait_stream_start(&mut browser);
    browser.send(json!({"action": "cancel", "query_id": "q1"}));
    let end = browser.next_json(Duration::from_secs(5));
    assert_eq!(end["type"], "stream_end", "{end}");
    assert_eq!(end["error"]["code"], "cancelled");
    assert_eq!(end["stream_id"], start["stream_id"]);
    assert!(wait_until(Duration::from_secs(2), || connector.commands("cancel").len() == 1), "cancel upstream");

    // unsubscribe (last subscriber) → unsubscribed, cancel upstream.
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "s1"}));
    wait_stream_start(&mut browser);
    browser.send(json!({"action": "unsubscribe", "query_id": "s1"}));
    assert_eq!(browser.next_json(Duration::from_secs(5)), json!({"type": "unsubscribed", "query_id": "s1"}));
    assert!(wait_until(Duration::from_secs(2), || connector.commands("cancel").len() == 2), "cancel upstream");

    // The socket still works after both.
    assert!(browser.query("prim", "q2").bytes() == source);

    // A browser that disconnects mid-stream cancels its stream upstream.
    browser.send(json!({"action": "query", "dataset": "slow", "query_id": "q3"}));
    wait_stream_start(&mut browser);
    drop(browser);
    assert!(wait_until(Duration::from_secs(3), || connector.commands("cancel").len() == 3), "cancel after disconnect");
    assert!(wait_until(Duration::from_secs(3), || gateway
        .shared()
        .registry
        .sessions_online
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0));
}

/// The request's action says whether it is a `cancel` or an `unsubscribe`,
/// not the words inside it: a subscription or a query whose id is
/// `"cancel"` is unsubscribed (`unsubscribed`, not a `stream_end` with
/// `cancelled`), and a query whose id is `"unsubscribe"` is cancelled.
#[test]
fn cancel_and_unsubscribe_are_told_apart_by_action_not_by_query_id() {
    let (gateway, connector) = gateway_with_slow_prim_and_ticker();
    let addr = gateway.local_addr();
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);

    // A subscription named "cancel", unsubscribed.
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "cancel"}));
    wait_stream_start(&mut browser);
    browser.send(json!({"action": "unsubscribe", "query_id": "cancel"}));
    assert_eq!(browser.next_json(Duration::from_secs(5)), json!({"type": "unsubscribed", "query_id": "cancel"}));
    assert!(wait_until(Duration::from_secs(2), || connector.commands("cancel").len() == 1), "cancel upstream");

    // A query named "cancel", unsubscribed: unsubscribe, not cancel.
    browser.send(json!({"action": "query", "dataset": "slow", "query_id": "cancel"}));
    wait_stream_start(&mut browser);
    browser.send(json!({"action": "unsubscribe", "query_id": "cancel"}));
    assert_eq!(browser.next_json(Duration::from_secs(5)), json!({"type": "unsubscribed", "query_id": "cancel"}));
    assert!(wait_until(Duration::from_secs(2), || connector.commands("cancel").len() == 2), "cancel upstream");

    // A query named "unsubscribe", cancelled: cancel, not unsubscribe.
    browser.send(json!({"action": "query", "dataset": "slow", "query_id": "unsubscribe"}));
    let start = wait_stream_start(&mut browser);
    browser.send(json!({"action": "cancel", "query_id": "unsubscribe"}));
    let end = browser.next_json(Duration::from_secs(5));
    assert_eq!((end["type"].as_str(), end["query_id"].as_str()), (Some("stream_end"), Some("unsubscribe")), "{end}");
    assert_eq!(end["error"]["code"], "cancelled", "{end}");
    assert_eq!(end["stream_id"], start["stream_id"]);
    assert!(wait_until(Duration::from_secs(2), || connector.commands("cancel").len() == 3), "cancel upstream");
}

#[test]
fn a_token_that_expires_while_connected_closes_the_session_with_4001() {
    let mut config = config();
    config.limits.protocol.token_leeway_seconds = 0;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let token = session_token_with(TENANT, &["*"], volley_engine::unix_now() + 1, SECRET);
    let mut browser = Browser::connect(addr, &token, true);
    let began = Instant::now();
    assert_eq!(browser.expect_close(Duration::from_secs(5)), Some(4001));
    assert!(began.elapsed() < Duration::from_secs(4), "{:?}", began.elapsed());
}

#[test]
fn an_idle_session_is_closed_with_4008() {
    let mut config = config();
    config.timeouts.idle_seconds = 1;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), false);
    let began = Instant::now();
    assert_eq!(browser.expect_close(Duration::from_secs(5)), Some(4008));
    assert!(began.elapsed() >= Duration::from_millis(900), "{:?}", began.elapsed());
}

fn raw_head(addr: std::net::SocketAddr, request: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read head");
        head.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&head).to_ascii_lowercase())
}

#[test]
fn the_volley_v2_offer_selects_level_2_and_anything_else_level_1() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let path = format!("/stream/{}", session_token(TENANT, &["*"]));

    let (mut stream, head) = raw_head(addr, &upgrade_request(&path, "Sec-WebSocket-Protocol: chat, volley.v2\r\n"));
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-protocol: volley.v2\r\n"), "{head}");
    let (opcode, payload) = read_raw_frame(&mut stream).expect("hello frame");
    assert_eq!(opcode, 1);
    let hello: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(hello["type"], "hello");

    let (mut stream, head) = raw_head(addr, &upgrade_request(&path, "Sec-WebSocket-Protocol: chat, volley.v3\r\n"));
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-protocol"), "no subprotocol selected at level 1: {head}");
    let ping = volley_protocol::ws::encode_masked_frame(
        volley_protocol::ws::OpCode::Text,
        br#"{"action":"ping"}"#,
        [1, 2, 3, 4],
    );
    stream.write_all(&ping).expect("ping");
    let (opcode, payload) = read_raw_frame(&mut stream).expect("pong frame");
    assert_eq!(opcode, 1);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&payload).expect("JSON"),
        json!({"type": "pong"}),
        "no hello at level 1"
    );
}
