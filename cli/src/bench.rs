//! `volley bench`: load-test scenarios. The harness lives in `volley-bench`
//! (which never links the engine); this module only decides which gateway it
//! measures: by default a child `volley gateway` process started here on
//! 127.0.0.1 (its pid gives RSS and CPU time), or `--in-process`
//! (`volley_engine::start` in this process), or an external `--gateway URL`
//! with its `--secret`. `volley bench source` needs no gateway: it times
//! the connector's source → IPC path against pyarrow (`volley_bench::source`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use volley_bench::{Options, ScenarioResult};

/// Run a load-test scenario: simulated connectors and browsers against a
/// gateway, with HDR latency histograms; results are written as a record
/// (command, commit, machine, raw data) under --out.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum, value_name = "SCENARIO")]
    pub scenario: Scenario,
    /// Gateway to test, e.g. ws://127.0.0.1:8081 (needs --secret). Without
    /// it the bench starts its own gateway as a child process.
    #[arg(long, value_name = "URL", requires = "secret")]
    pub gateway: Option<String>,
    /// The gateway's `tableros_secret_key`, to mint session and connector tokens.
    #[arg(long, value_name = "SECRET", env = "VOLLEY_BENCH_SECRET")]
    pub secret: Option<String>,
    /// Pid of the --gateway process (idle reads its RSS; others its CPU time).
    #[arg(long, value_name = "PID", requires = "gateway")]
    pub gateway_pid: Option<u32>,
    /// Start the gateway inside this process (volley_engine::start) instead of
    /// as a child process. Idle RSS then includes the bench's own memory.
    #[arg(long, conflicts_with = "gateway")]
    pub in_process: bool,
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
    /// `query-fanout`: the dataset's size, e.g. 4MiB, 512KiB or 1000000
    /// [default: 4MiB].
    #[arg(long = "size", value_name = "BYTES", value_parser = volley_bench::units::parse_bytes)]
    pub size_bytes: Option<u64>,
    /// `source`: rows of generated data [default: 2000000].
    #[arg(long, value_name = "N")]
    pub rows: Option<u64>,
    /// Directory for results.
    #[arg(long = "out", value_name = "DIR", default_value = "perf-results")]
    pub out_dir: PathBuf,
    /// IO driver of the gateway the bench starts (`volley gateway
    /// --runtime`): auto, io_uring or epoll. `runtimes` runs both.
    #[arg(long, value_name = "auto|io_uring|epoll", conflicts_with = "gateway")]
    pub runtime: Option<String>,
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
    /// Many browsers send one query for the same dataset at once through
    /// one connector (shared upstream), beside a plain TCP relay fanning out
    /// the same bytes to as many readers.
    QueryFanout,
    /// Reference measurements on this machine (memcpy, loopback TCP, plain relay).
    Baseline,
    /// The connector's source → IPC path (CSV, Parquet, PostgreSQL; no
    /// network) against pyarrow doing the same on the same data.
    Source,
    /// Throughput (64 KiB and 1 MiB frames), fan-out to 100 browsers and
    /// small frames, each on io_uring and on epoll in this one invocation,
    /// alternated; records the epoll / io_uring ratios.
    Runtimes,
    /// Summarise the results already under --out.
    Report,
}

impl Scenario {
    fn harness(self) -> Option<volley_bench::Scenario> {
        use volley_bench::Scenario as S;
        Some(match self {
            Scenario::Throughput => S::Throughput,
            Scenario::Fanout => S::Fanout,
            Scenario::Latency => S::Latency,
            Scenario::SmallFrames => S::SmallFrames,
            Scenario::Idle => S::Idle,
            Scenario::QueryStorm => S::QueryStorm,
            Scenario::QueryFanout => S::QueryFanout,
            Scenario::Baseline => S::Baseline,
            Scenario::Report | Scenario::Source | Scenario::Runtimes => return None,
        })
    }
}

/// A gateway the bench started.
enum Started {
    Child(Child),
    #[cfg(target_os = "linux")]
    InProcess(volley_engine::Gateway),
}

struct Target {
    url: String,
    pid: Option<u32>,
    started: Option<Started>,
    how: serde_json::Value,
}

impl Drop for Target {
    fn drop(&mut self) {
        match self.started.take() {
            Some(Started::Child(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            #[cfg(target_os = "linux")]
            Some(Started::InProcess(gateway)) => gateway.shutdown(),
            None => {}
        }
    }
}

/// `limits.connections_per_ip_max` of the bench's child gateway.
pub const BENCH_CONNECTIONS_PER_IP_MAX: usize = 200_000;
/// `limits.sessions_per_tenant_max` of the bench's child gateway: every
/// bench browser is in one tenant, and `idle --browsers 100000` (the idle-memory record)
/// must not stop at the default cap of 50 000.
pub const BENCH_SESSIONS_PER_TENANT_MAX: usize = 200_000;

fn start_gateway(
    args: &BenchArgs,
    secret: &str,
    metrics_disabled: bool,
    runtime: Option<&str>,
) -> anyhow::Result<Target> {
    #[cfg(not(target_os = "linux"))]
    if args.in_process {
        bail!("--in-process needs the engine, which runs on Linux only (io_uring)");
    }
    #[cfg(target_os = "linux")]
    if args.in_process {
        let config = volley_engine::GatewayConfig {
            listen: Some("127.0.0.1:0".into()),
            tableros_secret_key: Some(volley_engine::config::Secrets::One(secret.into())),
            limits: volley_engine::config::LimitsConfig {
                connections_per_ip_max: BENCH_CONNECTIONS_PER_IP_MAX,
                sessions_per_tenant_max: BENCH_SESSIONS_PER_TENANT_MAX,
                ..Default::default()
            },
            runtime: match runtime {
                Some(name) => name.parse().map_err(anyhow::Error::msg)?,
                None => volley_engine::RuntimeChoice::Auto,
            },
            ..volley_engine::GatewayConfig::default()
        };
        let gateway =
            volley_engine::start(config, volley_engine::StartOptions { metrics_disabled, ..Default::default() })
                .context("starting the in-process gateway")?;
        return Ok(Target {
            url: format!("ws://{}", gateway.local_addr()),
            pid: Some(std::process::id()),
            how: serde_json::json!({"mode": "in-process", "metrics_disabled": metrics_disabled,
                                    "runtime": gateway.shared().runtime.name()}),
            started: Some(Started::InProcess(gateway)),
        });
    }
    let config = std::env::temp_dir().join(format!("volley-bench-{}.yaml", std::process::id()));
    // The bench's clients all come from loopback addresses and one tenant:
    // lift the per-IP and per-tenant caps (the gateway-wide
    // `connections_max`, 200 000, still applies).
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\ntableros_secret_key: \"{secret}\"\nlimits:\n  connections_per_ip_max: {BENCH_CONNECTIONS_PER_IP_MAX}\n  sessions_per_tenant_max: {BENCH_SESSIONS_PER_TENANT_MAX}\n"
        ),
    )
        .with_context(|| format!("writing {}", config.display()))?;
    let exe = std::env::current_exe().context("locating the volley executable")?;
    let mut command = Command::new(exe);
    command.arg("gateway").arg("--config").arg(&config);
    if metrics_disabled {
        command.arg("--metrics-disabled");
    }
    if let Some(runtime) = runtime {
        command.arg("--runtime").arg(runtime);
    }
    let mut child = command
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&config);
        })
        .context("starting `volley gateway`")?;
    let stdout = child.stdout.take().context("gateway stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The gateway has read its config once it listens (or has exited).
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("volley gateway listening on ") {
                    break addr.trim().trim_start_matches("http://").to_owned();
                }
            }
            _ => {
                let _ = child.kill();
                let _ = std::fs::remove_file(&config);
                bail!("the gateway child exited before listening");
            }
        }
    };
    let _ = std::fs::remove_file(&config);
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    Ok(Target {
        url: format!("ws://{addr}"),
        pid: Some(pid),
        how: serde_json::json!({"mode": "child process `volley gateway`", "pid": pid, "metrics_disabled": metrics_disabled,
                                "runtime": runtime.unwrap_or("auto"),
                                "config": "listen 127.0.0.1:0, defaults otherwise (workers = cores)"}),
        started: Some(Started::Child(child)),
    })
}

pub(crate) fn run_once(
    args: &BenchArgs,
    scenario: volley_bench::Scenario,
    options: &Options,
    secret: &str,
    metrics_disabled: bool,
    runtime: Option<&str>,
) -> anyhow::Result<ScenarioResult> {
    let target = match &args.gateway {
        Some(url) => Target {
            url: url.clone(),
            pid: args.gateway_pid,
            started: None,
            how: serde_json::json!({"mode": "external", "url": url}),
        },
        None => start_gateway(args, secret, metrics_disabled, runtime)?,
    };
    let options = Options { gateway_pid: target.pid, ..options.clone() };
    let mut result = volley_bench::run_scenario(scenario, &options, &target.url, secret)
        .map_err(|e| anyhow::anyhow!("{}: {e}", scenario.name()))?;
    result.gateway = target.how.clone();
    Ok(result)
}

/// `volley bench source`: one record per source measured.
fn run_source(args: &BenchArgs) -> anyhow::Result<()> {
    let options = volley_bench::source::SourceOptions {
        rows: args.rows.unwrap_or(volley_bench::source::ROWS_DEFAULT),
        progress: true,
    };
    let (results, skipped) = volley_bench::source::run(&options).map_err(anyhow::Error::msg)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut written = Vec::new();
    for result in &results {
        let (json, svg) = volley_bench::record::write(result, &args.out_dir, &command).map_err(anyhow::Error::msg)?;
        written.push(format!("{}, {}", json.display(), svg.display()));
    }
    let readme = volley_bench::record::report(&args.out_dir).map_err(anyhow::Error::msg)?;
    println!(
        "\n{:<16} {:>14} {:>14} {:>14} {:>10}",
        "source", "volley rows/s", "pyarrow rows/s", "1-thread rows/s", "ratio"
    );
    for result in &results {
        let figures = &result.figures;
        let rate = |v: &serde_json::Value| v.as_f64().map(volley_bench::record::fmt_num).unwrap_or_else(|| "—".into());
        println!(
            "{:<16} {:>14} {:>14} {:>14} {:>10}",
            result.scenario,
            rate(&figures["volley"]["rows_per_s"]),
            rate(&result.baseline["pyarrow"]["rows_per_s"]),
            rate(&result.baseline["pyarrow_single_thread"]["rows_per_s"]),
            result.baseline_ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into()),
        );
        for error in &result.errors {
            println!("    error: {error}");
        }
    }
    for line in &skipped {
        println!("{line}");
    }
    println!("\nwrote {}, {}", written.join(", "), readme.display());
    Ok(())
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == Scenario::Source {
        return run_source(&args);
    }
    let Some(scenario) = args.scenario.harness() else {
        let path = volley_bench::record::report(&args.out_dir).map_err(anyhow::Error::msg)?;
        println!("wrote {}", path.display());
        return Ok(());
    };
    // Every simulated browser is a socket here and, for a child gateway
    // (which inherits the limit), one there too.
    let sockets = u64::try_from(args.browsers.unwrap_or(10_000)).unwrap_or(u64::MAX);
    let nofile = crate::fdlimit::raise_nofile(sockets.saturating_add(4096)).soft;
    if nofile < sockets {
        eprintln!("warning: open-file limit {nofile} is below {sockets} browsers; raise it (ulimit -n) or run as root");
    }
    let secret = match (&args.gateway, &args.secret) {
        (Some(_), Some(secret)) => secret.clone(),
        (Some(_), None) => bail!("--gateway needs --secret (the gateway's tableros_secret_key) to mint tokens"),
        (None, Some(secret)) => secret.clone(),
        (None, None) => format!("bench-{}-{}", std::process::id(), volley_bench::wire::now_nanos()),
    };
    let mut options = Options {
        duration_seconds: args.duration_seconds,
        connectors: args.connectors,
        browsers: args.browsers,
        frame_bytes: args.frame_bytes,
        rate_per_second: args.rate_per_second,
        size_bytes: args.size_bytes,
        gateway_pid: None,
        baseline: None,
        progress: true,
    };
    // The baseline is measured once per invocation and shared by every run in it.
    options.baseline = Some(volley_bench::measure_baseline(&options).map_err(anyhow::Error::msg)?);
    let mut result = run_once(&args, scenario, &options, &secret, false, args.runtime.as_deref())?;
    let compare = matches!(scenario, volley_bench::Scenario::Throughput | volley_bench::Scenario::Latency);
    if compare && args.gateway.is_none() {
        let off = run_once(&args, scenario, &options, &secret, true, args.runtime.as_deref())?;
        result.metrics_off = Some(serde_json::json!({
            "headline": off.headline, "figures": off.figures, "histograms": off.histograms, "errors": off.errors,
        }));
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (json, svg) = volley_bench::record::write(&result, &args.out_dir, &command).map_err(anyhow::Error::msg)?;
    let readme = volley_bench::record::report(&args.out_dir).map_err(anyhow::Error::msg)?;
    volley_bench::print_summary(std::slice::from_ref(&result));
    println!("\nwrote {}, {}, {}", json.display(), svg.display(), readme.display());
    Ok(())
}
