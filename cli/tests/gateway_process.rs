//! `volley gateway` as a process: settings that act on the process itself,
//! and what it says at start about its secrets and its config file.

use std::time::Duration;

use serde_json::json;
use volley_testkit::connector::connector_yaml;
use volley_testkit::files::{aggregate_csv, write_file, TempDir};
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::SECRET;
use volley_testkit::wait_until;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

/// The `THP_enabled` line of /proc/<pid>/status: 0 once the process turned
/// transparent huge pages off for itself (PR_SET_THP_DISABLE).
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_owned())
        .expect("THP_enabled line (Linux 5.0+)")
}

#[test]
fn transparent_huge_pages_are_off_unless_configured_on() {
    let dir = TempDir::new("gateway-thp");
    let base = json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET});

    let (mut default, _) = VolleyProcess::gateway(VOLLEY, &dir, &base.to_string(), "info");
    assert_eq!(thp_enabled(default.child.id()), "0", "the default config turns THP off");
    default.signal("-TERM");
    assert_eq!(default.wait_exit(Duration::from_secs(10)), Some(0), "{}", default.output());

    let mut on = base.clone();
    on["transparent_huge_pages"] = json!(true);
    let (mut opted_in, _) = VolleyProcess::gateway(VOLLEY, &dir, &on.to_string(), "info");
    assert_eq!(thp_enabled(opted_in.child.id()), "1", "transparent_huge_pages: true leaves THP to the kernel");
    opted_in.signal("-TERM");
    assert_eq!(opted_in.wait_exit(Duration::from_secs(10)), Some(0), "{}", opted_in.output());
}

/// Sends one `GET path` and returns the status, 0 when the connection was
/// closed without an answer; gives up after 5 s.
fn get_status(addr: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return 0 };
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The value of a counter line in `/metrics`.
fn metric(addr: &str, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn fault_gateway(dir: &TempDir, workers: u32) -> (VolleyProcess, String) {
    let config = json!({
        "listen": "127.0.0.1:0", "workers": workers, "tableros_secret_key": SECRET, "test_fault_routes": true,
    });
    let (process, url) = VolleyProcess::gateway(VOLLEY, dir, &config.to_string(), "info");
    (process, url.trim_start_matches("http://").trim_end_matches('/').to_owned())
}

/// A panic in one connection's task closes that connection only: it is
/// logged and counted in `volley_panics_total`, and every worker goes on
/// serving. Twenty panics on a two-worker gateway hit both workers many
/// times; before containment, the first one on each worker ended it.
#[test]
fn a_panic_in_a_connection_closes_only_that_connection_and_is_counted() {
    let dir = TempDir::new("gateway-panic");
    let (mut gateway, addr) = fault_gateway(&dir, 2);
    for _ in 0..20 {
        assert_eq!(get_status(&addr, "/test/panic/connection"), 0, "the panicking connection is closed unanswered");
    }
    for _ in 0..20 {
        assert_eq!(get_status(&addr, "/health"), 200, "every worker still answers:\n{}", gateway.output());
    }
    assert_eq!(metric(&addr, "volley_panics_total"), Some(20), "{}", gateway.output());
    assert!(gateway.output().contains("task panicked"), "each panic is logged:\n{}", gateway.output());
    gateway.signal("-TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0), "{}", gateway.output());
}

/// A panic outside any connection task ends its worker; the process then
/// exits non-zero at once (status 70) so that its supervisor restarts it,
/// instead of staying up with a listener nobody serves.
#[test]
fn a_worker_that_dies_ends_the_process_with_status_70() {
    let dir = TempDir::new("gateway-worker-death");
    let (mut gateway, addr) = fault_gateway(&dir, 2);
    let _ = get_status(&addr, "/test/panic/worker");
    assert_eq!(gateway.wait_exit(Duration::from_secs(5)), Some(70), "{}", gateway.output());
    assert!(gateway.output().contains("exiting with status 70"), "{}", gateway.output());
}

/// `volley token` as the operator runs it; its stdout, trimmed.
fn volley_token(args: &[&str]) -> String {
    let output = std::process::Command::new(VOLLEY)
        .arg("token")
        .args(args)
        .env_remove("VOLLEY_SECRET")
        .output()
        .expect("volley token runs");
    assert!(output.status.success(), "volley token {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// `volley connector --test` against `addr` with `token`: exit code and output.
fn connector_self_test(dir: &TempDir, addr: std::net::SocketAddr, token: &str) -> (Option<i32>, String) {
    let yaml = connector_yaml(
        addr,
        "acme",
        token,
        json!({"parallel_connections": 1}),
        json!({"aggregate": {"type": "csv", "path": aggregate_csv()}}),
    );
    let path = write_file(dir, "connector.yaml", yaml.as_bytes());
    let mut process = VolleyProcess::spawn(VOLLEY, &["connector", "--config", path.to_str().expect("utf-8"), "--test"]);
    let code = process.wait_exit(Duration::from_secs(20));
    (code, process.output())
}

/// One secret for browser sessions and connector credentials lets whoever
/// issues browser tokens mint connector credentials too. The gateway says so
/// at start until `connector_secret_key` sets connector credentials apart;
/// then `volley token --connector --secret <connector_secret_key>` makes the
/// credential that registers, and one signed with `tableros_secret_key` is
/// refused.
#[test]
fn connector_credentials_get_a_secret_of_their_own() {
    const CONNECTOR_SECRET: &str = "connector-only-secret-for-this-test";
    const WARNING: &str = "verified with the same secret";
    let dir = TempDir::new("gateway-secrets");
    let shared = json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET});
    let (mut same, _) = VolleyProcess::gateway(VOLLEY, &dir, &shared.to_string(), "info");
    assert!(
        wait_until(Duration::from_secs(5), || same.output().contains(WARNING)),
        "no warning while one secret signs both:\n{}",
        same.output()
    );
    same.signal("-TERM");
    assert_eq!(same.wait_exit(Duration::from_secs(10)), Some(0), "{}", same.output());

    let mut apart = shared.clone();
    apart["connector_secret_key"] = json!(CONNECTOR_SECRET);
    let (mut gateway, url) = VolleyProcess::gateway(VOLLEY, &dir, &apart.to_string(), "info");
    let addr: std::net::SocketAddr = url.strip_prefix("http://").expect("http URL").parse().expect("address");

    let token = volley_token(&["--connector", "--tenant", "acme", "--secret", CONNECTOR_SECRET]);
    let (code, output) = connector_self_test(&dir, addr, &token);
    assert_eq!(code, Some(0), "a credential signed with connector_secret_key registers:\n{output}");

    let token = volley_token(&["--connector", "--tenant", "acme", "--secret", SECRET]);
    let (code, output) = connector_self_test(&dir, addr, &token);
    assert_eq!(code, Some(1), "a credential signed with tableros_secret_key is refused:\n{output}");
    assert!(output.contains("refused registration") && output.contains("unauthorized"), "{output}");

    gateway.signal("-TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0));
    let output = gateway.output();
    assert!(!output.contains(WARNING), "a warning although the secrets differ:\n{output}");
}

/// `limits:` holds the protocol's limits and the engine's in one section
/// (serde cannot deny unknown keys there by itself): a misspelt key of
/// either kind stops the start, naming the key and the file.
#[test]
fn a_misspelt_limit_in_gateway_yaml_is_refused_naming_it() {
    let dir = TempDir::new("gateway-limit-typo");
    for typo in ["handshake_byte_max", "conections_max"] {
        let yaml = format!("listen: 127.0.0.1:0\ntableros_secret_key: {SECRET}\nlimits:\n  {typo}: 4096\n");
        let config = write_file(&dir, "gateway.yaml", yaml.as_bytes());
        let output = std::process::Command::new(VOLLEY)
            .args(["gateway", "--config", config.to_str().expect("utf-8")])
            .output()
            .expect("volley runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{typo}: {stderr}");
        assert!(stderr.contains("gateway.yaml") && stderr.contains(&format!("unknown field `{typo}`")), "{stderr}");
    }
}
