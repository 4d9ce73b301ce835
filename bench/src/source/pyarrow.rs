//! The pyarrow side: a script process per variant (`--threads=on|off`),
//! driven one pass at a time, and the state of each variant's passes.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

use super::passes::Pass;
use super::{PYTHON_DEFAULT, PYTHON_ENV};

/// A pyarrow script process serving one variant's passes (see the protocol
/// in `pyarrow_source.py`): one line in, one timed pass, one JSON line out.
pub(super) struct Worker {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts the script; `Ok(None)` (with the reason) when it skips.
    pub(super) fn start(script: &Path, args: &[String]) -> Result<Result<(Worker, Value), String>, String> {
        let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| PYTHON_DEFAULT.into());
        let mut child = Command::new(&python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {python} ({e}); set {PYTHON_ENV}"))?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut worker = Worker { child, input, output };
        let header = worker.line().map_err(|e| format!("{python} {} {}: {e}", script.display(), args.join(" ")))?;
        if let Some(reason) = header.get("skipped") {
            return Ok(Err(reason.as_str().unwrap_or("skipped").to_owned()));
        }
        Ok(Ok((worker, header)))
    }

    fn line(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(0) => Err("the pyarrow script ended early (its stderr is above)".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("pyarrow script said {line:?}: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One timed pass.
    pub(super) fn pass(&mut self) -> Result<Pass, String> {
        self.input.write_all(b"pass\n").and_then(|()| self.input.flush()).map_err(|e| e.to_string())?;
        let run = self.line()?;
        Ok(Pass {
            rows: run["rows"].as_u64().unwrap_or(0),
            ipc_bytes: run["ipc_bytes"].as_u64().unwrap_or(0),
            seconds: run["seconds"].as_f64().unwrap_or(f64::NAN),
            cpu_seconds: run["cpu_seconds"].as_f64(),
            schema: run["schema"].as_str().unwrap_or_default().to_owned(),
            ..Pass::default()
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // End of input ends the script; kill it if it is stuck in a pass.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pyarrow variant's passes.
pub(super) struct Side {
    /// `--threads` value: `on` (pyarrow's default pool) or `off`.
    pub(super) mode: &'static str,
    pub(super) worker: Option<Worker>,
    pub(super) passes: Vec<Pass>,
    pub(super) about: Value,
    pub(super) state: SideState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SideState {
    Running,
    Skipped,
    Failed,
}

impl Side {
    pub(super) fn new(mode: &'static str) -> Side {
        Side { mode, worker: None, passes: Vec::new(), about: Value::Null, state: SideState::Running }
    }

    /// Its key in the record's `baseline`.
    pub(super) fn key(&self) -> &'static str {
        if self.mode == "on" {
            "pyarrow"
        } else {
            "pyarrow_single_thread"
        }
    }
}
