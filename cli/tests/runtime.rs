//! `runtime: auto | io_uring | epoll`: where io_uring is refused
//! — here by a seccomp filter on the gateway process, as Docker's (25 and
//! later) and containerd 2's default profiles refuse it — `auto` starts on
//! epoll with one warning naming the reason, serves, and says so on
//! `/health` and `/metrics`; `io_uring` refuses to start with a message
//! that says what to do; `epoll` runs epoll anywhere, without a warning.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use volley_testkit::browser::Browser;
use volley_testkit::connector::{connector_yaml, InProcessConnector};
use volley_testkit::files::{aggregate_csv, write_file, TempDir};
use volley_testkit::http::{http_body, http_get, wait_health_connectors};
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::{connector_token, session_token, SECRET};

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

const TENANT: &str = "rt";

/// `volley gateway --listen 127.0.0.1:0 --workers 2 [extra…]` with the
/// secret in the environment.
fn gateway_command(extra: &[&str]) -> Command {
    let mut command = Command::new(VOLLEY);
    command
        .args(["gateway", "--listen", "127.0.0.1:0", "--workers", "2"])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("VOLLEY_SECRET", SECRET);
    command
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").trim_end_matches('/').parse().expect("listening address")
}

/// `/health` as JSON.
fn health(addr: SocketAddr) -> Value {
    let (status, text) = http_get(addr, "/health");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(http_body(&text)).expect("health JSON")
}

/// The `volley_worker_runtime` lines of `/metrics`.
fn runtime_metrics(addr: SocketAddr) -> Vec<String> {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    http_body(&text).lines().filter(|l| l.starts_with("volley_worker_runtime{")).map(str::to_owned).collect()
}

/// Lines that mention the fallback warning.
fn fallback_warnings(process: &VolleyProcess) -> Vec<String> {
    process.output().lines().filter(|l| l.contains("io_uring is not available here")).map(str::to_owned).collect()
}

/// The gateway serves a real query: the real connector, a level-2 browser.
fn serves_a_query(addr: SocketAddr) {
    let dir = TempDir::new("runtime-query");
    let datasets = json!({"agg": {"type": "csv", "path": aggregate_csv()}});
    let yaml = connector_yaml(
        addr,
        TENANT,
        &connector_token(TENANT),
        json!({"parallel_connections": 1, "reconnect_delay": 0.1}),
        datasets,
    );
    let _connector = InProcessConnector::start(&yaml, dir.path());
    assert!(wait_health_connectors(addr, 1, Duration::from_secs(20)), "the connector registered");
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = browser.query("agg", "q1");
    assert_eq!(result.error_code(), None, "query failed: {:?}", result.end);
    assert!(!result.payloads.is_empty(), "the query returned no Arrow messages");
}

#[test]
fn auto_falls_back_to_epoll_with_one_warning_naming_the_errno_and_serves() {
    let process = VolleyProcess::spawn_refusing_io_uring(gateway_command(&[]));
    let (mut process, url) = process.listening();
    let addr = addr_of(&url);

    // stderr (the log) and stdout (the listening line) are read by two
    // threads: wait for the log's line rather than assume it came first.
    assert!(
        process.wait_for_line("epoll workers", Duration::from_secs(10)).is_some(),
        "no start line in the log:\n{}",
        process.output()
    );
    let warnings = fallback_warnings(&process);
    assert_eq!(warnings.len(), 1, "one warning:\n{}", process.output());
    let warning = &warnings[0];
    for part in [
        "WARN",
        "io_uring_setup: Operation not permitted (os error 1)",
        "the workers run on epoll instead",
        "Expected cost:",
        "seccomp profile",
        "kernel.io_uring_disabled=0",
        "`runtime: epoll`",
    ] {
        assert!(warning.contains(part), "the warning lacks {part:?}: {warning}");
    }
    assert!(process.output().contains("with 2 epoll workers"), "{}", process.output());

    let health = health(addr);
    assert_eq!(health["runtime"], "epoll", "{health}");
    assert_eq!(health["worker_runtimes"], json!(["epoll", "epoll"]), "{health}");
    assert_eq!(
        runtime_metrics(addr),
        vec![
            "volley_worker_runtime{worker=\"0\",runtime=\"epoll\"} 1".to_owned(),
            "volley_worker_runtime{worker=\"1\",runtime=\"epoll\"} 1".to_owned()
        ]
    );
    serves_a_query(addr);

    process.signal("-TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0), "{}", process.output());
}

#[test]
fn io_uring_asked_for_where_it_is_refused_is_one_clear_error() {
    let mut process = VolleyProcess::spawn_refusing_io_uring(gateway_command(&["--runtime", "io_uring"]));
    assert_eq!(process.wait_exit(Duration::from_secs(20)), Some(1), "{}", process.output());
    let output = process.output();
    let error = output.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{output}"));
    for part in [
        "runtime: io_uring was asked for, but io_uring_setup failed: Operation not permitted (os error 1)",
        "set `runtime: auto` (or `--runtime auto`) to run on epoll instead",
        "seccomp profile",
    ] {
        assert!(error.contains(part), "the error lacks {part:?}: {error}");
    }
    assert!(!output.contains("Volley needs a kernel with io_uring"), "the old, misleading hint:\n{output}");
}

#[test]
fn runtime_epoll_in_the_config_file_runs_epoll_without_a_warning() {
    let dir = TempDir::new("runtime-epoll");
    let config = json!({"listen": "127.0.0.1:0", "workers": 2, "tableros_secret_key": SECRET, "runtime": "epoll"});
    let (process, url) = VolleyProcess::gateway(VOLLEY, &dir, &config.to_string(), "info");
    let addr = addr_of(&url);
    assert_eq!(health(addr)["worker_runtimes"], json!(["epoll", "epoll"]));
    assert!(process.wait_for_line("epoll workers", Duration::from_secs(10)).is_some(), "{}", process.output());
    assert!(fallback_warnings(&process).is_empty(), "{}", process.output());
    serves_a_query(addr);
}

#[test]
fn auto_runs_io_uring_where_the_kernel_allows_it() {
    if let Err(e) = volley_engine::probe_io_uring() {
        eprintln!("io_uring is refused on this machine ({e}): the fallback tests above cover it");
        return;
    }
    let (process, url) = VolleyProcess::spawn_command(gateway_command(&[])).listening();
    let addr = addr_of(&url);
    let health = health(addr);
    assert_eq!(health["runtime"], "io_uring", "{health}");
    assert_eq!(health["worker_runtimes"], json!(["io_uring", "io_uring"]), "{health}");
    assert!(process.wait_for_line("io_uring workers", Duration::from_secs(10)).is_some(), "{}", process.output());
    assert!(fallback_warnings(&process).is_empty(), "{}", process.output());
}

#[test]
fn an_unknown_runtime_is_refused_naming_the_choices() {
    let dir = TempDir::new("runtime-bad");
    let config =
        write_file(&dir, "gateway.yaml", format!("tableros_secret_key: {SECRET}\nruntime: kqueue\n").as_bytes());
    let out = Command::new(VOLLEY)
        .args(["gateway", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("volley runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runtime") && stderr.contains("auto") && stderr.contains("epoll"), "{stderr}");

    let out = Command::new(VOLLEY)
        .args(["gateway", "--runtime", "kqueue"])
        .env("VOLLEY_SECRET", SECRET)
        .output()
        .expect("volley runs");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown runtime `kqueue`: use auto, io_uring or epoll"), "{stderr}");
}
