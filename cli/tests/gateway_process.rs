//! `volley gateway` as a process: settings that act on the process itself.

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
