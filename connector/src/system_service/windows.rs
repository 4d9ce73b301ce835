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
    let executable =
        std::env::current_exe().map_err(|source| ServiceError::Io { path: "the volley executable".into(), source })?;
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
        windows_service::Error::Winapi(os) if os.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => {
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
