//! One source's record: the connector's medians next to pyarrow's, the
//! ratios, the bars of the chart and the notes that say what was measured.

use serde_json::{json, Value};

use crate::scenario::ScenarioResult;

use super::passes::{summary, Pass};
use super::{Kind, SourceOptions, REPEATS};

pub(super) fn record(
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
