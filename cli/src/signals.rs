//! Ctrl-C and SIGTERM set one flag that every long-running subcommand polls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Installs the handler and returns the flag it sets.
pub fn shutdown_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::AcqRel) {
            // Second signal: the user insists.
            std::process::exit(130);
        }
    })?;
    Ok(flag)
}

/// Blocks until the flag is set (`volley demo`, Linux only).
#[cfg(target_os = "linux")]
pub fn wait(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
