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
//!   the harness's own capacity (the relay's latency and the harness each in
//!   a file of their own).
//! - [`scenarios`]: throughput, fanout, latency, small-frames, idle,
//!   query-storm, baseline → a [`ScenarioResult`]; a file per scenario,
//!   plus the browser groups' planning and merging (`fleet`) and the
//!   progress line.
//! - [`source`]: not the gateway: the connector's source → IPC path (CSV,
//!   Parquet, PostgreSQL) against pyarrow doing the same job; the one
//!   module that links the connector (`volley-connector`), never the engine.
//!   Its files: the run, the generated data, the timed passes, the pyarrow
//!   side and the record of each source.
//! - [`hist`]: HDR helpers; [`record`]: JSON + SVG records and the report.

// Production code: a panic here is a bug, so errors are returned or handled
// with a reason. Unit tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod browsers;
pub mod connector;
pub mod hist;
pub mod record;
pub mod relay;
pub mod scenarios;
pub mod source;
pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// The hidden subcommand a browser child process runs.
pub const WORKER_SUBCOMMAND: &str = "bench-worker";

/// Scenarios (the CLI maps its own enum onto this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One connector → one browser, bulk bytes.
    Throughput,
    /// One live stream → K browsers.
    Fanout,
    /// Fixed-rate stamped frames → 100 browsers, HDR latency.
    Latency,
    /// 1 KiB frames, one stream, frames/s.
    SmallFrames,
    /// K idle sessions, gateway RSS per session.
    Idle,
    /// B browsers × Q queries against M connectors.
    QueryStorm,
    /// The machine's limits only.
    Baseline,
}

impl Scenario {
    /// Name used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Fanout => "fanout",
            Scenario::Latency => "latency",
            Scenario::SmallFrames => "small-frames",
            Scenario::Idle => "idle",
            Scenario::QueryStorm => "query-storm",
            Scenario::Baseline => "baseline",
        }
    }
}

/// Knobs from the command line; `None` means the scenario's default.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seconds (scales the amount of data, see each scenario).
    pub duration_seconds: Option<u64>,
    /// Simulated connectors.
    pub connectors: Option<usize>,
    /// Simulated browsers.
    pub browsers: Option<usize>,
    /// Payload bytes per frame.
    pub frame_bytes: Option<usize>,
    /// Frames per second.
    pub rate_per_second: Option<u64>,
    /// The gateway's pid when known (RSS and CPU time are read from /proc).
    pub gateway_pid: Option<u32>,
    /// Baseline figures already measured in this invocation (else measured now).
    pub baseline: Option<Value>,
    /// Print a progress line on stderr.
    pub progress: bool,
}

/// What a scenario produced (written by [`record::write`]).
#[derive(Debug, Clone, Default)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// `{name, value, unit, goal}`.
    pub headline: Value,
    /// Every other figure.
    pub figures: Value,
    /// Histograms by name, each from [`hist::record_json`].
    pub histograms: BTreeMap<String, Value>,
    /// Baseline figures of this invocation.
    pub baseline: Value,
    /// Headline relative to the baseline (see `baseline_ratio_meaning`).
    pub baseline_ratio: Option<f64>,
    /// How the ratio is computed.
    pub baseline_ratio_meaning: String,
    /// The same scenario with the gateway's metrics disabled (headline + figures).
    pub metrics_off: Option<Value>,
    /// How the gateway was run.
    pub gateway: Value,
    /// Errors seen (a run with errors still records what it measured).
    pub errors: Vec<String>,
    /// Notes for the reader.
    pub notes: Vec<String>,
}

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

/// Reads `VmRSS` of `pid`, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The soft open-file limit of `pid` (`Max open files` in `/proc/<pid>/limits`).
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// User + system CPU time of `pid` (all threads), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// How long to wait for things that should be quick.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A u128 (nanoseconds, products of rates) as u64, saturating: the bench's
/// schedule values never approach 2^64, and saturating is the honest
/// answer if they did.
pub(crate) fn sat_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}
