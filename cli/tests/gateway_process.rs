//! `volley gateway` as a process: settings that act on the process itself,
//! and what it says at start about its secrets.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

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

    let (mut default, _) = VolleyProcess::gateway(&dir, &base.to_string(), "info");
    assert_eq!(thp_enabled(default.child.id()), "0", "the default config turns THP off");
    default.signal("-TERM");
    assert_eq!(default.wait_exit(Duration::from_secs(10)), Some(0), "{}", default.output());

    let mut on = base.clone();
    on["transparent_huge_pages"] = json!(true);
    let (mut opted_in, _) = VolleyProcess::gateway(&dir, &on.to_string(), "info");
    assert_eq!(thp_enabled(opted_in.child.id()), "1", "transparent_huge_pages: true leaves THP to the kernel");
    opted_in.signal("-TERM");
    assert_eq!(opted_in.wait_exit(Duration::from_secs(10)), Some(0), "{}", opted_in.output());
}

/// `volley token` as the operator runs it; its stdout, trimmed.
fn volley_token(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_volley"))
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
    let mut process = VolleyProcess::spawn(&["connector", "--config", path.to_str().expect("utf-8"), "--test"]);
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
    let (mut same, _) = VolleyProcess::gateway(&dir, &shared.to_string(), "info");
    assert!(
        wait_until(Duration::from_secs(5), || same.output().contains(WARNING)),
        "no warning while one secret signs both:\n{}",
        same.output()
    );
    same.signal("-TERM");
    assert_eq!(same.wait_exit(Duration::from_secs(10)), Some(0), "{}", same.output());

    let mut apart = shared.clone();
    apart["connector_secret_key"] = json!(CONNECTOR_SECRET);
    let (mut gateway, url) = VolleyProcess::gateway(&dir, &apart.to_string(), "info");
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
