//! The scenarios of one query stream through one browser: throughput (bulk
//! bytes, against the plain TCP relay) and small frames (frames/s).

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::browsers::{Action, Fleet};
use crate::connector::DatasetSpec;
use crate::relay;
use crate::scenario::ScenarioResult;
use crate::source::median;

use super::fleet::{merge, plan_groups};
use super::{gib, Context, MIB};

/// One query stream of `frames` × `frame_bytes` through one browser.
fn one_stream(ctx: &Context, label: &str, frame_bytes: usize, frames: u64) -> Result<Value, String> {
    let dataset = format!("{label}-{}", crate::wire::now_nanos());
    let connector = ctx.connector(vec![DatasetSpec::query(&dataset, frame_bytes, frames)])?;
    let stats = connector.stats.clone();
    let total = frames * frame_bytes as u64;
    let _progress = ctx.progress(label, move || {
        let sent = stats.bytes_sent.load(Ordering::Relaxed) as f64;
        format!("{} of {} sent", gib(sent), gib(total as f64))
    });
    let cpu_before = ctx.gateway_cpu();
    let (specs, _) = plan_groups(ctx, 1, Action::Query { dataset, queries: 1 }, false, 600)?;
    let fleet = Fleet::start(specs, false)?;
    let groups = fleet.join()?;
    let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
    let credit_messages = connector.stats.credit_messages.load(Ordering::Relaxed);
    let conn_error = connector.stop().err();
    drop(_progress);
    let m = merge(groups)?;
    let seconds = m.query.max() as f64 / 1e6;
    let payload = frames as f64 * frame_bytes as f64;
    let mut errors = m.errors;
    errors.extend(conn_error);
    Ok(json!({
        "frame_bytes": frame_bytes,
        "frames": frames,
        "payload_bytes": payload,
        "received_frames": m.frames,
        "seconds": seconds,
        "gbps": payload / seconds.max(1e-9) / 1e9,
        "frames_per_s": frames as f64 / seconds.max(1e-9),
        "ttfb_us": m.ttfb.max(),
        "complete": m.completed == 1 && m.frames == frames,
        "gateway_cpu_seconds": cpu,
        "gateway_gb_per_cpu_second": cpu.map(|c| payload / 1e9 / c.max(1e-9)),
        "credit_messages": credit_messages,
        "errors": errors,
    }))
}

fn collect_errors(figures: &[&Value]) -> Vec<String> {
    figures
        .iter()
        .flat_map(|f| f["errors"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

/// 1 connector → 1 browser query stream, 64 MiB × duration (default 256 MiB)
/// in 64 KiB and in 1 MiB frames.
pub fn throughput(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(4);
    let total = 64 * MIB * duration;
    let sizes: Vec<usize> = match ctx.options.frame_bytes {
        Some(b) => vec![b],
        None => vec![64 * 1024, 1 << 20],
    };
    let mut runs = Vec::new();
    let mut figures = json!({"bytes_per_run": total, "repetitions": THROUGHPUT_REPETITIONS});
    // (GB/s, ratio to the relay) of the first frame size.
    let mut headline = None;
    for size in &sizes {
        // Relay and gateway alternate, REPETITIONS times each: on a shared
        // 2-core machine one 0.1 s run of either varies by ±30 %, so the
        // ratio of medians measured side by side is the figure to trust.
        let (mut gateway, mut relay) = (Vec::new(), Vec::new());
        for _ in 0..THROUGHPUT_REPETITIONS {
            relay.push(relay::relay_gbps(total, *size).map_err(|e| format!("relay: {e}"))?);
            let run = one_stream(ctx, &format!("throughput-{}k", size / 1024), *size, (total / *size as u64).max(1))?;
            gateway.push(run["gbps"].as_f64().unwrap_or(0.0));
            runs.push(run);
        }
        let (gateway, relay) = (median(&gateway), median(&relay));
        let ratio = gateway / relay.max(1e-9);
        let key = format!("{}k_frames", size / 1024);
        figures[format!("gbps_{key}")] = json!(gateway);
        figures[format!("relay_gbps_{key}")] = json!(relay);
        figures[format!("ratio_{key}")] = json!(ratio);
        headline.get_or_insert((gateway, ratio));
    }
    figures["runs"] = json!(runs);
    let (gbps, ratio) = headline.unwrap_or_default();
    Ok(ScenarioResult {
        headline: json!({"name": format!("throughput, {} KiB frames (median of {THROUGHPUT_REPETITIONS})", sizes[0] / 1024),
                         "value": gbps, "unit": "GB/s", "goal": "≥ 0.9× TCP relay"}),
        baseline_ratio: Some(ratio),
        baseline_ratio_meaning: format!(
            "median gateway GB/s / median plain TCP relay GB/s (same bytes, same frame size), {THROUGHPUT_REPETITIONS} \
             runs of each, alternated"
        ),
        errors: collect_errors(&runs.iter().collect::<Vec<_>>()),
        figures,
        notes: vec!["query stream (credit flow control), one level-2 browser; GB/s counts IPC payload bytes from query sent to stream_end".into()],
        ..Default::default()
    })
}

/// Runs of each side in the throughput scenario (relay and gateway alternated).
pub const THROUGHPUT_REPETITIONS: usize = 5;

/// 1 KiB frames, one query stream, frames/s.
pub fn small_frames(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(5);
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(1024);
    let frames = 200_000 * duration;
    let run = one_stream(ctx, "small-frames", frame_bytes, frames)?;
    let fps = run["frames_per_s"].as_f64().unwrap_or(0.0);
    let wire = (frame_bytes + 16 + 4) as f64;
    let relay_fps = ctx.baseline_f64("relay_64k_gbps").map(|g| g * 1e9 / wire);
    Ok(ScenarioResult {
        headline: json!({"name": format!("frames/s, {frame_bytes} B frames"), "value": fps, "unit": "frames/s",
            "goal": "≥ 800k frames/s at 1 KiB"}),
        baseline_ratio: relay_fps.map(|r| fps / r),
        baseline_ratio_meaning: "gateway frames/s / (relay_64k_gbps ÷ wire bytes per frame): the relay moving the same bytes in the same 64 KiB batched writes".into(),
        errors: collect_errors(&[&run]),
        figures: json!({"run": run, "relay_equivalent_frames_per_s": relay_fps}),
        notes: vec!["one query stream with credit; the connector writes frames in 64 KiB batches".into()],
        ..Default::default()
    })
}
