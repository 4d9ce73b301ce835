//! `volley`: the one binary. Thin wiring only — each subcommand lives in its
//! own module and calls into the engine, connector or bench crates:
//!
//! - [`demo`]: gateway + connector + sample data + dashboard on one machine.
//! - [`gateway`]: the engine (thread-per-core io_uring gateway); without
//!   `--config` it starts with the seed's defaults.
//! - [`dashboard`]: finds the built dashboard (`web/dist`) for both.
//! - [`connector`]: the connector that dials out to a gateway.
//! - [`token`]: signs browser session tokens and connector credentials.
//! - [`health`]: probes a gateway's `/health` (the container's HEALTHCHECK).
//! - [`cluster`]: `volley cluster status`, the cluster's directory in Redis.
//! - [`bench`](mod@bench): load-test scenarios writing to `perf-results/`.

// Production code: a panic here is a bug, so errors are returned or handled
// with a reason. Unit tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_runtimes;
// Reads the directory with the engine's key names (Linux-only, like the engine).
#[cfg(target_os = "linux")]
mod cluster;
mod connector;
// Where web/dist is, for `gateway` and `demo` (Linux-only, like them).
#[cfg(target_os = "linux")]
mod dashboard;
// The engine (io_uring) is Linux-only; see cli/Cargo.toml.
#[cfg(target_os = "linux")]
mod demo;
mod fdlimit;
#[cfg(target_os = "linux")]
mod gateway;
mod health;
mod signals;
mod token;

// The binaries use mimalloc: many small `Bytes`
// handles and control messages are allocated and freed on every worker.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Volley streams Apache Arrow data from connectors behind NAT, through a
/// gateway, to dashboards in web browsers.
#[derive(Debug, Parser)]
#[command(name = "volley", version, propagate_version = true)]
#[command(after_help = "Logging: set RUST_LOG (default `info`), e.g. RUST_LOG=volley_engine=debug.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a complete local demo: gateway, connector with sample datasets,
    /// and the dashboard page in your browser.
    #[cfg(target_os = "linux")]
    Demo(demo::DemoArgs),
    /// Run the gateway: accepts connector tunnels and browser sessions and
    /// forwards Arrow IPC frames between them.
    #[cfg(target_os = "linux")]
    Gateway(gateway::GatewayArgs),
    /// Run a connector: dials out to a gateway, registers for a tenant and
    /// serves its configured datasets as Arrow IPC.
    Connector(connector::ConnectorArgs),
    /// Sign a browser session token (HS256 JWT), or with --connector a
    /// connector credential, and print it on stdout.
    Token(token::TokenArgs),
    /// Run a load-test scenario against a gateway and write the results
    /// under perf-results/.
    Bench(bench::BenchArgs),
    /// Check that a gateway answers GET /health with 200 (exit status 0,
    /// else 1): the container image's HEALTHCHECK.
    Health(health::HealthArgs),
    /// The cluster of gateways sharing one Redis: `status` prints its nodes
    /// and which node serves each tenant's connectors.
    #[cfg(target_os = "linux")]
    Cluster(cluster::ClusterArgs),
    /// Internal: one group of simulated browsers for `volley bench` (a child
    /// process re-invoked by the bench; prints `ready` and a JSON result).
    #[command(name = "bench-worker", hide = true)]
    BenchWorker {
        /// The group's JSON spec.
        spec: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The connector's level comes from its config (`logging.level`), read
    // later: its logger lets everything through and the global maximum level,
    // info until the config is loaded, does the filtering. RUST_LOG, when
    // set, wins for every command.
    let connector = matches!(cli.command, Command::Connector(_));
    let rust_log_set = std::env::var_os(volley_connector::service::LOG_FILTER_ENV).is_some();
    let default_filter = if connector && !rust_log_set { "trace" } else { "info" };
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    // A Windows service has no console: `connector run-service` logs to a file.
    if let Command::Connector(args) = &cli.command {
        match connector::service_log_file(args) {
            Ok(Some(file)) => {
                logger.target(env_logger::Target::Pipe(Box::new(file))).write_style(env_logger::WriteStyle::Never);
            }
            Ok(None) => {}
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    logger.init();
    if connector && !rust_log_set {
        log::set_max_level(log::LevelFilter::Info);
    }
    let result = match cli.command {
        #[cfg(target_os = "linux")]
        Command::Demo(args) => demo::run(args).map(|()| ExitCode::SUCCESS),
        #[cfg(target_os = "linux")]
        Command::Gateway(args) => gateway::run(args).map(|()| ExitCode::SUCCESS),
        Command::Connector(args) => connector::run(args),
        Command::Token(args) => token::run(args).map(|()| ExitCode::SUCCESS),
        // `runtimes` runs the other scenarios twice, once per driver.
        Command::Bench(args) if args.scenario == bench::Scenario::Runtimes => {
            bench_runtimes::run(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Health(args) => health::run(args).map(|()| ExitCode::SUCCESS),
        #[cfg(target_os = "linux")]
        Command::Cluster(args) => cluster::run(args).map(|()| ExitCode::SUCCESS),
        Command::BenchWorker { spec } => {
            volley_bench::browsers::worker_main(&spec).map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::msg)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The whole cause chain on one line, without a backtrace: a message for the
/// person at the terminal. A cause whose text the line already ends with is
/// not repeated (many errors print their source in their own message, which
/// `{:#}` would print again: "…in use (os error 98): …in use (os error 98)").
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn an_error_line_names_each_cause_once() {
        /// An error that prints its source in its own message, and has it as its source.
        #[derive(Debug)]
        struct Bind(std::io::Error);
        impl std::fmt::Display for Bind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot listen on 127.0.0.1:1: {}", self.0)
            }
        }
        impl std::error::Error for Bind {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = anyhow::Error::new(Bind(std::io::Error::from_raw_os_error(98))).context("starting the gateway");
        let line = one_line(&error);
        assert_eq!(line.matches("os error 98").count(), 1, "{line}");
        assert!(line.starts_with("starting the gateway: cannot listen on 127.0.0.1:1: "), "{line}");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connector_service_subcommands_parse_and_install_writes_a_command_line_that_parses() {
        use connector::ServiceArgs;
        use volley_connector::system_service::{launch_arguments, SERVICE_NAME_DEFAULT, STATE_WAIT_DEFAULT};

        let Ok(Command::Connector(c)) = parse(&["connector", "install", "--config", "c.yml"]) else {
            panic!("install arguments");
        };
        let Some(ServiceArgs::Install(install)) = c.service else { panic!("install") };
        assert_eq!((install.name.as_str(), install.config.to_str()), (SERVICE_NAME_DEFAULT, Some("c.yml")));
        assert_eq!((install.restart_delay_seconds, install.log_file), (5, None));
        for verb in ["start", "stop", "uninstall"] {
            let Ok(Command::Connector(c)) = parse(&["connector", verb, "--name", "Second", "--wait", "7"]) else {
                panic!("{verb} arguments");
            };
            let (ServiceArgs::Start(a) | ServiceArgs::Stop(a) | ServiceArgs::Uninstall(a)) =
                c.service.expect("a subcommand")
            else {
                panic!("{verb}");
            };
            assert_eq!((a.name.as_str(), a.wait_seconds), ("Second", 7));
            let Ok(Command::Connector(c)) = parse(&["connector", verb]) else { panic!("{verb} defaults") };
            let (Some(ServiceArgs::Start(a)) | Some(ServiceArgs::Stop(a)) | Some(ServiceArgs::Uninstall(a))) =
                c.service
            else {
                panic!("{verb}");
            };
            assert_eq!((a.name.as_str(), a.wait_seconds), (SERVICE_NAME_DEFAULT, STATE_WAIT_DEFAULT.as_secs()));
        }
        assert!(parse(&["connector", "--config", "c.yml", "install", "--config", "c.yml"]).is_err());
        assert!(parse(&["connector", "install"]).is_err(), "install needs --config");

        // What `install` stores as the service's command line must parse as `run-service`.
        let stored = launch_arguments(
            "Volley 2",
            std::path::Path::new("/srv/volley/connector.yml"),
            std::path::Path::new("/srv/volley/Volley 2.log"),
            123_456,
        );
        let cli = Cli::try_parse_from(std::iter::once(std::ffi::OsString::from("volley")).chain(stored))
            .expect("the stored command line parses");
        let Command::Connector(c) = cli.command else { panic!("a connector command") };
        let Some(ServiceArgs::RunService(run)) = c.service else { panic!("run-service") };
        assert_eq!(run.name, "Volley 2");
        assert_eq!(run.config, std::path::PathBuf::from("/srv/volley/connector.yml"));
        assert_eq!(run.log_file, std::path::PathBuf::from("/srv/volley/Volley 2.log"));
        assert_eq!(run.log_file_bytes_max, 123_456);
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("volley").chain(args.iter().copied())).map(|cli| cli.command)
    }

    #[cfg(target_os = "linux")] // gateway and demo exist on Linux only
    #[test]
    fn subcommand_arguments_parse_as_documented() {
        let Ok(Command::Gateway(gateway)) =
            parse(&["gateway", "--config", "gw.yaml", "--listen", "0.0.0.0:8081", "--workers", "2", "--insecure-dev"])
        else {
            panic!("gateway arguments");
        };
        assert_eq!(gateway.listen, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(gateway.workers.map(|n| n.get()), Some(2));
        assert!(gateway.insecure_dev);
        let Ok(Command::Gateway(gateway)) = parse(&["gateway"]) else { panic!("gateway without --config") };
        assert!(gateway.config.is_none(), "--config is optional (the seed's defaults)");
        assert!(parse(&["gateway", "--config", "g.yaml", "--workers", "0"]).is_err());

        let Ok(Command::Connector(connector)) = parse(&["connector", "--config", "c.yaml", "--test"]) else {
            panic!("connector arguments");
        };
        assert!(connector.test && connector.service.is_none());
        assert!(parse(&["connector"]).is_err(), "--config is required without a subcommand");

        let Ok(Command::Demo(demo)) = parse(&["demo"]) else { panic!("demo arguments") };
        assert_eq!((demo.port, demo.no_open, demo.extra_datasets.len()), (8081, false, 0));
        let Ok(Command::Demo(demo)) = parse(&[
            "demo",
            "--port",
            "9000",
            "--no-open",
            "--extra-dataset",
            "a=x.csv",
            "--extra-dataset",
            "b=y.parquet",
        ]) else {
            panic!("demo arguments");
        };
        assert_eq!((demo.port, demo.no_open, demo.extra_datasets.len()), (9000, true, 2));

        for scenario in [
            "throughput",
            "fanout",
            "latency",
            "small-frames",
            "idle",
            "query-storm",
            "query-fanout",
            "baseline",
            "source",
            "report",
        ] {
            assert!(matches!(parse(&["bench", scenario]), Ok(Command::Bench(_))), "{scenario}");
        }
        assert!(parse(&["bench", "warp-speed"]).is_err());
        assert!(parse(&["bench", "idle", "--gateway", "ws://127.0.0.1:8081"]).is_err(), "--gateway needs --secret");
        let Ok(Command::Bench(bench)) = parse(&[
            "bench",
            "fanout",
            "--gateway",
            "ws://127.0.0.1:8081",
            "--secret",
            "s",
            "--duration",
            "30",
            "--connectors",
            "2",
            "--browsers",
            "100",
            "--frame-size",
            "65536",
            "--rate",
            "1000",
            "--out",
            "/tmp/r",
        ]) else {
            panic!("bench arguments");
        };
        assert_eq!(bench.scenario, bench::Scenario::Fanout);
        assert_eq!((bench.duration_seconds, bench.connectors, bench.browsers), (Some(30), Some(2), Some(100)));
        assert_eq!((bench.frame_bytes, bench.rate_per_second), (Some(65536), Some(1000)));
        assert_eq!(bench.out_dir, std::path::PathBuf::from("/tmp/r"));
        let Ok(Command::Bench(bench)) = parse(&["bench", "query-fanout", "--size", "4MiB"]) else {
            panic!("bench query-fanout --size");
        };
        assert_eq!((bench.scenario, bench.size_bytes), (bench::Scenario::QueryFanout, Some(4 << 20)));
        assert!(parse(&["bench", "query-fanout", "--size", "4 parsecs"]).is_err(), "a size needs a known unit");

        assert!(
            matches!(parse(&["token", "--secret", "s", "--tenant", "t", "--user", "u", "--ttl", "-10"]), Ok(Command::Token(t)) if t.ttl_seconds == Some(-10))
        );
    }
}
