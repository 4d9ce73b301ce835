//! Connection tasks that a panic cannot take their worker down with.
//!
//! monoio polls a task's future directly on the worker's thread, without
//! catching panics: one panic in one connection's code would unwind out of
//! the runtime and end the worker with every session and tunnel it owns.
//! Every task a connection spawns therefore goes through [`spawn`] (clippy's
//! `disallowed-methods` refuses `monoio::spawn` elsewhere), which polls the
//! future inside `catch_unwind`. A panic drops that future — running the
//! connection's `Drop` guards, which detach it from the worker's tables and
//! release its admission counts — logs the message, counts it in
//! `volley_panics_total`, and lets the worker go on with its other
//! connections. A panic outside any connection task (the worker's own loop)
//! still ends the worker, and then the worker thread (`run_worker`) ends the
//! process, so a supervisor restarts it: a gateway is never up but dead.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::worker::Worker;

/// Spawns `future` on the current worker, contained: a panic inside it ends
/// this task only. `what` names the task in the log line.
#[allow(clippy::disallowed_methods)] // the one place that may call monoio::spawn for a connection
pub fn spawn<F>(worker: &Rc<Worker>, what: &'static str, future: F) -> monoio::task::JoinHandle<()>
where
    F: Future<Output = ()> + 'static,
{
    monoio::spawn(Contained { future: Some(future), worker: worker.clone(), what })
}

pin_project_lite::pin_project! {
    /// A future whose panics are caught, logged and counted. Not boxed: the
    /// task stays one allocation (memory per idle session).
    struct Contained<F> {
        // `None` once it completed or panicked.
        #[pin]
        future: Option<F>,
        worker: Rc<Worker>,
        what: &'static str,
    }
}

impl<F: Future<Output = ()>> Future for Contained<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let polled = catch_unwind(AssertUnwindSafe(|| match this.future.as_mut().as_pin_mut() {
            Some(future) => future.poll(cx),
            None => Poll::Ready(()),
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.future.set(None);
                Poll::Ready(())
            }
            Err(panic) => {
                this.worker.shared.panics.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "worker {}: a {} task panicked ({}); that connection is closed, the worker goes on",
                    this.worker.index,
                    this.what,
                    panic_message(panic.as_ref()),
                );
                // The future's state is whatever the panic left: drop it in
                // place, which runs its guards (they detach the connection).
                // A panic in that cleanup is not caught: it ends the worker,
                // and so the process.
                this.future.set(None);
                Poll::Ready(())
            }
        }
    }
}

/// The message a panic carried, when it is text.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "a non-text panic payload"
    }
}
