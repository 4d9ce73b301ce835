//! The latency scenario: fixed-rate stamped live frames to many browsers,
//! next to the plain TCP relay fanning the same records out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::browsers::{Action, Fleet};
use crate::connector::DatasetSpec;
use crate::scenario::{ScenarioResult, READY_TIMEOUT};
use crate::{hist, relay};

use super::fleet::{group_count, merge, plan_groups};
use super::{latency_record_bytes, Context, LATENCY_FRAME_BYTES_DEFAULT, LATENCY_RATE_DEFAULT};

/// Fixed-rate stamped live frames → 100 browsers; latency from the scheduled
/// send time. First, on the same machine before the gateway run, its
/// baseline: a plain TCP relay fanning the same records out to as many
/// readers on as many epoll threads ([`relay::relay_fanout_latency`]).
pub fn latency(ctx: &Context) -> Result<ScenarioResult, String> {
    let duration = ctx.options.duration_seconds.unwrap_or(10);
    let rate = ctx.options.rate_per_second.unwrap_or(LATENCY_RATE_DEFAULT);
    let browsers = ctx.options.browsers.unwrap_or(100);
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(LATENCY_FRAME_BYTES_DEFAULT).max(16);
    let frames = rate * duration;
    let record_bytes = latency_record_bytes(frame_bytes);
    let reader_threads = group_count(browsers);
    let relaying = ctx.progress("latency", move || {
        format!("baseline: plain TCP relay → {browsers} readers on {reader_threads} threads at {rate}/s")
    });
    let relay_fanout =
        relay::relay_fanout_latency(rate, record_bytes, Duration::from_secs(duration), browsers, reader_threads);
    drop(relaying);
    let dataset = format!("latency-{}", crate::wire::now_nanos());
    let connector = ctx.connector(vec![DatasetSpec {
        name: dataset.clone(),
        live: true,
        frame_bytes,
        frames,
        rate_per_second: Some(rate),
    }])?;
    let (specs, processes) = plan_groups(ctx, browsers, Action::Subscribe { dataset }, true, duration + 120)?;
    let fleet = Fleet::start(specs, processes)?;
    fleet.wait_ready(READY_TIMEOUT)?;
    let stats = connector.stats.clone();
    let progress = ctx.progress("latency", move || {
        format!("{} of {frames} frames sent at {rate}/s", stats.frames_sent.load(Ordering::Relaxed))
    });
    let cpu_before = ctx.gateway_cpu();
    connector.go();
    let groups = fleet.join()?;
    let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
    drop(progress);
    let mut errors: Vec<String> = connector.stop().err().into_iter().collect();
    // The gateway's own relay time (frame read → written to the socket), so
    // the readers' scheduling on a shared box is told apart from the
    // gateway's work. A gateway the bench started holds this run's frames
    // only; one given with --gateway also what it relayed before.
    let gateway_relay = crate::wire::http_get(ctx.addr, "/metrics.json")
        .map_err(|e| e.to_string())
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).map_err(|e| e.to_string()))
        .map(|metrics| metrics["histograms"]["relay_latency_us"].clone())
        .map_err(|e| errors.push(format!("the gateway's /metrics.json: {e}")))
        .ok();
    let relay_fanout = relay_fanout.map_err(|e| errors.push(format!("relay fan-out baseline: {e}"))).ok();
    let m = merge(groups)?;
    errors.extend(m.errors.iter().cloned());
    let h = &m.latency_scheduled;
    let p50_us = h.value_at_quantile(0.5) as f64 / 1e3;
    let relay_us = |q: f64| relay_fanout.as_ref().map(|r| r.value_at_quantile(q) as f64 / 1e3);
    let mut histograms = std::collections::BTreeMap::new();
    histograms.insert("latency_from_scheduled".into(), hist::record_json(h, "ns"));
    histograms.insert("latency_from_actual_send".into(), hist::record_json(&m.latency_sent, "ns"));
    if let Some(r) = &relay_fanout {
        histograms.insert("relay_fanout_latency".into(), hist::record_json(r, "ns"));
    }
    Ok(ScenarioResult {
        headline: json!({"name": "latency p50 (from scheduled send)", "value": p50_us, "unit": "µs",
            "goal": "p50 ≤ 80 µs, p99 ≤ 1 ms at 100 browsers × 10k frames/s"}),
        baseline_ratio: relay_fanout
            .as_ref()
            .map(|r| h.value_at_quantile(0.5) as f64 / (r.value_at_quantile(0.5) as f64).max(1.0)),
        baseline_ratio_meaning: "gateway p50 / relay fan-out p50: plain TCP relay fanning out to the same number of \
            readers at the same rate, measured in the same run (same record size, as many epoll reader threads as \
            browser groups); lower is better"
            .into(),
        figures: json!({
            "browsers": browsers, "rate_per_s": rate, "frame_bytes": frame_bytes, "frames_sent": frames,
            "deliveries_expected": frames * browsers as u64, "deliveries": m.frames,
            "p50_us": p50_us, "p90_us": h.value_at_quantile(0.9) as f64 / 1e3,
            "p99_us": h.value_at_quantile(0.99) as f64 / 1e3, "p99_9_us": h.value_at_quantile(0.999) as f64 / 1e3,
            "max_us": h.max() as f64 / 1e3,
            "gaps": m.gaps, "skipped_frames": m.skipped, "completed_browsers": m.completed,
            "browser_processes": processes, "gateway_cpu_seconds": cpu,
            "relay_fanout_p50_us": relay_us(0.5), "relay_fanout_p99_us": relay_us(0.99),
            "relay_fanout_record_bytes": record_bytes, "relay_fanout_reader_threads": reader_threads,
            "gateway_relay_p50_us": gateway_relay.as_ref().map(|h| h["p50"].clone()),
            "gateway_relay_p99_us": gateway_relay.as_ref().map(|h| h["p99"].clone()),
            "gateway_relay_count": gateway_relay.as_ref().map(|h| h["count"].clone()),
        }),
        histograms,
        errors,
        notes: vec![
            "open loop: frame i is due at t0 + i/rate; latency = receive time − scheduled time (coordinated omission avoided); latency_from_actual_send excludes the sender's own timer lateness. Clock: CLOCK_REALTIME nanos, same host".into(),
            "gateway_relay_*: the gateway's own histogram (/metrics.json relay_latency_us): a frame's read from the connector's socket to its write to each browser's socket completing, µs; the part of the latency that is the gateway's work".into(),
            "relay_fanout_latency, measured just before the gateway run: the same open-loop sender (records of frame + level-2 + WebSocket header bytes) into a plain TCP relay, one thread doing a blocking read and a write_all (TCP_NODELAY) of each read to every reader in turn, read by as many readers on as many epoll threads as the browsers here; the baseline's relay_latency_ns is the same relay with one reader".into(),
        ],
        ..Default::default()
    })
}
