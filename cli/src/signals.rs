//! Ctrl-C and SIGTERM set one flag that every long-running subcommand polls;
//! SIGHUP sets another (the gateway reloads its TLS files).

use std::sync::atomic::AtomicBool;
#[cfg(target_os = "linux")]
use std::sync::atomic::Ordering;
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Installs the Ctrl-C and SIGTERM handlers and returns the flag they set.
/// A second signal while the flag is set exits at once (the user insists).
pub fn shutdown_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}

/// Blocks until the flag is set (`volley demo`, Linux only).
#[cfg(target_os = "linux")]
pub fn wait(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Installs a SIGHUP handler and returns the flag it sets (`volley gateway`,
/// Linux only).
#[cfg(target_os = "linux")]
pub fn reload_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone())?;
    Ok(flag)
}

/// Blocks until shutdown (`true`) or a reload request (`false`, flag cleared).
#[cfg(target_os = "linux")]
pub fn wait_for(shutdown: &AtomicBool, reload: &AtomicBool) -> bool {
    loop {
        if shutdown.load(Ordering::Acquire) {
            return true;
        }
        if reload.swap(false, Ordering::AcqRel) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
