//! PROTOCOL.md §5.3: a level-2 live subscription outlives its connector.
//! When the stream ends because the connector went away (or ended it without
//! an error), the browser is told `live_waiting` and stays subscribed; when a
//! connector serving the dataset is online again, it gets a new
//! `stream_start` (a new stream id) and that stream's frames, with no new
//! `subscribe`. A stream that failed ends its subscription as before.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use volley_engine::Gateway;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::message::{ErrorBody, ErrorCode};
use volley_testkit::browser::{Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::ipc::{golden, ipc_messages, PRIMITIVE};
use volley_testkit::tokens::{session_token, TENANT};

fn schema() -> Bytes {
    ipc_messages(&golden(PRIMITIVE))[0].1.clone()
}

fn ticker_connector(addr: SocketAddr) -> ConnectorHandle {
    spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]))
}

/// A gateway with one connector serving the live dataset `ticker`.
fn online() -> (Gateway, SocketAddr, ConnectorHandle) {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let connector = ticker_connector(addr);
    wait_connectors(&gateway, 1);
    (gateway, addr, connector)
}

/// A browser whose session may read `ticker`.
fn ticker_browser(addr: SocketAddr, level2: bool) -> Browser {
    Browser::connect(addr, &session_token(TENANT, &["ticker"]), level2)
}

/// Reads until a `stream_end` arrives and returns it; a `live_waiting`
/// before it fails the test (`why` says why it must not come).
fn until_stream_end(browser: &mut Browser, timeout: Duration, why: &str) -> Value {
    loop {
        match browser.next(timeout) {
            Some(Received::Json(v)) if v["type"] == "stream_end" => return v,
            Some(Received::Json(v)) => assert_ne!(v["type"], "live_waiting", "{why}: {v}"),
            Some(Received::Binary(_)) => {}
            other => panic!("expected stream_end, got {other:?}"),
        }
    }
}

/// Reads until a JSON message of type `kind` for `query_id` arrives (binary
/// frames and other messages are skipped; a close fails the test).
fn until(browser: &mut Browser, kind: &str, query_id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
        match browser.next(left) {
            Some(Received::Json(v)) if v["type"] == kind && v["query_id"] == query_id => return v,
            Some(Received::Json(v)) => {
                assert!(
                    !(v["type"] == "stream_end" && v["query_id"] == query_id),
                    "the subscription ended instead of waiting: {v}"
                );
            }
            Some(Received::Binary(_)) => {}
            Some(Received::Close(code)) => panic!("session closed ({code:?}) while waiting for {kind}"),
            None => panic!("no {kind} for {query_id} within {timeout:?}"),
        }
    }
}

/// The next binary frame's level-2 header.
fn next_frame(browser: &mut Browser, timeout: Duration) -> FrameHeader {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
        match browser.next(left) {
            Some(Received::Binary(data)) => return FrameHeader::decode(&data).expect("a level-2 frame header"),
            Some(Received::Json(_)) => {}
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// Subscribes `query_id` to `ticker` and reads its `stream_start` and first frame; returns the stream id.
fn subscribe_and_start(browser: &mut Browser, connector: &ConnectorHandle, query_id: &str) -> u64 {
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": query_id}));
    connector.live_frame("ticker", FrameKind::Schema, schema());
    let start = until(browser, "stream_start", query_id, Duration::from_secs(5));
    let stream_id = start["stream_id"].as_u64().expect("level 2 names the stream");
    assert_eq!(u64::from(next_frame(browser, Duration::from_secs(5)).stream_id), stream_id);
    stream_id
}

#[test]
fn a_live_subscription_waits_for_its_vanished_connector_and_resumes_on_the_next_one() {
    let (gateway, addr, first) = online();
    let mut browser = ticker_browser(addr, true);
    let old_stream = subscribe_and_start(&mut browser, &first, "s");

    first.vanish();
    let waiting = until(&mut browser, "live_waiting", "s", Duration::from_secs(3));
    assert_eq!(waiting["stream_id"], old_stream, "{waiting}");
    assert_eq!(waiting["dataset"], "ticker", "{waiting}");
    assert_eq!(waiting["error"]["code"], "connector_gone", "{waiting}");
    let message = waiting["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("resumes"), "the message says what happens next: {message}");
    wait_connectors(&gateway, 0);

    // Nothing more while no connector serves the dataset (retries find none).
    assert!(browser.next(Duration::from_millis(2500)).is_none(), "the waiting subscription stays quiet");

    // Another connector of the tenant serving the dataset: the subscription
    // resumes by itself, on a new stream.
    let second = ticker_connector(addr);
    let restarted = until(&mut browser, "stream_start", "s", Duration::from_secs(5));
    let new_stream = restarted["stream_id"].as_u64().expect("stream id");
    assert_ne!(new_stream, old_stream, "a new stream: {restarted}");
    assert_eq!(restarted["live"], true);
    second.live_frame("ticker", FrameKind::Schema, schema());
    second.live_frame("ticker", FrameKind::RecordBatch, Bytes::from(vec![7u8; 64]));
    let schema_frame = next_frame(&mut browser, Duration::from_secs(5));
    assert_eq!((u64::from(schema_frame.stream_id), schema_frame.kind), (new_stream, FrameKind::Schema));
    let batch = next_frame(&mut browser, Duration::from_secs(5));
    assert_eq!((u64::from(batch.stream_id), batch.kind), (new_stream, FrameKind::RecordBatch));
    assert_eq!(second.commands("do_get").len(), 1, "one upstream stream");

    // It is an ordinary subscription again: unsubscribing cancels upstream.
    browser.send(json!({"action": "unsubscribe", "query_id": "s"}));
    until(&mut browser, "unsubscribed", "s", Duration::from_secs(5));
    assert!(second.wait_command("cancel", Duration::from_secs(5)).is_some(), "the stream is cancelled upstream");
}

#[test]
fn a_live_stream_the_connector_ends_cleanly_resumes_on_the_same_connector() {
    let (_gateway, addr, connector) = online();
    let mut a = ticker_browser(addr, true);
    let mut b = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let old_stream = subscribe_and_start(&mut a, &connector, "a");
    b.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "b"}));
    until(&mut b, "stream_start", "b", Duration::from_secs(5));

    connector.end_live("ticker", None);
    for (browser, id) in [(&mut a, "a"), (&mut b, "b")] {
        let waiting = until(browser, "live_waiting", id, Duration::from_secs(3));
        assert_eq!(waiting["stream_id"], old_stream, "{waiting}");
    }
    // The connector is still online: the subscriptions are tried again
    // after a second, and share one new upstream stream.
    let a_start = until(&mut a, "stream_start", "a", Duration::from_secs(5));
    let b_start = until(&mut b, "stream_start", "b", Duration::from_secs(5));
    assert_ne!(a_start["stream_id"], old_stream);
    assert_eq!(a_start["stream_id"], b_start["stream_id"], "both waiting subscribers share the new stream");
    assert_eq!(connector.commands("do_get").len(), 2, "one do_get before, one after");
}

#[test]
fn a_failed_live_stream_ends_its_subscription() {
    let (_gateway, addr, connector) = online();
    let mut browser = ticker_browser(addr, true);
    subscribe_and_start(&mut browser, &connector, "s");
    let error =
        ErrorBody::new(ErrorCode::SourceError, "dataset \"ticker\" could not be read; error id 0123456789abcdef");
    connector.end_live("ticker", Some(error));
    let end = until_stream_end(&mut browser, Duration::from_secs(5), "a failed stream does not wait");
    assert_eq!(end["error"]["code"], "source_error", "{end}");
    browser.send(json!({"action": "unsubscribe", "query_id": "s"}));
    let reply = browser.next_json(Duration::from_secs(5));
    assert_eq!(reply["code"], "unknown_query", "the subscription is over: {reply}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(connector.commands("do_get").len(), 1, "nothing is resumed");
}

#[test]
fn a_waiting_subscription_can_be_unsubscribed_and_is_then_not_resumed() {
    let (gateway, addr, first) = online();
    let mut browser = ticker_browser(addr, true);
    subscribe_and_start(&mut browser, &first, "s");
    first.vanish();
    until(&mut browser, "live_waiting", "s", Duration::from_secs(3));
    browser.send(json!({"action": "unsubscribe", "query_id": "s"}));
    until(&mut browser, "unsubscribed", "s", Duration::from_secs(5));
    wait_connectors(&gateway, 0);
    let second = ticker_connector(addr);
    wait_connectors(&gateway, 1);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(second.commands("do_get").is_empty(), "nobody waits for ticker: {:?}", second.commands("do_get"));
    // The query id is free again.
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "s"}));
    until(&mut browser, "stream_start", "s", Duration::from_secs(5));
}

/// Another connector serving the dataset, but not live, while the live one
/// restarts: the subscription keeps waiting (a gone dataset cannot be told
/// from a restart) and resumes when the live one is back.
#[test]
fn a_dataset_served_not_live_meanwhile_keeps_the_subscription_waiting() {
    let (gateway, addr, first) = online();
    let mut browser = ticker_browser(addr, true);
    subscribe_and_start(&mut browser, &first, "s");
    first.vanish();
    until(&mut browser, "live_waiting", "s", Duration::from_secs(3));
    wait_connectors(&gateway, 0);
    let _snapshot = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![DatasetSpec::query("ticker", vec![(FrameKind::Schema, schema())])]),
    );
    wait_connectors(&gateway, 1);
    assert!(browser.next(Duration::from_millis(2500)).is_none(), "still waiting, nothing said");
    let _back = ticker_connector(addr);
    let restarted = until(&mut browser, "stream_start", "s", Duration::from_secs(5));
    assert_eq!(restarted["live"], true, "{restarted}");
}

#[test]
fn a_level1_live_subscription_still_ends_with_its_connector() {
    let (_gateway, addr, connector) = online();
    let mut browser = ticker_browser(addr, false);
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "s"}));
    connector.live_frame("ticker", FrameKind::Schema, schema());
    until(&mut browser, "stream_start", "s", Duration::from_secs(5));
    connector.vanish();
    let end = until_stream_end(&mut browser, Duration::from_secs(3), "level 1 knows no live_waiting");
    assert_eq!(end["error"]["code"], "connector_gone", "{end}");
}

/// A connector that keeps ending the live stream cleanly right after each
/// resume is asked less and less often: 1 s, then 2 s, then 4 s.
#[test]
fn a_connector_that_keeps_ending_the_stream_is_asked_less_often() {
    let (_gateway, addr, connector) = online();
    let mut browser = ticker_browser(addr, true);
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "s"}));
    let mut asked = Vec::new();
    for n in 1..=4 {
        assert!(
            volley_testkit::wait_until(Duration::from_secs(10), || connector.commands("do_get").len() >= n),
            "do_get number {n} never came"
        );
        asked.push(Instant::now());
        until(&mut browser, "stream_start", "s", Duration::from_secs(5));
        connector.end_live("ticker", None);
        until(&mut browser, "live_waiting", "s", Duration::from_secs(5));
    }
    let gaps: Vec<Duration> = asked.windows(2).map(|pair| pair[1] - pair[0]).collect();
    for (gap, least) in gaps.iter().zip([900, 1800, 3600]) {
        assert!(*gap >= Duration::from_millis(least), "waits should grow: {gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "{gaps:?}");
}
