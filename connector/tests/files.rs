//! File sources through the catalog: CSV (inferred and overridden schema),
//! NDJSON, Parquet (row groups, projection, corrupt files), Arrow IPC file and
//! stream, and CSV/NDJSON follow mode with appended and partial lines.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use volley_connector::{Catalog, Config, MessageKind, SliceOptions, SourceError};
use volley_testkit::arrow::assert_same_rows;
use volley_testkit::files::testdata;

fn catalog(yaml_datasets: &str, dir: &std::path::Path) -> Catalog {
    let text = format!(
        "gateway: {{ uri: \"ws://127.0.0.1:1/ws/connect\" }}\ntenant: {{ id: t1 }}\ndatasets:\n{yaml_datasets}"
    );
    let config = Config::from_yaml(&text, dir).unwrap_or_else(|e| panic!("{e}"));
    Catalog::new(&config)
}

fn read_all(catalog: &Catalog, name: &str) -> Result<Vec<RecordBatch>, SourceError> {
    catalog.open(name)?.into_batches().collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[test]
fn csv_with_inferred_schema_streams_in_batches() {
    let data = testdata().join("csv");
    let c = catalog("  agg: { type: csv, path: aggregate_test_100.csv, batch_rows: 16 }\n", &data);
    let opened = c.open("agg").unwrap();
    assert_eq!(opened.schema().fields().len(), 13);
    assert_eq!(opened.schema().field(0).name(), "c1");
    assert_eq!(opened.schema().field(3).data_type(), &DataType::Int64);
    assert_eq!(opened.row_count(), None);
    let batches: Vec<RecordBatch> = opened.into_batches().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows(&batches), 100);
    assert_eq!(batches.len(), 7);
    assert!(batches.iter().all(|b| b.num_rows() <= 16));
    let c4 = batches[0].column(3).as_primitive::<Int64Type>();
    assert_eq!(c4.value(0), 18109);
}

#[test]
fn csv_schema_override_and_no_header() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "1,2.5,x\n2,3.5,y\n3,,z").unwrap();
    let c = catalog(
        "  t: { type: csv, path: t.csv, has_header: false, schema: [{name: a, type: int32}, {name: b, type: float64}, {name: c, type: utf8}] }\n",
        dir.path(),
    );
    let batches = read_all(&c, "t").unwrap();
    assert_eq!(rows(&batches), 3, "final line without newline is read");
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int32);
    assert_eq!(batches[0].column(1).null_count(), 1);
}

#[test]
fn csv_that_does_not_match_its_schema_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "a\n1\nnot-a-number\n").unwrap();
    let c = catalog("  t: { type: csv, path: t.csv, schema: [{name: a, type: int64}] }\n", dir.path());
    let error = read_all(&c, "t").unwrap_err();
    assert!(error.to_string().contains("dataset `t`"), "{error}");
}

#[test]
fn ndjson_with_inferred_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..2500 {
        text.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\", \"ok\": {}}}\n", i % 2 == 0));
    }
    std::fs::write(dir.path().join("e.ndjson"), text).unwrap();
    let c = catalog("  e: { type: ndjson, path: e.ndjson, batch_rows: 1000 }\n", dir.path());
    let batches = read_all(&c, "e").unwrap();
    assert_eq!(rows(&batches), 2500);
    assert_eq!(batches.len(), 3);
    let ids = batches[2].column_by_name("id").unwrap().as_primitive::<Int64Type>();
    assert_eq!(ids.value(499), 2499);
}

#[test]
fn parquet_files_with_metadata_row_counts_and_projection() {
    let data = testdata().join("parquet");
    let c = catalog(
        "  plain: { type: parquet, path: alltypes_plain.parquet }\n\
         \x20 projected: { type: parquet, path: alltypes_plain.parquet, columns: [id, bool_col] }\n\
         \x20 groups: { type: parquet, path: floating_orders_nan_count.parquet, batch_rows: 4 }\n\
         \x20 tiny: { type: parquet, path: alltypes_tiny_pages.parquet }\n\
         \x20 nested: { type: parquet, path: nested_structs.rust.parquet }\n\
         \x20 wrong_column: { type: parquet, path: alltypes_plain.parquet, columns: [nope] }\n",
        &data,
    );
    let plain = c.open("plain").unwrap();
    assert_eq!(plain.row_count(), Some(8));
    assert_eq!(plain.schema().fields().len(), 11);
    assert_eq!(rows(&plain.into_batches().collect::<Result<Vec<_>, _>>().unwrap()), 8);

    let projected = c.open("projected").unwrap();
    let names: Vec<&str> = projected.schema().fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "bool_col"]);
    let batches: Vec<RecordBatch> = projected.into_batches().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches[0].num_columns(), 2);

    let groups = c.open("groups").unwrap();
    assert_eq!(groups.row_count(), Some(50));
    let batches: Vec<RecordBatch> = groups.into_batches().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows(&batches), 50);
    assert!(batches.iter().all(|b| b.num_rows() <= 4));

    assert_eq!(rows(&read_all(&c, "tiny").unwrap()), 7300);
    assert_eq!(rows(&read_all(&c, "nested").unwrap()), 1);

    let error = c.open("wrong_column").unwrap_err();
    assert!(error.to_string().contains("`nope`"), "{error}");
}

#[test]
fn corrupt_parquet_files_error_cleanly() {
    let bad = testdata().join("parquet/bad_data");
    for entry in std::fs::read_dir(&bad).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let c = catalog(&format!("  bad: {{ type: parquet, path: \"{name}\" }}\n"), &bad);
        let result = read_all(&c, "bad");
        assert!(result.is_err(), "{name} was read without error");
        let message = result.unwrap_err().to_string();
        assert!(message.contains("dataset `bad`"), "{message}");
    }
}

#[test]
fn arrow_file_and_stream() {
    let data = testdata().join("arrow-ipc/cpp-21.0.0");
    let c = catalog(
        "  file: { type: arrow, path: generated_primitive.arrow_file }\n\
         \x20 dict: { type: arrow, path: generated_dictionary.arrow_file }\n\
         \x20 stream: { type: arrow, path: generated_primitive.stream }\n",
        &data,
    );
    let file = c.open("file").unwrap();
    assert_eq!(file.row_count(), Some(37), "row count from the footer");
    let from_file: Vec<RecordBatch> = file.into_batches().collect::<Result<_, _>>().unwrap();
    let stream = c.open("stream").unwrap();
    assert_eq!(stream.row_count(), None);
    let from_stream: Vec<RecordBatch> = stream.into_batches().collect::<Result<_, _>>().unwrap();
    assert_same_rows(&from_stream, &from_file, "file vs stream");
    let dict = c.open("dict").unwrap();
    assert_eq!(dict.row_count(), Some(17));

    // And through the slicer.
    let messages: Vec<_> =
        c.open("dict").unwrap().into_ipc(SliceOptions::default()).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(messages.iter().any(|m| m.kind == MessageKind::Dictionary));
    assert_eq!(messages.iter().map(|m| m.rows).sum::<u64>(), 17);
}

#[test]
fn big_endian_stream_is_refused_at_open() {
    let dir = testdata().join("arrow-ipc/1.0.0-bigendian");
    let c = catalog("  be: { type: arrow, path: generated_primitive.stream }\n", &dir);
    let error = c.open("be").unwrap_err();
    assert!(matches!(error, SourceError::Unsupported { .. }), "{error}");
}

fn append(path: &std::path::Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
}

#[test]
fn followed_csv_yields_appended_lines_and_holds_partial_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticks.csv");
    std::fs::write(&path, "id,price\n1,10.5\n2,11.0\n").unwrap();
    let c = catalog("  ticks: { type: csv, path: ticks.csv, live: { follow: true, poll_ms: 20 } }\n", dir.path());
    let opened = c.open("ticks").unwrap();
    assert!(opened.is_live());
    let stop = opened.stop_flag();
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        append(&writer_path, "3,12.0\n4,1");
        std::thread::sleep(Duration::from_millis(300));
        append(&writer_path, "3.5\n");
    });
    let mut seen: Vec<(i64, f64)> = Vec::new();
    let started = Instant::now();
    let mut batches = opened.into_batches();
    while seen.len() < 4 {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out with {seen:?}");
        let batch = batches.next().expect("live stream continues").unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let prices = batch.column(1).as_primitive::<arrow_array::types::Float64Type>();
        for i in 0..batch.num_rows() {
            seen.push((ids.value(i), prices.value(i)));
        }
        if seen.len() == 3 {
            // "4,1" must not have been parsed as a complete row.
            assert_eq!(seen[2], (3, 12.0));
        }
    }
    assert_eq!(seen, [(1, 10.5), (2, 11.0), (3, 12.0), (4, 13.5)]);
    writer.join().unwrap();
    stop.store(true, Ordering::Release);
    let stopped_at = Instant::now();
    assert!(batches.next().is_none(), "stopped stream ends");
    assert!(stopped_at.elapsed() < Duration::from_secs(2));
}

#[test]
fn followed_ndjson_through_ipc_ends_with_end_of_stream_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.ndjson");
    std::fs::write(&path, "{\"v\": 1}\n").unwrap();
    let c = catalog("  e: { type: json, path: e.ndjson, live: { follow: true, poll_ms: 20 } }\n", dir.path());
    let opened = c.open("e").unwrap();
    let stop = opened.stop_flag();
    let mut stream = opened.into_ipc(SliceOptions::default()).unwrap();
    assert_eq!(stream.next().unwrap().unwrap().kind, MessageKind::Schema);
    let first = stream.next().unwrap().unwrap();
    assert_eq!((first.kind, first.rows), (MessageKind::RecordBatch, 1));
    append(&path, "{\"v\": 2}\n{\"v\": 3}\n");
    let second = stream.next().unwrap().unwrap();
    assert_eq!((second.kind, second.rows), (MessageKind::RecordBatch, 2));
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Release);
    });
    assert_eq!(stream.next().unwrap().unwrap().kind, MessageKind::EndOfStream);
    assert!(stream.next().is_none());
    stopper.join().unwrap();
}
