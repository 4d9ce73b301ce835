//! A phase's progress line on stderr.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A phase's status on stderr until dropped. On a terminal, one line
/// redrawn in place (`\r`) every 250 ms; otherwise (a pipe, a log file, CI)
/// one line when the phase ends, so a log gets a line per phase and no
/// carriage returns.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Not a terminal: what the line at the end needs.
    plain: Option<PlainLine>,
}

struct PlainLine {
    label: String,
    started: Instant,
    status: Box<dyn Fn() -> String + Send>,
}

impl Progress {
    /// Shows `[label] <seconds> status()` as described on [`Progress`].
    pub fn start(label: &str, status: impl Fn() -> String + Send + 'static) -> Progress {
        use std::io::IsTerminal as _;
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            let plain = PlainLine { label: label.to_owned(), started: Instant::now(), status: Box::new(status) };
            return Progress { stop, thread: None, plain: Some(plain) };
        }
        let label = label.to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            loop {
                let done = flag.load(Ordering::Acquire);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K[{label}] {:>5.1}s {}", started.elapsed().as_secs_f64(), status());
                if done {
                    let _ = writeln!(err);
                    return;
                }
                drop(err);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Progress { stop, thread: Some(thread), plain: None }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(line) = self.plain.take() {
            eprintln!("[{}] {:.1}s {}", line.label, line.started.elapsed().as_secs_f64(), (line.status)());
        }
    }
}
