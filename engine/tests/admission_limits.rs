//! Admission limits: open connections per client IP
//! (`limits.connections_per_ip_max`, at accept) and open browser sessions per
//! tenant (`limits.sessions_per_tenant_max`, at admission). Over a limit:
//! HTTP 503 `too_many_requests`, and the slot comes back when a connection ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};
use volley_testkit::browser::Browser;
use volley_testkit::engine::{config, start};
use volley_testkit::http::{http_body, http_get, http_raw, upgrade_request};
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn refusal(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, text) = http_get(addr, path);
    (status, serde_json::from_str(http_body(&text)).unwrap_or(Value::Null))
}

#[test]
fn connections_per_ip_are_capped_and_released() {
    let mut config = config();
    config.limits.connections_per_ip_max = 3;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let shared = gateway.shared().clone();

    let token = session_token(TENANT, &["*"]);
    let mut browsers: Vec<Browser> = (0..3).map(|i| Browser::connect(addr, &token, i % 2 == 0)).collect();
    assert_eq!(shared.ip_connections.get(&LOCALHOST), 3);

    // A fourth connection of any kind from the same address is refused.
    let (status, body) = refusal(addr, "/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "too_many_requests");
    assert!(Browser::try_connect(addr, &token, true).is_err());
    assert_eq!(shared.ip_connections.get(&LOCALHOST), 3, "refused connections are not counted");

    // The open ones are unaffected; closing one frees its slot.
    browsers[0].send(json!({"action": "ping"}));
    assert_eq!(browsers[0].next_json(Duration::from_secs(5))["type"], "pong");
    let mut closed = browsers.pop().expect("browser");
    closed.ws.close(None).expect("close");
    let _ = closed.expect_close(Duration::from_secs(5));
    drop(closed);
    assert!(wait_until(Duration::from_secs(5), || shared.ip_connections.get(&LOCALHOST) == 2));
    assert_eq!(http_get(addr, "/health").0, 200);
    assert!(wait_until(Duration::from_secs(5), || shared.ip_connections.get(&LOCALHOST) == 2));
    drop(browsers);
    assert!(wait_until(Duration::from_secs(5), || shared.ip_connections.get(&LOCALHOST) == 0), "all released");
}

#[test]
fn sessions_per_tenant_are_capped_and_released() {
    let mut config = config();
    config.limits.sessions_per_tenant_max = 2;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let shared = gateway.shared().clone();
    let acme = session_token(TENANT, &["*"]);

    let first = Browser::connect(addr, &acme, true);
    let _second = Browser::connect(addr, &acme, false);
    assert_eq!(shared.tenant_sessions.get(&TENANT.to_owned()), 2);
    let (status, text) = http_raw(addr, upgrade_request(&format!("/stream/{acme}"), "").as_bytes());
    assert_eq!(status, 503, "{text}");
    let body: Value = serde_json::from_str(http_body(&text)).expect("json");
    assert_eq!(body["code"], "too_many_requests");
    assert!(body["message"].as_str().unwrap_or("").contains(TENANT), "{body}");
    assert_eq!(shared.tenant_sessions.get(&TENANT.to_owned()), 2, "a refused session takes no slot");

    // Another tenant is not affected.
    let _other = Browser::connect(addr, &session_token("globex", &["*"]), true);

    // A session that ends gives its slot back.
    let mut first = first;
    first.ws.close(None).expect("close");
    let _ = first.expect_close(Duration::from_secs(5));
    drop(first);
    assert!(wait_until(Duration::from_secs(5), || shared.tenant_sessions.get(&TENANT.to_owned()) == 1));
    let _third = Browser::connect(addr, &acme, true);
    assert_eq!(shared.tenant_sessions.get(&TENANT.to_owned()), 2);
}
