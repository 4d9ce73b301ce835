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
        c.open("dict").unwrap().into_ipc(SliceOptions::default(), None).unwrap().collect::<Result<_, _>>().unwrap();
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

/// `do_get`'s `history_bytes`: a followed file's rows from before its end
/// are held until the end is reached, and only the newest record batches
/// within the budget go out (then new rows as they come), so the first
/// subscriber of a live stream gets the same recent history as the window a
/// later one is replayed.
#[test]
fn a_followed_file_sends_only_the_newest_history_within_history_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.ndjson");
    let lines: String = (0..1000).map(|i| format!("{{\"v\": {i}}}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    let spec = "  h: { type: json, path: h.ndjson, batch_rows: 100, live: { follow: true, poll_ms: 20 } }\n";
    let rows_of = |history: Option<u64>| {
        let c = catalog(spec, dir.path());
        let opened = c.open("h").unwrap();
        let stop = opened.stop_flag();
        let mut stream = opened.into_ipc(SliceOptions::default(), history).unwrap();
        assert_eq!(stream.next().unwrap().unwrap().kind, MessageKind::Schema);
        let mut batches = Vec::new();
        let mut bytes = 0u64;
        // The history comes at once; then the stream waits for new rows.
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::Release);
            })
        };
        for message in stream.by_ref() {
            let message = message.unwrap();
            if message.kind == MessageKind::RecordBatch {
                batches.push(message.rows);
                bytes += message.bytes.len() as u64 + volley_protocol::tunnel::HISTORY_FRAME_OVERHEAD_BYTES;
            }
        }
        stopper.join().unwrap();
        (batches, bytes)
    };
    let (all, all_bytes) = rows_of(None);
    assert_eq!(all.iter().sum::<u64>(), 1000, "without a bound, the whole history: {all:?}");
    let budget = all_bytes / 3;
    let (newest, bytes) = rows_of(Some(budget));
    assert!(bytes <= budget, "{bytes} bytes of history over the budget of {budget}");
    assert!(!newest.is_empty() && newest.len() < all.len(), "some batches, not all: {newest:?}");
    assert_eq!(newest.iter().sum::<u64>(), 100 * newest.len() as u64, "whole batches: {newest:?}");
    let (none, _) = rows_of(Some(0));
    assert!(none.is_empty(), "history_bytes 0 sends no history: {none:?}");
}

/// The newest rows are the ones kept, and rows appended later still follow.
#[test]
fn a_bounded_history_keeps_the_newest_rows_and_then_follows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.ndjson");
    let lines: String = (0..500).map(|i| format!("{{\"v\": {i}}}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    let c = catalog(
        "  n: { type: json, path: n.ndjson, batch_rows: 100, live: { follow: true, poll_ms: 20 } }\n",
        dir.path(),
    );
    let opened = c.open("n").unwrap();
    let stop = opened.stop_flag();
    let mut stream = opened.into_ipc(SliceOptions::default(), Some(1)).unwrap();
    let schema = stream.next().unwrap().unwrap();
    assert_eq!(schema.kind, MessageKind::Schema);
    // The row is appended while `next` has read to the end of the file,
    // sent the history (no batch fits 1 byte) and waits for new rows.
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        append(&path, "{\"v\": 500}\n");
    });
    let next = stream.next().unwrap().unwrap();
    appender.join().unwrap();
    assert_eq!(
        (next.kind, next.rows),
        (MessageKind::RecordBatch, 1),
        "history of 1 byte holds no batch; the new row follows"
    );
    let ipc = [schema.bytes.to_vec(), next.bytes.to_vec()].concat();
    let batch =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap().next().unwrap().unwrap();
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 500, "the appended row, not an old one");
    stop.store(true, Ordering::Release);
}

#[test]
fn followed_ndjson_through_ipc_ends_with_end_of_stream_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.ndjson");
    std::fs::write(&path, "{\"v\": 1}\n").unwrap();
    let c = catalog("  e: { type: json, path: e.ndjson, live: { follow: true, poll_ms: 20 } }\n", dir.path());
    let opened = c.open("e").unwrap();
    let stop = opened.stop_flag();
    let mut stream = opened.into_ipc(SliceOptions::default(), None).unwrap();
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
