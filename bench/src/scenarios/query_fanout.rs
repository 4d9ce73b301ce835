//! The query fan-out scenario (issue 18): B browsers each send one `query`
//! for the same dataset at once, through one connector tunnel. The gateway
//! shares identical queries (PROTOCOL.md §5.1), so the connector should send
//! the dataset about once. Measured beside a plain TCP relay fanning the
//! same bytes out to as many readers, in the same invocation.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::browsers::{Action, Fleet};
use crate::connector::DatasetSpec;
use crate::hist;
use crate::relay::relay_fanout;
use crate::scenario::{ScenarioResult, READY_TIMEOUT};

use super::fleet::{group_count, merge, plan_groups};
use super::{gib, Context, MIB};

/// Browsers when `--browsers` is not given.
pub const QUERY_FANOUT_BROWSERS_DEFAULT: usize = 1000;
/// Dataset bytes when `--size` is not given.
pub const QUERY_FANOUT_SIZE_DEFAULT: u64 = 4 * MIB;

/// Seconds a browser group may take before it gives up.
const GROUP_TIMEOUT_SECONDS: u64 = 600;

/// One goal: its value, its target, and whether it was met.
fn goal(value: Value, target: &str, met: bool) -> Value {
    json!({"value": value, "target": target, "met": met})
}

/// B browsers (default 1000) × one query each for one dataset of `--size`
/// bytes (default 4 MiB, `--frame-size` frames, default 64 KiB) through one
/// connector; every browser is connected before any query is sent, then all
/// send at once (gated groups). Then the relay fans the same bytes out to B
/// readers.
pub fn query_fanout(ctx: &Context) -> Result<ScenarioResult, String> {
    let browsers = ctx.options.browsers.unwrap_or(QUERY_FANOUT_BROWSERS_DEFAULT);
    let size = ctx.options.size_bytes.unwrap_or(QUERY_FANOUT_SIZE_DEFAULT).max(1);
    let frame_bytes = ctx.options.frame_bytes.unwrap_or(64 * 1024).max(16);
    let frames = size.div_ceil(frame_bytes as u64);
    let dataset_bytes = frames * frame_bytes as u64;
    let dataset = format!("query-fanout-{}", crate::wire::now_nanos());
    let connector = ctx.connector(vec![DatasetSpec::query(&dataset, frame_bytes, frames)])?;
    let (mut specs, processes) =
        plan_groups(ctx, browsers, Action::Query { dataset, queries: 1 }, false, GROUP_TIMEOUT_SECONDS)?;
    for spec in &mut specs {
        spec.gated = true;
    }
    let connecting = ctx.progress("query-fanout", move || format!("connecting {browsers} browsers"));
    let mut fleet = Fleet::start(specs, processes)?;
    fleet.wait_ready(READY_TIMEOUT)?;
    drop(connecting);
    let stats = connector.stats.clone();
    let progress = ctx.progress("query-fanout", move || {
        format!(
            "{} upstream streams, {} sent by the connector",
            stats.streams_opened.load(Ordering::Relaxed),
            gib(stats.bytes_sent.load(Ordering::Relaxed) as f64)
        )
    });
    let pid = ctx.options.gateway_pid;
    let rss_before = pid.and_then(crate::procfs::rss_bytes);
    let cpu_before = ctx.gateway_cpu();
    let machine = CpuSample::take();
    let go_nanos = crate::wire::now_nanos();
    fleet.go()?;
    let groups = fleet.join()?;
    let cpu = ctx.gateway_cpu().zip(cpu_before).map(|(a, b)| a - b);
    let machine = machine.since(cpu);
    let rss_after = pid.and_then(crate::procfs::rss_bytes);
    let rss_peak = pid.and_then(crate::procfs::rss_peak_bytes);
    drop(progress);
    let upstream = connector.stats.streams_opened.load(Ordering::Relaxed);
    let connector_bytes = connector.stats.bytes_sent.load(Ordering::Relaxed);
    let mut errors = Vec::new();
    errors.extend(connector.stop().err());
    let m = merge(groups)?;
    errors.extend(m.errors.iter().cloned());
    let served = m.queries_ok;
    let end = m.end_nanos.iter().copied().max().unwrap_or(go_nanos).max(m.last_frame);
    let seconds = end.saturating_sub(go_nanos) as f64 / 1e9;
    let gbps = m.bytes as f64 / seconds.max(1e-9) / 1e9;
    let completion_p99_s = m.query.value_at_quantile(0.99) as f64 / 1e6;

    // The relay, right after: the browser processes have exited.
    let readers = group_count(browsers);
    let relaying = ctx.progress("query-fanout relay", move || format!("{browsers} readers on {readers} threads"));
    let relay = relay_fanout(dataset_bytes, frame_bytes, browsers, readers);
    drop(relaying);
    let mut histograms = BTreeMap::new();
    histograms.insert("query_completion".into(), hist::record_json(&m.query, "us"));
    histograms.insert("time_to_first_byte".into(), hist::record_json(&m.ttfb, "us"));
    let (relay_figures, relay_gbps) = match relay {
        Ok(r) => {
            let relay_gbps = r.aggregate_bytes_per_second() / 1e9;
            histograms.insert("relay_completion".into(), hist::record_json(&r.completion_us, "us"));
            let figures = json!({
                "readers": r.readers, "reader_threads": readers, "bytes_per_reader": r.bytes_per_reader,
                "write_bytes": frame_bytes, "seconds": r.seconds, "aggregate_gbps": relay_gbps,
                "completion_p50_us": r.completion_us.value_at_quantile(0.5),
                "completion_p99_us": r.completion_us.value_at_quantile(0.99),
            });
            (figures, Some(relay_gbps))
        }
        Err(e) => {
            errors.push(format!("the relay comparison failed, so the run has no ratio: {e}"));
            (Value::Null, None)
        }
    };
    let ratio = relay_gbps.filter(|r| *r > 0.0).map(|r| gbps / r);
    let connector_ratio = connector_bytes as f64 / dataset_bytes as f64;
    let goals = json!({
        "served": goal(json!(served), &format!("{browsers} of {browsers}"), served == browsers as u64),
        "connector_bytes_over_dataset": goal(json!(connector_ratio), "≤ 2", connector_ratio <= 2.0),
        "aggregate_over_relay": goal(json!(ratio), "≥ 0.8", ratio.is_some_and(|r| r >= 0.8)),
        "completion_p99_s": goal(json!(completion_p99_s), "≤ 1", completion_p99_s <= 1.0),
    });
    Ok(ScenarioResult {
        headline: json!({"name": format!("aggregate delivered, {browsers} browsers × one {} query", size_text(dataset_bytes)),
            "value": gbps, "unit": "GB/s",
            "goal": "all served; connector bytes ≤ 2× dataset; aggregate ≥ 0.8× relay; completion p99 ≤ 1 s"}),
        baseline_ratio: ratio,
        baseline_ratio_meaning: "aggregate delivered GB/s / the plain TCP relay's aggregate GB/s fanning the same bytes out to as many readers, measured right after in this run (figures.relay)".into(),
        figures: json!({
            "browsers": browsers, "browser_processes": processes, "browser_groups": group_count(browsers),
            "connectors": 1, "dataset_bytes": dataset_bytes, "frame_bytes": frame_bytes, "frames": frames,
            "served": served, "completed": m.completed, "connected": m.browsers, "error_count": m.error_count,
            "upstream_streams": upstream, "connector_bytes_sent": connector_bytes,
            "connector_bytes_over_dataset": connector_ratio,
            "delivered_bytes": m.bytes, "expected_bytes": browsers as u64 * (dataset_bytes + frames * crate::wire::HEADER_BYTES as u64),
            "seconds": seconds, "aggregate_gbps": gbps,
            "completion_p50_us": m.query.value_at_quantile(0.5), "completion_p99_us": m.query.value_at_quantile(0.99),
            "ttfb_p50_us": m.ttfb.value_at_quantile(0.5), "ttfb_p99_us": m.ttfb.value_at_quantile(0.99),
            "gateway_cpu_seconds": cpu, "cpu_seconds_during_run": machine, "gateway_rss_before_bytes": rss_before,
            "gateway_rss_after_bytes": rss_after, "gateway_rss_peak_bytes": rss_peak,
            "relay": relay_figures,
            "goals": goals,
        }),
        histograms,
        errors,
        notes: vec![
            "every browser is connected before any sends its query; then all groups send at once (a gate). served = queries that ended with stream_end and no error; completion and TTFB are from each browser's own send; aggregate = delivered bytes (level-2 frame headers included) / (go → last browser's stream_end)".into(),
            "connector_bytes_sent counts the simulated connector's frame payloads; identical queries share one upstream stream while its log is complete (PROTOCOL.md §5.1), so upstream_streams is 1 unless a query arrives after the log dropped frames".into(),
            "cpu_seconds_during_run (go → every browser done): the bench process (connector, and browsers when they are threads), the browser processes (their whole life, connecting included: counted when they exit), the whole machine (/proc/stat), and what is left for other processes on it; capacity = cores × wall seconds".into(),
            "relay: one sender writes the dataset once in frame-sized writes, one relay thread writes each read to every reader socket in turn, readers on as many epoll threads as there are browser groups; time = first write → the last reader's last byte".into(),
        ],
        ..Default::default()
    })
}

/// CPU counters at the go, to say where the machine's time went during the run.
struct CpuSample {
    at: std::time::Instant,
    bench: Option<f64>,
    children: Option<f64>,
    machine: Option<f64>,
}

impl CpuSample {
    fn take() -> CpuSample {
        CpuSample {
            at: std::time::Instant::now(),
            bench: crate::procfs::cpu_seconds(std::process::id()),
            children: crate::procfs::children_cpu_seconds(),
            machine: crate::procfs::machine_busy_seconds(),
        }
    }

    /// CPU seconds since [`CpuSample::take`], with the gateway's `gateway` seconds.
    fn since(self, gateway: Option<f64>) -> Value {
        let now = CpuSample::take();
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        let bench = delta(now.bench, self.bench);
        let children = delta(now.children, self.children);
        let machine = delta(now.machine, self.machine);
        let ours = [gateway, bench, children].into_iter().sum::<Option<f64>>();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        json!({
            "wall": (now.at - self.at).as_secs_f64(), "capacity": (now.at - self.at).as_secs_f64() * cores as f64,
            "gateway": gateway, "bench_process": bench, "browser_processes": children, "machine_busy": machine,
            "other_processes": machine.zip(ours).map(|(m, o)| (m - o).max(0.0)),
        })
    }
}

/// `4 MiB`, `512 KiB` or `1000 B`: the dataset's size for the headline.
fn size_text(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}
