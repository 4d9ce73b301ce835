//! Golden-file interop through the whole tunnel: every Parquet file of the
//! shared test data (top level) and every little-endian Arrow IPC stream is
//! served by ONE in-process connector through ONE in-process gateway and read
//! by ONE level-2 browser socket. What the browser receives is decoded with
//! arrow-rs and must equal arrow-rs's own read of the source; then pyarrow
//! (one subprocess for all files) must agree with its own read of the source.
//!
//! Files that cannot be served are listed by name with the reason, and for
//! them the browser must get a clear `source_error` instead of a hang. Every
//! file of `parquet/bad_data` must fail the same way, and the tunnel must keep
//! serving the next query. The big-endian IPC stream must be refused.
//!
//! No mocks: real sockets, the real gateway and connector, real files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};
use volley_testkit::arrow::assert_same_rows;
use volley_testkit::browser::{Browser, QueryResult};
use volley_testkit::connector::{connector_yaml, InProcessConnector};
use volley_testkit::engine::{connectors_online, start_default_gateway};
use volley_testkit::files::{testdata, write_file, TempDir};
use volley_testkit::tokens::{connector_token, session_token};
use volley_testkit::wait_until;

const TENANT: &str = "goldens";

/// Longest dataset name the gateway accepts (protocol `id_bytes_max`).
const DATASET_NAME_BYTES_MAX: usize = 64;

/// IPC directories under `testdata/arrow-ipc` holding little-endian streams.
const IPC_DIRS: [&str; 5] = ["cpp-21.0.0", "1.0.0-littleendian", "0.14.1", "4.0.0-shareddict", "2.0.0-compression"];

/// Good files the connector refuses, by file name (relative to its testdata
/// directory), with the reason. The browser must get `source_error` for them.
/// (The IPC writer encodes every type of the other files.)
const REFUSED: &[(&str, &str)] = &[(
    "parquet/dict-page-offset-zero.parquet",
    "parquet-rs 60 fails on this old writer's file (dictionary_page_offset = 0) with \
     \"Expected list element type of I64 but got I16\"; pyarrow reads its 39 rows",
)];

/// Files whose pyarrow comparison is skipped, with the reason; arrow-rs
/// equality is still checked for them.
const PYARROW_SKIPPED: &[(&str, &str)] = &[(
    "parquet/incorrect_map_schema.parquet",
    "pyarrow refuses the source (\"Map keys must be annotated as required\"); arrow-rs reads it",
)];

/// Files where pyarrow's read of the SOURCE differs from arrow-rs's (the
/// tunnel forwards arrow-rs's read unchanged, checked above): label, the
/// start of the expected pyarrow verdict, reason. A change in either reader
/// shows up as a different verdict.
const PYARROW_DIFFERS: &[(&str, &str, &str)] = &[(
    "parquet/int96_from_spark.parquet",
    "values differ in ['a']",
    "INT96 timestamps outside the int64-nanosecond range overflow differently: the last value \
         is -4864435138808946688 in arrow-rs and 5606152519850745856 in pyarrow (the other 5 agree)",
)];

/// Files whose footer `num_rows` disagrees with their row groups. parquet-rs
/// caps its batch size at the footer's count and yields no rows; the
/// connector reads the row groups (as pyarrow does, which the pyarrow check
/// confirms). The test's direct arrow-rs read applies the connector's
/// correction, and checks that the plain read still yields 0 rows (so a
/// parquet-rs fix shows up here).
const FOOTER_ROWS_WRONG: &[(&str, &str)] =
    &[("parquet/repeated_no_annotation.parquet", "footer num_rows = 0, its row group holds 6 rows")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parquet,
    Ipc,
    /// `parquet/bad_data`: must fail.
    BadParquet,
    /// The big-endian IPC stream: must be refused.
    BigEndian,
}

#[derive(Debug, Clone)]
struct Case {
    /// Path relative to the testdata directory, e.g. `parquet/binary.parquet`.
    label: String,
    dataset: String,
    path: PathBuf,
    kind: Kind,
}

/// `prefix` + the label's letters and digits in lower case, `_` for the rest.
fn dataset_name(prefix: &str, label: &str) -> String {
    let mut name = String::from(prefix);
    for c in label.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    assert!(name.len() <= DATASET_NAME_BYTES_MAX, "dataset name {name} is longer than {DATASET_NAME_BYTES_MAX} bytes");
    name
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)))
        .collect();
    files.sort();
    files
}

fn cases() -> Vec<Case> {
    let root = testdata();
    let mut cases = Vec::new();
    let mut add = |kind: Kind, prefix: &str, path: PathBuf| {
        let label = path.strip_prefix(&root).expect("under testdata").to_string_lossy().into_owned();
        let stem = label.split_once('/').map_or(label.as_str(), |(_, rest)| rest);
        let stem = stem.trim_end_matches(".parquet").trim_end_matches(".stream");
        cases.push(Case { dataset: dataset_name(prefix, stem), label, path, kind });
    };
    for path in files_with_suffix(&root.join("parquet"), ".parquet") {
        add(Kind::Parquet, "pq_", path);
    }
    for dir in IPC_DIRS {
        for path in files_with_suffix(&root.join("arrow-ipc").join(dir), ".stream") {
            add(Kind::Ipc, "ipc_", path);
        }
    }
    for path in files_with_suffix(&root.join("parquet/bad_data"), ".parquet") {
        add(Kind::BadParquet, "", path);
    }
    for path in files_with_suffix(&root.join("arrow-ipc/1.0.0-bigendian"), ".stream") {
        add(Kind::BigEndian, "be_", path);
    }
    let names: BTreeSet<&str> = cases.iter().map(|c| c.dataset.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "dataset names collide");
    cases
}

/// arrow-rs's direct read of a source: schema and batches.
fn read_source(case: &Case) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let file = File::open(&case.path).map_err(|e| e.to_string())?;
    match case.kind {
        Kind::Parquet | Kind::BadParquet if FOOTER_ROWS_WRONG.iter().any(|(l, _)| *l == case.label) => {
            let plain = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().map_err(|e| e.to_string())?)
                .and_then(|b| b.build())
                .map_err(|e| e.to_string())?;
            let plain_rows: usize = plain.map(|b| b.map(|b| b.num_rows()).unwrap_or(0)).sum();
            assert_eq!(plain_rows, 0, "{}: parquet-rs now reads this file as is; drop the workaround", case.label);
            // The connector's footer correction, applied to this direct read.
            let (metadata, _) = volley_connector::source::parquet::reader_metadata(&file).map_err(|e| e.to_string())?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
                .build()
                .map_err(|e| e.to_string())?;
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
            Ok((schema, batches))
        }
        Kind::Parquet | Kind::BadParquet => {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| e.to_string())?;
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
            Ok((schema, batches))
        }
        Kind::Ipc | Kind::BigEndian => read_ipc(file),
    }
}

fn read_ipc(input: impl std::io::Read) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let reader = StreamReader::try_new(input, None).map_err(|e| e.to_string())?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    Ok((schema, batches))
}

/// Asserts the received batches hold exactly the source's data: the same
/// schema, then RecordBatch equality after concatenation (or, for types
/// `concat_batches` cannot handle, array equality slice by slice).
fn assert_equal(label: &str, want: &(SchemaRef, Vec<RecordBatch>), got: &(SchemaRef, Vec<RecordBatch>)) {
    assert_eq!(got.0, want.0, "{label}: received schema differs from arrow-rs's read of the source");
    let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert_eq!(rows(&got.1), rows(&want.1), "{label}: row count");
    let concat = |(schema, batches): &(SchemaRef, Vec<RecordBatch>)| {
        arrow_select::concat::concat_batches(schema, batches.iter())
    };
    match (concat(want), concat(got)) {
        (Ok(want), Ok(got)) => {
            for (i, (w, g)) in want.columns().iter().zip(got.columns()).enumerate() {
                assert_eq!(w.to_data(), g.to_data(), "{label}: column {i} ({}) differs", want.schema().field(i).name());
            }
            assert!(want == got, "{label}: batches differ");
        }
        (want_concat, got_concat) => {
            eprintln!(
                "{label}: concat_batches unavailable ({:?} / {:?}); comparing slice by slice",
                want_concat.err(),
                got_concat.err()
            );
            assert_same_rows(&want.1, &got.1, label);
        }
    }
}

fn error_text(result: &QueryResult) -> String {
    let end = result.end.as_ref().expect("an end message");
    let message = if end["type"] == "error" { &end["message"] } else { &end["error"]["message"] };
    message.as_str().map_or_else(|| end.to_string(), str::to_owned)
}

fn assert_refused(case: &Case, result: &QueryResult, accepted: &[&str]) -> String {
    let code = result.error_code();
    assert!(
        code.as_deref().is_some_and(|c| accepted.contains(&c)),
        "{}: expected one of {accepted:?}, got {:?}",
        case.label,
        result.end
    );
    let message = error_text(result);
    assert!(message.contains(&case.dataset), "{}: the error names the dataset: {message}", case.label);
    // Whatever arrived before the error must not look like a complete stream.
    let bytes = result.bytes();
    assert!(!bytes.ends_with(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]), "{}: a failed stream ended cleanly", case.label);
    message
}

/// pyarrow compares each received stream with its own read of the source;
/// returns file label → "equal…" or the difference.
fn pyarrow_verdicts(manifest: &[Value], dir: &TempDir) -> BTreeMap<String, String> {
    let script = r#"
import sys, json, math
import pyarrow as pa, pyarrow.ipc as ipc, pyarrow.parquet as pq

def decoded(t):
    cols = []
    for c in t.columns:
        if pa.types.is_dictionary(c.type):
            c = c.cast(c.type.value_type)
        cols.append(c)
    return pa.table(cols, names=t.column_names)

def same_values(a, b):
    # NaN-aware value comparison (Table.equals treats NaN != NaN).
    def norm(v):
        if isinstance(v, float) and math.isnan(v):
            return 'NaN'
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v
    def values(c):
        # Timestamps outside datetime's range cannot become Python objects: compare their integers.
        if pa.types.is_timestamp(c.type) or pa.types.is_duration(c.type):
            c = c.cast(pa.int64())
        return norm(c.to_pylist())
    return all(values(a.column(i)) == values(b.column(i)) for i in range(a.num_columns))

out = {}
for e in json.load(open(sys.argv[1])):
    try:
        with open(e['received'], 'rb') as f:
            got = ipc.open_stream(f).read_all()
        if e['kind'] == 'parquet':
            src = pq.read_table(e['source'])
        else:
            with open(e['source'], 'rb') as f:
                src = ipc.open_stream(f).read_all()
        if got.num_rows != src.num_rows or got.column_names != src.column_names:
            out[e['label']] = f'shape differs: {got.num_rows} rows {got.column_names} vs {src.num_rows} rows {src.column_names}'
            continue
        how = 'equal'
        if got.schema != src.schema:
            try:
                got = got.cast(src.schema)
                how = 'equal after cast'
            except Exception as ex:
                got, src = decoded(got), decoded(src)
                how = 'equal after decoding dictionaries'
                if got.schema != src.schema:
                    out[e['label']] = f'types differ: {got.schema} vs {src.schema}: {ex}'
                    continue
        if got.equals(src):
            out[e['label']] = how
        elif decoded(got).equals(decoded(src)):
            out[e['label']] = how + ' (dictionaries decoded)'
        elif same_values(got, src):
            out[e['label']] = how + ' (values, NaN-aware, timestamps as integers)'
        else:
            diff = [n for n in got.column_names if not got.column(n).equals(src.column(n))]
            first = diff[0] if diff else None
            def show(c):
                if pa.types.is_timestamp(c.type):
                    c = c.cast(pa.int64())
                return str(c.to_pylist())[:200]
            out[e['label']] = f'values differ in {diff}' + (f': received {show(got.column(first))}, source {show(src.column(first))}' if first else '')
    except Exception as ex:
        out[e['label']] = 'error: ' + type(ex).__name__ + ': ' + str(ex)[:300]
print(json.dumps(out))
"#;
    let manifest_path = write_file(dir, "manifest.json", &serde_json::to_vec(manifest).expect("json"));
    let output = Command::new("python3").arg("-c").arg(script).arg(&manifest_path).output().expect("python3 runs");
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    let verdicts: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).expect("pyarrow prints JSON");
    verdicts
}

/// Queries one file's dataset and checks the outcome its kind demands;
/// returns the outcome text and, for served files, the pyarrow manifest entry.
fn check_case(
    case: &Case,
    n: usize,
    browser: &mut Browser,
    refused: &BTreeMap<&str, &str>,
    pyarrow_skipped: &BTreeMap<&str, &str>,
    canary: &Case,
    dir: &TempDir,
) -> (String, Option<Value>) {
    let result = browser.query(&case.dataset, &format!("q{n}"));
    match case.kind {
        Kind::Parquet | Kind::Ipc => {
            let direct = read_source(case);
            if let Some(reason) = refused.get(case.label.as_str()) {
                let message = assert_refused(case, &result, &["source_error"]);
                if let Ok(direct) = &direct {
                    eprintln!("{}: arrow-rs reads the source directly ({} batches)", case.label, direct.1.len());
                }
                return (format!("refused ({reason}): {message}"), None);
            }
            let direct =
                direct.unwrap_or_else(|e| panic!("arrow-rs cannot read the source: {e}; browser got {:?}", result.end));
            assert_eq!(result.error_code(), None, "{:?}", result.end);
            let bytes = result.bytes();
            assert_eq!(
                result.end.as_ref().and_then(|e| e["total_bytes"].as_u64()),
                Some(bytes.len() as u64),
                "total_bytes"
            );
            let received = read_ipc(bytes.as_slice())
                .unwrap_or_else(|e| panic!("arrow-rs cannot decode the received stream: {e}"));
            assert_equal(&case.label, &direct, &received);
            let rows: usize = received.1.iter().map(RecordBatch::num_rows).sum();
            let outcome = format!("equal ({rows} rows, {} bytes)", bytes.len());
            if pyarrow_skipped.contains_key(case.label.as_str()) {
                return (outcome, None);
            }
            let file = write_file(dir, &format!("{}.arrows", case.dataset), &bytes);
            let kind = if case.kind == Kind::Parquet { "parquet" } else { "ipc" };
            (outcome, Some(json!({"label": case.label, "kind": kind, "source": case.path, "received": file})))
        }
        Kind::BadParquet => {
            let message = assert_refused(case, &result, &["source_error", "error"]);
            // The tunnel keeps serving.
            let after = browser.query(&canary.dataset, &format!("q{n}-after"));
            assert_eq!(after.error_code(), None, "the query after it: {:?}", after.end);
            let rows: usize =
                read_ipc(after.bytes().as_slice()).expect("decode").1.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, 8, "the query after it");
            (format!("refused: {message}"), None)
        }
        Kind::BigEndian => {
            let message = assert_refused(case, &result, &["source_error"]);
            assert!(result.payloads.is_empty(), "big-endian bytes were forwarded");
            // The browser learns that the source failed and an error id; the
            // reason is for the connector's log. The same source, opened
            // directly, says why.
            let reason = match volley_connector::source::arrow::open(&case.dataset, &case.path) {
                Ok(_) => panic!("{}: the connector's arrow source opens a big-endian file", case.label),
                Err(e) => e.to_string(),
            };
            assert!(reason.contains("big-endian"), "{reason}");
            (format!("refused: {message} (connector: {reason})"), None)
        }
    }
}

#[test]
fn every_golden_file_crosses_the_tunnel_unchanged() {
    let started = Instant::now();
    let dir = TempDir::new("goldens");
    let cases = cases();
    let mut datasets = serde_json::Map::new();
    for case in &cases {
        let kind = if matches!(case.kind, Kind::Parquet | Kind::BadParquet) { "parquet" } else { "arrow" };
        datasets.insert(case.dataset.clone(), json!({"type": kind, "path": case.path}));
    }
    let gateway = start_default_gateway();
    let performance = json!({"parallel_connections": 1, "reconnect_delay": 0.1});
    let yaml =
        connector_yaml(gateway.local_addr(), TENANT, &connector_token(TENANT), performance, Value::Object(datasets));
    let _connector = InProcessConnector::start(&yaml, dir.path());
    assert!(wait_until(Duration::from_secs(10), || connectors_online(&gateway) >= 1), "the connector registered");
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    let listed = browser.list();
    assert_eq!(listed.len(), cases.len(), "every file is a dataset");

    let refused: BTreeMap<&str, &str> = REFUSED.iter().copied().collect();
    let pyarrow_skipped: BTreeMap<&str, &str> = PYARROW_SKIPPED.iter().copied().collect();
    let canary = cases.iter().find(|c| c.label == "parquet/alltypes_plain.parquet").expect("alltypes_plain").clone();
    let mut manifest = Vec::new();
    let mut outcomes: Vec<(String, String)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        // Each file is checked on its own; failures are collected so one run
        // reports every file that misbehaves.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_case(case, n, &mut browser, &refused, &pyarrow_skipped, &canary, &dir)
        }));
        match checked {
            Ok((outcome, entry)) => {
                outcomes.push((case.label.clone(), outcome));
                manifest.extend(entry);
            }
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {text}", case.label));
            }
        }
    }
    assert!(failures.is_empty(), "{} files failed:\n{}", failures.len(), failures.join("\n"));
    let tunnel_done = started.elapsed();

    let verdicts = pyarrow_verdicts(&manifest, &dir);
    for entry in &manifest {
        let label = entry["label"].as_str().expect("label");
        let verdict = verdicts.get(label).map_or("missing", String::as_str);
        if let Some((_, outcome)) = outcomes.iter_mut().find(|(l, _)| l == label) {
            outcome.push_str(&format!("; pyarrow: {verdict}"));
        }
    }
    for (label, _, reason) in PYARROW_DIFFERS {
        if let Some((_, outcome)) = outcomes.iter_mut().find(|(l, _)| l == label) {
            outcome.push_str(&format!(" (source readers disagree: {reason})"));
        }
    }
    for (label, reason) in PYARROW_SKIPPED {
        if let Some((_, outcome)) = outcomes.iter_mut().find(|(l, _)| l == label) {
            outcome.push_str(&format!("; pyarrow skipped: {reason}"));
        }
    }
    for (label, outcome) in &outcomes {
        eprintln!("{label}: {outcome}");
    }
    let disagreements: Vec<String> = manifest
        .iter()
        .map(|e| e["label"].as_str().expect("label"))
        .filter_map(|label| {
            let verdict = verdicts.get(label).map_or("missing", String::as_str);
            let expected = PYARROW_DIFFERS.iter().find(|(l, _, _)| *l == label).map_or("equal", |(_, v, _)| *v);
            (!verdict.starts_with(expected)).then(|| format!("{label}: {verdict} (expected {expected}…)"))
        })
        .collect();
    assert!(disagreements.is_empty(), "pyarrow disagrees:\n{}", disagreements.join("\n"));
    for label in refused
        .keys()
        .chain(pyarrow_skipped.keys())
        .chain(PYARROW_DIFFERS.iter().map(|(l, _, _)| l))
        .chain(FOOTER_ROWS_WRONG.iter().map(|(l, _)| l))
    {
        assert!(cases.iter().any(|c| c.label == *label), "listed file {label} is not in the test data");
    }
    let count = |kind: Kind| cases.iter().filter(|c| c.kind == kind).count();
    eprintln!(
        "goldens: {} parquet + {} IPC files equal or refused as listed, {} bad_data refused, big-endian refused; \
         tunnel {tunnel_done:?}, total {:?}",
        count(Kind::Parquet),
        count(Kind::Ipc),
        count(Kind::BadParquet),
        started.elapsed()
    );
}
