//! `volley bench`: load-test scenarios.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Run a load-test scenario: simulated connectors and browsers against a
/// gateway, with HDR latency histograms; results are written as a record
/// (command, commit, machine, raw data) under --out.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum, value_name = "SCENARIO")]
    pub scenario: Scenario,
    /// Gateway to test, e.g. ws://127.0.0.1:8081.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// How long to measure, in seconds; default depends on the scenario.
    #[arg(long = "duration", value_name = "S")]
    pub duration_seconds: Option<u64>,
    /// Number of simulated connectors.
    #[arg(long, value_name = "M")]
    pub connectors: Option<usize>,
    /// Number of simulated browsers.
    #[arg(long, value_name = "K")]
    pub browsers: Option<usize>,
    /// Payload size of each binary frame, in bytes.
    #[arg(long = "frame-size", value_name = "B")]
    pub frame_bytes: Option<usize>,
    /// Frames per second each connector sends.
    #[arg(long = "rate", value_name = "R")]
    pub rate_per_second: Option<u64>,
    /// Directory for results.
    #[arg(long = "out", value_name = "DIR", default_value = "perf-results")]
    pub out_dir: PathBuf,
}

/// The scenarios `volley bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Bytes per second through one connector → one browser stream.
    Throughput,
    /// One live stream to many browsers.
    Fanout,
    /// Relay latency distribution at a fixed rate.
    Latency,
    /// Frames per second with small frames.
    SmallFrames,
    /// Memory per idle browser session.
    Idle,
    /// Many short queries at once.
    QueryStorm,
    /// Reference measurements on this machine (memcpy, loopback TCP, plain relay).
    Baseline,
    /// Summarise the results already under --out.
    Report,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`volley bench` is not built yet")
}
