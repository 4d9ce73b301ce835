//! PROTOCOL.md §5.1, admission: a query that finds every tunnel serving its
//! dataset at its stream limit waits in its tenant's queue (`queued`, level
//! 2) and starts when a slot frees, instead of being refused with
//! `too_many_requests`; the refusal remains for a full queue or a wait past
//! `queries.queue_timeout_seconds`. The connector's stream limit holds
//! throughout.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use volley_engine::config::GatewayConfig;
use volley_engine::Gateway;
use volley_protocol::header::FrameKind;
use volley_testkit::browser::{Browser, Received};
use volley_testkit::engine::{config, max_sampler, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, Behaviour, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::ipc::synthetic_frames;
use volley_testkit::tokens::{session_token, TENANT};

const SLOTS: usize = 2;

fn expected_bytes(frames: &[(FrameKind, bytes::Bytes)]) -> usize {
    frames.iter().map(|(_, body)| body.len()).sum()
}

/// A gateway started with `config` and a connector whose `stall` stream
/// never ends (it holds its slot), with a token that may read it.
fn stalling(config: GatewayConfig) -> (Gateway, SocketAddr, ConnectorHandle, String) {
    let gateway = start(config);
    let addr = gateway.local_addr();
    let stall = DatasetSpec::query("stall", synthetic_frames(1, 64)).with(Behaviour::Stall);
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![stall]));
    wait_connectors(&gateway, 1);
    (gateway, addr, connector, session_token(TENANT, &["stall"]))
}

/// The next `stream_start` (an `error` before it fails the test).
fn until_started(browser: &mut Browser) -> serde_json::Value {
    loop {
        match browser.next(Duration::from_secs(5)) {
            Some(Received::Json(v)) if v["type"] == "stream_start" => return v,
            Some(Received::Json(v)) => assert_ne!(v["type"], "error", "{v}"),
            other => panic!("expected stream_start, got {other:?}"),
        }
    }
}

#[test]
fn queries_past_the_stream_limit_wait_for_a_slot_and_all_complete() {
    let mut config = config();
    // Identical queries would share one stream: these wait for slots.
    config.queries.share_log_bytes = 0;
    config.limits.streams_per_connector_max = SLOTS;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let frames = synthetic_frames(48, 16 * 1024);
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("big", frames.clone())]));
    wait_connectors(&gateway, 1);
    let (stop, busiest) = max_sampler(&gateway, |shared| {
        shared.registry.connectors(TENANT).iter().map(|c| c.active_streams.load(Ordering::Relaxed)).max().unwrap_or(0)
    });

    // Twelve browsers, level 2 and level 1, ask at once.
    let token = session_token(TENANT, &["big"]);
    let mut browsers: Vec<Browser> = (0..12).map(|i| Browser::connect(addr, &token, i % 3 != 0)).collect();
    for (i, browser) in browsers.iter_mut().enumerate() {
        browser.send(json!({"action": "query", "dataset": "big", "query_id": format!("q{i}")}));
    }
    let mut queued_seen = 0;
    for (i, browser) in browsers.iter_mut().enumerate() {
        let result = browser.collect(&format!("q{i}"), Duration::from_secs(30));
        assert_eq!(result.error_code(), None, "browser {i} was refused: {:?}", result.end);
        assert_eq!(result.bytes().len(), expected_bytes(&frames), "browser {i} got the whole table");
        if result.order.iter().any(|kind| kind == "queued") {
            queued_seen += 1;
            assert!(i % 3 != 0, "level-1 pages are not sent `queued`");
        }
    }
    stop.store(true, Ordering::Release);
    let busiest = busiest.join().expect("sampler");
    assert!(busiest <= SLOTS, "the tunnel ran {busiest} streams at once, over its limit of {SLOTS}");
    assert!(queued_seen > 0, "some level-2 query was told it waits");
    assert_eq!(connector.commands("do_get").len(), 12, "every query reached the connector once");
    let registry = &gateway.shared().registry;
    assert!(registry.queries_queued_total.load(Ordering::Relaxed) >= 6, "at least 12 - 2 slots - races waited");
    assert_eq!(registry.queued_queries.load(Ordering::Relaxed), 0, "nobody waits any more");
}

#[test]
fn a_full_queue_and_a_long_wait_are_refused_and_a_cancelled_wait_never_reaches_the_connector() {
    let mut config = config();
    // Identical queries would share one stream: these wait for slots.
    config.queries.share_log_bytes = 0;
    config.limits.streams_per_connector_max = SLOTS;
    config.queries.queue_max = 2;
    config.queries.queue_timeout_seconds = 2;
    let (gateway, addr, connector, token) = stalling(config);
    // Streams that never end hold both slots.
    let mut holder = Browser::connect(addr, &token, true);
    for id in ["h1", "h2"] {
        holder.send(json!({"action": "query", "dataset": "stall", "query_id": id}));
    }
    for _ in 0..SLOTS {
        until_started(&mut holder);
    }

    let mut waiter = Browser::connect(addr, &token, true);
    waiter.send(json!({"action": "query", "dataset": "stall", "query_id": "w1"}));
    let queued = waiter.next_json(Duration::from_secs(5));
    assert_eq!((queued["type"].as_str(), queued["position"].as_u64()), (Some("queued"), Some(1)), "{queued}");
    waiter.send(json!({"action": "query", "dataset": "stall", "query_id": "w2"}));
    let queued = waiter.next_json(Duration::from_secs(5));
    assert_eq!((queued["type"].as_str(), queued["position"].as_u64()), (Some("queued"), Some(2)), "{queued}");

    // The queue holds two: a third is refused at once, saying why.
    let mut late = Browser::connect(addr, &token, true);
    late.send(json!({"action": "query", "dataset": "stall", "query_id": "x"}));
    let refused = late.next_json(Duration::from_secs(5));
    assert_eq!(refused["code"], "too_many_requests", "{refused}");
    assert!(refused["message"].as_str().unwrap_or_default().contains("queue_max"), "{refused}");

    // A cancelled wait leaves the queue and never reaches the connector.
    waiter.send(json!({"action": "cancel", "query_id": "w2"}));
    let end = waiter.next_json(Duration::from_secs(5));
    assert_eq!((end["type"].as_str(), end["error"]["code"].as_str()), (Some("stream_end"), Some("cancelled")));

    // The other wait passes queue_timeout_seconds: refused, with advice.
    let timed_out = waiter.next_json(Duration::from_secs(5));
    assert_eq!(timed_out["query_id"], "w1", "{timed_out}");
    assert_eq!(timed_out["code"], "too_many_requests", "{timed_out}");
    assert!(timed_out["message"].as_str().unwrap_or_default().contains("queue_timeout_seconds"), "{timed_out}");
    assert_eq!(connector.commands("do_get").len(), SLOTS, "no waiting query reached the connector");
    assert_eq!(gateway.shared().registry.queued_queries.load(Ordering::Relaxed), 0);

    // A slot that frees goes to the next query, which then runs.
    holder.send(json!({"action": "cancel", "query_id": "h1"}));
    let mut next = Browser::connect(addr, &token, true);
    next.send(json!({"action": "query", "dataset": "stall", "query_id": "n"}));
    assert_eq!(until_started(&mut next)["query_id"], "n");
}

#[test]
fn a_session_that_leaves_while_queued_frees_its_place() {
    let mut config = config();
    // Identical queries would share one stream: these wait for slots.
    config.queries.share_log_bytes = 0;
    config.limits.streams_per_connector_max = 1;
    let (gateway, addr, connector, token) = stalling(config);
    let mut holder = Browser::connect(addr, &token, true);
    holder.send(json!({"action": "query", "dataset": "stall", "query_id": "h"}));
    assert!(connector.wait_command("do_get", Duration::from_secs(5)).is_some());
    {
        let mut leaver = Browser::connect(addr, &token, true);
        leaver.send(json!({"action": "query", "dataset": "stall", "query_id": "l"}));
        assert_eq!(leaver.next_json(Duration::from_secs(5))["type"], "queued");
    }
    let registry = &gateway.shared().registry;
    assert!(
        volley_testkit::wait_until(Duration::from_secs(5), || registry.queued_queries.load(Ordering::Relaxed) == 0),
        "the closed session's query left the queue"
    );
    holder.send(json!({"action": "cancel", "query_id": "h"}));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        connector.commands("do_get").len(),
        1,
        "the freed slot went to nobody: {:?}",
        connector.commands("do_get")
    );
}
