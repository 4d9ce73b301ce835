//! Entry points of `volley connector`: [`run`] (serve until stopped) and
//! [`self_test`] (`--test`: check the config, open every source, print each
//! dataset's schema and row count, register with each listed gateway once).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::source::Catalog;
use crate::tunnel;

/// Loads the config and runs the tunnel until `shutdown` is set.
pub fn run(config_path: &Path, shutdown: Arc<AtomicBool>) -> Result<(), ConfigError> {
    let config = Config::load(config_path)?;
    run_config(config, shutdown);
    Ok(())
}

/// Runs the tunnel with an already loaded config until `shutdown` is set.
pub fn run_config(config: Config, shutdown: Arc<AtomicBool>) {
    apply_log_level(&config);
    let catalog = Arc::new(Catalog::new(&config));
    log::info!(
        "connector for tenant {:?}: {} datasets, {} connections to {}, compression offered {:?}",
        config.tenant.id,
        config.datasets.len(),
        config.performance.parallel_connections,
        config.gateway.describe(),
        config.performance.compression_codecs
    );
    tunnel::run(Arc::new(config), catalog, shutdown);
}

/// The environment variable that, when set, overrides `logging.level`
/// (env_logger's filter syntax, e.g. `RUST_LOG=volley_connector=trace`).
pub const LOG_FILTER_ENV: &str = "RUST_LOG";

/// Sets the process's log level from `logging.level`, unless
/// [`LOG_FILTER_ENV`] is set: then that filter stays in force. The logger
/// itself must let every level through (see the `volley` binary's `main`).
pub fn apply_log_level(config: &Config) {
    if std::env::var_os(LOG_FILTER_ENV).is_none() {
        log::set_max_level(config.logging.level.as_level_filter());
    }
}

/// The outcome of `--test`: human-readable lines and whether all passed.
#[derive(Debug, Default)]
pub struct SelfTest {
    /// One line per check; failures start with `FAIL`.
    pub lines: Vec<String>,
    /// True when every check passed.
    pub ok: bool,
}

/// `volley connector --test`: config, every source, then one registration
/// with each gateway `gateway.uri` lists.
pub fn self_test(config_path: &Path) -> SelfTest {
    let mut report = SelfTest { lines: Vec::new(), ok: true };
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            report.lines.push(format!("FAIL config: {e}"));
            report.ok = false;
            return report;
        }
    };
    report.lines.push(format!("ok   config {} (tenant {:?})", config_path.display(), config.tenant.id));
    let catalog = Catalog::new(&config);
    for name in catalog.names() {
        match catalog.open(name) {
            Ok(dataset) => {
                let live = dataset.is_live();
                let fields: Vec<String> =
                    dataset.schema().fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
                let stop = dataset.stop_flag();
                let rows = if live {
                    "live".to_owned()
                } else if let Some(rows) = dataset.row_count() {
                    format!("{rows} rows")
                } else {
                    // Count by reading: --test is the place to pay for it.
                    let mut rows: u64 = 0;
                    let mut failure = None;
                    for batch in dataset.into_batches() {
                        match batch {
                            Ok(batch) => rows += batch.num_rows() as u64,
                            Err(e) => {
                                failure = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    if let Some(failure) = failure {
                        report.lines.push(format!("FAIL dataset {name}: {}", without_name(name, &failure)));
                        report.ok = false;
                        continue;
                    }
                    format!("{rows} rows")
                };
                stop.store(true, std::sync::atomic::Ordering::Release);
                report.lines.push(format!("ok   dataset {name}: {rows}; schema {{{}}}", fields.join(", ")));
            }
            Err(e) => {
                report.lines.push(format!("FAIL dataset {name}: {}", without_name(name, &e.to_string())));
                report.ok = false;
            }
        }
    }
    // Every listed gateway: a tunnel may go to any of them.
    for uri in &config.gateway.uris {
        match tunnel::connect_and_register(&config, uri, &catalog) {
            Ok((mut socket, level)) => {
                report.lines.push(format!("ok   gateway {uri}: registered (protocol level {level})"));
                let _ = socket.close(None);
                let _ = socket.flush();
            }
            Err(e) => {
                report.lines.push(format!("FAIL gateway {uri}: {e}"));
                report.ok = false;
            }
        }
    }
    report
}

/// A source error's text without its leading "dataset `name`: ", which
/// the `--test` line already says.
fn without_name<'a>(name: &str, message: &'a str) -> &'a str {
    message
        .strip_prefix("dataset `")
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix("`: "))
        .unwrap_or(message)
}

/// Never used at run time; keeps `AtomicBool` imported for the signature docs.
#[doc(hidden)]
pub fn shutdown_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}
