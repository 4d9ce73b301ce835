//! Bad input: every refusal is a clear error or close code, and the other
//! sessions on the gateway keep working (each test ends with a healthy query,
//! and the malformed-frame test keeps a browser open across all the abuse).

use std::io::{BufRead, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use volley_protocol::ws::{encode_frame, encode_masked_frame, OpCode};
use volley_testkit::browser::{assert_healthy, Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{
    register_refused, spawn_connector, Behaviour, ConnectorHandle, ConnectorSpec, DatasetSpec,
};
use volley_testkit::http::{
    http_body, http_get, http_raw, raw_close_code, raw_upgrade, session_verdict, upgrade_request,
};
use volley_testkit::ipc::{chunks, golden, ipc_messages, synthetic_frames, PRIMITIVE};
use volley_testkit::tokens::{
    connector_token, connector_token_with, session_token, session_token_with, SECRET, TENANT,
};
use volley_testkit::wait_until;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn gateway_with_prim(config: volley_engine::GatewayConfig) -> (volley_engine::Gateway, ConnectorHandle, Vec<u8>) {
    let gateway = start(config);
    let source = golden(PRIMITIVE);
    let connector = spawn_connector(
        gateway.local_addr(),
        ConnectorSpec::level2(vec![DatasetSpec::query("prim", ipc_messages(&source))]),
    );
    wait_connectors(&gateway, 1);
    (gateway, connector, source)
}

/// §4 and §8: a text frame that is not a JSON object gets `invalid_json`, an
/// unknown action `unknown_action`, a too-long id `bad_request`; the socket
/// stays open and the next query on it works.
#[test]
fn malformed_control_messages_get_error_codes_and_the_socket_keeps_working() {
    let (gateway, _connector, source) = gateway_with_prim(config());
    let addr = gateway.local_addr();
    for level2 in [false, true] {
        let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), level2);
        for (text, code) in [
            ("this is not json", "invalid_json"),
            ("[1, 2, 3]", "invalid_json"),
            ("{\"action\": \"frobnicate\"}", "unknown_action"),
            ("{\"dataset\": \"prim\"}", "bad_request"),
        ] {
            browser.ws.send(tungstenite::Message::text(text)).expect("send");
            let reply = browser.next_json(Duration::from_secs(5));
            assert_eq!(reply["type"], "error", "{text}: {reply}");
            assert_eq!(reply["code"], code, "{text}: {reply}");
            assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
        }
        let long_id = "x".repeat(65);
        browser.send(json!({"action": "query", "dataset": "prim", "query_id": long_id}));
        assert_eq!(browser.next_json(Duration::from_secs(5))["code"], "bad_request");
        let result = browser.query("prim", "after-garbage");
        assert_eq!(result.error_code(), None, "{:?}", result.end);
        assert!(result.bytes() == source);
    }
}

/// §1, §7, §9: malformed WebSocket frames from a browser close that socket
/// with the right code; a browser connected before (and a new one after)
/// still queries fine.
#[test]
fn malformed_browser_frames_close_with_their_codes_and_other_sessions_keep_working() {
    let (gateway, _connector, source) = gateway_with_prim(config());
    let addr = gateway.local_addr();
    let mut bystander = Browser::connect(addr, &session_token(TENANT, &["*"]), true);

    let too_big = "x".repeat(70 * 1024);
    let mut huge_63 = vec![0x81, 0x80 | 127];
    huge_63.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge_63.extend_from_slice(&MASK);
    let mut huge_40 = vec![0x81, 0x80 | 127];
    huge_40.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge_40.extend_from_slice(&MASK);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "text frame over the 64 KiB limit",
            encode_masked_frame(OpCode::Text, too_big.as_bytes(), MASK).to_vec(),
            1009,
        ),
        ("invalid UTF-8 text", encode_masked_frame(OpCode::Text, &[0x7b, 0xff, 0xfe, 0x7d], MASK).to_vec(), 1007),
        ("binary frame from a browser", encode_masked_frame(OpCode::Binary, b"\x01\x02", MASK).to_vec(), 1003),
        ("unmasked client frame", encode_frame(OpCode::Text, br#"{"action":"ping"}"#).to_vec(), 1002),
        ("header claiming 2^63 bytes", huge_63, 1002),
        ("header claiming 2^40 bytes", huge_40, 1009),
        (
            "reserved bits set",
            {
                let mut f = encode_masked_frame(OpCode::Text, b"{}", MASK).to_vec();
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (
            "fragmented ping",
            {
                let mut f = encode_masked_frame(OpCode::Ping, b"", MASK).to_vec();
                f[0] &= 0x7f;
                f
            },
            1002,
        ),
    ];
    let token = session_token(TENANT, &["*"]);
    for (name, bytes, expected) in cases {
        let mut stream = raw_upgrade(addr, &format!("/stream/{token}"));
        stream.write_all(&bytes).expect("write frame");
        let code = raw_close_code(&mut stream);
        assert_eq!(code, Some(expected), "{name}");
        // The gateway ends the connection after its close frame.
        let mut rest = [0u8; 64];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        assert!(matches!(stream.read(&mut rest), Ok(0) | Err(_)), "{name}: connection not closed");
    }
    // The tungstenite client path for the oversize text frame, too.
    let mut browser = Browser::connect(addr, &token, false);
    browser.ws.send(tungstenite::Message::text(too_big)).expect("send");
    assert_eq!(browser.expect_close(Duration::from_secs(5)), Some(1009));

    let result = bystander.query("prim", "still-here");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(result.bytes() == source);
    assert_healthy(addr, "prim", &source);
}

/// §6, §10: bad, expired, foreign-secret, wrong-role, oversized and missing
/// tokens are refused with 401/403 before any upgrade; a token of another
/// tenant upgrades but never reaches this tenant's connector.
#[test]
fn bad_tokens_are_refused_before_the_upgrade() {
    let (gateway, _connector, source) = gateway_with_prim(config());
    let addr = gateway.local_addr();
    let now = volley_engine::unix_now();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("garbage", "not-a-jwt".into(), 401, "unauthorized"),
        ("missing", String::new(), 401, "unauthorized"),
        (
            "signed with another secret",
            session_token_with(TENANT, &["*"], now + 3600, "not-our-secret"),
            401,
            "unauthorized",
        ),
        ("expired", session_token_with(TENANT, &["*"], now - 3600, SECRET), 401, "token_expired"),
        ("connector credential as a session", connector_token(TENANT), 403, "forbidden"),
        ("over token_bytes_max", "a".repeat(5000), 401, "unauthorized"),
        (
            "alg none",
            {
                use base64_free::*;
                format!(
                    "{}.{}.",
                    b64url(br#"{"alg":"none","typ":"JWT"}"#),
                    b64url(
                        format!(
                            r#"{{"sub":"x","cuenta_id":"{TENANT}","permisos":["*"],"jti":"j","iat":{now},"exp":{}}}"#,
                            now + 3600
                        )
                        .as_bytes()
                    )
                )
            },
            401,
            "unauthorized",
        ),
    ];
    for (name, token, status, code) in cases {
        let (got, text) = http_raw(addr, upgrade_request(&format!("/stream/{token}"), "").as_bytes());
        assert_eq!(got, status, "{name}: {text}");
        assert!(!text.contains("101 Switching"), "{name}: upgraded");
        assert!(http_body(&text).contains(code), "{name}: body lacks {code}: {text}");
        // The tungstenite client sees an HTTP error, not a WebSocket.
        assert!(Browser::try_connect(addr, &token, true).is_err(), "{name}");
    }
    // Another tenant's valid session: upgrades, but sees nothing of TENANT.
    let mut other = Browser::connect(addr, &session_token("other-tenant", &["*"]), true);
    other.send(json!({"action": "list"}));
    assert_eq!(other.next_json(Duration::from_secs(5))["datasets"], json!([]));
    let result = other.query("prim", "q1");
    assert_eq!(result.error_code().as_deref(), Some("connector_offline"), "{:?}", result.end);
    assert!(result.payloads.is_empty());
    assert_healthy(addr, "prim", &source);
}

/// §6, §8, §10: a correctly signed token whose claims are missing or of the
/// wrong type is malformed — 401 `unauthorized`, like any other token that
/// cannot be used — not 403, which is for valid tokens refused (a wrong role
/// or edge, a revocation). A connector credential presented as a session
/// stays 403 `forbidden` (its claims are fine, its role is not).
#[test]
fn signed_tokens_with_missing_or_ill_typed_claims_are_unauthorized() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let now = volley_engine::unix_now();
    let good =
        json!({"sub": "ana", "cuenta_id": TENANT, "permisos": ["*"], "jti": "j", "iat": now - 10, "exp": now + 3600});
    let (status, code, message) = session_verdict(addr, &sign_json(&good));
    assert_eq!(status, 101, "the well-formed claims are admitted: {code} {message}");
    let changed = |name: &str, value: Option<serde_json::Value>| {
        let mut claims = good.clone();
        match value {
            Some(value) => claims[name] = value,
            None => {
                claims.as_object_mut().expect("object").remove(name);
            }
        }
        sign_json(&claims)
    };
    let cases = [
        ("exp missing", changed("exp", None)),
        ("exp a float", changed("exp", Some(json!(now as f64 + 3600.5)))),
        ("exp a string", changed("exp", Some(json!((now + 3600).to_string())))),
        ("sub missing", changed("sub", None)),
        ("sub a number", changed("sub", Some(json!(7)))),
        ("cuenta_id missing", changed("cuenta_id", None)),
        ("jti missing", changed("jti", None)),
        ("iat a float", changed("iat", Some(json!(now as f64 - 0.5)))),
        ("nbf a string", changed("nbf", Some(json!("yesterday")))),
        ("permisos a string", changed("permisos", Some(json!("*")))),
    ];
    for (name, token) in cases {
        let (status, code, message) = session_verdict(addr, &token);
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{name}: {message}");
        assert!(!message.is_empty(), "{name}: the refusal says why");
    }
    let (status, code, message) = session_verdict(addr, &connector_token(TENANT));
    assert_eq!((status, code.as_str()), (403, "forbidden"), "connector credential as a session: {message}");
}

/// `claims` signed with the gateway's [`SECRET`].
fn sign_json(claims: &serde_json::Value) -> String {
    volley_protocol::token::sign(claims, SECRET.as_bytes()).expect("sign")
}

/// Minimal base64url for the `alg: none` token (the engine has no base64 dev-dependency).
mod base64_free {
    pub fn b64url(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(T[usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0)]));
            }
        }
        out
    }
}

/// §4.3, §8: a dataset outside the token's `permisos` is `dataset_forbidden`;
/// a path-like name no connector lists is `dataset_not_found` (and never
/// reaches a connector); `subscribe` to a query dataset is `not_live`.
#[test]
fn datasets_outside_the_token_or_the_connectors_are_refused() {
    let (gateway, connector, source) = gateway_with_prim(config());
    let addr = gateway.local_addr();
    let mut limited = Browser::connect(addr, &session_token(TENANT, &["prim"]), true);
    limited.send(json!({"action": "query", "dataset": "nomina", "query_id": "q1"}));
    let reply = limited.next_json(Duration::from_secs(5));
    assert_eq!(reply["code"], "dataset_forbidden", "{reply}");
    assert_eq!(reply["query_id"], "q1");

    let mut all = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    for dataset in ["../../etc/passwd", "/etc/passwd", "prim/../prim", "nope"] {
        all.send(json!({"action": "query", "dataset": dataset, "query_id": "q2"}));
        let reply = all.next_json(Duration::from_secs(5));
        assert_eq!(reply["code"], "dataset_not_found", "{dataset}: {reply}");
    }
    all.send(json!({"action": "subscribe", "dataset": "prim", "query_id": "s1"}));
    assert_eq!(all.next_json(Duration::from_secs(5))["code"], "not_live");
    all.send(json!({"action": "cancel", "query_id": "nothing-open"}));
    assert_eq!(all.next_json(Duration::from_secs(5))["code"], "unknown_query");
    assert!(connector.commands("get_flight_info").is_empty(), "refused queries must not reach the connector");

    let result = limited.query("prim", "q3");
    assert!(result.bytes() == source);
}

/// §4.1, §6: wrong connector credentials are refused at `register` with a
/// status-error reply and close 1008; the registered connector keeps serving.
#[test]
fn connector_register_refusals_close_1008() {
    let config = volley_engine::GatewayConfig { allow_unauthenticated_connectors: false, ..config() };
    let (gateway, _connector, source) = gateway_with_prim(config);
    let addr = gateway.local_addr();
    let base = |token: Option<String>| {
        let mut r =
            json!({"action": "register", "tenant_id": TENANT, "version": "1", "datasets": ["evil"], "protocol": 2});
        if let Some(t) = token {
            r["token"] = json!(t);
        }
        r
    };
    let cases = vec![
        ("no token", base(None), "unauthorized"),
        ("wrong secret", base(Some(connector_token_with(TENANT, "not-our-secret"))), "unauthorized"),
        ("another tenant's credential", base(Some(connector_token("other-tenant"))), "forbidden"),
        // A valid token of the wrong kind (a role mismatch, §8), named as such.
        ("a browser session as credential", base(Some(session_token(TENANT, &["*"]))), "forbidden"),
        ("garbage token", base(Some("x.y.z".into())), "unauthorized"),
    ];
    for (name, register, code) in cases {
        let (reply, close) = register_refused(addr, register);
        assert_eq!(reply["status"], "error", "{name}: {reply}");
        assert_eq!(reply["type"], "error", "{name}: {reply}");
        assert_eq!(reply["code"], code, "{name}: {reply}");
        assert_eq!(close, Some(1008), "{name}");
    }
    // A first message that is not register.
    let (reply, close) = register_refused(addr, json!({"action": "ping"}));
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(close, Some(1002));
    assert_eq!(gateway.shared().registry.connectors_online.load(Ordering::Relaxed), 1);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    browser.send(json!({"action": "list"}));
    assert_eq!(browser.next_json(Duration::from_secs(5))["datasets"], json!([{"name": "prim", "live": false}]));
    assert_healthy(addr, "prim", &source);
}

/// §5.3: a connector that vanishes mid-stream (no close frame) ends every
/// stream it carried with `connector_gone` within one second, at both levels:
/// queries end, level-2 live subscriptions are told `live_waiting`.
#[test]
fn a_vanished_connector_ends_its_streams_with_connector_gone_within_a_second() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let source = golden(PRIMITIVE);
    let _healthy =
        spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("prim", ipc_messages(&source))]));
    let mut frames = synthetic_frames(40, 1024);
    frames.insert(0, ipc_messages(&source)[0].clone());
    let doomed2 = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::query("doomed", frames.clone()).with(Behaviour::Stall),
            DatasetSpec::live("doomed_live"),
        ]),
    );
    let doomed1 = spawn_connector(
        addr,
        ConnectorSpec::level1(
            vec![DatasetSpec::query("doomed1", chunks(&source, 500)).with(Behaviour::VanishAfter(3))],
        ),
    );
    wait_connectors(&gateway, 3);

    // Level 2: a query and a live subscription on the same connector.
    let mut b2 = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    b2.send(json!({"action": "query", "dataset": "doomed", "query_id": "q"}));
    b2.send(json!({"action": "subscribe", "dataset": "doomed_live", "query_id": "s"}));
    doomed2.live_frame("doomed_live", frames[0].0, frames[0].1.clone());
    let mut started = 0;
    let mut binaries = 0;
    while started < 2 || binaries < 1 {
        match b2.next(Duration::from_secs(5)).expect("stream starts") {
            Received::Json(v) if v["type"] == "stream_start" => started += 1,
            Received::Binary(_) => binaries += 1,
            _ => {}
        }
    }
    let vanished = Instant::now();
    doomed2.vanish();
    // The query ends; the live subscription waits for a connector (it
    // resumes when one serves the dataset again: tests/live_resume.rs).
    let mut ended = std::collections::HashMap::new();
    while ended.len() < 2 {
        match b2.next(Duration::from_secs(3)).expect("stream_end and live_waiting arrive") {
            Received::Json(v) if v["type"] == "stream_end" || v["type"] == "live_waiting" => {
                assert_eq!(v["error"]["code"], "connector_gone", "{v}");
                let expected = if v["query_id"] == "q" { "stream_end" } else { "live_waiting" };
                assert_eq!(v["type"], expected, "{v}");
                ended.insert(v["query_id"].as_str().unwrap_or_default().to_owned(), vanished.elapsed());
            }
            Received::Json(v) if v["type"] == "error" => panic!("{v}"),
            _ => {}
        }
    }
    for (query, elapsed) in &ended {
        assert!(*elapsed < Duration::from_secs(1), "{query}: connector_gone after {elapsed:?}");
    }

    // Level 1: the connector dies after three chunks.
    let mut b1 = Browser::connect(addr, &session_token(TENANT, &["*"]), false);
    let result = b1.query("doomed1", "q1");
    assert_eq!(result.error_code().as_deref(), Some("connector_gone"), "{:?}", result.end);
    assert_eq!(result.payloads.len(), 3);
    assert!(
        !doomed1.alive.load(Ordering::Acquire)
            || wait_until(Duration::from_secs(2), || !doomed1.alive.load(Ordering::Acquire))
    );

    wait_connectors(&gateway, 1);
    let result = b2.query("prim", "after");
    assert!(result.bytes() == source, "the same browser socket keeps working");
}

/// §5.1: a query whose stream outlives `timeouts.query_seconds` ends with
/// `query_timeout` and is cancelled upstream; the socket keeps working.
#[test]
fn a_query_over_query_seconds_ends_with_query_timeout_and_is_cancelled_upstream() {
    let mut config = config();
    config.timeouts.query_seconds = 1;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let source = golden(PRIMITIVE);
    let connector = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::query("slow", ipc_messages(&source)).with(Behaviour::Stall),
            DatasetSpec::query("prim", ipc_messages(&source)),
        ]),
    );
    wait_connectors(&gateway, 1);
    for level2 in [true, false] {
        let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), level2);
        let asked = Instant::now();
        let result = browser.query("slow", "q1");
        let elapsed = asked.elapsed();
        assert_eq!(result.error_code().as_deref(), Some("query_timeout"), "{:?}", result.end);
        assert!(result.start.is_some());
        assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "{elapsed:?}");
        let result = browser.query("prim", "q2");
        assert!(result.bytes() == source, "the socket keeps working after a timeout");
    }
    assert!(
        wait_until(Duration::from_secs(2), || connector.commands("cancel").len() >= 2),
        "the timed-out streams are cancelled upstream: {:?}",
        connector.commands("cancel")
    );
}

/// Opens `n` connections to `addr` that never finish their handshake (a
/// third send nothing, a third half a request head, a third one byte), in a
/// child process so its sockets do not count against this process's file
/// limit (the in-process gateway holds the other end of each). Prints
/// `opened`, waits for a line on stdin, then prints `open <k>`: how many the
/// gateway has not closed within 5 s.
const HALF_OPEN_CLIENT: &str = r#"
import selectors, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    if i % 3 == 1:
        s.sendall(b"GET /stream/abc HTTP/1.1\r\nHost: x\r\n")
    elif i % 3 == 2:
        s.sendall(b"G")
    socks.append(s)
print("opened", flush=True)
sys.stdin.readline()
sel = selectors.DefaultSelector()
for s in socks:
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
pending = len(socks)
deadline = time.monotonic() + 5
while pending and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.2):
        try:
            data = key.fileobj.recv(256)
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            pending -= 1
print("open", pending, flush=True)
"#;

/// §7 `timeouts.connect_seconds` (slowloris): 10 000 connections that never
/// finish the handshake are all closed after connect_seconds, while a normal
/// browser works meanwhile.
#[test]
fn handshakes_that_never_finish_are_closed_after_connect_seconds() {
    const HALF_OPEN: usize = 10_000;
    let mut config = config();
    config.timeouts.connect_seconds = 1;
    let (gateway, _connector, source) = gateway_with_prim(config);
    let addr = gateway.local_addr();
    let baseline = gateway.shared().connections.load(Ordering::Relaxed);
    let opened = Instant::now();
    let mut client = std::process::Command::new("python3")
        .args(["-c", HALF_OPEN_CLIENT, &addr.ip().to_string(), &addr.port().to_string(), &HALF_OPEN.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = std::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("opened"), "the client opened its connections");
    let open_time = opened.elapsed();
    // A normal browser works while they hang.
    assert_healthy(addr, "prim", &source);
    assert!(
        wait_until(Duration::from_secs(15), || gateway.shared().connections.load(Ordering::Relaxed) <= baseline),
        "gateway still holds {} connections",
        gateway.shared().connections.load(Ordering::Relaxed)
    );
    let closed_after = opened.elapsed();
    writeln!(client.stdin.as_mut().expect("stdin"), "go").expect("tell the client");
    let verdict = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = client.wait();
    assert_eq!(verdict, "open 0", "every half-open connection must be closed by the gateway");
    eprintln!("{HALF_OPEN} half-open connections opened in {open_time:?}, all closed {closed_after:?} after the first");
    assert!(closed_after >= Duration::from_millis(900), "closed before connect_seconds: {closed_after:?}");
    assert_healthy(addr, "prim", &source);
}

/// §10: plain HTTP refusals.
#[test]
fn http_routes_refuse_unknown_paths_methods_and_bad_upgrades() {
    let (gateway, _connector, source) = gateway_with_prim(config());
    let addr = gateway.local_addr();
    assert_eq!(http_get(addr, "/health").0, 200);
    assert_eq!(http_get(addr, "/no/such/thing").0, 404);
    assert_eq!(http_get(addr, "/../../etc/passwd").0, 404);
    assert_eq!(http_raw(addr, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").0, 405);
    assert_eq!(http_raw(addr, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n").0, 405);
    assert_eq!(http_raw(addr, upgrade_request("/nowhere", "").as_bytes()).0, 404);
    let token = session_token(TENANT, &["*"]);
    let wrong_version = upgrade_request(&format!("/stream/{token}"), "").replace("Version: 13", "Version: 8");
    assert_eq!(http_raw(addr, wrong_version.as_bytes()).0, 426);
    let no_key =
        upgrade_request(&format!("/stream/{token}"), "").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_eq!(http_raw(addr, no_key.as_bytes()).0, 400);
    let huge = upgrade_request("/ws/connect", &format!("X-Big: {}\r\n", "a".repeat(9000)));
    assert_eq!(http_raw(addr, huge.as_bytes()).0, 431);
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(http_raw(addr, upgrade_request("/ws/connect", &many).as_bytes()).0, 431);
    assert_eq!(http_raw(addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").0, 400);
    assert_healthy(addr, "prim", &source);
}

/// §10: a session id in the path with a malformed percent-escape is a 400.
/// `%a` followed by a multi-byte character once panicked the worker that
/// decoded it (a `&str` sliced inside a character): a few such requests,
/// spread over both workers by the kernel, left a gateway whose sockets
/// accepted and never answered. Every request below must get its 400, and
/// both workers must still serve afterwards.
#[test]
fn malformed_percent_escapes_in_session_paths_get_400_and_every_worker_survives() {
    let (gateway, _connector, source) = gateway_with_prim(config());
    let addr = gateway.local_addr();
    let bad_segments: [&[u8]; 5] = [b"%a\xc3\xa9", b"%\xc3\xa9", b"abc%4", b"%zz", b"%ff%fe"];
    for round in 0..4 {
        for segment in bad_segments {
            let mut check = b"GET /session-check/".to_vec();
            check.extend_from_slice(segment);
            check.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
            let (status, response) = http_raw(addr, &check);
            assert_eq!(status, 400, "round {round}, /session-check/{}: {response}", String::from_utf8_lossy(segment));
            assert!(response.contains("percent-escape") || response.contains("UTF-8"), "{response}");

            let mut upgrade = b"GET /stream/".to_vec();
            upgrade.extend_from_slice(segment);
            upgrade.extend_from_slice(upgrade_request("", "").split_once(' ').map_or("", |(_, rest)| rest).as_bytes());
            let (status, response) = http_raw(addr, &upgrade);
            assert_eq!(status, 400, "round {round}, /stream/{}: {response}", String::from_utf8_lossy(segment));
        }
    }
    // A well-formed escape still decodes: `%2E` is a dot of the JWT.
    let token = session_token(TENANT, &["*"]).replacen('.', "%2E", 1);
    let (status, body) = http_get(addr, &format!("/session-check/{token}"));
    assert_eq!(status, 200, "{body}");
    assert!(http_body(&body).contains("\"ok\":true"), "{body}");
    // Every worker still accepts and answers: health from many connections
    // (the kernel spreads them over both listeners), then a query.
    for _ in 0..16 {
        assert_eq!(http_get(addr, "/health").0, 200);
    }
    assert_eq!(gateway.shared().panics.load(Ordering::Relaxed), 0, "no panic, contained or not");
    assert_healthy(addr, "prim", &source);
}
