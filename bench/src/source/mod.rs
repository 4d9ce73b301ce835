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
//!
//! Files: the run and its constants are here; `data` generates the rows
//! (CSV, Parquet, PostgreSQL), `passes` times the connector's passes and
//! sums up a side's, `pyarrow` drives the baseline script, `result` turns a
//! source's passes into its record.

mod data;
mod passes;
mod pyarrow;
mod result;

use std::path::Path;

use serde_json::{json, Value};
use volley_connector::{Catalog, Config};

use crate::scenario::ScenarioResult;

pub use data::schema;
pub(crate) use passes::median;

use data::{generate_files, load_postgres};
use passes::{summary, volley_pass, Pass};
use pyarrow::{Side, SideState, Worker};
use result::record;

/// Rows generated when `--rows` is not given: about 180 MB of CSV; one
/// pass takes from 0.2 s (Parquet) to 1.5 s (PostgreSQL) on a 2-core VM.
pub const ROWS_DEFAULT: u64 = 2_000_000;
/// Most rows `--rows` accepts: bounds the temp files (≈ 110 bytes per CSV
/// row, plus Parquet and the PostgreSQL table) at a few GB.
pub const ROWS_MAX: u64 = 20_000_000;
/// Passes per source and side; the record compares medians (the first pass
/// of each side also pays for cold caches and thread-pool start-up).
pub const REPEATS: usize = 5;
/// The interpreter that runs the pyarrow baseline (`VOLLEY_BENCH_PYTHON`
/// overrides it).
pub const PYTHON_DEFAULT: &str = "python3";
/// Environment variable naming another interpreter.
pub const PYTHON_ENV: &str = "VOLLEY_BENCH_PYTHON";
/// The baseline script, embedded so that the binary works from anywhere.
const PYARROW_SCRIPT: &str = include_str!("../../pyarrow_source.py");
/// Name of the PostgreSQL table.
const TABLE: &str = "bench_source";

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
