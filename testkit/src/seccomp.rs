//! io_uring refused, the way production containers refuse it: a seccomp
//! filter that answers `io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` with `EPERM` and allows every other system call, as
//! Docker's (25 and later) and containerd 2's default profiles do.
//!
//! A seccomp filter binds the thread that installs it and everything that
//! thread starts afterwards (threads and processes); it cannot be removed.
//! So the helpers here install it on a thread of their own:
//! - [`spawn_refused`] starts a child process with io_uring refused (the
//!   gateway processes of the CLI's tests);
//! - [`run_refused`] runs a closure on a fresh thread with io_uring refused
//!   (a gateway started in-process from that thread: its workers inherit it);
//! - the `refuse-io-uring` binary runs a whole command under it, e.g. the
//!   integration tests (`scripts/suites/epoll.sh`).

use std::collections::BTreeMap;
use std::io;
use std::process::{Child, Command};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The system calls the filter refuses.
pub const IO_URING_SYSCALLS: [i64; 3] =
    [libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register];

/// The filter, compiled for this machine's architecture.
pub fn io_uring_refused_filter() -> io::Result<BpfProgram> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)?;
    let rules = IO_URING_SYSCALLS.iter().map(|syscall| (*syscall, Vec::new())).collect::<BTreeMap<_, _>>();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::EPERM).unwrap_or(1)),
        arch,
    )
    .map_err(io::Error::other)?;
    BpfProgram::try_from(filter).map_err(io::Error::other)
}

/// Installs the filter on the calling thread (and so on everything it
/// starts from now on). Irrevocable: call it on a thread of its own.
pub fn refuse_io_uring_on_this_thread() -> io::Result<()> {
    let program = io_uring_refused_filter()?;
    seccompiler::apply_filter(&program).map_err(io::Error::other)
}

/// Runs `f` on a fresh thread with io_uring refused and returns its result.
pub fn run_refused<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    std::thread::spawn(move || {
        refuse_io_uring_on_this_thread()?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("the thread with io_uring refused panicked"))?
}

/// Starts `command` with io_uring refused for the child (and its children).
pub fn spawn_refused(mut command: Command) -> io::Result<Child> {
    run_refused(move || command.spawn())?
}
