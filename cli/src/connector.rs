//! `volley connector`: runs the connector until Ctrl-C or SIGTERM, or
//! checks its configuration with `--test`; on Windows also installs,
//! starts, stops and removes it as a service (`install`, `start`, `stop`,
//! `uninstall`; `run-service` is what the service manager runs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use volley_connector::system_service::{
    self, Install, Launch, LogFile, ServiceCommand, LOG_FILE_BYTES_MAX_DEFAULT, RESTART_DELAY_DEFAULT,
    SERVICE_NAME_DEFAULT, STATE_WAIT_DEFAULT,
};

/// Run a connector: it dials out to the gateway (no inbound port needed),
/// registers for its tenant and serves the datasets in its configuration
/// (CSV, NDJSON, Parquet, Arrow, PostgreSQL, ODBC) as Arrow IPC.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ConnectorArgs {
    /// Windows service management (on Linux, use the systemd unit in
    /// packaging/ with scripts/install-connector-service.sh).
    #[command(subcommand)]
    pub service: Option<ServiceArgs>,
    /// Connector configuration file (YAML): gateway URI, tenant, datasets.
    #[arg(long, value_name = "FILE", required = true)]
    pub config: Option<PathBuf>,
    /// Test mode: check the configuration, open every dataset (printing its
    /// schema and row count), register with the gateway once, and exit 0 if
    /// everything worked, 1 otherwise.
    #[arg(long)]
    pub test: bool,
}

/// The service subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceArgs {
    /// Windows: install the connector as a service that starts with the
    /// machine and is restarted after a crash (run from an administrator
    /// prompt). The configuration must load; its path is stored absolute.
    Install(InstallArgs),
    /// Windows: start the installed service and wait until it runs.
    Start(ControlArgs),
    /// Windows: stop the service and wait until it has stopped (running
    /// streams get 5 s to end, as with Ctrl-C).
    Stop(ControlArgs),
    /// Windows: stop the service if it runs, then remove it.
    Uninstall(ControlArgs),
    /// Internal: what the Windows service manager runs (`install` writes
    /// this command line); it cannot run in a console.
    #[command(name = "run-service", hide = true)]
    RunService(RunServiceArgs),
}

/// `volley connector install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Connector configuration file (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Service name; give each connector on one machine its own.
    #[arg(long, value_name = "NAME", default_value = SERVICE_NAME_DEFAULT)]
    pub name: String,
    /// Where the service logs (it has no console) [default: NAME.log beside
    /// the configuration file].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Size at which the log file is rotated to FILE.1 (one previous file is
    /// kept), bytes; at least 65536.
    #[arg(long, value_name = "BYTES", default_value_t = LOG_FILE_BYTES_MAX_DEFAULT)]
    pub log_file_bytes_max: u64,
    /// Seconds before the service manager restarts the service after a crash
    /// (at most 3600).
    #[arg(long = "restart-delay", value_name = "S", default_value_t = RESTART_DELAY_DEFAULT.as_secs())]
    pub restart_delay_seconds: u64,
}

/// `volley connector start|stop|uninstall`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Service name given to `install`.
    #[arg(long, value_name = "NAME", default_value = SERVICE_NAME_DEFAULT)]
    pub name: String,
    /// Seconds to wait for the service to reach the new state.
    #[arg(long = "wait", value_name = "S", default_value_t = STATE_WAIT_DEFAULT.as_secs())]
    pub wait_seconds: u64,
}

/// `volley connector run-service`.
#[derive(Debug, Args)]
pub struct RunServiceArgs {
    #[arg(long, value_name = "NAME")]
    pub name: String,
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub log_file: PathBuf,
    #[arg(long, value_name = "BYTES", default_value_t = LOG_FILE_BYTES_MAX_DEFAULT)]
    pub log_file_bytes_max: u64,
}

impl ServiceArgs {
    fn command(&self) -> Option<ServiceCommand> {
        Some(match self {
            ServiceArgs::Install(a) => ServiceCommand::Install(Install {
                name: a.name.clone(),
                config: a.config.clone(),
                log_file: a.log_file.clone(),
                log_file_bytes_max: a.log_file_bytes_max,
                restart_delay: Duration::from_secs(a.restart_delay_seconds),
            }),
            ServiceArgs::Start(a) => {
                ServiceCommand::Start { name: a.name.clone(), wait: Duration::from_secs(a.wait_seconds) }
            }
            ServiceArgs::Stop(a) => {
                ServiceCommand::Stop { name: a.name.clone(), wait: Duration::from_secs(a.wait_seconds) }
            }
            ServiceArgs::Uninstall(a) => {
                ServiceCommand::Uninstall { name: a.name.clone(), wait: Duration::from_secs(a.wait_seconds) }
            }
            ServiceArgs::RunService(_) => return None,
        })
    }
}

/// The log file of `run-service` (a service has no console), opened before
/// the logger starts; `None` for every other form of the command, and where
/// services are not supported (`run` then reports why).
pub fn service_log_file(args: &ConnectorArgs) -> anyhow::Result<Option<LogFile>> {
    match &args.service {
        Some(ServiceArgs::RunService(a)) if system_service::SUPPORTED => {
            Ok(Some(LogFile::open(&a.log_file, a.log_file_bytes_max)?))
        }
        _ => Ok(None),
    }
}

pub fn run(args: ConnectorArgs) -> anyhow::Result<ExitCode> {
    match &args.service {
        Some(ServiceArgs::RunService(a)) => {
            system_service::run_as_service(Launch { name: a.name.clone(), config: a.config.clone() })?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(service) => {
            if let Some(command) = service.command() {
                println!("{}", system_service::control(&command)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    // clap requires --config when no subcommand is given.
    let config = args.config.context("--config FILE is required")?;
    if args.test {
        let report = volley_connector::service::self_test(&config);
        for line in &report.lines {
            println!("{line}");
        }
        return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let shutdown = crate::signals::shutdown_flag()?;
    volley_connector::service::run(&config, shutdown)?;
    Ok(ExitCode::SUCCESS)
}
