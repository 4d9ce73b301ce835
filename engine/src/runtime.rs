//! Which of monoio's two drivers a worker runs on, and building it.
//!
//! io_uring is the fast path. Where it is refused — a container under
//! Docker's or containerd's default seccomp profile, a host with
//! `kernel.io_uring_disabled`, a kernel built without it — the same
//! thread-per-core design runs on epoll (monoio's legacy driver): one
//! runtime per worker, the same tasks, the same owned-buffer IO. The
//! choice is `runtime: auto | io_uring | epoll` (gateway.yaml) or
//! `--runtime`; `auto` probes io_uring once at start and falls back with
//! one warning that names the reason (docs/decisions/2026-12-07-epoll-fallback.md).
//!
//! What differs on epoll, and where the engine accounts for it:
//! - an operation on a ready socket completes without suspending, so a
//!   loop over a busy socket never gives the other tasks of its worker a
//!   turn; the connection loops call [`fair_turn`] after each operation,
//!   which yields every [`FAIR_OPS`] operations of the worker (on io_uring
//!   every operation suspends, and `fair_turn` does nothing);
//! - cancelling an operation marks the socket cancelled instead of
//!   cancelling a submitted entry; a kill is final (`conn::ConnCtl`), so
//!   the difference is never seen.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::task::{Poll, Waker};

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};
use serde::Deserialize;

/// io_uring submission queue entries per worker.
pub const URING_ENTRIES: u32 = 4096;

/// On epoll, a connection loop yields to the other tasks of its worker after
/// this many socket operations in a row (see the module documentation).
pub const FAIR_OPS: u32 = 16;
const _: () = assert!(FAIR_OPS > 0);

/// What gateway.yaml (`runtime:`) and `--runtime` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeChoice {
    /// io_uring where the kernel and the sandbox allow it, else epoll with a warning.
    #[default]
    Auto,
    /// io_uring or refuse to start.
    IoUring,
    /// epoll, even where io_uring works.
    Epoll,
}

impl std::str::FromStr for RuntimeChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(RuntimeChoice::Auto),
            "io_uring" | "io-uring" | "iouring" => Ok(RuntimeChoice::IoUring),
            "epoll" => Ok(RuntimeChoice::Epoll),
            other => Err(format!("unknown runtime `{other}`: use auto, io_uring or epoll")),
        }
    }
}

/// The driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// monoio's io_uring driver.
    IoUring,
    /// monoio's legacy driver (epoll through mio).
    Epoll,
}

impl RuntimeKind {
    /// The name `/health`, `/metrics` and the logs use.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::IoUring => "io_uring",
            RuntimeKind::Epoll => "epoll",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What start decided: the driver for every worker, and why it is not
/// io_uring when `auto` fell back.
#[derive(Debug)]
pub struct Decision {
    /// The driver.
    pub kind: RuntimeKind,
    /// Set when `auto` fell back to epoll: what io_uring said.
    pub fallback: Option<io::Error>,
}

/// Decides the driver for `choice`, probing io_uring once where it matters.
/// `Err` only for `io_uring` asked for explicitly and refused.
pub fn decide(choice: RuntimeChoice) -> Result<Decision, io::Error> {
    match choice {
        RuntimeChoice::Epoll => Ok(Decision { kind: RuntimeKind::Epoll, fallback: None }),
        RuntimeChoice::IoUring => probe_io_uring().map(|()| Decision { kind: RuntimeKind::IoUring, fallback: None }),
        RuntimeChoice::Auto => match probe_io_uring() {
            Ok(()) => Ok(Decision { kind: RuntimeKind::IoUring, fallback: None }),
            Err(e) => Ok(Decision { kind: RuntimeKind::Epoll, fallback: Some(e) }),
        },
    }
}

/// The one warning `auto` logs when it falls back: what io_uring said, what
/// epoll costs, and how to get io_uring back or silence the warning.
pub fn fallback_warning(reason: &io::Error) -> String {
    format!(
        "io_uring is not available here (io_uring_setup: {reason}); the workers run on epoll instead. \
         Expected cost: {EPOLL_COST}. To get io_uring back, allow io_uring_setup, io_uring_enter and \
         io_uring_register in the container's seccomp profile (Docker 25+ and containerd 2 refuse them by \
         default) or set the sysctl kernel.io_uring_disabled=0; to run on epoll without this warning, set \
         `runtime: epoll`"
    )
}

/// What the bench measured epoll to cost against io_uring on one machine
/// (`volley bench runtimes`; perf-results/runtimes-2026-12-07.json and
/// perf-results/extra/runtimes-2026-12-07/).
pub const EPOLL_COST: &str = "little: `volley bench runtimes` measured epoll at 0.9x to 1.3x of io_uring's throughput \
     (64 KiB and 1 MiB frames, fan-out, small frames) and the same GB per CPU-second on 2 cores; io_uring makes \
     fewer system calls per byte, which matters most with many busy connections";

/// Builds a ring the size the workers use and runs a timer on it, which
/// needs `io_uring_setup` and `io_uring_enter`: a sandbox that refuses either
/// fails here, at start, instead of in a worker.
///
/// On a thread of its own: the kernel finishes tearing a ring down with work
/// queued on the thread that owned it, and that notification interrupts the
/// thread's blocking socket calls that have a timeout (`EINTR`) — which the
/// caller's thread should never see.
pub fn probe_io_uring() -> io::Result<()> {
    std::thread::Builder::new()
        .name("volley-io-uring-probe".into())
        .spawn(|| {
            WorkerRuntime::build(RuntimeKind::IoUring)?
                .block_on(async { monoio::time::sleep(std::time::Duration::from_millis(1)).await });
            Ok(())
        })?
        .join()
        .map_err(|_| io::Error::other("the io_uring probe panicked"))?
}

/// A worker's runtime on either driver.
pub enum WorkerRuntime {
    /// io_uring.
    IoUring(Runtime<TimeDriver<IoUringDriver>>),
    /// epoll.
    Epoll(Runtime<TimeDriver<LegacyDriver>>),
}

impl WorkerRuntime {
    /// Builds a runtime on `kind`, with timers.
    pub fn build(kind: RuntimeKind) -> io::Result<WorkerRuntime> {
        Ok(match kind {
            RuntimeKind::IoUring => WorkerRuntime::IoUring(
                RuntimeBuilder::<IoUringDriver>::new().with_entries(URING_ENTRIES).enable_timer().build()?,
            ),
            RuntimeKind::Epoll => WorkerRuntime::Epoll(
                RuntimeBuilder::<LegacyDriver>::new().with_entries(URING_ENTRIES).enable_timer().build()?,
            ),
        })
    }

    /// Runs `future` to completion on this thread.
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        match self {
            WorkerRuntime::IoUring(runtime) => runtime.block_on(future),
            WorkerRuntime::Epoll(runtime) => runtime.block_on(future),
        }
    }
}

/// Call after each socket operation of a connection loop: on an epoll
/// worker (one that runs a turn keeper, [`spawn_turn_keeper`]), every [`FAIR_OPS`]th operation
/// of the worker, whichever task does it, gives the worker's other tasks a
/// turn. Elsewhere (io_uring, where every operation suspends) it returns at
/// once. The count is the thread's, not the connection's, so no connection
/// pays memory for it.
pub async fn fair_turn() {
    let due = OPS.with(|ops| {
        let Some(done) = ops.get() else { return false };
        let next = done + 1;
        ops.set(Some(if next >= FAIR_OPS { 0 } else { next }));
        next >= FAIR_OPS
    });
    if due {
        yield_now().await;
    }
}

thread_local! {
    /// Socket operations on this thread since the last turn ([`fair_turn`]);
    /// `None` where no turn keeper runs.
    static OPS: Cell<Option<u32>> = const { Cell::new(None) };
    /// Tasks that gave up their turn, to be woken by this thread's [`turn_keeper`].
    static GAVE_UP: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    /// The waker of this thread's [`turn_keeper`], while it waits.
    static KEEPER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Gives the worker's other tasks a turn: the task runs again after the
/// tasks queued now, and after the driver was polled for IO once more.
///
/// monoio puts a task that wakes itself while it runs at the front of the
/// queue (so a plain self-wake yields to no one); the wake therefore comes
/// from the worker's [`turn_keeper`] task, which queues the task at the back.
/// One task per round of the keeper goes to the back: a yield while the
/// keeper is already woken (or has not run yet) wakes itself and so runs
/// again at once. Sending every yielder of a round to the back was tried:
/// under `cli/tests/soak.rs` on epoll the sessions' writers then waited
/// behind every attacking connection, live subscribers got gaps and the
/// peak RSS passed the bound (452 MiB against 279), so the first-come rule
/// stays.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        match KEEPER.with(|keeper| keeper.borrow_mut().take()) {
            Some(keeper) => {
                GAVE_UP.with(|gave_up| gave_up.borrow_mut().push(cx.waker().clone()));
                keeper.wake();
            }
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    })
    .await
}

/// Starts this thread's turn keeper (an epoll worker's, for the life of its
/// runtime) and, from now on, [`fair_turn`]'s count. Call inside the runtime.
#[allow(clippy::disallowed_methods)] // the worker's own task, not a connection's
pub fn spawn_turn_keeper() -> monoio::task::JoinHandle<()> {
    OPS.with(|ops| ops.set(Some(0)));
    monoio::spawn(turn_keeper())
}

/// Wakes the tasks that gave up their turn ([`yield_now`]) from outside
/// them, which queues them behind every task that is ready now.
async fn turn_keeper() {
    loop {
        std::future::poll_fn(|cx| {
            let gave_up = GAVE_UP.with(|gave_up| std::mem::take(&mut *gave_up.borrow_mut()));
            for waker in &gave_up {
                waker.wake_by_ref();
            }
            KEEPER.with(|keeper| *keeper.borrow_mut() = Some(cx.waker().clone()));
            if gave_up.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_parses_the_documented_names_and_explains_a_bad_one() {
        assert_eq!("auto".parse::<RuntimeChoice>(), Ok(RuntimeChoice::Auto));
        assert_eq!("io_uring".parse::<RuntimeChoice>(), Ok(RuntimeChoice::IoUring));
        assert_eq!("epoll".parse::<RuntimeChoice>(), Ok(RuntimeChoice::Epoll));
        let err = "kqueue".parse::<RuntimeChoice>().unwrap_err();
        assert!(err.contains("auto, io_uring or epoll"), "{err}");
    }

    #[test]
    fn on_epoll_a_busy_task_lets_the_others_run_every_fair_ops_operations() {
        use std::rc::Rc;
        let mut runtime = WorkerRuntime::build(RuntimeKind::Epoll).unwrap();
        let (busy_done_at, other_ran) = runtime.block_on(async {
            assert!(monoio::utils::is_legacy());
            let keeper = spawn_turn_keeper();
            // A worker's keeper is waiting long before its first connection:
            // let it run once, as it has in a running gateway.
            monoio::time::sleep(std::time::Duration::from_millis(2)).await;
            let other_ran = Rc::new(Cell::new(0u32));
            let counter = other_ran.clone();
            #[allow(clippy::disallowed_methods)]
            let other = monoio::spawn(async move {
                loop {
                    counter.set(counter.get() + 1);
                    monoio::time::sleep(std::time::Duration::from_millis(0)).await;
                }
            });
            // Never suspends on its own: only its turns let `other` run.
            let mut seen = Vec::new();
            for _ in 0..(FAIR_OPS * 3) {
                fair_turn().await;
                seen.push(other_ran.get());
            }
            drop(other);
            drop(keeper);
            (seen, other_ran.get())
        });
        assert!(other_ran > 0, "the other task never ran while the busy one gave turns");
        let first = busy_done_at.first().copied().unwrap_or_default();
        let last = busy_done_at.last().copied().unwrap_or_default();
        assert!(last > first, "no turn given in {} operations: {busy_done_at:?}", FAIR_OPS * 3);
    }
}
