//! End-to-end tests of the connector's reverse tunnel: the real gateway
//! (in-process, real sockets), the real connector (in-process via
//! `service::run_config`, or the `volley` binary), real files, and browsers
//! speaking level 1 and level 2. Arrow output is checked with pyarrow.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_connector::tunnel::SHUTDOWN_GRACE;
use volley_protocol::header::{FrameKind, FLAG_LAST};
use volley_testkit::browser::{Browser, QueryResult, Received};
use volley_testkit::connector::{connector_config, connector_yaml, InProcessConnector};
use volley_testkit::engine::{connectors_online, gateway_config, start, start_default_gateway};
use volley_testkit::files::{aggregate_csv, alltypes_parquet, big_parquet, write_file, TempDir};
use volley_testkit::gateway::ScriptedGateway;
use volley_testkit::http::wait_health_connectors;
use volley_testkit::ipc::{frame_kind, split};
use volley_testkit::process::VolleyProcess;
use volley_testkit::pyarrow::{pyarrow_compare, pyarrow_read};
use volley_testkit::tokens::{connector_token, connector_token_with, session_token};
use volley_testkit::{free_port, wait_until};

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

const TENANT: &str = "acme";

fn perf(parallel: usize) -> Value {
    json!({"parallel_connections": parallel, "reconnect_delay": 0.1})
}

/// The binary connector's config file in `dir`: tenant [`TENANT`] at the
/// gateway at `addr`, serving `aggregate` (a CSV), with `logging` added
/// when given.
fn aggregate_connector_file(dir: &TempDir, addr: SocketAddr, parallel: usize, logging: Option<Value>) -> PathBuf {
    let mut config = connector_config(
        addr,
        TENANT,
        &connector_token(TENANT),
        perf(parallel),
        json!({"aggregate": {"type": "csv", "path": aggregate_csv()}}),
    );
    if let Some(logging) = logging {
        config["logging"] = logging;
    }
    let path = dir.join("connector.yaml");
    std::fs::write(&path, config.to_string()).expect("write config");
    path
}

/// A gateway and the real connector serving `datasets` for [`TENANT`], registered.
fn serve(datasets: Value, performance: Value, dir: &TempDir) -> (volley_engine::Gateway, InProcessConnector) {
    let gateway = start_default_gateway();
    let tunnels = usize::try_from(performance["parallel_connections"].as_u64().unwrap_or(3)).expect("usize");
    let yaml = connector_yaml(gateway.local_addr(), TENANT, &connector_token(TENANT), performance, datasets);
    let connector = InProcessConnector::start(&yaml, dir.path());
    assert!(
        wait_until(Duration::from_secs(10), || connectors_online(&gateway) >= tunnels),
        "the connector registered {} of {tunnels} tunnels",
        connectors_online(&gateway)
    );
    (gateway, connector)
}

/// Asserts a finished level-2 query: one stream id, sequences 0.., `LAST`
/// only on the final end-of-stream frame, `total_bytes` = payload bytes.
fn assert_level2_framing(result: &QueryResult) {
    let stream_id = result.start.as_ref().expect("stream_start")["stream_id"].as_u64().expect("stream_id");
    assert!(!result.headers.is_empty(), "no frames");
    for (i, header) in result.headers.iter().enumerate() {
        assert_eq!(u64::from(header.stream_id), stream_id, "frame {i} stream id");
        assert_eq!(header.sequence, i as u64, "frame {i} sequence");
        let last = i + 1 == result.headers.len();
        assert_eq!(header.flags & FLAG_LAST != 0, last, "LAST flag on frame {i}");
    }
    assert_eq!(result.headers.last().map(|h| h.kind), Some(FrameKind::EndOfStream));
    let end = result.end.as_ref().expect("stream_end");
    assert_eq!(end["type"], "stream_end", "{end}");
    assert_eq!(end["total_bytes"].as_u64(), Some(result.bytes().len() as u64), "total_bytes counts IPC bytes");
}

/// Writes the query's IPC stream to a file and compares it with pyarrow's read of `source`.
fn assert_same_as_source(
    result: &QueryResult,
    dir: &TempDir,
    name: &str,
    kind: &str,
    source: &std::path::Path,
    column: &str,
) {
    let path = write_file(dir, name, &result.bytes());
    let check = pyarrow_compare(&path, kind, source, column);
    assert_eq!(check.rows, check.source_rows, "{name}: rows");
    assert!(check.rows > 0, "{name}: no rows");
    assert!(check.mismatches.is_empty(), "{name}: columns differ from pyarrow's read: {:?}", check.mismatches);
    assert_eq!(check.checksum.0, check.checksum.1, "{name}: checksum of {column}");
}

// ------------------------------------------------------------- 1. queries

#[test]
fn level2_browser_reads_csv_and_parquet_through_the_connector() {
    let dir = TempDir::new("level2");
    let datasets = json!({
        "aggregate": {"type": "csv", "path": aggregate_csv()},
        "alltypes": {"type": "parquet", "path": alltypes_parquet()},
    });
    let (gateway, _connector) = serve(datasets, perf(2), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    assert_eq!(browser.list(), ["aggregate", "alltypes"]);
    for (dataset, kind, source, column) in
        [("aggregate", "csv", aggregate_csv(), "c2"), ("alltypes", "parquet", alltypes_parquet(), "id")]
    {
        let result = browser.query(dataset, &format!("q-{dataset}"));
        assert_eq!(result.error_code(), None, "{dataset}: {:?}", result.end);
        assert_level2_framing(&result);
        assert_eq!(result.headers[0].kind, FrameKind::Schema);
        assert_same_as_source(&result, &dir, &format!("{dataset}.arrows"), kind, &source, column);
    }
    // Parquet knows its row count up front; flight_info carries it.
    let result = browser.query("alltypes", "q-again");
    assert_eq!(result.flight_info.as_ref().map(|f| f["records"].clone()), Some(json!(8)));
}

#[test]
fn level1_browser_gets_one_valid_ipc_stream() {
    let dir = TempDir::new("level1");
    let datasets = json!({"aggregate": {"type": "csv", "path": aggregate_csv()}});
    let (gateway, _connector) = serve(datasets, perf(1), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), false);
    let result = browser.query("aggregate", "q1");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(result.headers.is_empty());
    let start = result.start.as_ref().expect("stream_start");
    assert!(start.get("stream_id").is_none(), "no stream_id at level 1: {start}");
    // Level 1 has no frame headers: the first bytes are the IPC continuation marker.
    assert_eq!(&result.payloads[0][..4], &[0xFF, 0xFF, 0xFF, 0xFF]);
    assert_same_as_source(&result, &dir, "aggregate-l1.arrows", "csv", &aggregate_csv(), "c4");
}

// ----------------------------------------------------------- 2. slicing

#[test]
fn large_dataset_arrives_pre_sliced_in_whole_messages() {
    const MAX: usize = 64 * 1024;
    const MIN: usize = 16 * 1024;
    let dir = TempDir::new("slicing");
    let source = big_parquet();
    let datasets = json!({"big": {"type": "parquet", "path": source}});
    let performance =
        json!({"parallel_connections": 1, "reconnect_delay": 0.1, "max_chunk_size": MAX, "min_chunk_size": MIN});
    let (gateway, _connector) = serve(datasets, performance, &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    let result = browser.query("big", "q-big");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_level2_framing(&result);

    let kinds: Vec<FrameKind> = result.headers.iter().map(|h| h.kind).collect();
    assert_eq!(kinds[0], FrameKind::Schema, "schema first");
    assert_eq!(kinds[kinds.len() - 1], FrameKind::EndOfStream, "end of stream last");
    let middle = &kinds[1..kinds.len() - 1];
    assert!(
        middle.iter().all(|k| matches!(k, FrameKind::Dictionary | FrameKind::RecordBatch)),
        "only dictionaries and record batches between schema and end: {kinds:?}"
    );
    let first_batch = middle.iter().position(|k| *k == FrameKind::RecordBatch).expect("record batches");
    assert!(first_batch > 0 && middle[..first_batch].iter().all(|k| *k == FrameKind::Dictionary), "{kinds:?}");

    let batches: Vec<usize> = result
        .headers
        .iter()
        .zip(&result.payloads)
        .filter(|(h, _)| h.kind == FrameKind::RecordBatch)
        .map(|(_, p)| p.len())
        .collect();
    assert!(batches.len() > 20, "200k rows in {} record-batch frames", batches.len());
    for (i, (header, payload)) in result.headers.iter().zip(&result.payloads).enumerate() {
        let messages = split(payload);
        assert_eq!(messages.len(), 1, "frame {i} ({:?}) holds {} IPC messages", header.kind, messages.len());
        let message = (frame_kind(messages[0].header), messages[0].range.len());
        assert_eq!(message, (header.kind, payload.len()), "frame {i}: one whole message of the announced kind");
        assert!(messages[0].continuation, "frame {i}: the message starts with the continuation marker");
        assert!(payload.len() <= MAX, "frame {i} ({:?}) payload {} > max_chunk_size {MAX}", header.kind, payload.len());
    }
    for (i, len) in batches[..batches.len() - 1].iter().enumerate() {
        assert!(*len >= MIN, "record batch frame {i} is {len} bytes < min_chunk_size {MIN}");
    }
    assert_same_as_source(&result, &dir, "big.arrows", "parquet", &source, "id");
}

// ---------------------------------------------------------- 3. live follow

#[test]
fn live_subscriber_sees_rows_appended_after_subscribing() {
    let dir = TempDir::new("live");
    let ticker = dir.join("ticker.csv");
    std::fs::write(&ticker, "seq,symbol,price\n1,OLD1,10.5\n2,OLD2,11.25\n").expect("write ticker");
    let datasets = json!({"ticker": {"type": "csv", "path": ticker, "live": {"follow": true, "poll_ms": 50}}});
    let (gateway, _connector) = serve(datasets, perf(1), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["ticker"]), true);
    assert_eq!(browser.list(), ["ticker"]);
    browser.send(json!({"action": "subscribe", "dataset": "ticker", "query_id": "s1"}));
    let start = loop {
        let message = browser.next_json(Duration::from_secs(10));
        match message["type"].as_str() {
            Some("flight_info") => continue,
            Some("stream_start") => break message,
            _ => panic!("unexpected reply to subscribe: {message}"),
        }
    };
    assert_eq!(start["live"], true, "{start}");

    // Append in two bursts, the second after the first was surely read.
    let appended: Vec<String> = (0..6).map(|i| format!("NEW{i}")).collect();
    let append = |rows: &[String], first_seq: usize| {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().append(true).open(&ticker).expect("open ticker");
        for (i, symbol) in rows.iter().enumerate() {
            writeln!(file, "{},{symbol},{}.5", first_seq + i, 100 + i).expect("append");
        }
    };
    append(&appended[..3], 3);
    std::thread::sleep(Duration::from_millis(200));
    append(&appended[3..], 6);

    let mut payloads: Vec<u8> = Vec::new();
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let symbols = loop {
        assert!(Instant::now() < deadline, "appended rows did not arrive; frames {kinds:?}");
        match browser.next(Duration::from_millis(300)) {
            Some(Received::Binary(data)) => {
                let header = volley_protocol::header::FrameHeader::decode(&data).expect("header");
                assert_eq!(header.sequence, kinds.len() as u64, "live frames in order");
                kinds.push(header.kind);
                payloads.extend_from_slice(&data[16..]);
                continue;
            }
            Some(other) => panic!("unexpected message while live: {other:?}"),
            None if !kinds.contains(&FrameKind::RecordBatch) => continue,
            None => {}
        }
        // Quiet for 300 ms: read what arrived so far (plus an end-of-stream marker).
        let mut stream = payloads.clone();
        stream.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        let path = write_file(&dir, "ticker.arrows", &stream);
        let (_, symbols) = pyarrow_read(&path, "symbol");
        if symbols.len() >= 2 + appended.len() {
            break symbols;
        }
    };
    assert_eq!(kinds[0], FrameKind::Schema);
    let tail: Vec<&str> = symbols.iter().rev().take(appended.len()).rev().map(|v| v.as_str().unwrap_or("")).collect();
    assert_eq!(tail, appended.iter().map(String::as_str).collect::<Vec<_>>(), "all appended rows, in order");
    assert_eq!(symbols.len(), 2 + appended.len(), "no row twice: {symbols:?}");

    browser.send(json!({"action": "unsubscribe", "query_id": "s1"}));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no unsubscribed reply");
        if let Some(Received::Json(v)) = browser.next(Duration::from_secs(1)) {
            if v["type"] == "unsubscribed" {
                break;
            }
        }
    }
}

// ----------------------------------------------------------- 4. reconnect

#[test]
fn binary_connector_retries_with_backoff_and_registers_with_each_new_gateway() {
    let dir = TempDir::new("reconnect");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = aggregate_connector_file(&dir, addr, 1, None);
    let mut connector = VolleyProcess::spawn(VOLLEY, &["connector", "--config", config.to_str().expect("utf8")]);

    // No gateway yet: every attempt fails and is logged, with growing delays.
    assert!(
        wait_until(Duration::from_secs(5), || !connector.instants_of("(attempt 4)").is_empty()),
        "four failed attempts were not logged:\n{}",
        connector.output()
    );
    let at = |n: u32| connector.instants_of(&format!("(attempt {n})"))[0];
    let first_gap = at(2) - at(1);
    let third_gap = at(4) - at(3);
    assert!(third_gap > first_gap, "backoff grows: {first_gap:?} then {third_gap:?}\n{}", connector.output());

    let started = Instant::now();
    let gateway = start(gateway_config(addr));
    assert!(
        wait_health_connectors(addr, 1, Duration::from_secs(5)),
        "no registration after the gateway came up:\n{}",
        connector.output()
    );
    eprintln!("registered {:?} after the gateway started", started.elapsed());
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    assert_eq!(browser.query("aggregate", "q1").error_code(), None);
    drop(browser);

    gateway.shutdown();
    let gateway = start(gateway_config(addr));
    let started = Instant::now();
    assert!(
        wait_health_connectors(addr, 1, Duration::from_secs(5)),
        "no registration with the second gateway:\n{}",
        connector.output()
    );
    eprintln!("re-registered {:?} after the second gateway started", started.elapsed());
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    assert_eq!(browser.query("aggregate", "q2").error_code(), None);
    assert!(connector.output().matches("registered with").count() >= 2, "{}", connector.output());

    connector.signal("-TERM");
    assert_eq!(connector.wait_exit(Duration::from_secs(SHUTDOWN_GRACE.as_secs() + 2)), Some(0));
    drop(gateway);
}

// ------------------------------------------------- 5. connection lost mid-stream

#[test]
fn gateway_lost_mid_stream_ends_the_streams_and_the_connector_serves_the_next_gateway() {
    let dir = TempDir::new("midstream");
    let source = big_parquet();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gateway_cfg = || {
        let mut config = gateway_config(addr);
        config.limits.credit_bytes = 64 * 1024;
        config
    };
    let gateway = start(gateway_cfg());
    let performance = json!({"parallel_connections": 1, "reconnect_delay": 0.1, "max_chunk_size": 32 * 1024});
    let yaml = connector_yaml(
        addr,
        TENANT,
        &connector_token(TENANT),
        performance,
        json!({"big": {"type": "parquet", "path": source}}),
    );
    let _connector = InProcessConnector::start(&yaml, dir.path());
    assert!(wait_until(Duration::from_secs(10), || connectors_online(&gateway) == 1));

    // A slow browser: reads a few frames, then nothing; credit stops the producer.
    let mut slow = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    slow.send(json!({"action": "query", "dataset": "big", "query_id": "slow"}));
    let mut frames = 0;
    while frames < 3 {
        match slow.next(Duration::from_secs(10)) {
            Some(Received::Binary(_)) => frames += 1,
            Some(Received::Json(v)) => assert!(v["type"] != "stream_end" && v["type"] != "error", "{v}"),
            other => panic!("slow query: {other:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    let shutdown = std::thread::spawn(move || gateway.shutdown());
    assert!(wait_until(Duration::from_secs(10), || shutdown.is_finished()), "gateway shutdown hangs");
    shutdown.join().expect("shutdown");
    // The slow browser had a backlog queued: after shutdown it drains what
    // reached its socket and then sees the connection end, never a hang.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        match slow.next(Duration::from_secs(2)) {
            Some(Received::Close(_)) => break true,
            Some(_) if Instant::now() < deadline => continue,
            _ => break false,
        }
    };
    assert!(ended, "a browser with a backlog must see its connection end after gateway shutdown");
    drop(slow);

    // The connector's stream thread must end for it to reconnect; a hung
    // producer would hold it for at least SHUTDOWN_GRACE.
    let gateway = start(gateway_cfg());
    let started = Instant::now();
    assert!(
        wait_until(SHUTDOWN_GRACE - Duration::from_secs(1), || connectors_online(&gateway) == 1),
        "the connector did not re-register within {:?}",
        SHUTDOWN_GRACE - Duration::from_secs(1)
    );
    eprintln!("re-registered {:?} after the new gateway started", started.elapsed());
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = browser.query("big", "again");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_level2_framing(&result);
    assert_same_as_source(&result, &dir, "big-again.arrows", "parquet", &source, "value");
}

// ------------------------------------------------------ 6. graceful shutdown

#[test]
fn shutdown_flag_stops_an_idle_connector_promptly() {
    let dir = TempDir::new("shutdown");
    let datasets = json!({"aggregate": {"type": "csv", "path": aggregate_csv()}});
    let (gateway, connector) = serve(datasets, perf(2), &dir);
    let took = connector.stop_within(SHUTDOWN_GRACE + Duration::from_secs(1));
    eprintln!("idle connector stopped in {took:?}");
    assert!(
        wait_until(Duration::from_secs(2), || connectors_online(&gateway) == 0),
        "the gateway still counts the stopped connector's tunnels"
    );

    // Also while it is retrying against a port where nothing listens.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let yaml = connector_yaml(
        nowhere,
        TENANT,
        &connector_token(TENANT),
        perf(2),
        json!({"aggregate": {"type": "csv", "path": aggregate_csv()}}),
    );
    let retrying = InProcessConnector::start(&yaml, dir.path());
    std::thread::sleep(Duration::from_millis(400));
    let took = retrying.stop_within(SHUTDOWN_GRACE + Duration::from_secs(1));
    eprintln!("retrying connector stopped in {took:?}");
}

#[test]
fn binary_connector_exits_zero_on_sigterm() {
    let dir = TempDir::new("sigterm");
    let gateway = start_default_gateway();
    let config = aggregate_connector_file(&dir, gateway.local_addr(), 2, None);
    let mut connector = VolleyProcess::spawn(VOLLEY, &["connector", "--config", config.to_str().expect("utf8")]);
    assert!(
        wait_until(Duration::from_secs(10), || connectors_online(&gateway) == 2),
        "the binary did not register:\n{}",
        connector.output()
    );
    let started = Instant::now();
    connector.signal("-TERM");
    let code = connector.wait_exit(Duration::from_secs(SHUTDOWN_GRACE.as_secs() + 2));
    eprintln!("exited {code:?} {:?} after SIGTERM", started.elapsed());
    assert_eq!(code, Some(0), "{}", connector.output());
    assert!(wait_until(Duration::from_secs(2), || connectors_online(&gateway) == 0));
}

/// Runs the binary connector with `logging.level: level` (RUST_LOG unset),
/// serves one query through it, and returns everything it printed.
fn connector_log_at(level: &str) -> String {
    let dir = TempDir::new(&format!("log-{level}"));
    let gateway = start_default_gateway();
    let config = aggregate_connector_file(&dir, gateway.local_addr(), 1, Some(json!({"level": level})));
    let mut connector =
        VolleyProcess::spawn_without_rust_log(VOLLEY, &["connector", "--config", config.to_str().expect("utf8")]);
    assert!(
        wait_until(Duration::from_secs(10), || connectors_online(&gateway) == 1),
        "the binary did not register:\n{}",
        connector.output()
    );
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    assert_eq!(browser.query("aggregate", "q-log").error_code(), None);
    // The stream's last debug line is written before its stream_end is sent.
    connector.signal("-TERM");
    assert_eq!(connector.wait_exit(Duration::from_secs(SHUTDOWN_GRACE.as_secs() + 2)), Some(0));
    connector.output()
}

#[test]
fn the_connectors_logging_level_decides_what_it_prints() {
    let debug = connector_log_at("debug");
    assert!(debug.contains("DEBUG") && debug.contains("do_get"), "no debug line at level debug:\n{debug}");
    assert!(debug.contains("ended: "), "the stream's end is logged at level debug:\n{debug}");
    assert!(debug.contains("registered with"), "info lines are printed at level debug:\n{debug}");

    let info = connector_log_at("info");
    assert!(info.contains("registered with"), "info lines at level info:\n{info}");
    assert!(!info.contains("DEBUG"), "no debug line at level info:\n{info}");

    let warn = connector_log_at("warn");
    assert!(!warn.contains("registered with") && !warn.contains("DEBUG"), "only warnings and errors at warn:\n{warn}");
}

// -------------------------------------------------------------- 7. --test

fn self_test(config: &str, dir: &TempDir, budget: Duration) -> (Option<i32>, String, Duration) {
    let path = dir.join("connector.yaml");
    std::fs::write(&path, config).expect("write config");
    let started = Instant::now();
    let mut process = VolleyProcess::spawn(VOLLEY, &["connector", "--config", path.to_str().expect("utf8"), "--test"]);
    let code = process.wait_exit(budget);
    (code, process.output(), started.elapsed())
}

#[test]
fn self_test_passes_with_a_gateway_and_good_datasets() {
    let dir = TempDir::new("selftest-ok");
    let gateway = start_default_gateway();
    let datasets = json!({
        "aggregate": {"type": "csv", "path": aggregate_csv()},
        "alltypes": {"type": "parquet", "path": alltypes_parquet()},
    });
    let yaml = connector_yaml(gateway.local_addr(), TENANT, &connector_token(TENANT), perf(1), datasets);
    let (code, output, _) = self_test(&yaml, &dir, Duration::from_secs(20));
    assert_eq!(code, Some(0), "{output}");
    let line = |needle: &str| {
        output.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?}:\n{output}"))
    };
    let aggregate = line("dataset aggregate");
    assert!(aggregate.contains("100 rows") && aggregate.contains("c1: Utf8"), "{aggregate}");
    let alltypes = line("dataset alltypes");
    assert!(alltypes.contains("8 rows") && alltypes.contains("id: Int32"), "{alltypes}");
    assert!(line("gateway").contains("registered"), "{output}");
    assert!(!output.contains("FAIL"), "{output}");
}

#[test]
fn self_test_fails_on_a_missing_dataset_file() {
    let dir = TempDir::new("selftest-missing");
    let gateway = start_default_gateway();
    let datasets = json!({
        "aggregate": {"type": "csv", "path": aggregate_csv()},
        "vanished_sales": {"type": "csv", "path": dir.join("no-such-file.csv")},
    });
    let yaml = connector_yaml(gateway.local_addr(), TENANT, &connector_token(TENANT), perf(1), datasets);
    let (code, output, _) = self_test(&yaml, &dir, Duration::from_secs(20));
    assert_eq!(code, Some(1), "{output}");
    let fail = output.lines().find(|l| l.contains("FAIL")).unwrap_or_else(|| panic!("no FAIL line:\n{output}"));
    assert!(fail.contains("config") && fail.contains("vanished_sales"), "{fail}");
}

#[test]
fn self_test_reports_a_refused_registration() {
    let dir = TempDir::new("selftest-refused");
    let gateway = start_default_gateway();
    let datasets = json!({"aggregate": {"type": "csv", "path": aggregate_csv()}});
    let bad_token = connector_token_with(TENANT, "not-the-gateway-secret");
    let yaml = connector_yaml(gateway.local_addr(), TENANT, &bad_token, perf(1), datasets);
    let (code, output, _) = self_test(&yaml, &dir, Duration::from_secs(20));
    assert_eq!(code, Some(1), "{output}");
    let fail = output.lines().find(|l| l.contains("FAIL")).unwrap_or_else(|| panic!("no FAIL line:\n{output}"));
    assert!(fail.contains("gateway") && fail.contains("refused registration"), "{fail}");
    assert_eq!(connectors_online(&gateway), 0);
}

#[test]
fn self_test_fails_fast_without_a_gateway() {
    let dir = TempDir::new("selftest-nogw");
    let datasets = json!({"aggregate": {"type": "csv", "path": aggregate_csv()}});
    // Nothing listens on this port: connection refused.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let yaml = connector_yaml(nowhere, TENANT, &connector_token(TENANT), perf(1), datasets.clone());
    let (code, output, took) = self_test(&yaml, &dir, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{output}");
    assert!(output.lines().any(|l| l.starts_with("FAIL gateway")), "{output}");
    assert!(took < Duration::from_secs(5), "--test took {took:?} with nothing listening");

    // Something listens but never answers the upgrade: the handshake times out.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let yaml = connector_yaml(silent.local_addr().expect("addr"), TENANT, &connector_token(TENANT), perf(1), datasets);
    let limit = volley_connector::tunnel::HANDSHAKE_TIMEOUT + Duration::from_secs(3);
    let (code, output, took) = self_test(&yaml, &dir, limit);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.lines().any(|l| l.starts_with("FAIL gateway")), "{output}");
    eprintln!("--test against a silent listener failed after {took:?}");
    drop(silent);
}

// ---------------------------------------------------- 8. bad requests

#[test]
fn path_names_are_refused_and_a_failing_source_does_not_break_the_tunnel() {
    let dir = TempDir::new("badnames");
    let doomed = dir.join("doomed.csv");
    std::fs::copy(aggregate_csv(), &doomed).expect("copy csv");
    let datasets = json!({
        "aggregate": {"type": "csv", "path": aggregate_csv()},
        "doomed": {"type": "csv", "path": doomed},
    });
    let (gateway, _connector) = serve(datasets, perf(1), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);

    let result = browser.query("../../etc/passwd", "q-passwd");
    assert_eq!(result.error_code().as_deref(), Some("dataset_not_found"), "{:?}", result.end);
    assert!(result.payloads.is_empty());

    // Registered at start, gone now: the connector's catalogue cannot open it.
    std::fs::remove_file(&doomed).expect("delete csv");
    let result = browser.query("doomed", "q-doomed");
    assert_eq!(result.error_code().as_deref(), Some("source_error"), "{:?}", result.end);
    let message = result.end.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("doomed"), "the error names the dataset: {message}");

    // The tunnel still serves.
    let result = browser.query("aggregate", "q-after");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_same_as_source(&result, &dir, "after.arrows", "csv", &aggregate_csv(), "c3");
    assert_eq!(connectors_online(&gateway), 1);
}

/// The connector's own guard, without the gateway's registry in front: a
/// scripted gateway on a real socket asks for tickets that are paths.
#[test]
fn connector_refuses_tickets_outside_its_catalogue() {
    let dir = TempDir::new("tickets");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connector = InProcessConnector::start(
        &connector_yaml(
            addr,
            TENANT,
            &connector_token(TENANT),
            perf(1),
            json!({"aggregate": {"type": "csv", "path": aggregate_csv()}}),
        ),
        dir.path(),
    );
    let mut gateway = ScriptedGateway::accept(&listener);
    let register = gateway.read_json();
    assert_eq!(register["action"], "register");
    assert_eq!(register["datasets"], json!(["aggregate"]));
    assert_eq!(register["protocol"], 2);
    gateway.send(json!({"status": "ok", "data": {"session_id": "c-1", "protocol": 2, "heartbeat_seconds": 15}}));
    for (i, ticket) in ["../../etc/passwd", "/etc/passwd", "./aggregate", "aggregate/../../etc/passwd", "AGGREGATE"]
        .into_iter()
        .enumerate()
    {
        let request_id = format!("f{i}");
        gateway.send(json!({"action": "get_flight_info", "request_id": request_id, "descriptor": {"path": [ticket]}}));
        let reply = gateway.read_json();
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("dataset_not_found")),
            "{reply}"
        );
        assert_eq!(reply["request_id"], request_id.as_str());
        let request_id = format!("r{i}");
        gateway.send(json!({"action": "do_get", "request_id": request_id, "ticket": ticket, "stream_id": 100 + i, "credit_bytes": 1 << 20}),
        );
        let reply = gateway.read_json();
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("dataset_not_found")),
            "{reply}"
        );
        assert_eq!(reply["request_id"], request_id.as_str());
    }
    // The same tunnel then serves a configured name.
    gateway.send(
        json!({"action": "do_get", "request_id": "r9", "ticket": "aggregate", "stream_id": 9, "credit_bytes": 1 << 30}),
    );
    let start = gateway.read_json();
    assert_eq!((start["type"].as_str(), start["stream_id"].as_u64()), (Some("stream_start"), Some(9)), "{start}");
    let (frames, end) = gateway.read_stream();
    let mut stream = Vec::new();
    for data in &frames {
        let header = volley_protocol::header::FrameHeader::decode(data).expect("header");
        assert_eq!(header.stream_id, 9);
        stream.extend_from_slice(&data[16..]);
    }
    assert_eq!(end["type"], "stream_end", "{end}");
    assert_eq!(end["total_bytes"].as_u64(), Some(stream.len() as u64));
    let path = write_file(&dir, "direct.arrows", &stream);
    let check = pyarrow_compare(&path, "csv", &aggregate_csv(), "c2");
    assert_eq!((check.rows, check.mismatches.len()), (100, 0), "{check:?}");
    connector.stop_within(SHUTDOWN_GRACE + Duration::from_secs(1));
}

// ------------------------------------------------------------ 9. tenants

#[test]
fn tenants_never_see_each_others_datasets() {
    let dir = TempDir::new("tenants");
    let gateway = start_default_gateway();
    let addr = gateway.local_addr();
    let a = InProcessConnector::start(
        &connector_yaml(
            addr,
            "tenant-a",
            &connector_token("tenant-a"),
            perf(1),
            json!({"a_sales": {"type": "csv", "path": aggregate_csv()}, "common": {"type": "csv", "path": aggregate_csv()}}),
        ),
        dir.path(),
    );
    let b = InProcessConnector::start(
        &connector_yaml(
            addr,
            "tenant-b",
            &connector_token("tenant-b"),
            perf(1),
            json!({"b_secret": {"type": "parquet", "path": alltypes_parquet()}, "common": {"type": "parquet", "path": alltypes_parquet()}}),
        ),
        dir.path(),
    );
    assert!(wait_until(Duration::from_secs(10), || connectors_online(&gateway) == 2));

    let mut browser_a = Browser::connect(addr, &session_token("tenant-a", &["*"]), true);
    let mut browser_b = Browser::connect(addr, &session_token("tenant-b", &["*"]), true);
    assert_eq!(browser_a.list(), ["a_sales", "common"]);
    assert_eq!(browser_b.list(), ["b_secret", "common"]);

    let result = browser_a.query("b_secret", "steal");
    assert_eq!(result.error_code().as_deref(), Some("dataset_not_found"), "{:?}", result.end);
    assert!(result.payloads.is_empty());
    let result = browser_b.query("a_sales", "steal");
    assert_eq!(result.error_code().as_deref(), Some("dataset_not_found"), "{:?}", result.end);

    // The same name resolves within each tenant only.
    let result = browser_a.query("common", "mine");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_same_as_source(&result, &dir, "common-a.arrows", "csv", &aggregate_csv(), "c2");
    let result = browser_b.query("common", "mine");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_same_as_source(&result, &dir, "common-b.arrows", "parquet", &alltypes_parquet(), "id");
    drop((a, b));
}
