//! A fleet: several groups at once, as threads of this process or as child
//! processes (the current executable re-invoked with the hidden
//! `bench-worker` subcommand, whose entry point is [`worker_main`]). Gated
//! groups ([`GroupSpec::gated`]) wait, once connected, for [`Fleet::go`]: a
//! flag for threads, a line on its stdin for a child process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::group::run_group;
use super::{GroupResult, GroupSpec};

/// Several groups running at once, in threads or child processes.
pub struct Fleet {
    ready: Arc<AtomicUsize>,
    go: Arc<AtomicBool>,
    groups: usize,
    threads: Vec<JoinHandle<Result<GroupResult, String>>>,
    children: Vec<Child>,
    /// Gated children's stdin, where [`Fleet::go`] writes its line.
    gates: Vec<ChildStdin>,
}

/// The line [`Fleet::go`] writes to a gated child's stdin.
const GO_LINE: &str = "go";

impl Fleet {
    /// Starts `specs`, each in a thread (`processes == false`) or in a
    /// child process running `exe bench-worker` (the current executable).
    pub fn start(specs: Vec<GroupSpec>, processes: bool) -> Result<Fleet, String> {
        let ready = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(AtomicBool::new(false));
        let groups = specs.len();
        let mut threads = Vec::new();
        let mut children = Vec::new();
        let mut gates = Vec::new();
        for spec in specs {
            let ready = ready.clone();
            if processes {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let spec_json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
                let mut child = Command::new(exe)
                    .arg(crate::scenario::WORKER_SUBCOMMAND)
                    .arg(spec_json)
                    .env("RUST_LOG", "warn")
                    .stdin(if spec.gated { Stdio::piped() } else { Stdio::null() })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("spawning a browser process: {e}"))?;
                if spec.gated {
                    gates.push(child.stdin.take().ok_or("child stdin")?);
                }
                let stdout = child.stdout.take().ok_or("child stdout")?;
                threads.push(std::thread::spawn(move || {
                    let mut lines = BufReader::new(stdout).lines();
                    let mut last = None;
                    while let Some(Ok(line)) = lines.next() {
                        if line == "ready" {
                            ready.fetch_add(1, Ordering::AcqRel);
                        } else if line.starts_with('{') {
                            last = Some(line);
                        }
                    }
                    let line = last.ok_or_else(|| "a browser process ended without a result".to_owned())?;
                    serde_json::from_str(&line).map_err(|e| format!("browser process result: {e}"))
                }));
                children.push(child);
            } else {
                let go = go.clone();
                threads.push(std::thread::spawn(move || {
                    Ok(run_group(&spec, &|| {
                        ready.fetch_add(1, Ordering::AcqRel);
                        while spec.gated && !go.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }))
                }));
            }
        }
        Ok(Fleet { ready, go, groups, threads, children, gates })
    }

    /// Lets gated groups send their action (call after [`Fleet::wait_ready`]).
    pub fn go(&mut self) -> Result<(), String> {
        self.go.store(true, Ordering::Release);
        for mut gate in self.gates.drain(..) {
            writeln!(gate, "{GO_LINE}")
                .and_then(|()| gate.flush())
                .map_err(|e| format!("telling a browser process to start: {e}"))?;
        }
        Ok(())
    }

    /// Waits until every group is connected (and subscribed).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.ready.load(Ordering::Acquire) < self.groups {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {} browser groups were ready within {timeout:?}",
                    self.ready.load(Ordering::Acquire),
                    self.groups
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits for every group's result.
    pub fn join(mut self) -> Result<Vec<GroupResult>, String> {
        let mut out = Vec::new();
        for thread in self.threads.drain(..) {
            out.push(thread.join().map_err(|_| "a browser group panicked".to_owned())??);
        }
        for mut child in self.children.drain(..) {
            let _ = child.wait();
        }
        Ok(out)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Gated threads must not wait for a go that never comes.
        self.go.store(true, Ordering::Release);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Entry point of the hidden `bench-worker` subcommand: runs one group from
/// its JSON spec, prints `ready` when connected (a gated group then waits
/// for a line on stdin, or its end) and the result as one JSON line.
pub fn worker_main(spec_json: &str) -> Result<(), String> {
    let spec: GroupSpec = serde_json::from_str(spec_json).map_err(|e| format!("worker spec: {e}"))?;
    let result = run_group(&spec, &|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        if spec.gated {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        }
    });
    let line = serde_json::to_string(&result).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}
