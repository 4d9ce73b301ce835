//! Zero-copy forwarding (ARCHITECTURE.md, "The path of one frame"): a connector's frame is built into one
//! `SharedFrame` (one payload allocation) and that same allocation reaches
//! every session on every worker, at both protocol levels.
//!
//! Alone in its test binary (its own process) because it reads the
//! process-wide `SHARED_FRAMES_BUILT` counter.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use volley_engine::SHARED_FRAMES_BUILT;
use volley_testkit::browser::spawn_live_clients;
use volley_testkit::engine::{config, frames_out_per_worker, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::ipc::{golden, ipc_messages, synthetic_frames, PRIMITIVE};

#[test]
fn one_shared_frame_per_connector_frame_reaches_sessions_on_both_workers_at_both_levels() {
    const FRAMES: usize = 40;
    let gateway = start(config());
    let addr = gateway.local_addr();
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]));
    wait_connectors(&gateway, 1);
    let source = golden(PRIMITIVE);
    let mut frames = vec![ipc_messages(&source)[0].clone()];
    frames.extend(synthetic_frames(FRAMES - 1, 4096));
    let frames = Arc::new(frames);

    // 32 sessions: SO_REUSEPORT hashes each connection to a worker, so all 32
    // on one worker has probability 2^-31; the per-worker check below proves it.
    let clients =
        spawn_live_clients(addr, "ticker", vec![(8, true), (8, false), (8, true), (8, false)], frames.clone());
    clients.wait_ready(Duration::from_secs(20));
    let built_before = SHARED_FRAMES_BUILT.load(Ordering::SeqCst);
    for (kind, body) in frames.iter() {
        connector.live_frame("ticker", *kind, body.clone());
    }
    assert_eq!(clients.join(), 32);
    let built = SHARED_FRAMES_BUILT.load(Ordering::SeqCst) - built_before;
    let per_worker = frames_out_per_worker(&gateway, (32 * FRAMES) as u64);
    eprintln!("{FRAMES} frames from the connector, {built} SharedFrames built, frames_out per worker {per_worker:?}");
    assert!(per_worker.iter().all(|n| *n > 0), "sessions on both workers: {per_worker:?}");
    assert_eq!(per_worker.iter().sum::<u64>(), (32 * FRAMES) as u64, "32 sessions × {FRAMES} frames written");
    assert_eq!(
        built, FRAMES as u64,
        "one SharedFrame (one payload allocation) per connector frame, not per session or per worker"
    );
}
