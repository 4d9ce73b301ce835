//! volley-testkit: real services and clients for Volley's tests and
//! benchmarks, so that neither needs mocks where the real thing is cheap,
//! and one copy of each test helper instead of one per crate.
//!
//! With no feature (standard library and `tempfile` only):
//! - [`PgServer`]: a throwaway PostgreSQL server (`initdb` in a temp dir, a
//!   free port on 127.0.0.1, trust authentication, no fsync), stopped and
//!   deleted on drop. Used by the connector's and the CLI's PostgreSQL tests
//!   and by `volley bench source`.
//! - [`wait_until`], [`free_port`].
//! - [`files`]: the shared test data (`$VOLLEY_TESTDATA`), temp dirs, the
//!   generated large Parquet file.
//! - [`ipc`]: an Arrow IPC stream split into its messages, golden IPC files.
//! - [`process`]: the `volley` binary as a child process, its output captured.
//! - [`markdown`]: PROTOCOL.md's tables, for the tests that check code against them.
//!
//! Behind features (each pulls only what it needs):
//! - `tokens`: session tokens and connector credentials.
//! - `ipc`: IPC messages as protocol frame kinds, synthetic frames.
//! - `http`: raw HTTP and WebSocket requests, `/health`, `/metrics.json`.
//! - `pyarrow`: pyarrow as the independent reader of IPC streams.
//! - `arrow`: batch comparison for tests that decode with arrow-rs.
//! - `browser`: the browser client of the engine's and the CLI's tests.
//! - `gateway`: a gateway played by the test, for the connector's and the
//!   CLI's tests.
//! - `fake-connector`: a connector played by the test, for the engine's
//!   tests, which can be told to misbehave.
//! - `engine`: a gateway in the test's process.
//! - `connector`: the real connector in the test's process.
//! - `postgres`: a `postgres` client for a [`PgServer`].
//! - `redis`: a throwaway `redis-server` and a client for it.
//! - `heap`: a counting global allocator for memory tests.
//! - `seccomp` (Linux): io_uring refused by a seccomp filter, for the tests
//!   of the epoll fallback, and the `refuse-io-uring` binary that runs a
//!   command so.
//!
//! Without features it depends on no Volley crate; `engine` and `connector`
//! bring the engine and the connector, which is why the engine's and the
//! connector's own tests may use the kit (a dev-dependency cycle cargo
//! allows) but their libraries never do.

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "connector")]
pub mod connector;
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "fake-connector")]
pub mod fake_connector;
pub mod files;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "heap")]
pub mod heap;
#[cfg(feature = "http")]
pub mod http;
pub mod ipc;
pub mod markdown;
mod pg;
mod ports;
pub mod process;
#[cfg(feature = "pyarrow")]
pub mod pyarrow;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(all(feature = "seccomp", target_os = "linux"))]
pub mod seccomp;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use pg::{
    odbc_postgres_driver_registered, PgError, PgServer, PG_BIN_ENV, PG_START_TIMEOUT_SECONDS, PG_VERSIONS_DIR,
};
pub use ports::free_port;

use std::time::{Duration, Instant};

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True for a read that timed out (the socket's read timeout).
#[cfg(any(feature = "browser", feature = "gateway", feature = "fake-connector"))]
pub fn is_timeout(e: &tungstenite::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_as_soon_as_the_condition_holds_and_false_at_the_deadline() {
        let started = Instant::now();
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(!wait_until(Duration::from_millis(30), || false));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
