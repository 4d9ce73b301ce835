//! Flow control, not buffering / PROTOCOL.md §5.2: a stalled browser
//! slows only its own stream; memory stays within the configured ring
//! budgets; a slow live subscriber is skipped (with a `gap`) or closed (4002).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use volley_engine::config::SlowReaderPolicy;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_testkit::browser::{stalled_browser, Browser, Received};
use volley_testkit::engine::{config, max_sampler, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, Behaviour, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::http::metrics_json;
use volley_testkit::ipc::{golden, ipc_messages, synthetic_frames, PRIMITIVE};
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

/// Samples `ring_bytes` every millisecond until stopped; returns the maximum.
fn ring_sampler(gateway: &volley_engine::Gateway) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    max_sampler(gateway, volley_engine::Shared::ring_bytes)
}

#[test]
fn a_stalled_query_browser_does_not_slow_another_stream_on_the_same_connector() {
    const FRAME: usize = 256 * 1024;
    const FRAMES: usize = 256; // 64 MiB per stream
    let mut config = config();
    config.limits.credit_bytes = 1 << 20;
    config.rings.session_bytes_max = 4 << 20;
    let gateway = start(config.clone());
    let addr = gateway.local_addr();
    let data = synthetic_frames(FRAMES, FRAME);
    let connector = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::query("big_a", data.clone()),
            DatasetSpec::query("big_b", data.clone()),
        ]),
    );
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["*"]);
    let (stop, sampler) = ring_sampler(&gateway);

    let mut slow = stalled_browser(addr, &token);
    slow.send(json!({"action": "query", "dataset": "big_a", "query_id": "slow"}));
    // Let the stalled stream fill everything it can before the fast one starts.
    std::thread::sleep(Duration::from_millis(300));
    let mut fast = Browser::connect(addr, &token, true);
    let began = Instant::now();
    fast.send(json!({"action": "query", "dataset": "big_b", "query_id": "fast"}));
    let result = fast.collect("fast", Duration::from_secs(30));
    let fast_time = began.elapsed();
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_eq!(result.payloads.len(), FRAMES);
    for (i, (h, p)) in result.headers.iter().zip(&result.payloads).enumerate() {
        assert_eq!(h.sequence, i as u64);
        assert!(*p == data[i].1, "fast frame {i} differs");
    }
    let slow_request = connector.commands("do_get").iter().find(|c| c["ticket"] == "big_a").expect("do_get big_a")
        ["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned();
    let slow_sent = connector.sent_bytes.lock().expect("lock")[&slow_request];
    let max_ring = {
        stop.store(true, Ordering::Release);
        sampler.join().expect("sampler")
    };
    let metrics_ring = metrics_json(addr)["ring_bytes"].as_u64().expect("ring_bytes");
    eprintln!(
        "fast stream: 64 MiB in {fast_time:?}; stalled stream got {} KiB upstream; max ring_bytes {} KiB; /metrics.json ring_bytes {} KiB",
        slow_sent / 1024,
        max_ring / 1024,
        metrics_ring / 1024
    );
    assert!(slow_sent < 24 << 20, "the stalled stream kept pulling data: {slow_sent} bytes");
    // Each session's ring holds at most its credit plus one frame; the
    // configured per-session budget bounds both sessions together.
    let bound = 2 * config.rings.session_bytes_max;
    assert!(max_ring <= bound, "ring_bytes peaked at {max_ring}, over {bound}");
    assert!(metrics_ring <= bound as u64);

    // The stalled browser was only slowed, never starved of correctness.
    let result = slow.collect("slow", Duration::from_secs(30));
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_eq!(result.payloads.len(), FRAMES);
    assert!(result.payloads.iter().zip(&data).all(|(p, (_, d))| p == d), "slow stream bytes differ");
}

/// Live stream with a fast and a stalled subscriber. The test paces the
/// connector on the fast reader (at most `WINDOW` frames ahead) so only the
/// stalled one can fall behind its ring.
struct LiveRig {
    gateway: volley_engine::Gateway,
    connector: ConnectorHandle,
    fast_count: Arc<AtomicUsize>,
    fast: std::thread::JoinHandle<Vec<Received>>,
    slow: Browser,
    frames: Vec<(FrameKind, bytes::Bytes)>,
    sent: usize,
}

const LIVE_FRAME: usize = 64 * 1024;
const WINDOW: usize = 8;

impl LiveRig {
    fn new(policy: SlowReaderPolicy, total_frames: usize) -> LiveRig {
        let mut config = config();
        config.rings.session_bytes_max = 2 << 20;
        config.rings.slow_reader_policy = policy;
        let gateway = start(config);
        let addr = gateway.local_addr();
        let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
        wait_connectors(&gateway, 1);
        let token = session_token(TENANT, &["ticker"]);
        let mut slow = stalled_browser(addr, &token);
        slow.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "slow"}));
        let mut fast = Browser::connect(addr, &token, true);
        fast.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "fast"}));
        let fast_count = Arc::new(AtomicUsize::new(0));
        let count = fast_count.clone();
        let fast = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut frames = 0;
            while frames < total_frames {
                match fast.next(Duration::from_secs(20)) {
                    Some(r @ Received::Binary(_)) => {
                        frames += 1;
                        count.store(frames, Ordering::Release);
                        seen.push(r);
                    }
                    Some(Received::Close(code)) => panic!("fast subscriber closed: {code:?}"),
                    Some(other) => seen.push(other),
                    None => panic!("fast subscriber starved after {frames} frames"),
                }
            }
            seen
        });
        let mut frames = vec![ipc_messages(&golden(PRIMITIVE))[0].clone()];
        frames.extend(synthetic_frames(total_frames - 1, LIVE_FRAME));
        LiveRig { gateway, connector, fast_count, fast, slow, frames, sent: 0 }
    }

    /// Sends frames up to `upto`, never more than WINDOW ahead of the fast reader.
    fn send_until(&mut self, upto: usize) {
        while self.sent < upto {
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.sent > self.fast_count.load(Ordering::Acquire) + WINDOW {
                assert!(
                    Instant::now() < deadline,
                    "fast subscriber stuck at {}",
                    self.fast_count.load(Ordering::Acquire)
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            let (kind, body) = self.frames[self.sent].clone();
            self.connector.live_frame("ticker", kind, body);
            self.sent += 1;
        }
    }

    fn wait_skipped(&self) -> u64 {
        let shared = self.gateway.shared().clone();
        let mut skipped = 0;
        wait_until(Duration::from_secs(4), || {
            skipped = shared.metrics.merged().frames_skipped;
            skipped > 0
        });
        skipped
    }

    fn check_fast(fast: Vec<Received>, frames: &[(FrameKind, bytes::Bytes)]) {
        let mut n = 0;
        for r in fast {
            match r {
                Received::Binary(data) => {
                    let h = FrameHeader::decode(&data).expect("header");
                    assert_eq!(h.sequence, n as u64, "fast subscriber: contiguous");
                    assert!(data.slice(16..) == frames[n].1, "fast frame {n} differs");
                    n += 1;
                }
                Received::Json(v) => {
                    assert!(v["type"] == "stream_start" || v["type"] == "flight_info", "fast subscriber got {v}")
                }
                Received::Close(code) => panic!("fast closed {code:?}"),
            }
        }
        assert_eq!(n, frames.len());
    }
}

#[test]
fn a_slow_live_subscriber_skips_to_the_next_batch_with_a_gap_while_the_fast_one_gets_everything() {
    const TOTAL: usize = 600;
    let mut rig = LiveRig::new(SlowReaderPolicy::Skip, TOTAL);
    let (stop, sampler) = ring_sampler(&rig.gateway);
    // ~25 MiB: far more than the stalled socket's kernel buffers plus its 2 MiB ring.
    rig.send_until(400);
    let skipped = rig.wait_skipped();
    assert!(skipped > 0, "the stalled subscriber never fell behind");
    // Now the slow one reads; the stream keeps going.
    let mut slow = std::mem::replace(
        &mut rig.slow,
        Browser::connect(rig.gateway.local_addr(), &session_token(TENANT, &["*"]), true),
    );
    let slow_frames = Arc::new(AtomicU64::new(0));
    let last_seq = slow_frames.clone();
    let slow_progress = slow_frames.clone();
    let slow_reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            match slow.next(Duration::from_secs(10)) {
                Some(Received::Binary(data)) => {
                    let h = FrameHeader::decode(&data).expect("header");
                    last_seq.store(h.sequence, Ordering::Release);
                    let done = h.sequence == TOTAL as u64 - 1;
                    seen.push(Received::Binary(data));
                    if done {
                        return seen;
                    }
                }
                Some(Received::Close(code)) => panic!("slow subscriber closed {code:?} under the skip policy"),
                Some(other) => seen.push(other),
                None => return seen,
            }
        }
    });
    // The rest of the stream, each frame once the reading slow subscriber is
    // within reach (at most 2 s of waiting): on a loaded machine it could
    // otherwise still be behind when the last frames go by, and skip them.
    while rig.sent < TOTAL {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && slow_progress.load(Ordering::Acquire) + 2 * (WINDOW as u64) < (rig.sent as u64)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        rig.send_until(rig.sent + 1);
    }
    let fast = rig.fast.join().expect("fast reader");
    LiveRig::check_fast(fast, &rig.frames);
    let slow = slow_reader.join().expect("slow reader");
    let max_ring = {
        stop.store(true, Ordering::Release);
        sampler.join().expect("sampler")
    };

    // Slow: frames 0..k contiguous, one gap, then next_sequence.. contiguous to the end.
    let mut expected_seq = 0u64;
    let mut gaps = Vec::new();
    let mut pending_gap: Option<serde_json::Value> = None;
    for r in slow {
        match r {
            Received::Binary(data) => {
                let h = FrameHeader::decode(&data).expect("header");
                if let Some(gap) = pending_gap.take() {
                    assert_eq!(gap["next_sequence"], h.sequence, "gap announces the next frame: {gap}");
                    assert_eq!(gap["skipped_frames"], h.sequence - expected_seq, "{gap}");
                    assert_eq!(h.kind, FrameKind::RecordBatch, "delivery resumes at a whole record batch");
                    expected_seq = h.sequence;
                }
                assert_eq!(h.sequence, expected_seq, "slow subscriber: no silent holes");
                assert!(data.slice(16..) == rig.frames[usize::try_from(h.sequence).expect("usize")].1);
                expected_seq += 1;
            }
            Received::Json(v) if v["type"] == "gap" => {
                assert_eq!(v["query_id"], "slow");
                gaps.push(v.clone());
                pending_gap = Some(v);
            }
            Received::Json(v) => assert!(v["type"] == "stream_start" || v["type"] == "flight_info", "{v}"),
            Received::Close(code) => panic!("closed {code:?}"),
        }
    }
    eprintln!("slow subscriber: gaps {gaps:?}; max ring_bytes {} KiB", max_ring / 1024);
    assert!(!gaps.is_empty(), "the slow subscriber got no gap message");
    assert_eq!(expected_seq, TOTAL as u64, "the slow subscriber caught up to the end after its gap");
    assert!(max_ring <= 2 * (2 << 20) + 2 * WINDOW * LIVE_FRAME, "ring_bytes peaked at {max_ring}");
}

#[test]
fn a_slow_live_subscriber_is_closed_with_4002_under_the_close_policy() {
    const TOTAL: usize = 450;
    let mut rig = LiveRig::new(SlowReaderPolicy::Close, TOTAL);
    rig.send_until(400);
    // The slow session is closing: its ring is frozen, so it cannot grow.
    let shared = rig.gateway.shared().clone();
    let before = shared.ring_bytes();
    rig.send_until(TOTAL);
    let fast = rig.fast.join().expect("fast reader");
    LiveRig::check_fast(fast, &rig.frames);
    let code = rig.slow.expect_close(Duration::from_secs(10));
    assert_eq!(code, Some(4002), "slow consumer close code");
    eprintln!("ring_bytes while the slow session was closing: {} KiB", before / 1024);
    assert!(before <= (2 << 20) + 2 * WINDOW * LIVE_FRAME + 4096);
    let mut healthy = Browser::connect(rig.gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    healthy.send(json!({"action": "list"}));
    assert_eq!(healthy.next_json(Duration::from_secs(5))["type"], "datasets");
}

/// PROTOCOL.md §4.2: a connector that never overdraws its credit does not
/// stall when a frame larger than the rest of its window follows a small one.
/// With 0.5 MiB outstanding and 3.9 MiB next (4 MiB of credit), it waits for
/// the 0.5 MiB back, which the gateway returns once the browser has been sent
/// everything queued for it, though it is less than a credit step (1 MiB).
#[test]
fn a_connector_that_never_overdraws_gets_its_credit_back_before_a_large_frame() {
    let mut config = config();
    config.timeouts.query_seconds = 10;
    let credit = usize::try_from(config.limits.credit_bytes).expect("credit fits usize");
    let gateway = start(config);
    let addr = gateway.local_addr();
    let mut frames = vec![ipc_messages(&golden(PRIMITIVE))[0].clone()];
    frames.extend(synthetic_frames(1, 512 * 1024));
    frames.extend(synthetic_frames(1, credit - 100 * 1024));
    frames.extend(synthetic_frames(2, 64 * 1024));
    let expected: Vec<u8> = frames.iter().flat_map(|(_, body)| body.iter().copied()).collect();
    let dataset = DatasetSpec { behaviour: Behaviour::StrictCredit, ..DatasetSpec::query("strict", frames) };
    let _connector = spawn_connector(addr, ConnectorSpec::level2(vec![dataset]));
    wait_connectors(&gateway, 1);

    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = browser.query("strict", "q1");
    let sizes: Vec<usize> = result.payloads.iter().map(|p| p.len()).collect();
    assert_eq!(result.error_code(), None, "the stream ended normally: {:?}; frames received: {sizes:?}", result.end);
    assert!(result.bytes() == expected, "every frame arrived, in order");
}
