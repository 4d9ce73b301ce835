//! volley-bench: the load-test harness. It never links the engine
//! (dependencies point one way: cli → {engine, connector, bench} → protocol); it talks to a
//! gateway over sockets, and the CLI decides which gateway (a child
//! `volley gateway` process it starts, or `--gateway URL`). It links the
//! connector for one scenario, `source`, which measures the connector's own
//! source → IPC code path without a gateway (bench → connector → protocol:
//! still one way).
//!
//! Modules and the path of one measurement through them:
//! - [`wire`]: the bench's fast WebSocket client side (zero-key masked
//!   frames built once, a streaming parser that never copies payloads).
//! - [`connector`]: simulated level-2 connectors: register, answer
//!   `do_get`, stream stamped frames within credit or on an open-loop schedule
//!   (the writer thread in its own file).
//! - [`browsers`]: simulated browsers, many sockets per epoll thread, in
//!   threads or child processes (`bench-worker`), plus idle sessions; a file
//!   each for the group, the fleet and the idle sessions.
//! - [`relay`]: the baseline: memcpy, loopback TCP, a plain TCP relay, and
//!   the harness's own capacity (the relay's latency, its bulk fan-out to
//!   many readers and the harness each in a file of their own).
//! - [`scenarios`]: throughput, fanout, latency, small-frames, idle,
//!   query-storm, query-fanout, baseline → a [`ScenarioResult`]; a file per scenario,
//!   plus the browser groups' planning and merging (`fleet`) and the
//!   progress line.
//! - [`source`]: not the gateway: the connector's source → IPC path (CSV,
//!   Parquet, PostgreSQL) against pyarrow doing the same job; the one
//!   module that links the connector (`volley-connector`), never the engine.
//!   Its files: the run, the generated data, the timed passes, the pyarrow
//!   side and the record of each source.
//! - [`hist`]: HDR helpers; [`record`]: JSON + SVG records and the report.
//! - Leaves every module above may use: [`scenario`] (what a scenario is
//!   given and gives back), [`procfs`] (a process's memory, open files and
//!   CPU time), [`units`] (saturating conversions, byte counts with units). `lib.rs` itself only
//!   runs a scenario, measures the baseline and prints the summary, so no
//!   module depends on it.

// Production code: a panic here is a bug, so errors are returned or handled
// with a reason. Unit tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod browsers;
pub mod connector;
pub mod hist;
pub mod procfs;
pub mod record;
pub mod relay;
pub mod scenario;
pub mod scenarios;
pub mod source;
pub mod units;
pub mod wire;

pub use procfs::{cpu_seconds, open_files_limit, rss_bytes};
pub use scenario::{Options, Scenario, ScenarioResult, READY_TIMEOUT, WORKER_SUBCOMMAND};

use std::time::Duration;

use serde_json::Value;

/// Runs `scenario` against the gateway at `gateway_url` (`ws://host:port`),
/// minting tokens with `secret`.
pub fn run_scenario(
    scenario: Scenario,
    options: &Options,
    gateway_url: &str,
    secret: &str,
) -> Result<ScenarioResult, String> {
    let addr = scenarios::resolve(gateway_url)?;
    let baseline = match &options.baseline {
        Some(b) => b.clone(),
        None => measure_baseline(options)?,
    };
    let ctx = scenarios::Context { addr, secret: secret.to_owned(), options: options.clone(), baseline };
    let mut result = match scenario {
        Scenario::Throughput => scenarios::throughput(&ctx),
        Scenario::Fanout => scenarios::fanout(&ctx),
        Scenario::Latency => scenarios::latency(&ctx),
        Scenario::SmallFrames => scenarios::small_frames(&ctx),
        Scenario::Idle => scenarios::idle(&ctx),
        Scenario::QueryStorm => scenarios::query_storm(&ctx),
        Scenario::QueryFanout => scenarios::query_fanout(&ctx),
        Scenario::Baseline => scenarios::baseline(&ctx),
    }?;
    result.scenario = scenario.name().to_owned();
    result.baseline = ctx.baseline.clone();
    Ok(result)
}

/// Measures the baseline figures (relay, loopback, memcpy, harness capacity).
pub fn measure_baseline(options: &Options) -> Result<Value, String> {
    let progress =
        options.progress.then(|| scenarios::Progress::start("baseline", || "relay, loopback, memcpy".into()));
    // 256 MiB per bulk run and 2 s of latency by default; shorter when --duration is shorter.
    let scale = options.duration_seconds.unwrap_or(4).clamp(1, 4);
    let bytes = (64u64 << 20) * scale;
    let rate = options.rate_per_second.unwrap_or(scenarios::LATENCY_RATE_DEFAULT);
    let latency = Duration::from_millis(500 * scale);
    let record_bytes = scenarios::latency_record_bytes(scenarios::LATENCY_FRAME_BYTES_DEFAULT);
    let value = relay::measure(bytes, rate, record_bytes, latency).map_err(|e| format!("baseline: {e}"));
    drop(progress);
    value
}

/// Prints a summary table of results on stdout.
pub fn print_summary(results: &[ScenarioResult]) {
    println!("\n{:<14} {:<34} {:>14} {:<8} {:>10}", "scenario", "headline", "value", "unit", "vs relay");
    for r in results {
        let h = &r.headline;
        println!(
            "{:<14} {:<34} {:>14} {:<8} {:>10}",
            r.scenario,
            h["name"].as_str().unwrap_or(""),
            record::fmt_num(h["value"].as_f64().unwrap_or(f64::NAN)),
            h["unit"].as_str().unwrap_or(""),
            r.baseline_ratio.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "—".into()),
        );
        for (name, hist) in &r.histograms {
            println!(
                "    {name:<30} p50 {} p90 {} p99 {} p99.9 {} max {} ({}, n={})",
                hist["p50"],
                hist["p90"],
                hist["p99"],
                hist["p99_9"],
                hist["max"],
                hist["unit"].as_str().unwrap_or(""),
                hist["count"]
            );
        }
        if let Some(off) = &r.metrics_off {
            println!("    metrics off: {}", off["headline"]);
        }
        for e in r.errors.iter().take(5) {
            println!("    error: {e}");
        }
    }
}
