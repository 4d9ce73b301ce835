//! What a scenario is given and what it gives back: the scenario names,
//! the command line's knobs, the result every record is written from, and
//! the constants the scenarios and their child processes share.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// The hidden subcommand a browser child process runs.
pub const WORKER_SUBCOMMAND: &str = "bench-worker";

/// How long to wait for things that should be quick.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// B browsers each send one query for the same dataset at once through
    /// one connector (shared upstream), beside a plain TCP relay fanning out
    /// the same bytes to as many readers.
    QueryFanout,
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
            Scenario::QueryFanout => "query-fanout",
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
    /// Bytes of the dataset each browser queries (`query-fanout`).
    pub size_bytes: Option<u64>,
    /// Frames per second.
    pub rate_per_second: Option<u64>,
    /// The gateway's pid when known (RSS and CPU time are read from /proc).
    pub gateway_pid: Option<u32>,
    /// Baseline figures already measured in this invocation (else measured now).
    pub baseline: Option<Value>,
    /// Print a progress line on stderr.
    pub progress: bool,
}

/// What a scenario produced (written by [`crate::record::write`]).
#[derive(Debug, Clone, Default)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// `{name, value, unit, goal}`.
    pub headline: Value,
    /// Every other figure.
    pub figures: Value,
    /// Histograms by name, each from [`crate::hist::record_json`].
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
