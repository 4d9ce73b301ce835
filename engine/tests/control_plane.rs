//! The control plane (`control_plane.url`, PROTOCOL.md §6.1) against a
//! real HTTP server each test starts: a tiny `std::net` HTTP/1.1 responder
//! that answers per `session_id`, counts requests (to prove the cache) and
//! can be made slow (to prove the timeouts, the fail-closed policy, and that
//! the request runs off the io_uring worker).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_engine::GatewayConfig;
use volley_testkit::browser::Browser;
use volley_testkit::engine::{config, start};
use volley_testkit::http::{http_body, http_get, http_raw, upgrade_request};
use volley_testkit::tokens::{session_token, session_token_of, session_token_with, SECRET, TENANT};

/// A fake control plane on a real socket.
struct ControlPlane {
    addr: SocketAddr,
    /// session id → (status, body).
    answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
    /// Requests seen per session id.
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Delay before answering, ms.
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let answers: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answers, counts, delay_ms, stop) = (answers.clone(), counts.clone(), delay_ms.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (answers, counts, delay_ms) = (answers.clone(), counts.clone(), delay_ms.clone());
                            std::thread::spawn(move || serve(stream, &answers, &counts, &delay_ms));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        ControlPlane { addr, answers, counts, delay_ms, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}/sessions/validate", self.addr)
    }

    fn answer(&self, session_id: &str, status: u16, body: Value) {
        self.answers.lock().expect("lock").insert(session_id.to_owned(), (status, body.to_string()));
    }

    fn count(&self, session_id: &str) -> usize {
        self.counts.lock().expect("lock").get(session_id).copied().unwrap_or(0)
    }

    fn slow(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Release);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    answers: &Mutex<HashMap<String, (u16, String)>>,
    counts: &Mutex<HashMap<String, usize>>,
    delay_ms: &AtomicU64,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let session_id = query_param(target, "session_id").unwrap_or_default();
    *counts.lock().expect("lock").entry(session_id.clone()).or_default() += 1;
    std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::Acquire)));
    let (status, body) = answers
        .lock()
        .expect("lock")
        .get(&session_id)
        .cloned()
        .unwrap_or((404, json!({"error": "unknown session"}).to_string()));
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}

/// An address where nothing listens, held (bound, not listening) for as long
/// as the socket lives, so no other test's listener can take the port:
/// connecting to it is refused at once.
fn dead_addr() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    let addr = socket.local_addr().expect("addr").as_socket().expect("inet");
    (socket, addr)
}

fn cp_config(url: &str) -> GatewayConfig {
    let mut config = config();
    config.control_plane.url = Some(url.to_owned());
    config.control_plane.connect_timeout_ms = 300;
    config.control_plane.timeout_ms = 500;
    config
}

fn session(user: &str, tenant: &str, permisos: &[&str]) -> Value {
    json!({"user_id": user, "cuenta_id": tenant, "edge_id": "edge-1", "permisos": permisos,
           "exp": volley_engine::unix_now() + 3600})
}

/// Status and code of an upgrade that is refused; (101, "") when accepted.
fn upgrade_status(addr: SocketAddr, id: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(upgrade_request(&format!("/stream/{id}"), "").as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = std::io::Read::read_exact(&mut reader, &mut body);
    let code = serde_json::from_slice::<Value>(&body).map(|v| v["code"].as_str().unwrap_or("").to_owned());
    (status, code.unwrap_or_default())
}

#[test]
fn an_opaque_session_id_is_admitted_with_the_control_planes_claims_and_cached() {
    let cp = ControlPlane::start();
    cp.answer("opaque-ok", 200, session("ana", TENANT, &["ventas"]));
    let gateway = start(cp_config(&cp.url()));
    let addr = gateway.local_addr();

    let t0 = Instant::now();
    let mut browser = Browser::connect(addr, "opaque-ok", true);
    eprintln!("first admission through the control plane: {:?}", t0.elapsed());
    let hello = browser.hello.clone().expect("hello");
    assert_eq!(hello["user"], "ana");
    assert_eq!(hello["tenant"], TENANT);
    // The permisos come from the answer: "nomina" is not allowed.
    browser.send(json!({"action": "query", "dataset": "nomina", "query_id": "q1"}));
    assert_eq!(browser.next_json(Duration::from_secs(5))["code"], "dataset_forbidden");

    // Cached: a second session with the same id does not ask again.
    let t1 = Instant::now();
    let _second = Browser::connect(addr, "opaque-ok", false);
    eprintln!("cached admission: {:?}", t1.elapsed());
    let (status, body) = http_get(addr, "/session-check/opaque-ok");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(http_body(&body)).expect("json")["user"], "ana");
    assert_eq!(cp.count("opaque-ok"), 1, "one request for three admissions");

    // Ids that need percent-encoding reach the control plane intact.
    cp.answer("a b&c=d", 200, session("eve", TENANT, &["*"]));
    let mut odd = Browser::connect(addr, "a%20b%26c%3Dd", true);
    assert_eq!(odd.hello.take().expect("hello")["user"], "eve");
    assert_eq!(cp.count("a b&c=d"), 1);
}

#[test]
fn refusals_map_to_401_and_403_and_are_cached_briefly() {
    let cp = ControlPlane::start();
    cp.answer("forbidden-id", 403, json!({"error": "no"}));
    cp.answer("expired-id", 200, json!({"user_id": "ana", "cuenta_id": TENANT, "permisos": ["*"], "exp": 1000}));
    cp.answer("garbage-id", 200, json!({"hello": "world"}));
    let nobody = json!({"user_id": "", "cuenta_id": TENANT, "permisos": ["*"], "exp": volley_engine::unix_now() + 60});
    cp.answer("nobody-id", 200, nobody);
    let gateway = start(cp_config(&cp.url()));
    let addr = gateway.local_addr();

    assert_eq!(upgrade_status(addr, "unknown-id"), (401, "unauthorized".to_owned()));
    assert_eq!(upgrade_status(addr, "forbidden-id"), (403, "forbidden".to_owned()));
    assert_eq!(upgrade_status(addr, "expired-id"), (401, "token_expired".to_owned()));
    assert_eq!(upgrade_status(addr, "garbage-id"), (401, "unauthorized".to_owned()));
    // An answer that names no user is as unusable as garbage (§6.1).
    assert_eq!(upgrade_status(addr, "nobody-id"), (401, "unauthorized".to_owned()));
    // Negative answers are cached too.
    assert_eq!(upgrade_status(addr, "forbidden-id"), (403, "forbidden".to_owned()));
    assert_eq!(cp.count("forbidden-id"), 1);
    // A JWT is still verified locally when validate_all is off: no request.
    let jwt = session_token(TENANT, &["*"]);
    let _browser = Browser::connect(addr, &jwt, true);
    assert_eq!(cp.counts.lock().expect("lock").len(), 5, "only the five opaque ids were asked about");
}

#[test]
fn a_slow_or_absent_control_plane_fails_closed_within_the_timeout() {
    let cp = ControlPlane::start();
    cp.answer("slow-id", 200, session("ana", TENANT, &["*"]));
    cp.slow(5000);
    let mut config = cp_config(&cp.url());
    config.control_plane.timeout_ms = 1500;
    // One worker: if the request blocked it, /health below could not answer.
    config.workers = Some(1);
    let gateway = start(config);
    let addr = gateway.local_addr();

    let waiting = std::thread::spawn(move || {
        let t0 = Instant::now();
        let result = upgrade_status(addr, "slow-id");
        (result, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let (status, _) = http_get(addr, "/health");
    let health = t0.elapsed();
    assert_eq!(status, 200);
    // Were the request blocking the only worker, /health would wait ~1.4 s for the timeout.
    assert!(
        health < Duration::from_millis(1000),
        "the worker stayed free while the control plane was slow: {health:?}"
    );
    let (result, elapsed) = waiting.join().expect("thread");
    eprintln!("slow control plane: refused after {elapsed:?} (timeout 1500 ms); /health meanwhile took {health:?}");
    assert_eq!(result, (503, "unavailable".to_owned()));
    assert!(elapsed >= Duration::from_millis(1400), "refused only at the timeout, took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(4000), "refused at the timeout, not the 5 s answer: {elapsed:?}");

    // Unavailability is not cached: once it answers in time, the session is admitted.
    cp.slow(0);
    let _browser = Browser::connect(addr, "slow-id", true);

    // Nothing listening at all: 503 as well.
    drop(gateway);
    let (_hold, dead) = dead_addr();
    let gateway = start(cp_config(&format!("http://{dead}/validate")));
    let t0 = Instant::now();
    assert_eq!(upgrade_status(gateway.local_addr(), "any-id"), (503, "unavailable".to_owned()));
    eprintln!("control plane down: refused after {:?}", t0.elapsed());
}

#[test]
fn validate_all_asks_about_jwts_too_and_fail_open_admits_them_when_down() {
    let cp = ControlPlane::start();
    let mut config = cp_config(&cp.url());
    config.control_plane.validate_all = true;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let jwt = |jti: &str| session_token_of("ana", TENANT, jti);
    cp.answer("jwt-ok", 200, session("ana", TENANT, &["*"]));
    cp.answer("jwt-other-tenant", 200, session("ana", "globex", &["*"]));
    let _ok = Browser::connect(addr, &jwt("jwt-ok"), true);
    assert_eq!(cp.count("jwt-ok"), 1, "the control plane was asked about the JWT's jti");
    assert_eq!(upgrade_status(addr, &jwt("jwt-unknown")), (401, "unauthorized".to_owned()));
    assert_eq!(upgrade_status(addr, &jwt("jwt-other-tenant")), (403, "forbidden".to_owned()));
    // A badly signed JWT is refused locally, without asking.
    let forged = session_token_with(TENANT, &["*"], volley_engine::unix_now() + 3600, "not-the-secret");
    assert_eq!(upgrade_status(addr, &forged).0, 401);
    assert_eq!(cp.counts.lock().expect("lock").len(), 3);
    drop(gateway);

    // fail_open: with the control plane down, locally verified JWTs get in; opaque ids cannot.
    let (_hold, dead) = dead_addr();
    let mut config = cp_config(&format!("http://{dead}/validate"));
    config.control_plane.validate_all = true;
    config.control_plane.fail_open = true;
    let gateway = start(config);
    let _in = Browser::connect(gateway.local_addr(), &jwt("jwt-while-down"), true);
    assert_eq!(upgrade_status(gateway.local_addr(), "opaque-while-down"), (503, "unavailable".to_owned()));
}

/// Total requests the control plane has seen.
fn total_requests(cp: &ControlPlane) -> usize {
    cp.counts.lock().expect("lock").values().sum()
}

/// Like [`upgrade_status`], from a socket bound to `local` (another
/// loopback address is another client IP).
fn upgrade_status_from(local: std::net::IpAddr, addr: SocketAddr, id: &str) -> (u16, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::new(local, 0).into()).expect("bind the client address");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(upgrade_request(&format!("/stream/{id}"), "").as_bytes()).expect("write");
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut text);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body: Value = serde_json::from_str(http_body(&text)).unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Every unknown session id costs one control-plane request, so one client
/// could make the gateway send the control plane as many requests as it
/// opens connections. `control_plane.lookups_per_ip_per_minute` bounds the
/// requests per client IP: past it, lookups are refused with 429
/// `too_many_requests` without asking; cached answers are still served, and
/// other clients keep their own budget.
#[test]
fn control_plane_lookups_are_rate_limited_per_client_ip() {
    const LIMIT: usize = 5;
    const GUESSES: usize = 20;
    let cp = ControlPlane::start();
    cp.answer("known-id", 200, session("ana", TENANT, &["*"]));
    let yaml = format!(
        "listen: 127.0.0.1:0\nworkers: 2\ntableros_secret_key: {SECRET}\ncontrol_plane:\n  url: {}\n  \
         timeout_ms: 500\n  lookups_per_ip_per_minute: {LIMIT}\n",
        cp.url()
    );
    let gateway = start(GatewayConfig::from_yaml(&yaml).expect("lookups_per_ip_per_minute is a setting"));
    let addr = gateway.local_addr();

    let _known = Browser::connect(addr, "known-id", true);
    let mut verdicts: HashMap<(u16, String), usize> = HashMap::new();
    for i in 0..GUESSES {
        *verdicts.entry(upgrade_status(addr, &format!("guess-{i}"))).or_default() += 1;
    }
    let requests = total_requests(&cp);
    eprintln!(
        "1 admission + {GUESSES} unknown ids from one IP: {requests} control-plane requests, verdicts {verdicts:?}"
    );
    assert_eq!(requests, LIMIT, "the control plane was asked {requests} times by one client");
    assert_eq!(verdicts.get(&(401, "unauthorized".to_owned())), Some(&(LIMIT - 1)), "{verdicts:?}");
    assert_eq!(verdicts.get(&(429, "too_many_requests".to_owned())), Some(&(GUESSES + 1 - LIMIT)), "{verdicts:?}");

    // The refusal says what happened and when to retry.
    let (status, text) = http_raw(addr, upgrade_request("/stream/guess-again", "").as_bytes());
    assert_eq!(status, 429, "{text}");
    let message = serde_json::from_str::<Value>(http_body(&text)).expect("JSON")["message"].to_string();
    assert!(message.contains(&LIMIT.to_string()) && message.contains("minute"), "{message}");

    // A cached answer needs no lookup: the known session still gets in.
    let _again = Browser::connect(addr, "known-id", true);
    // Another client IP has its own budget.
    let other = std::net::IpAddr::from([127, 0, 0, 2]);
    assert_eq!(upgrade_status_from(other, addr, "guess-elsewhere"), (401, "unauthorized".to_owned()));
    assert_eq!(total_requests(&cp), LIMIT + 1);
}

/// The control plane's `edge_id` is checked like a token's (PROTOCOL.md
/// §6.1): a session placed on another edge is refused with 403 `forbidden`.
#[test]
fn a_control_plane_session_for_another_edge_is_refused() {
    let cp = ControlPlane::start();
    let on_edge = |edge: &str| {
        let mut answer = session("ana", TENANT, &["*"]);
        answer["edge_id"] = json!(edge);
        answer
    };
    cp.answer("here", 200, on_edge("edge-1"));
    cp.answer("elsewhere", 200, on_edge("edge-2"));
    cp.answer("anywhere", 200, on_edge(""));
    let yaml = format!(
        "listen: 127.0.0.1:0\nworkers: 2\ntableros_secret_key: {SECRET}\nedge_id: edge-1\ncontrol_plane:\n  url: {}\n",
        cp.url()
    );
    let gateway = start(GatewayConfig::from_yaml(&yaml).expect("config"));
    let addr = gateway.local_addr();
    assert_eq!(upgrade_status(addr, "elsewhere"), (403, "forbidden".to_owned()));
    let _here = Browser::connect(addr, "here", true);
    let _anywhere = Browser::connect(addr, "anywhere", true);
}
