//! What a live stream keeps for late joiners is bounded (ARCHITECTURE.md's
//! worst-case memory, item 4; PROTOCOL.md §5.2, §7 `live_retained_bytes_max`, §8 `retained_limit`): a
//! stream whose schema and dictionary frames pass the limit ends with
//! `retained_limit` and is cancelled upstream, the kept bytes show in
//! `/metrics` and count in the gateway-wide budget, and a late joiner's
//! snapshot — like every schema or dictionary frame — counts in the
//! subscriber's ring. The gateway runs in this process, so a counting
//! allocator sees what it holds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use volley_protocol::header::FrameKind;
use volley_testkit::browser::{assert_healthy, stalled_browser, Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, Behaviour, ConnectorSpec, DatasetSpec};
use volley_testkit::heap;
use volley_testkit::http::{http_body, http_get, metrics_json};
use volley_testkit::ipc::{golden, ipc_messages, PRIMITIVE};
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// The figure: 150 dictionary frames of 1 MiB.
const DICTIONARIES: usize = 150;
const DICTIONARY_BYTES: usize = 1 << 20;
/// `limits.live_retained_bytes_max` by default.
const RETAINED_MAX: u64 = 4 << 20;
/// Heap the gateway may still hold once the stream ended and every frame
/// was read: buffers and pools, nothing per dictionary.
const HELD_AFTER_MAX: i64 = 16 << 20;

fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    metrics_json(addr)[name].as_u64()
}

fn frames_in(addr: SocketAddr) -> u64 {
    metrics_json(addr)["counters"]["frames_in"].as_u64().unwrap_or(0)
}

/// The value of a Prometheus gauge on `/metrics`.
fn prometheus(addr: SocketAddr, name: &str) -> Option<u64> {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let prefix = format!("{name} ");
    http_body(&text).lines().find_map(|line| line.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

/// Skips `flight_info` up to the `stream_start` of a subscription.
fn wait_start(browser: &mut Browser) {
    loop {
        let message = browser.next_json(Duration::from_secs(10));
        match message["type"].as_str() {
            Some("stream_start") => return,
            Some("flight_info") => {}
            _ => panic!("expected stream_start, got {message}"),
        }
    }
}

#[test]
fn a_live_stream_whose_dictionaries_pass_the_limit_ends_with_retained_limit_and_is_not_held() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let prim = golden(PRIMITIVE);
    // A connector that goes on sending after `cancel`: the gateway must not
    // hold what keeps coming either.
    let connector = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::live("ticker").with(Behaviour::IgnoreCancel),
            DatasetSpec::query("prim", ipc_messages(&prim)),
        ]),
    );
    wait_connectors(&gateway, 1);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "t"}));
    wait_start(&mut browser);
    let schema = ipc_messages(&prim)[0].1.clone();
    let dictionary = Bytes::from(vec![0xD1u8; DICTIONARY_BYTES]);
    let frames_in_before = frames_in(addr);
    let heap_before = heap::live_bytes();

    // Schema and two dictionaries: kept, and counted in the gauge.
    connector.live_frame("ticker", FrameKind::Schema, schema);
    for _ in 0..2 {
        connector.live_frame("ticker", FrameKind::Dictionary, dictionary.clone());
    }
    let mut received = 0;
    while received < 3 {
        match browser.next(Duration::from_secs(10)) {
            Some(Received::Binary(_)) => received += 1,
            other => panic!("expected the schema and dictionaries, got {other:?}"),
        }
    }
    let kept_json = metric(addr, "retained_bytes");
    let kept_prometheus = prometheus(addr, "volley_live_retained_bytes");

    // The other 148: the stream passes the limit.
    for _ in 2..DICTIONARIES {
        connector.live_frame("ticker", FrameKind::Dictionary, dictionary.clone());
    }
    let mut end: Option<Value> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match browser.next(Duration::from_secs(3)) {
            Some(Received::Binary(_)) => received += 1,
            Some(Received::Json(v)) if v["type"] == "stream_end" || v["type"] == "error" => {
                end = Some(v);
                break;
            }
            Some(Received::Json(_)) => {}
            Some(Received::Close(code)) => panic!("subscriber closed {code:?} after {received} frames"),
            // Everything arrived and nothing ended the stream.
            None if received == 1 + DICTIONARIES => break,
            None => {}
        }
    }
    // The gateway read every frame the connector sent (it ignored `cancel`).
    let all_read = wait_until(Duration::from_secs(30), || frames_in(addr) - frames_in_before > DICTIONARIES as u64);
    std::thread::sleep(Duration::from_millis(300));
    let held = heap::live_bytes() - heap_before;
    let kept_after = metric(addr, "retained_bytes");
    println!(
        "{DICTIONARIES} × {DICTIONARY_BYTES}-byte dictionaries on a live stream: gauge {kept_json:?} \
         (prometheus {kept_prometheus:?}) after 2 of them; subscriber got {received} frames then {end:?}; \
         gateway heap +{held} bytes once all were read (all read: {all_read}); gauge {kept_after:?} after"
    );

    let floor = 2 * DICTIONARY_BYTES as u64;
    assert!(
        kept_json.is_some_and(|bytes| (floor..=RETAINED_MAX).contains(&bytes)),
        "retained_bytes in /metrics.json after a schema and two 1 MiB dictionaries: {kept_json:?}"
    );
    assert_eq!(kept_prometheus, kept_json, "volley_live_retained_bytes in /metrics");
    let end = end.expect("the stream ended");
    assert_eq!(end["type"], "stream_end", "{end}");
    assert_eq!(end["query_id"], "t");
    assert_eq!(end["error"]["code"], "retained_limit", "{end}");
    let message = end["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("limits.live_retained_bytes_max"), "{message}");
    assert!(received < 1 + DICTIONARIES, "the stream ended before all its dictionaries: got {received}");
    let cancel = connector.wait_command("cancel", Duration::from_secs(5)).expect("the connector is told to cancel");
    let do_get = connector.commands("do_get").into_iter().find(|c| c["stream_id"] == end["stream_id"]);
    let do_get = do_get.expect("the stream's do_get");
    assert_eq!(cancel["request_id"], do_get["request_id"], "cancel names the stream's do_get");
    assert!(all_read, "the gateway read every frame the connector sent");
    assert!(held <= HELD_AFTER_MAX, "the gateway still holds {held} bytes after the stream ended");
    assert_eq!(kept_after, Some(0), "nothing kept once the stream ended");
    // The tunnel and its other streams go on.
    assert!(connector.alive.load(std::sync::atomic::Ordering::Acquire), "the tunnel stays open");
    assert_healthy(addr, "prim", &prim);
    gateway.shutdown();
}

#[test]
fn a_late_joiner_without_room_for_the_snapshot_is_refused_and_a_dictionary_without_room_closes_4002() {
    const SESSION_BYTES: usize = 4 << 20;
    const FILLER_FRAME: usize = 512 * 1024;
    let mut config = config();
    // The default limits.live_retained_bytes_max (4 MiB) is at most this.
    config.rings.session_bytes_max = SESSION_BYTES;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let connector =
        spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker"), DatasetSpec::live("filler")]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["*"]);

    // A running live stream keeps a schema and 3 MiB of dictionaries.
    let mut anchor = Browser::connect(addr, &token, true);
    anchor.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "anchor"}));
    wait_start(&mut anchor);
    connector.live_frame("ticker", FrameKind::Schema, ipc_messages(&golden(PRIMITIVE))[0].1.clone());
    for _ in 0..3 {
        connector.live_frame("ticker", FrameKind::Dictionary, Bytes::from(vec![0xD2u8; DICTIONARY_BYTES]));
    }
    for n in 0..4 {
        assert!(matches!(anchor.next(Duration::from_secs(10)), Some(Received::Binary(_))), "anchor frame {n}");
    }

    // A session that stops reading fills its ring from another live stream.
    let mut stalled = stalled_browser(addr, &token);
    stalled.send(json!({"action": "subscribe", "dataset": "filler", "query_id": "filler"}));
    wait_start(&mut stalled);
    for _ in 0..40 {
        connector.live_frame("filler", FrameKind::RecordBatch, Bytes::from(vec![0xF1u8; FILLER_FRAME]));
    }
    let filled = wait_until(Duration::from_secs(10), || {
        metric(addr, "ring_bytes").is_some_and(|bytes| bytes >= (SESSION_BYTES - FILLER_FRAME) as u64)
    });
    assert!(filled, "the stalled session's ring never filled: {:?}", metric(addr, "ring_bytes"));

    // It joins the running stream late: its 3 MiB snapshot does not fit.
    stalled.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "late"}));
    // A 1 MiB dictionary on the stream it reads does not fit either.
    std::thread::sleep(Duration::from_millis(200));
    connector.live_frame("filler", FrameKind::Dictionary, Bytes::from(vec![0xD3u8; DICTIONARY_BYTES]));
    std::thread::sleep(Duration::from_millis(500));
    let ring_bytes = metric(addr, "ring_bytes").unwrap_or(0);

    let mut late_error = None;
    let mut late_started = false;
    let mut close = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match stalled.next(Duration::from_secs(3)) {
            Some(Received::Json(v)) if v["query_id"] == "late" && v["type"] == "error" => late_error = Some(v),
            Some(Received::Json(v)) if v["query_id"] == "late" && v["type"] == "stream_start" => late_started = true,
            Some(Received::Close(code)) => {
                close = Some(code);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    println!(
        "stalled session (ring budget {SESSION_BYTES}) joining a stream with a 3 MiB snapshot, then sent a 1 MiB \
         dictionary: gateway ring_bytes {ring_bytes}; late join answered {late_error:?} (started: {late_started}); \
         close {close:?}"
    );
    assert!(ring_bytes <= SESSION_BYTES as u64, "ring_bytes {ring_bytes} over the session budget {SESSION_BYTES}");
    let error = late_error.expect("the late join is refused");
    assert_eq!(error["code"], "retained_limit", "{error}");
    assert!(!late_started, "a refused late joiner gets no stream_start");
    assert_eq!(close, Some(Some(4002)), "a dictionary without room closes the session as a slow consumer");
    // The stream and its other subscriber are unaffected; a fresh late joiner gets the snapshot.
    let mut fresh = Browser::connect(addr, &token, true);
    fresh.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "fresh"}));
    wait_start(&mut fresh);
    for n in 0..4 {
        assert!(matches!(fresh.next(Duration::from_secs(10)), Some(Received::Binary(_))), "snapshot frame {n}");
    }
    assert!(anchor.next(Duration::from_millis(200)).is_none(), "the anchor saw nothing more");
    gateway.shutdown();
}
