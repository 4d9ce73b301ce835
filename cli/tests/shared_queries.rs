//! Shared queries with real processes (PROTOCOL.md §5.1): a `volley
//! gateway` process, the real connector as a `volley connector` process with
//! one tunnel serving a 200 000-row Parquet file, and 300 browsers, level 1
//! and level 2, asking for it at once. Every browser's table is the source
//! (pyarrow reads one; the others are byte for byte the same stream), the
//! connector was asked for it once (or twice when a join raced the end),
//! and the gateway's memory grew by about one table, not 300.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use volley_testkit::browser::Browser;
use volley_testkit::connector::connector_config;
use volley_testkit::files::{big_parquet, write_file, TempDir};
use volley_testkit::http::{metrics_json, wait_health_connectors};
use volley_testkit::process::VolleyProcess;
use volley_testkit::pyarrow::pyarrow_compare;
use volley_testkit::tokens::{connector_token, session_token, SECRET};

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

const TENANT: &str = "acme";
const BROWSERS: usize = 300;

/// A field of /proc/<pid>/status, in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a kB field");
    kib * 1024
}

#[test]
fn three_hundred_browsers_opening_one_dataset_cost_the_connector_one_stream() {
    let dir = TempDir::new("shared-queries");
    let gateway_config = json!({
        "listen": "127.0.0.1:0", "workers": 2, "tableros_secret_key": SECRET,
        "limits": {"connections_per_ip_max": 2000},
    });
    let (gateway, url) = VolleyProcess::gateway(VOLLEY, &dir, &gateway_config.to_string(), "info");
    let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().expect("address");
    let parquet = big_parquet();
    let connector = connector_config(
        addr,
        TENANT,
        &connector_token(TENANT),
        json!({"parallel_connections": 1, "reconnect_delay": 0.1}),
        json!({"ventas": {"type": "parquet", "path": parquet}}),
    );
    let connector_file = dir.join("connector.yaml");
    std::fs::write(&connector_file, connector.to_string()).expect("write config");
    let _connector = VolleyProcess::spawn(VOLLEY, &["connector", "--config", connector_file.to_str().expect("utf-8")]);
    assert!(wait_health_connectors(addr, 1, Duration::from_secs(20)), "the connector registered its one tunnel");

    let token = session_token(TENANT, &["ventas"]);
    let mut browsers: Vec<Browser> = (0..BROWSERS).map(|i| Browser::connect(addr, &token, i % 2 == 0)).collect();
    let pid = gateway.child.id();
    let rss_before = status_bytes(pid, "VmRSS");
    for (i, browser) in browsers.iter_mut().enumerate() {
        browser.send(json!({"action": "query", "dataset": "ventas", "query_id": format!("q{i}")}));
    }
    let mut first: Option<Vec<u8>> = None;
    for (i, browser) in browsers.iter_mut().enumerate() {
        let result = browser.collect(&format!("q{i}"), Duration::from_secs(120));
        assert_eq!(result.error_code(), None, "browser {i}: {:?}", result.end);
        let bytes = result.bytes();
        match &first {
            None => first = Some(bytes),
            Some(expected) => {
                assert!(&bytes == expected, "browser {i} (level {}) got another stream than browser 0", 2 - i % 2)
            }
        }
    }
    let table = first.expect("300 tables");
    let path = write_file(&dir, "ventas.arrows", &table);
    let check = pyarrow_compare(&path, "parquet", &parquet, "id");
    assert_eq!(check.rows, check.source_rows, "{check:?}");
    assert!(check.mismatches.is_empty(), "{check:?}");

    let metrics = metrics_json(addr);
    let joins = metrics["counters"]["shared_joins"].as_u64().expect("shared_joins");
    let upstream = BROWSERS as u64 - joins;
    // The bound allowed: one upstream stream, two if a join raced the end.
    assert!(upstream <= 2, "the connector was asked {upstream} times for {BROWSERS} identical queries: {metrics}");
    // What the gateway read from the connector: that many tables, not 300.
    let read = metrics["counters"]["frames_in"].as_u64().expect("frames_in");
    let frames_per_table = metrics["counters"]["frames_out"].as_u64().expect("frames_out") / BROWSERS as u64;
    assert!(read <= upstream * frames_per_table + 8, "read {read} frames for {upstream} streams of {frames_per_table}");
    // The stated bound: the table once in the log, plus what the readers'
    // rings and sockets held at a time, within 64 MiB of slack; 300 streams
    // of their own would each have held up to limits.credit_bytes (4 MiB).
    let grown = status_bytes(pid, "VmHWM").saturating_sub(rss_before);
    eprintln!(
        "{upstream} upstream stream(s), {read} frames read, {} table bytes, gateway grew {grown} bytes",
        table.len()
    );
    let bound = 2 * table.len() as u64 + (64 << 20);
    assert!(grown <= bound, "the gateway grew {grown} bytes serving one {}-byte table 300 times", table.len());
}
