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
//! Everything that talks to the SCM is `cfg(windows)`. Elsewhere [`control`]
//! and [`run_as_service`] return [`ServiceError::NotWindows`], whose message
//! points at the systemd unit. The Windows code is type-checked for
//! `x86_64-pc-windows-gnu` (`scripts/suites/windows-check.sh`) but has not
//! been run on Windows.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ConfigError;

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

/// A log file that is rotated when it reaches `bytes_max`: the current file
/// is renamed to `<path>.1` (replacing the previous one) and a new file is
/// started, so the log never takes more than about twice `bytes_max` of disk.
/// Opening appends to an existing file and counts its bytes, so a service
/// that restarts in a loop does not grow it either. A single write larger
/// than `bytes_max` is written whole into a fresh file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    written_bytes: u64,
    bytes_max: u64,
}

impl LogFile {
    /// Opens (creating it and its directory if needed) the log file at `path`.
    pub fn open(path: &Path, bytes_max: u64) -> Result<LogFile, ServiceError> {
        if bytes_max < LOG_FILE_BYTES_MAX_FLOOR {
            return Err(ServiceError::LogLimit { bytes: bytes_max });
        }
        let io_error = |source| ServiceError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error)?;
        let written_bytes = file.metadata().map_err(io_error)?.len();
        Ok(LogFile { path: path.to_path_buf(), file, written_bytes, bytes_max })
    }

    /// Where the previous generation goes.
    pub fn previous_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(LOG_FILE_PREVIOUS_SUFFIX);
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let previous = self.previous_path();
        // Windows refuses to rename onto an existing file.
        match std::fs::remove_file(&previous) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&self.path, &previous)?;
        self.file = OpenOptions::new().create(true).write(true).truncate(true).open(&self.path)?;
        self.written_bytes = 0;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let incoming = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written_bytes > 0 && self.written_bytes.saturating_add(incoming) > self.bytes_max {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.written_bytes = self.written_bytes.saturating_add(u64::try_from(written).unwrap_or(u64::MAX));
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(windows)]
mod windows {
    //! The SCM side, on top of the `windows-service` crate.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use windows_service::service::{
        Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
        ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo,
        ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
    use windows_service::service_dispatcher;
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    use super::{default_log_file, launch_arguments, Launch, ServiceCommand, ServiceError};
    use super::{Install, SERVICE_DESCRIPTION, SERVICE_DISPLAY_NAME};
    use crate::config::Config;
    use crate::tunnel::SHUTDOWN_GRACE;

    /// How often a waiting command asks the SCM for the service's state.
    const STATE_POLL: Duration = Duration::from_millis(250);
    /// The wait hint sent with *stop pending*: streams get `SHUTDOWN_GRACE`
    /// to end, plus slack for the threads to be joined.
    const STOP_WAIT_HINT: Duration = Duration::from_secs(SHUTDOWN_GRACE.as_secs() + 10);
    /// A day without a crash resets the SCM's failure count.
    const FAILURE_RESET_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
    /// Service-specific exit code: the configuration did not load at start.
    const EXIT_CONFIG: u32 = 1;
    /// `ERROR_FAILED_SERVICE_CONTROLLER_CONNECT`: the dispatcher was started
    /// by something other than the SCM (e.g. by hand in a console).
    const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
    /// `ERROR_SERVICE_DOES_NOT_EXIST`.
    const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;

    /// `windows_service::Error` displays "IO error in winapi call" without the
    /// OS error itself; keep the OS error in the message.
    fn windows_error(what: String) -> impl FnOnce(windows_service::Error) -> ServiceError {
        move |error| {
            let detail = match &error {
                windows_service::Error::Winapi(os) => os.to_string(),
                other => other.to_string(),
            };
            ServiceError::Windows { what, detail }
        }
    }

    fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ServiceError> {
        ServiceManager::local_computer(None::<&str>, access).map_err(windows_error(
            "cannot open the service manager (service commands need an elevated, administrator prompt)".into(),
        ))
    }

    fn open(name: &str, access: ServiceAccess) -> Result<Service, ServiceError> {
        let manager = manager(ServiceManagerAccess::CONNECT)?;
        manager.open_service(name, access).map_err(|error| match &error {
            windows_service::Error::Winapi(os) if os.raw_os_error() == Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
                ServiceError::Windows {
                    what: format!("service {name}"),
                    detail: "not installed (`volley connector install --config FILE`)".into(),
                }
            }
            _ => windows_error(format!("cannot open service {name}"))(error),
        })
    }

    pub(super) fn control(command: &ServiceCommand) -> Result<String, ServiceError> {
        match command {
            ServiceCommand::Install(install) => self::install(install),
            ServiceCommand::Start { name, wait } => start(name, *wait),
            ServiceCommand::Stop { name, wait } => stop(name, *wait),
            ServiceCommand::Uninstall { name, wait } => uninstall(name, *wait),
        }
    }

    fn absolute(path: &std::path::Path) -> Result<std::path::PathBuf, ServiceError> {
        std::path::absolute(path).map_err(|source| ServiceError::Io { path: path.to_path_buf(), source })
    }

    fn install(install: &Install) -> Result<String, ServiceError> {
        let config = absolute(&install.config)?;
        // Refuse a configuration that would stop the service at its first start.
        Config::load(&config)?;
        let log_file = match &install.log_file {
            Some(path) => absolute(path)?,
            None => default_log_file(&config, &install.name),
        };
        let executable = std::env::current_exe()
            .map_err(|source| ServiceError::Io { path: "the volley executable".into(), source })?;
        let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let info = ServiceInfo {
            name: install.name.clone().into(),
            display_name: format!("{SERVICE_DISPLAY_NAME} ({})", install.name).into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: executable.clone(),
            launch_arguments: launch_arguments(&install.name, &config, &log_file, install.log_file_bytes_max),
            dependencies: vec![],
            // LocalSystem, as the seed's pywin32 service ran.
            account_name: None,
            account_password: None,
        };
        let service = manager
            .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
            .map_err(windows_error(format!("cannot create service {}", install.name)))?;
        service
            .set_description(SERVICE_DESCRIPTION)
            .map_err(windows_error(format!("cannot describe service {}", install.name)))?;
        let restart = ServiceAction { action_type: ServiceActionType::Restart, delay: install.restart_delay };
        service
            .update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(FAILURE_RESET_PERIOD),
                reboot_msg: None,
                command: None,
                // The SCM repeats the last action for every later failure.
                actions: Some(vec![restart.clone(), restart.clone(), restart]),
            })
            .map_err(windows_error(format!("cannot set the restart policy of service {}", install.name)))?;
        Ok(format!(
            "installed service {name} (automatic start, restarted {delay:?} after a crash): {exe} {args}\n\
             log file: {log}\nstart it now with `volley connector start{named}`",
            name = install.name,
            delay = install.restart_delay,
            exe = executable.display(),
            args = info.launch_arguments.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            log = log_file.display(),
            named = named(&install.name),
        ))
    }

    fn named(name: &str) -> String {
        if name == super::SERVICE_NAME_DEFAULT {
            String::new()
        } else {
            format!(" --name {name}")
        }
    }

    fn state_name(state: ServiceState) -> &'static str {
        match state {
            ServiceState::Stopped => "stopped",
            ServiceState::StartPending => "start pending",
            ServiceState::StopPending => "stop pending",
            ServiceState::Running => "running",
            ServiceState::ContinuePending => "continue pending",
            ServiceState::PausePending => "pause pending",
            ServiceState::Paused => "paused",
        }
    }

    fn query(service: &Service, name: &str) -> Result<ServiceStatus, ServiceError> {
        service.query_status().map_err(windows_error(format!("cannot query service {name}")))
    }

    /// Polls until the service is in `wanted`; a service that stops while
    /// we wait for *running* has failed to start.
    fn wait_for(service: &Service, name: &str, wanted: ServiceState, wait: Duration) -> Result<(), ServiceError> {
        let started = Instant::now();
        loop {
            let status = query(service, name)?;
            if status.current_state == wanted {
                return Ok(());
            }
            if wanted == ServiceState::Running && status.current_state == ServiceState::Stopped {
                return Err(ServiceError::StartFailed { name: name.into(), exit: format!("{:?}", status.exit_code) });
            }
            if started.elapsed() >= wait {
                return Err(ServiceError::Timeout {
                    name: name.into(),
                    wanted: state_name(wanted),
                    current: state_name(status.current_state).into(),
                    waited: wait,
                });
            }
            std::thread::sleep(STATE_POLL);
        }
    }

    fn start(name: &str, wait: Duration) -> Result<String, ServiceError> {
        let service = open(name, ServiceAccess::START | ServiceAccess::QUERY_STATUS)?;
        if query(&service, name)?.current_state == ServiceState::Running {
            return Ok(format!("service {name} is already running"));
        }
        service.start::<&str>(&[]).map_err(windows_error(format!("cannot start service {name}")))?;
        wait_for(&service, name, ServiceState::Running, wait)?;
        Ok(format!("service {name} is running"))
    }

    fn stop_and_wait(service: &Service, name: &str, wait: Duration) -> Result<bool, ServiceError> {
        if query(service, name)?.current_state == ServiceState::Stopped {
            return Ok(false);
        }
        service.stop().map_err(windows_error(format!("cannot stop service {name}")))?;
        wait_for(service, name, ServiceState::Stopped, wait)?;
        Ok(true)
    }

    fn stop(name: &str, wait: Duration) -> Result<String, ServiceError> {
        let service = open(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)?;
        Ok(if stop_and_wait(&service, name, wait)? {
            format!("service {name} stopped")
        } else {
            format!("service {name} was not running")
        })
    }

    fn uninstall(name: &str, wait: Duration) -> Result<String, ServiceError> {
        let service = open(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE)?;
        stop_and_wait(&service, name, wait)?;
        service.delete().map_err(windows_error(format!("cannot remove service {name}")))?;
        // The SCM removes it once every handle (ours included) is closed.
        Ok(format!("service {name} removed (its log file is left in place)"))
    }

    /// Set once, before the dispatcher starts: the SCM calls the entry
    /// point without any context of ours.
    static LAUNCH: OnceLock<Launch> = OnceLock::new();
    /// The entry point's outcome, for `run_as_service` to return.
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();

    pub(super) fn run_as_service(launch: Launch) -> Result<(), ServiceError> {
        let name = launch.name.clone();
        if LAUNCH.set(launch).is_err() {
            return Err(ServiceError::Windows {
                what: format!("service {name}"),
                detail: "run_as_service called twice in one process".into(),
            });
        }
        service_dispatcher::start(&name, service_main).map_err(|error| match &error {
            windows_service::Error::Winapi(os)
                if os.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
            {
                ServiceError::NotUnderServiceManager
            }
            _ => windows_error(format!("cannot start the dispatcher of service {name}"))(error),
        })?;
        match OUTCOME.get() {
            Some(Err(detail)) => Err(ServiceError::Windows { what: format!("service {name}"), detail: detail.clone() }),
            _ => Ok(()),
        }
    }

    /// The service's entry point, called by the SCM on a thread of its own.
    /// The start parameters (`sc start NAME ARGS…`) are not read: everything
    /// the service needs is on its command line, and not reading them keeps
    /// this free of raw-pointer walks (`windows_service::define_windows_service!`
    /// would decode them with `unsafe`).
    extern "system" fn service_main(_argument_count: u32, _arguments: *mut *mut u16) {
        let Some(launch) = LAUNCH.get() else { return };
        let outcome = serve(launch).map_err(|error| {
            log::error!("service {}: {error}", launch.name);
            error.to_string()
        });
        let _ = OUTCOME.set(outcome);
    }

    fn status(state: ServiceState, exit_code: ServiceExitCode, wait_hint: Duration) -> ServiceStatus {
        let controls_accepted = if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        };
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: 0,
            wait_hint,
            process_id: None,
        }
    }

    fn serve(launch: &Launch) -> Result<(), ServiceError> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let reporter: Arc<OnceLock<ServiceStatusHandle>> = Arc::default();
        let handler = {
            let shutdown = Arc::clone(&shutdown);
            let reporter = Arc::clone(&reporter);
            move |control| match control {
                ServiceControl::Stop | ServiceControl::Shutdown => {
                    // The flag Ctrl-C and SIGTERM set in the foreground.
                    shutdown.store(true, Ordering::Release);
                    if let Some(handle) = reporter.get() {
                        let pending = status(ServiceState::StopPending, ServiceExitCode::NO_ERROR, STOP_WAIT_HINT);
                        if let Err(error) = handle.set_service_status(pending) {
                            log::warn!("cannot report stop pending: {error}");
                        }
                    }
                    ServiceControlHandlerResult::NoError
                }
                ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
                _ => ServiceControlHandlerResult::NotImplemented,
            }
        };
        let handle = service_control_handler::register(&launch.name, handler)
            .map_err(windows_error(format!("cannot register the control handler of service {}", launch.name)))?;
        let _ = reporter.set(handle);
        let report = |state, exit_code| {
            handle
                .set_service_status(status(state, exit_code, Duration::ZERO))
                .map_err(windows_error(format!("cannot report the state of service {}", launch.name)))
        };
        let config = match Config::load(&launch.config) {
            Ok(config) => config,
            Err(error) => {
                report(ServiceState::Stopped, ServiceExitCode::ServiceSpecific(EXIT_CONFIG))?;
                return Err(error.into());
            }
        };
        report(ServiceState::Running, ServiceExitCode::NO_ERROR)?;
        log::info!("service {} running with {}", launch.name, launch.config.display());
        crate::service::run_config(config, shutdown);
        log::info!("service {} stopped", launch.name);
        report(ServiceState::Stopped, ServiceExitCode::NO_ERROR)
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

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn log_file_rotates_at_its_limit_and_keeps_one_previous_generation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs").join("connector.log");
        let limit = LOG_FILE_BYTES_MAX_FLOOR;
        let mut log = LogFile::open(&path, limit).expect("open");
        let line = format!("{}\n", "a".repeat(1023)); // 1 KiB per line
        let lines_per_file = usize::try_from(limit / 1024).expect("small");
        for index in 0..lines_per_file * 3 + 1 {
            log.write_all(format!("{:06}{}", index, &line[6..]).as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        let current = read(&path);
        let previous = read(&log.previous_path());
        assert_eq!(current.len(), 1024, "one line after the third rotation");
        assert!(current.starts_with(&format!("{:06}", lines_per_file * 3)), "newest line in the current file");
        assert_eq!(u64::try_from(previous.len()).ok(), Some(limit), "previous generation is full");
        assert!(previous.starts_with(&format!("{:06}", lines_per_file * 2)), "previous holds the lines before");
        let files = std::fs::read_dir(path.parent().expect("dir")).expect("list").count();
        assert_eq!(files, 2, "never more than the current file and one previous");
    }

    #[test]
    fn log_file_reopened_counts_what_it_already_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("connector.log");
        let limit = LOG_FILE_BYTES_MAX_FLOOR;
        std::fs::write(&path, vec![b'x'; usize::try_from(limit - 10).expect("small")]).expect("seed the file");
        let mut log = LogFile::open(&path, limit).expect("open");
        log.write_all(b"0123456789").expect("fits exactly");
        assert!(!log.previous_path().exists(), "not rotated at exactly the limit");
        log.write_all(b"!").expect("one byte more");
        assert!(log.previous_path().exists(), "rotated: the existing bytes were counted");
        assert_eq!(read(&path), "!");
    }

    #[test]
    fn log_file_refuses_a_limit_below_the_floor() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = LogFile::open(&dir.path().join("x.log"), 1024).expect_err("too small");
        assert!(matches!(error, ServiceError::LogLimit { bytes: 1024 }));
    }
}
