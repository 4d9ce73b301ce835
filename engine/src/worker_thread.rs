//! The body of one worker thread ([`run_worker`]): pin it, build its
//! runtime, serve until shutdown, then close every connection and let them
//! drain. Its loops: [`accept_loop`] (admission at accept, one task per
//! connection), [`inbox_loop`] (frames and commands from other threads),
//! [`publish_metrics`]; and the guard that ends the process when a serving
//! worker dies ([`exit_if_worker_died`]).

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use volley_protocol::ws::close_code;

use crate::http;
use crate::registry::ConnectorCmd;
use crate::runtime::{self, RuntimeKind, WorkerRuntime};
use crate::shared::Shared;
use crate::sweep;
use crate::task;
use crate::worker::{Worker, INBOX_BATCH_MAX, METRICS_PUBLISH_INTERVAL};
use crate::worker_msg::WorkerMsg;

/// How long shutdown lets close frames drain.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_millis(300);
/// After the drain, how long the runtime keeps running so cancelled
/// connections finish and their sockets are closed.
pub const SHUTDOWN_CLOSE_GRACE: Duration = Duration::from_millis(100);

pub(crate) fn run_worker(
    index: usize,
    shared: Arc<Shared>,
    listener: TcpListener,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if shared.config.pin_workers && shared.workers <= cores {
        let _ = monoio::utils::bind_to_cpu_set([index % cores]);
    }
    let kind = shared.runtime;
    let mut runtime = match WorkerRuntime::build(kind) {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot build its {kind} runtime: {e}")));
            return;
        }
    };
    // Set once the worker serves; from then on its thread ending before
    // shutdown ends the process (see `exit_if_worker_died`).
    let serving = Rc::new(std::cell::Cell::new(false));
    let serving_flag = serving.clone();
    let stopping_seen = shared.clone();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let listener = match monoio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = ready.send(Err(format!("listener: {e}")));
                    return;
                }
            };
            let worker = Worker::new(index, shared.clone());
            let _ = ready.send(Ok(()));
            serving_flag.set(true);
            let accept_canceller = monoio::io::Canceller::new();
            let accept_handle = accept_canceller.handle();
            worker.accept_stop.replace(Some(accept_canceller));
            // The worker's own tasks are not contained: a panic in them ends
            // the worker, and the exit guard the process.
            #[allow(clippy::disallowed_methods)]
            let accept_task = monoio::spawn(accept_loop(worker.clone(), listener, accept_handle));
            #[allow(clippy::disallowed_methods)]
            let metrics_task = monoio::spawn(publish_metrics(worker.clone()));
            #[allow(clippy::disallowed_methods)]
            let sweep_task = monoio::spawn(sweep::sweep(worker.clone()));
            // Only epoll needs turns given out (see `runtime::fair_turn`).
            let turn_keeper = (kind == RuntimeKind::Epoll).then(runtime::spawn_turn_keeper);
            inbox_loop(&worker).await;
            // Shutdown: stop accepting, close everything with 1001 (sessions
            // after a drain with 1012: reconnect elsewhere), let it drain.
            worker.stop_accepting();
            let (code, reason) = if shared.is_draining() {
                (close_code::SERVICE_RESTART, crate::worker::DRAIN_CLOSE_REASON)
            } else {
                (close_code::GOING_AWAY, "gateway shutting down")
            };
            let sessions: Vec<_> = worker.local.borrow().sessions.values().cloned().collect();
            for session in sessions {
                session.close(code, reason);
            }
            for connector in shared.registry.all_connectors() {
                if connector.worker == index {
                    let _ = connector.mailbox.push(ConnectorCmd::Close {
                        code: close_code::GOING_AWAY,
                        reason: "gateway shutting down".into(),
                    });
                }
            }
            monoio::time::sleep(SHUTDOWN_DRAIN).await;
            // A browser that is not reading never gets its close frame (it sits
            // behind queued frames): cancel its IO so the socket is closed (FIN)
            // while this runtime still runs — a runtime that is dropped with
            // sockets open never submits their close.
            let sessions: Vec<_> = worker.local.borrow().sessions.values().cloned().collect();
            for session in sessions {
                session.ctl.kill();
                session.ring.borrow_mut().wake();
            }
            monoio::time::sleep(SHUTDOWN_CLOSE_GRACE).await;
            let _ = accept_task.await;
            drop(metrics_task);
            drop(sweep_task);
            drop(turn_keeper);
        })
    }));
    if serving.get() {
        exit_if_worker_died(index, &stopping_seen, ran.is_err());
    }
}

async fn inbox_loop(worker: &Rc<Worker>) {
    let inbox = worker.shared.inboxes[worker.index].clone();
    let mut batch = Vec::with_capacity(INBOX_BATCH_MAX);
    loop {
        batch.clear();
        if inbox.recv_batch(&mut batch, INBOX_BATCH_MAX).await == 0 {
            return;
        }
        for msg in batch.drain(..) {
            if matches!(msg, WorkerMsg::Shutdown) {
                return;
            }
            worker.deliver_queued(msg);
        }
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: monoio::net::TcpListener, cancel: monoio::io::CancelHandle) {
    let connections_max = worker.shared.config.limits.connections_max;
    let per_ip_max = worker.shared.config.limits.connections_per_ip_max;
    loop {
        let (stream, peer) = match listener.cancelable_accept(cancel.clone()).await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Returning drops the listener: new connections are refused.
                if worker.shared.stopping.load(Ordering::Acquire) || worker.shared.is_draining() {
                    return;
                }
                log::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let open = worker.shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let ip = peer.ip();
        let ip_slot = if open <= connections_max { worker.shared.ip_connections.guard(ip, per_ip_max) } else { None };
        let ip_counted = ip_slot.is_some();
        let worker = worker.clone();
        let slot = http::ConnSlot::new(worker.shared.clone(), ip_slot);
        task::spawn(&worker.clone(), "connection", async move {
            if ip_counted {
                http::serve(worker.clone(), stream, peer, slot).await;
            } else {
                let message = if open > connections_max {
                    "the gateway is at its connection limit".to_owned()
                } else {
                    log::info!("{peer}: refused, {ip} already has {per_ip_max} open connections");
                    format!("too many open connections from {ip} (at most {per_ip_max})")
                };
                let mut stream = stream;
                use monoio::io::AsyncWriteRentExt;
                let body = crate::refusal::RefusalKind::AtLimit.with(message).http_response();
                let _ = stream.write_all(body).await;
                drop(slot);
            }
        });
    }
}

/// Exit status of a gateway whose worker died (EX_SOFTWARE).
pub const WORKER_DIED_EXIT_CODE: i32 = 70;

/// Ends the process when a serving worker's runtime ended before shutdown
/// began — a panic outside any connection task unwound out of it. The
/// process must not stay up with a dead worker (its listener would still
/// accept connections nobody serves), so it exits non-zero at once and its
/// supervisor (systemd, Kubernetes) restarts it.
fn exit_if_worker_died(index: usize, shared: &Shared, panicked: bool) {
    if shared.is_stopping() {
        return;
    }
    let why = if panicked { "panicked" } else { "stopped" };
    log::error!(
        "worker {index} {why} outside any connection; exiting with status {WORKER_DIED_EXIT_CODE} so the supervisor restarts the gateway"
    );
    std::process::exit(WORKER_DIED_EXIT_CODE);
}

async fn publish_metrics(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(METRICS_PUBLISH_INTERVAL).await;
        worker.shared.metrics.publish(worker.index, &worker.metrics.borrow());
    }
}
