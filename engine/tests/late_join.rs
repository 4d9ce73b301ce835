//! PROTOCOL.md §5.2 late joiners: a browser that subscribes to a running live
//! stream gets `stream_start`, then the schema frame (exactly once), then
//! frames with strictly increasing sequences — even while the connector keeps
//! sending schema/dictionary frames and joiners land on either worker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_testkit::browser::{Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::ipc::{golden, ipc_messages, PRIMITIVE};
use volley_testkit::tokens::{session_token, TENANT};

/// How far (in 256-byte frames, about 1 MiB) the producer may run ahead of the anchor.
const ANCHOR_WINDOW_FRAMES: u64 = 4096;

#[test]
fn late_joiners_get_the_schema_once_and_never_a_repeated_sequence() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ticker"]);
    // An anchor subscriber keeps the stream alive for the whole test.
    let mut anchor = Browser::connect(addr, &token, true);
    anchor.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "anchor"}));
    let schema = ipc_messages(&golden(PRIMITIVE))[0].1.clone();
    connector.live_frame("ticker", FrameKind::Schema, schema.clone());

    let stop = Arc::new(AtomicBool::new(false));
    // Frames the anchor has read: the producer stays within a window of it,
    // so the anchor's ring never fills (a subscriber without room for a
    // dictionary is closed with 4002, PROTOCOL.md §5.2) however slowly a
    // loaded machine runs this thread.
    let anchor_read = Arc::new(AtomicU64::new(0));
    let anchor_thread = {
        let (stop, read) = (stop.clone(), anchor_read.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match anchor.next(Duration::from_millis(50)) {
                    Some(Received::Close(code)) => panic!("anchor closed {code:?}"),
                    Some(Received::Binary(_)) => {
                        read.fetch_add(1, Ordering::Release);
                    }
                    _ => {}
                }
            }
        })
    };
    // The producer: a dictionary frame, then record batches, repeatedly; now and
    // then a fresh schema (which resets the dictionaries the gateway keeps).
    let producer = {
        let (stop, anchor_read) = (stop.clone(), anchor_read.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                if i > anchor_read.load(Ordering::Acquire) + ANCHOR_WINDOW_FRAMES {
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                let kind = match i % 64 {
                    0 => FrameKind::Schema,
                    1 | 17 | 33 => FrameKind::Dictionary,
                    _ => FrameKind::RecordBatch,
                };
                let body = if kind == FrameKind::Schema {
                    schema.clone()
                } else {
                    Bytes::from(vec![u8::try_from(i % 251).expect("byte"); 256])
                };
                connector.live_frame("ticker", kind, body);
                i += 1;
                if i.is_multiple_of(16) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            connector
        })
    };

    let deadline = Instant::now() + Duration::from_secs(4);
    let joiners: Vec<_> = (0..4)
        .map(|t| {
            let token = token.clone();
            std::thread::spawn(move || {
                let mut problems = Vec::new();
                let mut joins = 0;
                while Instant::now() < deadline {
                    let mut b = Browser::connect(addr, &token, true);
                    b.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "late"}));
                    let mut started = false;
                    let mut frames: Vec<FrameHeader> = Vec::new();
                    while frames.len() < 40 {
                        match b.next(Duration::from_secs(5)) {
                            Some(Received::Json(v)) if v["type"] == "stream_start" => started = true,
                            Some(Received::Json(v)) if v["type"] == "flight_info" => {}
                            Some(Received::Binary(data)) => {
                                assert!(started, "binary before stream_start");
                                frames.push(FrameHeader::decode(&data).expect("header"));
                            }
                            other => panic!("joiner got {other:?}"),
                        }
                    }
                    joins += 1;
                    if frames[0].kind != FrameKind::Schema {
                        problems.push(format!(
                            "thread {t} join {joins}: first frame is {:?} (seq {}), not the schema",
                            frames[0].kind, frames[0].sequence
                        ));
                    }
                    for w in frames.windows(2) {
                        if w[1].sequence <= w[0].sequence {
                            problems.push(format!(
                                "thread {t} join {joins}: sequence {} ({:?}) after {} ({:?})",
                                w[1].sequence, w[1].kind, w[0].sequence, w[0].kind
                            ));
                        }
                    }
                }
                (joins, problems)
            })
        })
        .collect();
    let mut joins = 0;
    let mut problems = Vec::new();
    for j in joiners {
        let (n, p) = j.join().expect("joiner");
        joins += n;
        problems.extend(p);
    }
    stop.store(true, Ordering::Release);
    let _connector = producer.join().expect("producer");
    anchor_thread.join().expect("anchor");
    eprintln!("{joins} late joins, {} problems", problems.len());
    assert!(problems.is_empty(), "{} of {joins} late joins broke the stream:\n{}", problems.len(), problems.join("\n"));
}

/// The gateway's relay latency is the time from reading a frame to writing
/// it to a session. A late joiner's replayed schema was read when the stream
/// began: counted from then, one browser joining 10 s late made the relay
/// look 10 s slow (p99 and max of the latency page), which an operator would
/// read as a slow gateway. Replays do not count.
#[test]
fn a_late_joiners_replayed_schema_does_not_count_as_relay_latency() {
    const JOIN_LATE: Duration = Duration::from_secs(10);
    let gateway = start(config());
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ticker"]);
    let mut first = Browser::connect(addr, &token, true);
    first.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "first"}));
    let schema = ipc_messages(&golden(PRIMITIVE))[0].1.clone();
    connector.live_frame("ticker", FrameKind::Schema, schema);
    let binary = |browser: &mut Browser| loop {
        match browser.next(Duration::from_secs(10)) {
            Some(Received::Binary(_)) => return,
            Some(Received::Json(_)) => {}
            other => panic!("expected a frame, got {other:?}"),
        }
    };
    binary(&mut first);
    std::thread::sleep(JOIN_LATE);

    let mut late = Browser::connect(addr, &token, true);
    late.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "late"}));
    binary(&mut late); // the replayed schema
    let batch = Bytes::from(vec![0u8; 256]);
    connector.live_frame("ticker", FrameKind::RecordBatch, batch);
    binary(&mut first);
    binary(&mut late);

    // Written frames: the first schema, the replay, the batch twice.
    let shared = gateway.shared().clone();
    assert!(
        volley_testkit::wait_until(Duration::from_secs(5), || shared.metrics.merged().frames_out >= 4),
        "the gateway's metrics never counted the four frames written"
    );
    let merged = shared.metrics.merged();
    let (p50, p99, max) = (
        merged.relay_latency_us.value_at_quantile(0.5),
        merged.relay_latency_us.value_at_quantile(0.99),
        merged.relay_latency_us.max(),
    );
    eprintln!(
        "relay latency after a browser joined {JOIN_LATE:?} late: p50 {p50} µs, p99 {p99} µs, max {max} µs over {} frames",
        merged.relay_latency_us.len()
    );
    assert!(
        Duration::from_micros(max) < JOIN_LATE / 10,
        "relay latency max {max} µs: the late joiner's replayed schema was timed from when it was first read"
    );
}

/// Reads frame headers (skipping JSON) until `n` frames arrived.
fn frames(browser: &mut Browser, n: usize) -> Vec<(FrameKind, u64)> {
    let mut out = Vec::new();
    while out.len() < n {
        match browser.next(Duration::from_secs(5)) {
            Some(Received::Binary(data)) => {
                let header = FrameHeader::decode(&data).expect("level-2 header");
                out.push((header.kind, header.sequence));
            }
            Some(Received::Json(_)) => {}
            other => panic!("expected frames, got {other:?} after {out:?}"),
        }
    }
    out
}

/// PROTOCOL.md §5.2: every subscriber starts with the stream's recent
/// history — a joiner gets the schema, the dictionaries and the newest record
/// batches within `limits.live_window_bytes`, in the order they were sent,
/// then what follows — and the connector is asked for no more history than
/// that (`do_get`'s `history_bytes`), so the first subscriber gets the same.
#[test]
fn joiners_get_the_newest_batches_within_the_live_window_in_sending_order() {
    let body = || Bytes::from(vec![5u8; 1000]);
    // A kept 1000-byte batch costs its 16-byte header, its body and at most
    // HISTORY_FRAME_OVERHEAD_BYTES - 16 of bookkeeping: three fit, four do not.
    let window = 3 * (1000 + usize::try_from(volley_protocol::tunnel::HISTORY_FRAME_OVERHEAD_BYTES).expect("small"));
    let mut config = config();
    config.limits.live_window_bytes = window;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ticker"]);
    let mut first = Browser::connect(addr, &token, true);
    first.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "first"}));
    let do_get = connector.wait_command("do_get", Duration::from_secs(5)).expect("do_get");
    assert_eq!(do_get["history_bytes"], window as u64, "the connector is asked for the window: {do_get}");
    let schema = ipc_messages(&golden(PRIMITIVE))[0].1.clone();
    connector.live_frame("ticker", FrameKind::Schema, schema);
    connector.live_frame("ticker", FrameKind::Dictionary, body());
    for _ in 0..4 {
        connector.live_frame("ticker", FrameKind::RecordBatch, body());
    }
    connector.live_frame("ticker", FrameKind::Dictionary, body());
    connector.live_frame("ticker", FrameKind::RecordBatch, body());
    // Sequences 0..=7: schema, dictionary, four batches, dictionary, batch.
    assert_eq!(frames(&mut first, 8).last(), Some(&(FrameKind::RecordBatch, 7)));

    let mut late = Browser::connect(addr, &token, true);
    late.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "late"}));
    let start = late.next_json(Duration::from_secs(5));
    assert_eq!(start["type"], "stream_start", "{start}");
    let replayed = frames(&mut late, 6);
    assert_eq!(
        replayed,
        [
            (FrameKind::Schema, 0),
            (FrameKind::Dictionary, 1),
            (FrameKind::RecordBatch, 4),
            (FrameKind::RecordBatch, 5),
            (FrameKind::Dictionary, 6),
            (FrameKind::RecordBatch, 7),
        ],
        "the newest three batches, each after the dictionaries sent before it"
    );
    connector.live_frame("ticker", FrameKind::RecordBatch, body());
    assert_eq!(frames(&mut late, 1), [(FrameKind::RecordBatch, 8)], "then what follows, once");
    assert_eq!(frames(&mut first, 1), [(FrameKind::RecordBatch, 8)]);
}
