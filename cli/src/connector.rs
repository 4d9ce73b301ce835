//! `volley connector`: runs the connector until Ctrl-C or SIGTERM, or
//! checks its configuration with `--test`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Run a connector: it dials out to the gateway (no inbound port needed),
/// registers for its tenant and serves the datasets in its configuration
/// (CSV, NDJSON, Parquet, Arrow, PostgreSQL, ODBC) as Arrow IPC.
#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// Connector configuration file (YAML): gateway URI, tenant, datasets.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Test mode: check the configuration, open every dataset (printing its
    /// schema and row count), register with the gateway once, and exit 0 if
    /// everything worked, 1 otherwise.
    #[arg(long)]
    pub test: bool,
}

pub fn run(args: ConnectorArgs) -> anyhow::Result<ExitCode> {
    if args.test {
        let report = volley_connector::service::self_test(&args.config);
        for line in &report.lines {
            println!("{line}");
        }
        return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let shutdown = crate::signals::shutdown_flag()?;
    volley_connector::service::run(&args.config, shutdown)?;
    Ok(ExitCode::SUCCESS)
}
