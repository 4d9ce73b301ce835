//! Threats without a home elsewhere: a cross-site page opening a session
//! with a user's token (cross-site WebSocket hijacking), a session issued
//! for another edge, and a connector trying to take over another tenant's
//! live stream. Real gateway, real
//! sockets; the other threats are in bad_input.rs, revocation.rs,
//! control_plane.rs, admission_limits.rs and cli/tests/tls.rs.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use volley_engine::GatewayConfig;
use volley_protocol::header::FrameKind;
use volley_testkit::browser::{Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{register_refused, spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::http::{http_body, http_get, session_verdict, upgrade_head};
use volley_testkit::tokens::{
    connector_token, connector_token_with, session_token, session_token_on_edge, SECRET, TENANT,
};

const ALLOWED: &str = "https://dash.volley.example";

#[test]
fn a_page_from_another_origin_cannot_open_a_session_with_the_users_token() {
    let mut config = config();
    config.allowed_origins = vec![ALLOWED.to_owned()];
    let gateway = start(config);
    let addr = gateway.local_addr();
    let token = session_token(TENANT, &["*"]);
    // Status and response head (and body, for refusals: the gateway closes after them).
    let upgrade = |origin: &str| {
        let extra = if origin.is_empty() { String::new() } else { format!("Origin: {origin}\r\n") };
        upgrade_head(addr, &format!("/stream/{token}"), &extra)
    };

    for evil in
        ["https://evil.example", "https://dash.volley.example.evil.example", "null", "http://dash.volley.example"]
    {
        let (status, text) = upgrade(evil);
        assert_eq!(status, 403, "origin {evil}: {text}");
        let body: Value = serde_json::from_str(http_body(&text)).expect("JSON error body");
        assert_eq!(body["code"], "forbidden", "{body}");
        assert!(body["message"].as_str().unwrap_or_default().contains("origin"), "{body}");
    }
    let (status, text) = upgrade(ALLOWED);
    assert_eq!(status, 101, "the allowed origin upgrades: {text}");
    // Non-browser clients send no Origin; the token alone decides for them.
    let (status, _) = upgrade("");
    assert_eq!(status, 101, "no Origin header: not a browser page");
}

/// PROTOCOL.md §6, §8: a gateway with `edge_id` refuses a session token
/// issued for another edge (403 `forbidden`), at the upgrade and at
/// `/session-check`; a token for this edge, or with an empty `edge_id`, is
/// admitted. A gateway without `edge_id` does not look at the claim.
#[test]
fn a_session_issued_for_another_edge_is_refused() {
    let yaml = format!("listen: 127.0.0.1:0\nworkers: 2\ntableros_secret_key: {SECRET}\nedge_id: edge-a\n");
    let gateway = start(GatewayConfig::from_yaml(&yaml).expect("edge_id is a gateway setting"));
    let addr = gateway.local_addr();

    for other in ["edge-b", "EDGE-A", "edge-a "] {
        let (status, code, message) = session_verdict(addr, &session_token_on_edge(TENANT, other));
        assert_eq!((status, code.as_str()), (403, "forbidden"), "edge {other:?}: {message}");
        assert!(message.contains("edge"), "the refusal says why: {message}");
    }
    let (status, text) = http_get(addr, &format!("/session-check/{}", session_token_on_edge(TENANT, "edge-b")));
    assert_eq!(status, 200);
    let verdict: Value = serde_json::from_str(http_body(&text)).expect("JSON verdict");
    assert_eq!((verdict["ok"].as_bool(), verdict["code"].as_str()), (Some(false), Some("forbidden")), "{verdict}");

    for admitted in ["edge-a", ""] {
        let (status, code, message) = session_verdict(addr, &session_token_on_edge(TENANT, admitted));
        assert_eq!(status, 101, "edge {admitted:?}: {code} {message}");
    }
    drop(gateway);

    // No edge_id configured: the claim is not checked.
    let gateway = start(config());
    let (status, code, message) = session_verdict(gateway.local_addr(), &session_token_on_edge(TENANT, "edge-b"));
    assert_eq!(status, 101, "{code} {message}");
}

#[test]
fn a_connector_cannot_hijack_or_interleave_with_another_tenants_live_stream() {
    let mut config = config();
    config.allow_unauthenticated_connectors = false;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let legit = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["ticker"]), true);
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "t"}));
    let command = legit.wait_command("do_get", Duration::from_secs(5)).expect("the legit connector is asked");
    assert_eq!(command["ticket"], "ticker");

    // Attempts to register for TENANT: another tenant's valid credential, a
    // forged one, none at all. Each is refused with 1008 and never counted.
    let other = connector_token("globex");
    let forged = connector_token_with(TENANT, "not-the-gateway-secret");
    let register = |token: Option<&str>| {
        let mut message = json!({"action": "register", "tenant_id": TENANT, "version": "0",
                                 "datasets": ["ticker"], "live": ["ticker"], "protocol": 2});
        if let Some(token) = token {
            message["token"] = json!(token);
        }
        register_refused(addr, message)
    };
    for (what, token, code) in [
        ("another tenant's token", Some(other.as_str()), "forbidden"),
        ("a forged token", Some(forged.as_str()), "unauthorized"),
        ("no token", None, "unauthorized"),
    ] {
        let (reply, close) = register(token);
        assert_eq!(reply["code"], code, "{what}: {reply}");
        assert_eq!(close, Some(1008), "{what}");
    }
    assert_eq!(gateway.shared().registry.connectors(TENANT).len(), 1, "only the legit tunnel is registered");

    // The stream keeps flowing from the legit connector only, in order.
    for i in 0..5u8 {
        legit.live_frame("ticker", FrameKind::RecordBatch, Bytes::from(vec![i; 64]));
    }
    let mut payloads = Vec::new();
    while payloads.len() < 5 {
        match browser.next(Duration::from_secs(5)) {
            Some(Received::Binary(data)) => payloads.push(data),
            Some(Received::Json(_)) => {}
            other => panic!("the subscription broke: {other:?}"),
        }
    }
    for (i, data) in payloads.iter().enumerate() {
        let body = &data[16..];
        assert!(body.iter().all(|b| usize::from(*b) == i), "frame {i} came from the legit connector, in order");
    }
}
