//! `volley bench source`: how fast the connector turns a source into the
//! pre-sliced IPC messages it would send, for CSV, Parquet and PostgreSQL,
//! next to pyarrow doing the same job on the same data in the same run.
//!
//! The connector side is its real code path with no network:
//! `Config::from_yaml` → `Catalog::open(name)` → `OpenDataset::into_ipc`
//! (source reader + `IpcSlicer`, default slice options: 64 KiB–1 MiB
//! messages, no compression), each message counted and dropped. The
//! baseline is `pyarrow_source.py` (embedded below): `pyarrow.csv.read_csv`,
//! `pyarrow.parquet.read_table`, ADBC's PostgreSQL driver, then
//! `pyarrow.ipc` into a sink that keeps nothing, in record batches of the
//! size the connector produced. Both are timed around the read and the
//! encoding only.
//!
//! Data: [`ROWS_DEFAULT`] rows (or `--rows`) of a mixed schema — integers,
//! floats, low- and high-cardinality text, timestamps, booleans, NULLs in
//! every nullable column — generated with a fixed seed and written as CSV
//! and Parquet (Snappy) in a temp dir, and loaded into a throwaway
//! PostgreSQL server ([`volley_testkit::PgServer`]) with `COPY`. When
//! PostgreSQL is not installed that source is skipped and the run says so.
//!
//! Every source is measured [`REPEATS`] times on each side, the sides
//! alternating pass by pass (one pyarrow process per variant serves all its
//! passes); the record keeps every sample and compares medians. One record per source
//! (`source-csv`, `source-parquet`, `source-postgres`).

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int32Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};
use volley_connector::slice::{MessageKind, SliceOptions};
use volley_connector::{Catalog, Config};

use crate::ScenarioResult;

/// Rows generated when `--rows` is not given: about 180 MB of CSV; one
/// pass takes from 0.2 s (Parquet) to 1.5 s (PostgreSQL) on a 2-core VM.
pub const ROWS_DEFAULT: u64 = 2_000_000;
/// Most rows `--rows` accepts: bounds the temp files (≈ 110 bytes per CSV
/// row, plus Parquet and the PostgreSQL table) at a few GB.
pub const ROWS_MAX: u64 = 20_000_000;
/// Passes per source and side; the record compares medians (the first pass
/// of each side also pays for cold caches and thread-pool start-up).
pub const REPEATS: usize = 5;
/// Rows per generated batch (and per write to the CSV and Parquet writers).
const GENERATE_BATCH_ROWS: usize = 64 * 1024;
/// Seed of the data generator: every run measures the same data.
const SEED: u64 = 0x5eed_da7a;
/// The interpreter that runs the pyarrow baseline (`VOLLEY_BENCH_PYTHON`
/// overrides it).
pub const PYTHON_DEFAULT: &str = "python3";
/// Environment variable naming another interpreter.
pub const PYTHON_ENV: &str = "VOLLEY_BENCH_PYTHON";
/// The baseline script, embedded so that the binary works from anywhere.
const PYARROW_SCRIPT: &str = include_str!("../pyarrow_source.py");
/// Name of the PostgreSQL table.
const TABLE: &str = "bench_source";
/// Bytes in the MB of every "MB/s" figure.
const MB: f64 = 1e6;

/// `volley bench source` options.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Rows to generate.
    pub rows: u64,
    /// Print progress on stderr.
    pub progress: bool,
}

/// The three sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Csv,
    Parquet,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Csv => "csv",
            Kind::Parquet => "parquet",
            Kind::Postgres => "postgres",
        }
    }
}

/// The generated schema, as the generator builds it (CSV readers infer their
/// own: integers as Int64, the timestamp's unit as they see fit).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int32, true),
        Field::new("quantity", DataType::Int32, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("discount", DataType::Float64, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
        // Microseconds, as Parquet and PostgreSQL store timestamps (whole seconds in the data).
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("shipped", DataType::Boolean, true),
    ]))
}

/// The PostgreSQL table with the same columns.
const CREATE_TABLE: &str = "CREATE TABLE bench_source (
    id bigint NOT NULL, customer_id integer, quantity integer, amount double precision,
    discount double precision, category text, comment text, created_at timestamp, shipped boolean)";

const CATEGORIES: [&str; 12] = [
    "books",
    "garden",
    "toys",
    "grocery",
    "electronics",
    "clothing",
    "music",
    "sports",
    "health",
    "automotive",
    "office",
    "pets",
];
const WORDS: [&str; 16] = [
    "fast",
    "delivery",
    "late",
    "box",
    "damaged",
    "great",
    "value",
    "returned",
    "gift",
    "again",
    "colour",
    "size",
    "fits",
    "\"quoted\"",
    "comma,",
    "ok",
];
/// 2024-01-01T00:00:00Z, seconds.
const EPOCH_2024: i64 = 1_704_067_200;

/// One batch of rows `first..first + count`, deterministic in `rng`.
fn generate_batch(rng: &mut fastrand::Rng, first: i64, count: usize) -> Result<RecordBatch, String> {
    let mut customer = Int32Builder::with_capacity(count);
    let mut quantity = Int32Builder::with_capacity(count);
    let mut amount = Float64Builder::with_capacity(count);
    let mut discount = Float64Builder::with_capacity(count);
    let mut category = StringBuilder::with_capacity(count, count * 8);
    let mut comment = StringBuilder::with_capacity(count, count * 40);
    let mut created = TimestampMicrosecondBuilder::with_capacity(count);
    let mut shipped = BooleanBuilder::with_capacity(count);
    let mut text = String::new();
    for _ in 0..count {
        // NULL rates: 2 %, 5 %, 5 %, 30 %, 1 %, 20 %, 3 %, 10 %.
        customer.append_option((rng.u8(..100) >= 2).then(|| rng.i32(1..200_000)));
        quantity.append_option((rng.u8(..100) >= 5).then(|| rng.i32(1..50)));
        amount.append_option((rng.u8(..100) >= 5).then(|| f64::from(rng.u32(100..1_000_000)) / 100.0));
        discount.append_option((rng.u8(..100) >= 30).then(|| f64::from(rng.u8(1..60)) / 100.0));
        category.append_option((rng.u8(..100) >= 1).then(|| CATEGORIES[rng.usize(..CATEGORIES.len())]));
        if rng.u8(..100) >= 20 {
            text.clear();
            for index in 0..rng.usize(1..12) {
                if index > 0 {
                    text.push(' ');
                }
                text.push_str(WORDS[rng.usize(..WORDS.len())]);
            }
            comment.append_value(&text);
        } else {
            comment.append_null();
        }
        created.append_option((rng.u8(..100) >= 3).then(|| (EPOCH_2024 + rng.i64(0..2 * 365 * 86_400)) * 1_000_000));
        shipped.append_option((rng.u8(..100) >= 10).then(|| rng.bool()));
    }
    let count_i64 = i64::try_from(count).map_err(|e| e.to_string())?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(first..first + count_i64)),
        Arc::new(customer.finish()),
        Arc::new(quantity.finish()),
        Arc::new(amount.finish()),
        Arc::new(discount.finish()),
        Arc::new(category.finish()),
        Arc::new(comment.finish()),
        Arc::new(created.finish()),
        Arc::new(shipped.finish()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| e.to_string())
}

/// Writes `rows` rows as `data.csv` and `data.parquet` under `dir`.
fn generate_files(dir: &Path, rows: u64) -> Result<(PathBuf, PathBuf), String> {
    let csv_path = dir.join("data.csv");
    let parquet_path = dir.join("data.parquet");
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| format!("{path}: {e}")
    };
    let mut csv = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_format("%Y-%m-%d %H:%M:%S".into())
        .build(BufWriter::new(File::create(&csv_path).map_err(io(&csv_path))?));
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut parquet =
        ArrowWriter::try_new(File::create(&parquet_path).map_err(io(&parquet_path))?, schema(), Some(properties))
            .map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut written: u64 = 0;
    while written < rows {
        let count = usize::try_from((rows - written).min(GENERATE_BATCH_ROWS as u64)).map_err(|e| e.to_string())?;
        let first = i64::try_from(written).map_err(|e| e.to_string())? + 1;
        let batch = generate_batch(&mut rng, first, count)?;
        csv.write(&batch).map_err(|e| e.to_string())?;
        parquet.write(&batch).map_err(|e| e.to_string())?;
        written += count as u64;
    }
    csv.into_inner().flush().map_err(io(&csv_path))?;
    parquet.close().map_err(|e| e.to_string())?;
    Ok((csv_path, parquet_path))
}

/// A started PostgreSQL server holding the table, or why there is none.
fn load_postgres(csv_path: &Path) -> Result<(volley_testkit::PgServer, u64), String> {
    // No WAL for a table created and filled in one transaction.
    let server = volley_testkit::PgServer::start_with(&[("wal_level", "minimal"), ("max_wal_senders", "0")])
        .map_err(|e| e.to_string())?;
    let mut client = postgres::Client::connect(&server.url(), postgres::NoTls).map_err(|e| e.to_string())?;
    let mut transaction = client.transaction().map_err(|e| e.to_string())?;
    transaction.batch_execute(CREATE_TABLE).map_err(|e| e.to_string())?;
    let mut writer = transaction
        .copy_in(&format!("COPY {TABLE} FROM STDIN WITH (FORMAT csv, HEADER true)"))
        .map_err(|e| e.to_string())?;
    let mut file = File::open(csv_path).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    std::io::copy(&mut file, &mut writer).map_err(|e| format!("COPY: {e}"))?;
    writer.finish().map_err(|e| e.to_string())?;
    transaction.commit().map_err(|e| e.to_string())?;
    // Set hint bits and the visibility map now, so no measured pass pays for it.
    client.batch_execute(&format!("VACUUM (FREEZE, ANALYZE) {TABLE}")).map_err(|e| e.to_string())?;
    let bytes: i64 =
        client.query_one(&format!("SELECT pg_relation_size('{TABLE}')"), &[]).map_err(|e| e.to_string())?.get(0);
    Ok((server, u64::try_from(bytes).unwrap_or(0)))
}

/// One timed pass.
#[derive(Debug, Clone, Default)]
struct Pass {
    rows: u64,
    ipc_bytes: u64,
    messages: u64,
    record_batch_messages: u64,
    seconds: f64,
    cpu_seconds: Option<f64>,
    /// The schema the reader produced, `name: type, …`.
    schema: String,
}

/// The connector's path: open the dataset by name, slice to IPC, drop each message.
fn volley_pass(catalog: &Catalog, name: &str) -> Result<Pass, String> {
    let cpu_before = crate::cpu_seconds(std::process::id());
    let started = Instant::now();
    let stream =
        catalog.open(name).map_err(|e| e.to_string())?.into_ipc(SliceOptions::default()).map_err(|e| e.to_string())?;
    let mut pass = Pass {
        schema: stream
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", "),
        ..Pass::default()
    };
    for message in stream {
        let message = message.map_err(|e| e.to_string())?;
        pass.rows += message.rows;
        pass.ipc_bytes += message.bytes.len() as u64;
        pass.messages += 1;
        if message.kind == MessageKind::RecordBatch {
            pass.record_batch_messages += 1;
        }
    }
    pass.seconds = started.elapsed().as_secs_f64();
    pass.cpu_seconds = crate::cpu_seconds(std::process::id()).zip(cpu_before).map(|(after, before)| after - before);
    Ok(pass)
}

/// The median of the finite values (NaN when there are none).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Median figures of a side's passes.
fn summary(passes: &[Pass], source_bytes: u64) -> Value {
    let seconds = median(&passes.iter().map(|p| p.seconds).collect::<Vec<_>>());
    let rows = passes.first().map_or(0, |p| p.rows);
    let ipc_bytes = passes.first().map_or(0, |p| p.ipc_bytes);
    let cpu: Vec<f64> = passes.iter().filter_map(|p| p.cpu_seconds).collect();
    json!({
        "rows": rows,
        "ipc_bytes": ipc_bytes,
        "median_seconds": seconds,
        "rows_per_s": rows as f64 / seconds,
        "ipc_mb_per_s": ipc_bytes as f64 / MB / seconds,
        "source_mb_per_s": source_bytes as f64 / MB / seconds,
        "median_cpu_seconds": if cpu.is_empty() { Value::Null } else { json!(median(&cpu)) },
        "samples_seconds": passes.iter().map(|p| p.seconds).collect::<Vec<_>>(),
        "samples_cpu_seconds": passes.iter().map(|p| p.cpu_seconds).collect::<Vec<_>>(),
    })
}

/// A pyarrow script process serving one variant's passes (see the protocol
/// in `pyarrow_source.py`): one line in, one timed pass, one JSON line out.
struct Worker {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts the script; `Ok(None)` (with the reason) when it skips.
    fn start(script: &Path, args: &[String]) -> Result<Result<(Worker, Value), String>, String> {
        let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| PYTHON_DEFAULT.into());
        let mut child = Command::new(&python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {python} ({e}); set {PYTHON_ENV}"))?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut worker = Worker { child, input, output };
        let header = worker.line().map_err(|e| format!("{python} {} {}: {e}", script.display(), args.join(" ")))?;
        if let Some(reason) = header.get("skipped") {
            return Ok(Err(reason.as_str().unwrap_or("skipped").to_owned()));
        }
        Ok(Ok((worker, header)))
    }

    fn line(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(0) => Err("the pyarrow script ended early (its stderr is above)".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("pyarrow script said {line:?}: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One timed pass.
    fn pass(&mut self) -> Result<Pass, String> {
        self.input.write_all(b"pass\n").and_then(|()| self.input.flush()).map_err(|e| e.to_string())?;
        let run = self.line()?;
        Ok(Pass {
            rows: run["rows"].as_u64().unwrap_or(0),
            ipc_bytes: run["ipc_bytes"].as_u64().unwrap_or(0),
            seconds: run["seconds"].as_f64().unwrap_or(f64::NAN),
            cpu_seconds: run["cpu_seconds"].as_f64(),
            schema: run["schema"].as_str().unwrap_or_default().to_owned(),
            ..Pass::default()
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // End of input ends the script; kill it if it is stuck in a pass.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pyarrow variant's passes.
struct Side {
    /// `--threads` value: `on` (pyarrow's default pool) or `off`.
    mode: &'static str,
    worker: Option<Worker>,
    passes: Vec<Pass>,
    about: Value,
    state: SideState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SideState {
    Running,
    Skipped,
    Failed,
}

impl Side {
    fn new(mode: &'static str) -> Side {
        Side { mode, worker: None, passes: Vec::new(), about: Value::Null, state: SideState::Running }
    }

    /// Its key in the record's `baseline`.
    fn key(&self) -> &'static str {
        if self.mode == "on" {
            "pyarrow"
        } else {
            "pyarrow_single_thread"
        }
    }
}

/// Runs every source; one result per source measured, plus what was skipped.
pub fn run(options: &SourceOptions) -> Result<(Vec<ScenarioResult>, Vec<String>), String> {
    if options.rows == 0 || options.rows > ROWS_MAX {
        return Err(format!("--rows must be between 1 and {ROWS_MAX}"));
    }
    let dir = tempfile::Builder::new().prefix("volley-bench-source-").tempdir().map_err(|e| e.to_string())?;
    let say = |line: String| {
        if options.progress {
            eprintln!("[source] {line}");
        }
    };
    say(format!("generating {} rows in {}", options.rows, dir.path().display()));
    let (csv_path, parquet_path) = generate_files(dir.path(), options.rows)?;
    let script = dir.path().join("pyarrow_source.py");
    std::fs::write(&script, PYARROW_SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let file_bytes = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);

    let mut skipped = Vec::new();
    say("loading PostgreSQL".into());
    let postgres = match load_postgres(&csv_path) {
        Ok(loaded) => Some(loaded),
        Err(why) => {
            let line = format!("postgres skipped: {why}");
            say(line.clone());
            skipped.push(line);
            None
        }
    };
    let postgres_query = format!("SELECT * FROM {TABLE}");
    let mut yaml = format!(
        "gateway: {{ uri: \"ws://127.0.0.1:9/ws/connect\" }}\ntenant: {{ id: bench, token: unused }}\ndatasets:\n  \
         csv: {{ type: csv, path: {csv:?} }}\n  parquet: {{ type: parquet, path: {parquet:?} }}\n",
        csv = csv_path.display().to_string(),
        parquet = parquet_path.display().to_string(),
    );
    if let Some((server, _)) = &postgres {
        yaml.push_str(&format!(
            "  postgres: {{ type: postgres, url: {:?}, query: {postgres_query:?} }}\n",
            server.url()
        ));
    }
    let config = Config::from_yaml(&yaml, dir.path()).map_err(|e| e.to_string())?;
    let catalog = Catalog::new(&config);

    let mut sources = vec![(Kind::Csv, file_bytes(&csv_path)), (Kind::Parquet, file_bytes(&parquet_path))];
    if let Some((_, table_bytes)) = &postgres {
        sources.push((Kind::Postgres, *table_bytes));
    }
    let mut results = Vec::new();
    for (kind, source_bytes) in sources {
        let name = kind.name();
        let source_arg = match kind {
            Kind::Csv => csv_path.display().to_string(),
            Kind::Parquet => parquet_path.display().to_string(),
            Kind::Postgres => postgres.as_ref().map(|(s, _)| s.url()).unwrap_or_default(),
        };
        let modes: &[&str] = if kind == Kind::Postgres { &["on"] } else { &["on", "off"] };
        let mut sides: Vec<Side> = modes.iter().map(|mode| Side::new(mode)).collect();
        let mut passes: Vec<Pass> = Vec::with_capacity(REPEATS);
        let mut errors = Vec::new();
        let mut chunk_rows = 0;
        // Passes alternate between the sides, so that a burst of load from
        // elsewhere on a shared machine falls on both rather than on one.
        for pass in 0..REPEATS {
            say(format!("{name}: pass {} of {REPEATS}: volley, then pyarrow", pass + 1));
            let this = volley_pass(&catalog, name)?;
            if this.rows != options.rows {
                return Err(format!("{name}: the connector produced {} rows, expected {}", this.rows, options.rows));
            }
            // pyarrow writes batches of the size the connector's slicer chose.
            chunk_rows = this.rows / this.record_batch_messages.max(1);
            passes.push(this);
            for side in sides.iter_mut().filter(|side| side.state == SideState::Running) {
                if side.worker.is_none() {
                    let mut args = vec![
                        name.to_owned(),
                        source_arg.clone(),
                        format!("--threads={}", side.mode),
                        format!("--max-chunksize={chunk_rows}"),
                    ];
                    if kind == Kind::Postgres {
                        args.push(format!("--query={postgres_query}"));
                    }
                    match Worker::start(&script, &args) {
                        Ok(Ok((worker, about))) => {
                            side.worker = Some(worker);
                            side.about = about;
                        }
                        Ok(Err(reason)) => {
                            side.state = SideState::Skipped;
                            skipped.push(format!("{name}: {} skipped: {reason}", side.key()));
                            continue;
                        }
                        Err(error) => {
                            errors.push(error);
                            side.state = SideState::Failed;
                            continue;
                        }
                    }
                }
                let Some(worker) = side.worker.as_mut() else { continue };
                match worker.pass() {
                    Ok(run) => side.passes.push(run),
                    Err(error) => {
                        errors.push(format!("{}: {error}", side.key()));
                        side.state = SideState::Failed;
                        side.worker = None;
                    }
                }
            }
        }
        let rows = options.rows;
        let mut baselines = serde_json::Map::new();
        for side in sides {
            let key = side.key();
            match side.state {
                SideState::Running => {
                    let mut figures = summary(&side.passes, source_bytes);
                    figures["about"] = side.about;
                    figures["about"]["schema"] = side.passes.first().map(|p| p.schema.clone()).into();
                    if side.passes.iter().any(|p| p.rows != rows) {
                        errors.push(format!("{key} read other than {rows} rows: {}", figures["rows"]));
                    }
                    baselines.insert(key.into(), figures);
                }
                SideState::Skipped => {
                    baselines.insert(key.into(), json!({"skipped": "see notes"}));
                }
                SideState::Failed => {}
            }
        }
        results.push(record(kind, &passes, source_bytes, chunk_rows, Value::Object(baselines), errors, options));
    }
    for result in &mut results {
        result.notes.extend(skipped.iter().cloned());
    }
    Ok((results, skipped))
}

fn record(
    kind: Kind,
    passes: &[Pass],
    source_bytes: u64,
    chunk_rows: u64,
    baseline: Value,
    errors: Vec<String>,
    options: &SourceOptions,
) -> ScenarioResult {
    let volley = summary(passes, source_bytes);
    let rows_per_s = volley["rows_per_s"].as_f64().unwrap_or(f64::NAN);
    let ratio_to = |key: &str| baseline[key]["rows_per_s"].as_f64().map(|other| rows_per_s / other);
    let volley_cpu = volley["median_cpu_seconds"].as_f64();
    let cpu_ratio = |other: &Value| other["median_cpu_seconds"].as_f64().zip(volley_cpu).map(|(o, v)| o / v);
    let name = kind.name();
    let reader = match kind {
        Kind::Csv => "pyarrow.csv.read_csv",
        Kind::Parquet => "pyarrow.parquet.read_table",
        Kind::Postgres => "ADBC PostgreSQL driver",
    };
    let bars: Vec<Value> = [("volley connector", Some(rows_per_s))]
        .into_iter()
        .chain([
            ("pyarrow", baseline["pyarrow"]["rows_per_s"].as_f64()),
            ("pyarrow, use_threads=False", baseline["pyarrow_single_thread"]["rows_per_s"].as_f64()),
        ])
        .filter_map(|(label, value)| value.map(|v| json!({"label": label, "value": v})))
        .collect();
    ScenarioResult {
        scenario: format!("source-{name}"),
        headline: json!({
            "name": format!("{name} → IPC messages, {} rows", options.rows),
            "value": rows_per_s,
            "unit": "rows/s",
            "goal": format!("(no numeric goal; compare with {reader} + pyarrow.ipc)"),
        }),
        baseline_ratio: ratio_to("pyarrow"),
        baseline_ratio_meaning: format!(
            "connector rows/s / pyarrow rows/s ({reader} with pyarrow's default threads, then pyarrow.ipc), medians of \
             {REPEATS} passes each; higher is better"
        ),
        figures: json!({
            "source": name,
            "rows": options.rows,
            "source_bytes": source_bytes,
            "volley": volley,
            "volley_ipc_messages": passes.first().map_or(0, |p| p.messages),
            "volley_record_batch_messages": passes.first().map_or(0, |p| p.record_batch_messages),
            "volley_schema": passes.first().map(|p| p.schema.clone()),
            "pyarrow_chunk_rows": chunk_rows,
            "ratio_to_pyarrow": ratio_to("pyarrow"),
            "ratio_to_pyarrow_single_thread": ratio_to("pyarrow_single_thread"),
            // pyarrow's CPU seconds / the connector's, medians: above 1 the connector spends less CPU.
            "cpu_ratio_pyarrow_to_volley": cpu_ratio(&baseline["pyarrow"]),
            "cpu_ratio_pyarrow_single_thread_to_volley": cpu_ratio(&baseline["pyarrow_single_thread"]),
            "bars": {"unit": "rows/s", "items": bars},
        }),
        baseline,
        gateway: json!({"mode": "none: the connector's source path in this process, no network"}),
        errors,
        notes: vec![
            format!(
                "{} rows of a generated mixed schema (int64 id, int32 ×2, float64 ×2, text: 12 categories and 1–11 \
                 word comments with quotes and commas, timestamp, bool; NULLs in every nullable column, 1–30 %), \
                 fixed seed. source_bytes: {}",
                options.rows,
                match kind {
                    Kind::Csv => "the CSV file",
                    Kind::Parquet => "the Parquet file (Snappy, one row group per 1 Mi rows)",
                    Kind::Postgres => "pg_relation_size of the table (PostgreSQL on 127.0.0.1, same machine)",
                }
            ),
            "volley: Catalog::open + into_ipc with default slice options (64 KiB–1 MiB messages, no compression), \
             every message counted and dropped; one reader thread (plus, for PostgreSQL, the source's fetch thread). \
             cpu seconds are this process's"
                .into(),
            format!(
                "pyarrow: {reader}, then pyarrow.ipc.new_stream into MockOutputStream in batches of \
                 pyarrow_chunk_rows rows; 'pyarrow' uses pyarrow's default thread pool (all cores), \
                 'pyarrow_single_thread' use_threads=False. The whole table is in memory before encoding; the \
                 connector streams"
            ),
            "PostgreSQL server CPU is not counted on either side; both sides read the same warm table".into(),
        ],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_deterministic_and_has_nulls_in_every_nullable_column() {
        let a = generate_batch(&mut fastrand::Rng::with_seed(SEED), 1, 5000).expect("batch");
        let b = generate_batch(&mut fastrand::Rng::with_seed(SEED), 1, 5000).expect("batch");
        assert_eq!(a, b, "same seed, same data");
        for (index, field) in a.schema().fields().iter().enumerate() {
            let nulls = a.column(index).null_count();
            if field.is_nullable() {
                assert!(nulls > 0 && nulls < 5000, "{}: {nulls} nulls", field.name());
            } else {
                assert_eq!(nulls, 0, "{}", field.name());
            }
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
