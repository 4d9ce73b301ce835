//! Issue #12, "no peer grows its memory past what the config allows": the
//! frames waiting in a worker's inbox are bounded in bytes by
//! `limits.inbox_bytes_max` (PROTOCOL.md §7), not only in count by
//! `limits.inbox_max`. A connector whose frames go to subscribers on another
//! worker, faster than that worker delivers them, is read no faster than the
//! destination drains: TCP backpressure, not a queue of frames nothing counts.
//!
//! The destination is kept busy deterministically: the test stalls its
//! thread (`WorkerMsg::Stall`, honoured only with `test_fault_routes`) and
//! sends the frames while it is stalled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use volley_engine::WorkerMsg;
use volley_protocol::header::FrameHeader;
use volley_protocol::limits::FRAME_HEADER_BYTES;
use volley_testkit::browser::{Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::http::{http_body, http_get, metrics_json};
use volley_testkit::ipc::synthetic_frames;
use volley_testkit::tokens::{session_token, TENANT};

/// IPC bytes of each live frame.
const FRAME_BYTES: usize = 256 << 10;
/// What one frame counts in an inbox: its WebSocket payload, header included.
const FRAME_COUNTED: usize = FRAME_BYTES + FRAME_HEADER_BYTES;
/// Frames the connector sends: 16 MiB, sixteen times the inbox limit.
const FRAMES: usize = 64;
/// The limit under test: four frames.
const INBOX_BYTES_MAX: usize = 1 << 20;
/// How long the destination worker is blocked while the frames arrive.
const STALL: Duration = Duration::from_secs(2);

/// A level-2 browser subscribed to live `dataset` whose session is on
/// another worker than `tunnel_worker`; returns it with its stream id and
/// its worker. Connections are spread over the workers by the kernel
/// (`SO_REUSEPORT`), so this opens browsers until one lands there.
fn subscriber_on_other_worker(
    gateway: &volley_engine::Gateway,
    dataset: &str,
    tunnel_worker: usize,
) -> (Browser, u32, usize) {
    let shared = gateway.shared().clone();
    let token = session_token(TENANT, &[dataset]);
    for attempt in 0..64 {
        let mut browser = Browser::connect(gateway.local_addr(), &token, true);
        browser.send(json!({"action": "subscribe", "dataset": dataset, "query_id": "s1"}));
        let mut start = browser.next_json(Duration::from_secs(10));
        if start["type"] == "flight_info" {
            start = browser.next_json(Duration::from_secs(10));
        }
        assert_eq!(start["type"], "stream_start", "{start}");
        let stream_id = u32::try_from(start["stream_id"].as_u64().expect("level-2 stream id")).expect("u32");
        let stream = shared.registry.stream(stream_id).expect("the live stream is registered");
        // Session ids only grow: the newest subscriber is this browser.
        let worker = stream.state.lock().subscribers.iter().max_by_key(|s| s.session).map(|s| s.worker);
        match worker {
            Some(worker) if worker != tunnel_worker => return (browser, stream_id, worker),
            _ => eprintln!("subscriber {attempt} landed on the tunnel's worker {tunnel_worker}; trying another"),
        }
    }
    panic!("64 browsers in a row landed on the tunnel's worker");
}

#[test]
fn a_backed_up_inbox_holds_at_most_inbox_bytes_max_and_the_reader_loses_no_frame() {
    let mut config = config();
    config.limits.protocol.connector_frame_bytes_max = 1 << 20;
    config.limits.protocol.message_bytes_max = 1 << 20;
    config.limits.inbox_bytes_max = INBOX_BYTES_MAX;
    // Room for every frame in the subscriber's ring: nothing may be skipped.
    config.rings.session_bytes_max = 64 << 20;
    config.test_fault_routes = true;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let shared = gateway.shared().clone();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);
    let tunnel_worker = shared.registry.all_connectors()[0].worker;
    let (mut browser, stream_id, dest) = subscriber_on_other_worker(&gateway, "ticker", tunnel_worker);
    eprintln!("tunnel on worker {tunnel_worker}, subscriber on worker {dest}");

    let frames = synthetic_frames(FRAMES, FRAME_BYTES);
    let expected = frames.clone();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            for (sequence, (kind, body)) in expected.iter().enumerate() {
                match browser.next(Duration::from_secs(30)) {
                    Some(Received::Binary(data)) => {
                        let header = FrameHeader::decode(&data).expect("level-2 header");
                        assert_eq!(header.stream_id, stream_id);
                        assert_eq!(header.sequence, sequence as u64, "frames in order, none lost");
                        assert_eq!(header.kind, *kind);
                        assert!(data.slice(FRAME_HEADER_BYTES..) == *body, "frame {sequence} differs");
                    }
                    other => panic!("the subscriber got {other:?} after {sequence} frames"),
                }
            }
            done.store(true, Ordering::Release);
        })
    };

    // The destination blocks first; every frame routed after this waits behind it.
    assert!(shared.inboxes[dest].push(WorkerMsg::Stall(STALL)).is_ok(), "stall queued");
    let started = Instant::now();
    for (kind, body) in frames {
        connector.live_frame("ticker", kind, body);
    }
    // Sample while the destination is stalled and while it catches up.
    let mut gauge_max = 0;
    let mut queued_max = 0;
    let deadline = started + Duration::from_secs(60);
    while !done.load(Ordering::Acquire) && Instant::now() < deadline && !reader.is_finished() {
        gauge_max = gauge_max.max(shared.gauges().inbox_bytes);
        // Independent of the gauge: frames waiting in the inbox, by count.
        queued_max = queued_max.max(shared.inboxes[dest].len());
        std::thread::sleep(Duration::from_micros(200));
    }
    let took = started.elapsed();
    let read_all = reader.join().is_ok() && done.load(Ordering::Acquire);
    eprintln!(
        "{FRAMES} frames of {FRAME_BYTES} bytes through a stalled worker's inbox (inbox_bytes_max {INBOX_BYTES_MAX}): \
         gauge max {gauge_max} bytes, at most {queued_max} messages queued (≈ {} bytes); all read in {took:?}: {read_all}",
        queued_max * FRAME_COUNTED
    );

    assert!(read_all, "the subscriber must receive all {FRAMES} frames, in order, none lost");
    assert!(
        queued_max * FRAME_COUNTED <= INBOX_BYTES_MAX + FRAME_COUNTED,
        "{queued_max} frames ({} bytes) waited in the inbox; inbox_bytes_max is {INBOX_BYTES_MAX}",
        queued_max * FRAME_COUNTED
    );
    assert!(
        gauge_max <= INBOX_BYTES_MAX,
        "the inbox-bytes gauge reached {gauge_max}; inbox_bytes_max is {INBOX_BYTES_MAX}"
    );
    assert!(
        gauge_max > INBOX_BYTES_MAX - FRAME_COUNTED,
        "the stalled inbox should have filled to its limit (gauge max {gauge_max}): the test did not back it up"
    );
    assert_eq!(shared.gauges().inbox_bytes, 0, "nothing is counted once everything was delivered");

    // The gauge is exported.
    let json = metrics_json(addr);
    assert_eq!(json["inbox_bytes"], json!(0), "inbox_bytes in /metrics.json: {json}");
    let (_, text) = http_get(addr, "/metrics");
    assert!(
        http_body(&text).lines().any(|line| line == "volley_inbox_bytes 0"),
        "volley_inbox_bytes in /metrics:\n{text}"
    );
}
