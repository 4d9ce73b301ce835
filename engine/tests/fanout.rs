//! Cross-worker delivery (ARCHITECTURE.md, "Who owns what") / PROTOCOL.md §5.2: one live stream fanned
//! out to 500 level-2 browsers spread over both workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_protocol::header::FrameKind;
use volley_testkit::browser::spawn_live_clients;
use volley_testkit::engine::{config, frames_out_per_worker, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::http::{http_body, http_get};
use volley_testkit::ipc::{golden, ipc_messages, synthetic_frames, PRIMITIVE};

#[test]
fn live_stream_fans_out_every_frame_in_order_to_500_browsers_on_both_workers() {
    const BROWSERS: usize = 500;
    const THREADS: usize = 10;
    let gateway = start(config());
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);

    let source = golden(PRIMITIVE);
    let schema = ipc_messages(&source)[0].clone();
    assert_eq!(schema.0, FrameKind::Schema);
    let mut frames = vec![schema];
    frames.extend(synthetic_frames(99, 1024));
    let frames = Arc::new(frames);

    let began = Instant::now();
    let clients = spawn_live_clients(addr, "ticker", vec![(BROWSERS / THREADS, true); THREADS], frames.clone());
    clients.wait_ready(Duration::from_secs(30));
    let subscribed = began.elapsed();
    let (status, text) = http_get(addr, "/health");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(http_body(&text)).expect("JSON");
    assert_eq!(health["sessions"], BROWSERS as u64, "{health}");
    assert_eq!(connector.commands("do_get").len(), 1, "one upstream stream for all subscribers");

    let sending = Instant::now();
    for (kind, body) in frames.iter() {
        connector.live_frame("ticker", *kind, body.clone());
    }
    assert_eq!(clients.join(), BROWSERS, "every browser got every frame");
    let delivered = sending.elapsed();

    let per_worker = frames_out_per_worker(&gateway, (BROWSERS * frames.len()) as u64);
    eprintln!("subscribed {BROWSERS} in {subscribed:?}; {} frames delivered to all in {delivered:?}; frames_out per worker {per_worker:?}", frames.len());
    assert_eq!(per_worker.len(), 2);
    assert!(per_worker.iter().all(|n| *n > 0), "sessions on both workers (SO_REUSEPORT spread): {per_worker:?}");
    assert!(per_worker.iter().sum::<u64>() >= (BROWSERS * frames.len()) as u64);
}
