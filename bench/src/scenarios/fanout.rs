//! The fan-out scenario: one live stream to K browsers.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::browsers::{Action, Fleet};
use crate::connector::DatasetSpec;
use crate::hist;
use crate::scenario::{ScenarioResult, READY_TIMEOUT};

use super::fleet::{merge, plan_groups};
use super::{gib, Context, MIB};

/// 1 connector live stream → K browsers, 1 MiB × duration each (default 16 MiB).
pub fn fanout(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(16);
    let per_browser = MIB * duration;
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(64 * 1024);
    let counts: Vec<usize> = match ctx.options.browsers {
        Some(k) => vec![k],
        None => vec![10, 100, 1000],
    };
    let mut runs = Vec::new();
    let mut histograms = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for k in &counts {
        let frames = (per_browser / frame_bytes as u64).max(1);
        let dataset = format!("fanout-{k}-{}", crate::wire::now_nanos());
        let connector = ctx.connector(vec![DatasetSpec {
            name: dataset.clone(),
            live: true,
            frame_bytes,
            frames,
            rate_per_second: ctx.options.rate_per_second,
        }])?;
        let (specs, processes) = plan_groups(ctx, *k, Action::Subscribe { dataset }, false, 600)?;
        let connecting = ctx.progress(&format!("fanout {k}"), || "connecting browsers".into());
        let fleet = Fleet::start(specs, processes)?;
        fleet.wait_ready(READY_TIMEOUT)?;
        drop(connecting);
        let stats = connector.stats.clone();
        let total = frames * frame_bytes as u64;
        let progress = ctx.progress(&format!("fanout {k}"), move || {
            format!("{} of {} sent upstream", gib(stats.bytes_sent.load(Ordering::Relaxed) as f64), gib(total as f64))
        });
        let cpu_before = ctx.gateway_cpu();
        connector.go();
        let groups = fleet.join()?;
        let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
        drop(progress);
        let started = connector.stats.live_started_nanos.load(Ordering::Acquire);
        let upstream_done = connector.stats.live_finished_nanos.load(Ordering::Acquire);
        if let Err(e) = connector.stop() {
            errors.push(e);
        }
        let m = merge(groups)?;
        let mut completion = hist::new_us();
        for end in &m.end_nanos {
            hist::record(&mut completion, end.saturating_sub(started) / 1000);
        }
        let end = m.end_nanos.iter().copied().max().unwrap_or(m.last_frame).max(m.last_frame);
        let seconds = end.saturating_sub(started) as f64 / 1e9;
        let delivered = m.bytes as f64;
        errors.extend(m.errors.iter().cloned());
        runs.push(json!({
            "browsers": k,
            "browser_processes": processes,
            "frame_bytes": frame_bytes,
            "frames_per_browser": frames,
            "offered_bytes_per_browser": total,
            "delivered_bytes": delivered,
            "delivered_fraction": delivered / (total as f64 * *k as f64).max(1.0),
            "seconds": seconds,
            "aggregate_gbps": delivered / seconds.max(1e-9) / 1e9,
            "upstream_seconds": upstream_done.saturating_sub(started) as f64 / 1e9,
            "completed_browsers": m.completed,
            "gaps": m.gaps,
            "skipped_frames": m.skipped,
            "completion_p50_s": completion.value_at_quantile(0.5) as f64 / 1e6,
            "completion_p99_s": completion.value_at_quantile(0.99) as f64 / 1e6,
            "gateway_cpu_seconds": cpu,
            "error_count": m.error_count,
        }));
        histograms.insert(format!("completion_{k}_browsers"), hist::record_json(&completion, "us"));
    }
    let last = runs.last().cloned().unwrap_or(Value::Null);
    let gbps = last["aggregate_gbps"].as_f64().unwrap_or(0.0);
    Ok(ScenarioResult {
        headline: json!({"name": format!("aggregate delivered, {} browsers", last["browsers"]), "value": gbps,
            "unit": "GB/s", "goal": "1000 browsers: ≥ 1.5 GB/s aggregate, p99 completion ≤ 12 s"}),
        baseline_ratio: ctx.baseline_f64("relay_64k_gbps").map(|r| gbps / r),
        baseline_ratio_meaning: "aggregate delivered GB/s / relay_64k_gbps (one relay stream)".into(),
        figures: json!({"runs": runs}),
        histograms,
        errors,
        notes: vec!["live subscription (no credit; slow readers skip to the next batch with a gap message, policy skip). Completion = connector's first frame → browser's LAST frame or stream_end; delivered bytes count what browsers actually received".into()],
        ..Default::default()
    })
}
