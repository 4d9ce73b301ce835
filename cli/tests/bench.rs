//! The load-test harness itself: each scenario runs end to end against a
//! gateway the bench starts (a child `volley gateway`), finishes, and writes
//! a record whose fields are present and whose HDR histograms decode. No
//! figure is compared with a threshold: this machine is shared and noisy.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_bench(args: &[&str], out: &Path) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_volley"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("volley bench runs");
    assert!(
        output.status.success(),
        "volley bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let scenario = args[0];
    // stderr is a pipe here, as in CI or a log: progress is a line per
    // phase, never redrawn with carriage returns.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\r'), "volley bench {args:?} redrew its progress on a pipe:\n{stderr:?}");
    for phase in ["[baseline] ", &format!("[{scenario}")] {
        assert!(stderr.lines().any(|l| l.starts_with(phase)), "no line for the {phase:?} phase:\n{stderr}");
    }
    let json = std::fs::read_dir(out)
        .expect("out dir exists")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{scenario}-")))
        })
        .expect("a JSON record");
    assert!(json.with_extension("svg").exists(), "an SVG plot beside {}", json.display());
    assert!(out.join("README.md").exists(), "the report is regenerated");
    serde_json::from_str(&std::fs::read_to_string(&json).expect("read record")).expect("record is JSON")
}

/// The fields every record carries.
fn assert_record(record: &Value, scenario: &str) {
    assert_eq!(record["scenario"], scenario);
    for field in ["date", "command", "commit", "build_profile", "headline", "figures", "baseline", "gateway"] {
        assert!(!record[field].is_null(), "{scenario}: field {field} missing in {record}");
    }
    for field in ["cores", "kernel", "cpu_model"] {
        assert!(!record["machine"][field].is_null(), "machine.{field}");
    }
    assert!(record["headline"]["value"].is_number(), "headline value: {}", record["headline"]);
    assert!(record["baseline"]["relay_64k_gbps"].is_number(), "baseline measured in the same run");
    assert!(record["command"].as_str().is_some_and(|c| c.contains(scenario)));
    assert!(record["errors"].as_array().is_some_and(|e| e.is_empty()), "{scenario}: errors {}", record["errors"]);
    decode_all(&record["histograms"]);
    decode_all(&record["baseline"]);
}

/// Every `hdr_v2_base64` string under `value` deserialises as an HDR V2 histogram.
fn decode_all(value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get("hdr_v2_base64") {
                let histogram = volley_bench::hist::decode(text).expect("HDR V2 base64 decodes");
                assert_eq!(Some(histogram.len()), map.get("count").and_then(Value::as_u64), "count matches");
            }
            map.values().for_each(decode_all);
        }
        Value::Array(items) => items.iter().for_each(decode_all),
        _ => {}
    }
}

#[test]
fn bench_throughput_writes_a_complete_record_with_metrics_on_and_off() {
    let out = out_dir("throughput");
    let record = run_bench(&["throughput", "--duration", "1"], &out);
    assert_record(&record, "throughput");
    assert!(record["baseline_ratio"].is_number());
    let runs = 2 * volley_bench::scenarios::THROUGHPUT_REPETITIONS;
    assert_eq!(record["figures"]["runs"].as_array().map(Vec::len), Some(runs), "64 KiB and 1 MiB frames, repeated");
    for key in ["64k_frames", "1024k_frames"] {
        let (gateway, relay) =
            (&record["figures"][format!("gbps_{key}")], &record["figures"][format!("relay_gbps_{key}")]);
        assert!(gateway.as_f64().is_some_and(|g| g > 0.0) && relay.as_f64().is_some_and(|r| r > 0.0), "{key}");
    }
    assert!(record["metrics_off"]["headline"]["value"].is_number(), "metrics off run recorded");
    assert!(record["figures"]["runs"][0]["complete"].as_bool().unwrap_or(false));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bench_latency_records_decodable_latency_histograms() {
    let out = out_dir("latency");
    let record = run_bench(&["latency", "--duration", "1", "--rate", "2000", "--browsers", "20"], &out);
    assert_record(&record, "latency");
    let latency = &record["histograms"]["latency_from_scheduled"];
    assert_eq!(latency["count"].as_u64(), Some(2000 * 20), "every frame reached every browser");
    let histogram = volley_bench::hist::decode(latency["hdr_v2_base64"].as_str().expect("base64")).expect("decodes");
    assert!(histogram.value_at_quantile(0.5) > 0);
    assert!(record["metrics_off"]["histograms"]["latency_from_scheduled"].is_object());
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bench_fanout_to_ten_browsers_completes() {
    let out = out_dir("fanout");
    let record = run_bench(&["fanout", "--browsers", "10", "--duration", "1"], &out);
    assert_record(&record, "fanout");
    let run = &record["figures"]["runs"][0];
    assert_eq!(run["browsers"], 10);
    assert_eq!(run["completed_browsers"], 10);
    assert!(record["histograms"]["completion_10_browsers"]["count"].as_u64() == Some(10));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bench_query_fanout_serves_every_browser_from_one_upstream_stream_beside_the_relay() {
    let out = out_dir("query-fanout");
    let record = run_bench(&["query-fanout", "--browsers", "50", "--size", "1MiB", "--duration", "1"], &out);
    assert_record(&record, "query-fanout");
    let figures = &record["figures"];
    assert_eq!((figures["browsers"].as_u64(), figures["served"].as_u64()), (Some(50), Some(50)), "{figures}");
    assert_eq!(figures["dataset_bytes"].as_u64(), Some(1 << 20));
    // Sharing: one upstream stream, two if a query raced the stream's end (PROTOCOL.md §5.1).
    let upstream = figures["upstream_streams"].as_u64().expect("upstream_streams");
    assert!((1..=2).contains(&upstream), "upstream streams: {upstream}");
    assert!(figures["connector_bytes_over_dataset"].as_f64().is_some_and(|r| r <= 2.0), "{figures}");
    let relay = &figures["relay"];
    assert_eq!((relay["readers"].as_u64(), relay["bytes_per_reader"].as_u64()), (Some(50), Some(1 << 20)));
    assert!(relay["aggregate_gbps"].as_f64().is_some_and(|g| g > 0.0), "relay: {relay}");
    assert!(record["baseline_ratio"].as_f64().is_some_and(|r| r > 0.0), "gateway / relay");
    assert_eq!(record["histograms"]["relay_completion"]["count"].as_u64(), Some(50));
    assert_eq!(record["histograms"]["query_completion"]["count"].as_u64(), Some(50));
    for goal in ["served", "connector_bytes_over_dataset", "aggregate_over_relay", "completion_p99_s"] {
        assert!(figures["goals"][goal]["met"].is_boolean(), "goal {goal}: {}", figures["goals"]);
    }
    assert_eq!(figures["goals"]["served"]["met"], true);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bench_idle_reads_the_gateway_rss() {
    let out = out_dir("idle");
    let record = run_bench(&["idle", "--browsers", "200", "--duration", "1"], &out);
    assert_record(&record, "idle");
    assert_eq!(record["figures"]["sessions_open"], 200);
    assert!(record["figures"]["rss_after_bytes"].as_u64().unwrap_or(0) > 0);
    let report = std::fs::read_to_string(out.join("README.md")).expect("report");
    assert!(report.contains("| idle |"), "{report}");
    let _ = std::fs::remove_dir_all(out);
}

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn bench_source_writes_one_record_per_source_with_pyarrow_beside_it() {
    const ROWS: u64 = 3000;
    let out = out_dir("source");
    let output = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["bench", "source", "--rows", &ROWS.to_string(), "--out"])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("volley bench source runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "volley bench source failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("out dir exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let report = std::fs::read_to_string(out.join("README.md")).expect("the report is regenerated");
    let postgres_measured = !stdout.contains("postgres skipped");
    let mut sources = vec!["csv", "parquet"];
    if postgres_measured {
        sources.push("postgres");
    }
    assert_eq!(records.len(), sources.len(), "one record per measured source: {records:?}\n{stdout}");
    let pyarrow = python_has("pyarrow");
    for source in sources {
        let scenario = format!("source-{source}");
        let path = records
            .iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{scenario}-"))))
            .unwrap_or_else(|| panic!("no {scenario} record in {records:?}"));
        assert!(path.with_extension("svg").exists(), "an SVG beside {}", path.display());
        let record: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
        assert_eq!(record["scenario"], scenario.as_str());
        for field in ["date", "command", "commit", "build_profile", "headline", "figures", "baseline", "gateway"] {
            assert!(!record[field].is_null(), "{scenario}: field {field} missing");
        }
        for field in ["cores", "kernel", "cpu_model"] {
            assert!(!record["machine"][field].is_null(), "machine.{field}");
        }
        assert!(record["command"].as_str().is_some_and(|c| c.contains("bench source")));
        assert!(record["headline"]["value"].as_f64().is_some_and(|v| v > 0.0), "{}", record["headline"]);
        let volley = &record["figures"]["volley"];
        assert_eq!(volley["rows"].as_u64(), Some(ROWS), "{scenario}: every row reached IPC");
        assert!(volley["ipc_mb_per_s"].is_number() && volley["source_mb_per_s"].is_number());
        assert_eq!(volley["samples_seconds"].as_array().map(Vec::len), Some(volley_bench::source::REPEATS));
        assert!(report.contains(&format!("| {scenario} |")), "{report}");
        let needs_module = if source == "postgres" { "adbc_driver_postgresql" } else { "pyarrow" };
        if pyarrow && python_has(needs_module) {
            assert!(record["errors"].as_array().is_some_and(Vec::is_empty), "{scenario}: {}", record["errors"]);
            assert_eq!(record["baseline"]["pyarrow"]["rows"].as_u64(), Some(ROWS), "{scenario}: pyarrow read it all");
            assert!(record["baseline_ratio"].as_f64().is_some_and(|r| r > 0.0), "{scenario}: ratio");
            assert!(record["figures"]["bars"]["items"].as_array().is_some_and(|b| b.len() >= 2), "bars");
        } else {
            eprintln!("SKIP: {needs_module} is not installed: {scenario} has no pyarrow baseline");
        }
    }
    let _ = std::fs::remove_dir_all(out);
}
