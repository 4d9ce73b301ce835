//! `refuse-io-uring COMMAND [ARGS…]`: runs COMMAND with the io_uring system
//! calls refused (`EPERM`), as Docker's and containerd's default seccomp
//! profiles refuse them. Everything COMMAND starts inherits the filter.
//!
//!     refuse-io-uring cargo nextest run -p volley-engine

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: refuse-io-uring COMMAND [ARGS...]: runs COMMAND with io_uring refused by a seccomp filter");
        return ExitCode::from(2);
    };
    if let Err(e) = volley_testkit::seccomp::refuse_io_uring_on_this_thread() {
        eprintln!("refuse-io-uring: cannot install the seccomp filter: {e}");
        return ExitCode::from(1);
    }
    let e = Command::new(&program).args(args).exec();
    eprintln!("refuse-io-uring: cannot run {}: {e}", program.to_string_lossy());
    ExitCode::from(127)
}
