//! Running the connector as a system service.
//!
//! On Windows the connector is a service of the Service Control Manager
//! (SCM), managed the way the seed's Python connector was (`service.py
//! install|start|stop|remove`):
//!
//! - [`control`] carries out `volley connector install|start|stop|uninstall`
//!   ([`ServiceCommand`]): it creates the service (automatic start, restart
//!   after a crash, launch command from [`launch_arguments`]), starts or stops
//!   it and waits, boundedly, for the SCM to report the new state, or removes it.
//! - [`run_as_service`] is what the SCM starts (`volley connector run-service
//!   …`). It registers a control handler, reports *running*, and runs the same
//!   loop as `volley connector --config FILE` ([`crate::service::run_config`]).
//!   The SCM's Stop and Shutdown controls set the shutdown flag that loop
//!   already honours for Ctrl-C and SIGTERM; the service reports *stop
//!   pending* while streams end (within [`crate::tunnel::SHUTDOWN_GRACE`]),
//!   then *stopped*.
//! - [`LogFile`]: a service has no console, so its log goes to a file that
//!   never grows past a configured size (one previous generation is kept).
//!
//! Files: this one holds the commands, their checks and errors and the two
//! entry points; `windows` is the SCM side (`cfg(windows)`), `log_file` the
//! [`LogFile`].
//!
//! Everything that talks to the SCM is `cfg(windows)`. Elsewhere [`control`]
//! and [`run_as_service`] return [`ServiceError::NotWindows`], whose message
//! points at the systemd unit. The Windows code is type-checked for
//! `x86_64-pc-windows-gnu` (`scripts/suites/windows-check.sh`) but has not
//! been run on Windows.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ConfigError;

#[cfg(windows)]
mod windows;

mod log_file;

pub use log_file::LogFile;

/// Service name used when `--name` is not given. A second connector on the
/// same machine needs its own name.
pub const SERVICE_NAME_DEFAULT: &str = "VolleyConnector";
/// Longest service name the SCM accepts, in characters.
pub const SERVICE_NAME_CHARS_MAX: usize = 256;
/// Shown in the Services console before the service name.
pub const SERVICE_DISPLAY_NAME: &str = "Volley connector";
/// Shown in the Services console's description column.
pub const SERVICE_DESCRIPTION: &str =
    "Serves datasets to a Volley gateway as Arrow IPC over an outbound WebSocket tunnel (volley connector).";
/// How long `start`, `stop` and `uninstall` wait for the SCM to report the
/// new state before giving up (the change may still complete afterwards).
/// 30 s covers a stop, which waits up to `SHUTDOWN_GRACE` (5 s) for streams,
/// on a slow machine. `--wait SECONDS` overrides it.
pub const STATE_WAIT_DEFAULT: Duration = Duration::from_secs(30);
/// Delay before the SCM restarts a crashed service; the systemd unit uses
/// the same (`RestartSec=5`). `install --restart-delay SECONDS` overrides it.
pub const RESTART_DELAY_DEFAULT: Duration = Duration::from_secs(5);
/// Longest accepted restart delay: one hour (the SCM takes milliseconds in
/// 32 bits, and a connector down for longer is better restarted by hand).
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(60 * 60);
/// Default size at which the service's log file is rotated: 10 MiB, so the
/// log never takes more than 20 MiB of disk (current + one previous file).
/// `install --log-file-bytes-max BYTES` overrides it.
pub const LOG_FILE_BYTES_MAX_DEFAULT: u64 = 10 * 1024 * 1024;
/// Smallest accepted log file limit: below 64 KiB a burst of reconnect
/// warnings would rotate away the lines that explain it.
pub const LOG_FILE_BYTES_MAX_FLOOR: u64 = 64 * 1024;
/// Suffix of the previous log file generation (`connector.log.1`).
pub const LOG_FILE_PREVIOUS_SUFFIX: &str = ".1";

/// True where [`control`] and [`run_as_service`] can work.
pub const SUPPORTED: bool = cfg!(windows);

/// `volley connector install`: what the service runs and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// Service name (the key in the SCM, also used by start/stop/uninstall).
    pub name: String,
    /// Connector configuration file; stored in the service's command line as
    /// an absolute path.
    pub config: PathBuf,
    /// Log file; `None` means `<name>.log` beside the configuration file.
    pub log_file: Option<PathBuf>,
    /// Size at which the log file is rotated, bytes.
    pub log_file_bytes_max: u64,
    /// Delay before the SCM restarts the service after a crash.
    pub restart_delay: Duration,
}

/// The service management commands of `volley connector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCommand {
    /// Create the service (automatic start).
    Install(Install),
    /// Start it and wait until it runs.
    Start { name: String, wait: Duration },
    /// Stop it and wait until it has stopped.
    Stop { name: String, wait: Duration },
    /// Stop it if running, then remove it.
    Uninstall { name: String, wait: Duration },
}

impl ServiceCommand {
    /// The subcommand word, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            ServiceCommand::Install(_) => "install",
            ServiceCommand::Start { .. } => "start",
            ServiceCommand::Stop { .. } => "stop",
            ServiceCommand::Uninstall { .. } => "uninstall",
        }
    }

    /// The service name the command acts on.
    pub fn name(&self) -> &str {
        match self {
            ServiceCommand::Install(install) => &install.name,
            ServiceCommand::Start { name, .. }
            | ServiceCommand::Stop { name, .. }
            | ServiceCommand::Uninstall { name, .. } => name,
        }
    }
}

/// What the SCM starts: `volley connector run-service` with these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The service name it was installed under.
    pub name: String,
    /// Absolute path of the connector configuration.
    pub config: PathBuf,
}

/// Why a service command failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Service commands exist only on Windows.
    #[error(
        "`volley connector {command}` manages a Windows service and works only on Windows. On Linux, run the \
         connector under systemd: `sudo scripts/install-connector-service.sh CONFIG` installs \
         packaging/volley-connector.service (README, \"Connector\"); elsewhere, run `volley connector --config FILE` \
         under your service manager"
    )]
    NotWindows { command: &'static str },
    /// A name the SCM would refuse.
    #[error("invalid service name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A log file limit below [`LOG_FILE_BYTES_MAX_FLOOR`].
    #[error("log file limit {bytes} bytes is below the floor of {LOG_FILE_BYTES_MAX_FLOOR} bytes")]
    LogLimit { bytes: u64 },
    /// A restart delay above [`RESTART_DELAY_MAX`].
    #[error("restart delay {delay:?} is above the maximum of {RESTART_DELAY_MAX:?}")]
    RestartDelay { delay: Duration },
    /// The configuration does not load (checked before installing, and at service start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file-system step failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A call into the SCM failed.
    #[error("{what}: {detail}")]
    Windows { what: String, detail: String },
    /// The SCM did not report the wanted state in time.
    #[error(
        "service {name} is {current}, not {wanted}, after {waited:?}; it may still get there (check `sc query {name}`)"
    )]
    Timeout { name: String, wanted: &'static str, current: String, waited: Duration },
    /// The service stopped while starting.
    #[error("service {name} stopped while starting ({exit}); its log file says why")]
    StartFailed { name: String, exit: String },
    /// `run-service` was started by hand, not by the SCM.
    #[error(
        "`volley connector run-service` is what the Windows service manager runs; it cannot run in a console. Use \
         `volley connector start` (or `sc start NAME`), or run in the foreground with `volley connector --config FILE`"
    )]
    NotUnderServiceManager,
}

/// Checks a service name the way the SCM would: not empty, at most
/// [`SERVICE_NAME_CHARS_MAX`] characters, no `/`, `\` or control characters.
pub fn validate_name(name: &str) -> Result<(), ServiceError> {
    let invalid = |reason| Err(ServiceError::InvalidName { name: name.chars().take(64).collect(), reason });
    if name.trim().is_empty() {
        return invalid("it is empty");
    }
    if name.chars().count() > SERVICE_NAME_CHARS_MAX {
        return invalid("it is longer than 256 characters");
    }
    if name.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return invalid("it contains `/`, `\\` or a control character");
    }
    Ok(())
}

/// The default log file: `<name>.log` beside the configuration file.
pub fn default_log_file(config: &Path, name: &str) -> PathBuf {
    config.parent().unwrap_or_else(|| Path::new(".")).join(format!("{name}.log"))
}

/// The arguments after the executable in the service's command line, for an
/// install whose paths are already absolute. `volley` parses them as the
/// hidden `connector run-service` subcommand (a test in `cli` checks that).
pub fn launch_arguments(name: &str, config: &Path, log_file: &Path, log_file_bytes_max: u64) -> Vec<OsString> {
    vec![
        "connector".into(),
        "run-service".into(),
        "--name".into(),
        name.into(),
        "--config".into(),
        config.into(),
        "--log-file".into(),
        log_file.into(),
        "--log-file-bytes-max".into(),
        log_file_bytes_max.to_string().into(),
    ]
}

/// Carries out a service command; returns what to tell the user.
pub fn control(command: &ServiceCommand) -> Result<String, ServiceError> {
    validate_name(command.name())?;
    if let ServiceCommand::Install(install) = command {
        if install.log_file_bytes_max < LOG_FILE_BYTES_MAX_FLOOR {
            return Err(ServiceError::LogLimit { bytes: install.log_file_bytes_max });
        }
        if install.restart_delay > RESTART_DELAY_MAX {
            return Err(ServiceError::RestartDelay { delay: install.restart_delay });
        }
    }
    #[cfg(windows)]
    {
        windows::control(command)
    }
    #[cfg(not(windows))]
    {
        Err(ServiceError::NotWindows { command: command.verb() })
    }
}

/// Hands this process to the SCM as service `launch.name` and runs the
/// connector until the SCM stops it. Returns when the service has stopped.
pub fn run_as_service(launch: Launch) -> Result<(), ServiceError> {
    validate_name(&launch.name)?;
    #[cfg(windows)]
    {
        windows::run_as_service(launch)
    }
    #[cfg(not(windows))]
    {
        Err(ServiceError::NotWindows { command: "run-service" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_the_scm_would_refuse_are_refused() {
        assert!(validate_name(SERVICE_NAME_DEFAULT).is_ok());
        assert!(validate_name("Volley connector 2").is_ok());
        for bad in ["", "  ", "a/b", "a\\b", "tab\there"] {
            assert!(matches!(validate_name(bad), Err(ServiceError::InvalidName { .. })), "{bad:?}");
        }
        assert!(validate_name(&"x".repeat(SERVICE_NAME_CHARS_MAX)).is_ok());
        assert!(validate_name(&"x".repeat(SERVICE_NAME_CHARS_MAX + 1)).is_err());
    }

    #[test]
    fn default_log_file_sits_beside_the_config() {
        assert_eq!(
            default_log_file(Path::new("/etc/volley/connector.yml"), "VolleyConnector"),
            PathBuf::from("/etc/volley/VolleyConnector.log")
        );
    }

    #[cfg(not(windows))]
    #[test]
    fn service_commands_outside_windows_point_at_the_systemd_unit() {
        let command = ServiceCommand::Start { name: SERVICE_NAME_DEFAULT.into(), wait: STATE_WAIT_DEFAULT };
        let error = control(&command).expect_err("no SCM here");
        let message = error.to_string();
        assert!(matches!(error, ServiceError::NotWindows { command: "start" }));
        assert!(message.contains("packaging/volley-connector.service"), "{message}");
        assert!(message.contains("scripts/install-connector-service.sh"), "{message}");
        let launch = Launch { name: SERVICE_NAME_DEFAULT.into(), config: "c.yml".into() };
        assert!(matches!(run_as_service(launch), Err(ServiceError::NotWindows { command: "run-service" })));
    }

    #[test]
    fn install_refuses_a_log_limit_below_the_floor_before_anything_else() {
        let install = Install {
            name: SERVICE_NAME_DEFAULT.into(),
            config: "missing.yml".into(),
            log_file: None,
            log_file_bytes_max: LOG_FILE_BYTES_MAX_FLOOR - 1,
            restart_delay: RESTART_DELAY_DEFAULT,
        };
        assert!(matches!(control(&ServiceCommand::Install(install)), Err(ServiceError::LogLimit { .. })));
    }
}
