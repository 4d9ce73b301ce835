//! The `volley` binary (or any command) as a child process, with its
//! standard output and error captured line by line.
//!
//! The binary's path is the test's to give: cargo tells an integration test
//! where its package's binaries are (`env!("CARGO_BIN_EXE_volley")`) and no
//! other crate.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::files::{write_file, TempDir};

/// The `volley` binary as a child process, with stdout and stderr captured
/// line by line (each with the instant it was read).
pub struct VolleyProcess {
    /// The process.
    pub child: Child,
    /// Every line it printed so far, with the instant it was read.
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
    readers: Vec<JoinHandle<()>>,
}

impl VolleyProcess {
    /// Runs `volley` (the binary at `volley`) with `args` and `RUST_LOG=info`.
    pub fn spawn(volley: impl AsRef<OsStr>, args: &[&str]) -> VolleyProcess {
        VolleyProcess::spawn_with_log(volley, args, "info")
    }

    /// Like [`VolleyProcess::spawn`] with `RUST_LOG=log_level`.
    pub fn spawn_with_log(volley: impl AsRef<OsStr>, args: &[&str], log_level: &str) -> VolleyProcess {
        VolleyProcess::launch(volley, args, Some(log_level))
    }

    /// Like [`VolleyProcess::spawn`] with `RUST_LOG` unset: the process
    /// picks its own level (the connector's `logging.level`).
    pub fn spawn_without_rust_log(volley: impl AsRef<OsStr>, args: &[&str]) -> VolleyProcess {
        VolleyProcess::launch(volley, args, None)
    }

    /// Like [`VolleyProcess::spawn`], with the open-file limit (soft and
    /// hard) set to `nofile` by the shell that starts it (`ulimit -n`).
    pub fn spawn_with_nofile(volley: impl AsRef<OsStr>, nofile: u64, args: &[&str]) -> VolleyProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(volley)
            .env("RUST_LOG", "info")
            .args(args);
        VolleyProcess::spawn_command(command)
    }

    fn launch(volley: impl AsRef<OsStr>, args: &[&str], rust_log: Option<&str>) -> VolleyProcess {
        let mut command = Command::new(volley);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        command.args(args);
        VolleyProcess::spawn_command(command)
    }

    /// Starts a prepared command (another executable, working directory or
    /// environment) with stdin closed and stdout and stderr captured.
    pub fn spawn_command(mut command: Command) -> VolleyProcess {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        VolleyProcess::capture(command.spawn().expect("volley starts"))
    }

    /// Like [`VolleyProcess::spawn_command`], with the io_uring system calls
    /// refused by a seccomp filter, as in a container under Docker's or
    /// containerd's default profile.
    #[cfg(all(feature = "seccomp", target_os = "linux"))]
    pub fn spawn_refusing_io_uring(mut command: Command) -> VolleyProcess {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        VolleyProcess::capture(crate::seccomp::spawn_refused(command).expect("volley starts"))
    }

    fn capture(mut child: Child) -> VolleyProcess {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for pipe in [stdout, stderr] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().expect("lock").push((Instant::now(), line));
                }
            }));
        }
        VolleyProcess { child, lines, readers }
    }

    /// `volley gateway` with `yaml` as its config file (written into `dir`),
    /// once it printed its listening line; with the URL from that line
    /// (`http://…`, or `https://…` with TLS).
    pub fn gateway(volley: impl AsRef<OsStr>, dir: &TempDir, yaml: &str, log_level: &str) -> (VolleyProcess, String) {
        let config = write_file(dir, "gateway.yaml", yaml.as_bytes());
        let args = ["gateway", "--config", config.to_str().expect("utf-8")];
        VolleyProcess::spawn_with_log(volley, &args, log_level).listening()
    }

    /// `volley gateway` with `yaml` as its config file `{name}.yaml` in `dir`
    /// (several gateways may share a directory), once listening; its
    /// process and its plain-HTTP address.
    pub fn named_gateway(
        volley: impl AsRef<OsStr>,
        dir: &TempDir,
        name: &str,
        yaml: &str,
    ) -> (VolleyProcess, std::net::SocketAddr) {
        let config = write_file(dir, &format!("{name}.yaml"), yaml.as_bytes());
        let args = ["gateway", "--config", config.to_str().expect("utf-8")];
        let (process, url) = VolleyProcess::spawn(volley, &args).listening();
        let addr = url.strip_prefix("http://").and_then(|a| a.parse().ok());
        (process, addr.unwrap_or_else(|| panic!("not a plain http://ADDRESS:PORT: {url}")))
    }

    /// The instant the first line containing `needle` was read, waiting up
    /// to `timeout` for it.
    pub fn instant_of(&self, needle: &str, timeout: Duration) -> Option<Instant> {
        self.wait_for_line(needle, timeout)?;
        self.instants_of(needle).first().copied()
    }

    /// Waits (at most 20 s) for a gateway's listening line; the process and
    /// the URL from that line.
    pub fn listening(self) -> (VolleyProcess, String) {
        let process = self;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = process.output();
            if let Some(url) = output.lines().find_map(|l| l.strip_prefix("volley gateway listening on ")) {
                let url = url.trim().to_owned();
                return (process, url);
            }
            assert!(Instant::now() < deadline, "the gateway did not start:\n{output}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().expect("lock").iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The first line containing `needle`, waiting up to `timeout` for it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found =
                self.lines.lock().expect("lock").iter().find(|(_, l)| l.contains(needle)).map(|(_, l)| l.clone());
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Instants of the lines containing `needle`.
    pub fn instants_of(&self, needle: &str) -> Vec<Instant> {
        self.lines.lock().expect("lock").iter().filter(|(_, l)| l.contains(needle)).map(|(t, _)| *t).collect()
    }

    /// Sends `signal` (e.g. `-TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(signal).arg(self.child.id().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit within `timeout`; its exit code (`None`
    /// if killed by a signal). Panics (after killing it) when it does not exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("volley did not exit within {timeout:?}; output:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for VolleyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured_line_by_line_and_the_exit_code_read() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two >&2; exit 3"]);
        let mut process = VolleyProcess::spawn_command(command);
        assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(3));
        assert!(process.wait_for_line("two", Duration::from_secs(1)).is_some(), "{}", process.output());
        assert_eq!(process.instants_of("one").len(), 1);
    }
}
