//! A real PostgreSQL table of [`ROWS`] rows crosses the whole tunnel: the
//! real connector's `postgres` source, the in-process gateway, a level-2
//! browser on a real socket. The browser decodes each frame as it arrives
//! (arrow-rs `StreamDecoder`, nothing kept), and per-column checksums
//! computed over the received Arrow data must equal the same checksums
//! computed by SQL. The test process's peak RSS (VmHWM) is measured around
//! the stream: the connector must stream, not load the table.

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_schema::{DataType, TimeUnit};
use serde_json::json;
use volley_testkit::browser::{Browser, Received};
use volley_testkit::connector::{connector_yaml, InProcessConnector};
use volley_testkit::engine::{connectors_online, start_default_gateway};
use volley_testkit::files::TempDir;
use volley_testkit::tokens::{connector_token, session_token};
use volley_testkit::{wait_until, PgServer};

const TENANT: &str = "pg";

/// Rows loaded and streamed. One million fits the time budget in a debug
/// build (see the figures printed by the test).
const ROWS: i64 = 1_000_000;

/// Bound on the test process's peak-RSS growth while streaming, MB. The
/// whole table as Arrow is ~100 MB, and a loaded-then-encoded table would
/// hold it several times over.
const RSS_GROWTH_MAX_MB: f64 = 400.0;

/// Every column gets its own NULL pattern; `g % 100003 = 5` rows are NULL in
/// every nullable column at once, and row 1 has no NULL at all.
const CREATE: &str = r#"
CREATE TABLE big (
    id   int8 NOT NULL,
    i4   int4,
    i8   int8,
    f8   float8,
    n    numeric(12,2),
    t    text,
    ts   timestamp,
    tstz timestamptz,
    d    date,
    b    bool
)"#;

const INSERT: &str = r#"
INSERT INTO big
SELECT g,
       CASE WHEN g % 7 = 0 OR g % 100003 = 5 THEN NULL ELSE (g * 37 % 2000001) - 1000000 END,
       CASE WHEN g % 11 = 0 OR g % 100003 = 5 THEN NULL ELSE g * 1000003 - 500000000000 END,
       CASE WHEN g % 13 = 0 OR g % 100003 = 5 THEN NULL ELSE g * 0.5 - 12345.0 END,
       CASE WHEN g % 17 = 0 OR g % 100003 = 5 THEN NULL ELSE (g * 0.37 - 99999.99)::numeric(12,2) END,
       CASE WHEN g % 19 = 0 OR g % 100003 = 5 THEN NULL
            ELSE 'fila ' || g || ' ñandú 数据 ' || repeat('é🚀', (g % 5)::int) END,
       CASE WHEN g % 23 = 0 OR g % 100003 = 5 THEN NULL
            ELSE timestamp '1950-06-15 12:00:00' + g * interval '17 minutes 3.123457 seconds' END,
       CASE WHEN g % 29 = 0 OR g % 100003 = 5 THEN NULL
            ELSE timestamptz '1999-12-31 23:00:00+00' + g * interval '1 minute 0.000001 seconds' END,
       CASE WHEN g % 31 = 0 OR g % 100003 = 5 THEN NULL ELSE date '1900-01-01' + (g * 7 % 100000)::int END,
       CASE WHEN g % 37 = 0 OR g % 100003 = 5 THEN NULL ELSE g % 3 = 0 END
FROM generate_series(1::int8, $1::int8) AS g"#;

/// Per-column checksums, all as text so SQL and Rust compare exactly.
const CHECKSUMS: &str = r#"
SELECT count(*)::text, sum(id)::text, min(id)::text, max(id)::text,
       count(i4)::text, sum(i4)::text,
       count(i8)::text, sum(i8)::text,
       count(f8)::text, sum(f8)::text,
       count(n)::text, sum(n)::text,
       count(t)::text, sum(length(t))::text, sum(octet_length(t))::text,
       count(ts)::text, (extract(epoch FROM min(ts)) * 1000000)::int8::text,
       (extract(epoch FROM max(ts)) * 1000000)::int8::text,
       sum((extract(epoch FROM ts) * 1000000)::int8)::text,
       count(tstz)::text, (extract(epoch FROM min(tstz)) * 1000000)::int8::text,
       (extract(epoch FROM max(tstz)) * 1000000)::int8::text,
       sum((extract(epoch FROM tstz) * 1000000)::int8)::text,
       count(d)::text, min(d - date '1970-01-01')::text, max(d - date '1970-01-01')::text,
       sum(d - date '1970-01-01')::text,
       count(b)::text, (count(*) FILTER (WHERE b))::text
FROM big"#;

const NAMES: [&str; 29] = [
    "rows",
    "id sum",
    "id min",
    "id max",
    "i4 non-null",
    "i4 sum",
    "i8 non-null",
    "i8 sum",
    "f8 non-null",
    "f8 sum",
    "n non-null",
    "n sum",
    "t non-null",
    "t chars",
    "t bytes",
    "ts non-null",
    "ts min us",
    "ts max us",
    "ts sum us",
    "tstz non-null",
    "tstz min us",
    "tstz max us",
    "tstz sum us",
    "d non-null",
    "d min days",
    "d max days",
    "d sum days",
    "b non-null",
    "b true",
];

/// Running checksums over received batches, in the order of [`NAMES`].
#[derive(Default)]
struct Sums {
    rows: i128,
    id: (i128, Option<i64>, Option<i64>),
    i4: (i128, i128),
    i8: (i128, i128),
    f8: (i128, f64),
    n: (i128, i128),
    t: (i128, i128, i128),
    ts: (i128, Option<i64>, Option<i64>, i128),
    tstz: (i128, Option<i64>, Option<i64>, i128),
    d: (i128, Option<i32>, Option<i32>, i128),
    b: (i128, i128),
}

fn min_max<T: Copy + Ord>(slot: (&mut Option<T>, &mut Option<T>), v: T) {
    *slot.0 = Some(slot.0.map_or(v, |m| m.min(v)));
    *slot.1 = Some(slot.1.map_or(v, |m| m.max(v)));
}

impl Sums {
    fn add(&mut self, batch: &RecordBatch) {
        let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
        let count = |a: &dyn Array| i128::try_from(a.len() - a.null_count()).expect("count");
        self.rows += i128::try_from(batch.num_rows()).expect("rows");

        let id = column("id").as_primitive::<Int64Type>();
        assert_eq!(id.null_count(), 0, "id is never null");
        for v in id.values().iter().copied() {
            self.id.0 += i128::from(v);
            min_max((&mut self.id.1, &mut self.id.2), v);
        }
        let i4 = column("i4").as_primitive::<Int32Type>();
        self.i4.0 += count(i4);
        self.i4.1 += i4.iter().flatten().map(i128::from).sum::<i128>();
        let i8 = column("i8").as_primitive::<Int64Type>();
        self.i8.0 += count(i8);
        self.i8.1 += i8.iter().flatten().map(i128::from).sum::<i128>();
        let f8 = column("f8").as_primitive::<Float64Type>();
        self.f8.0 += count(f8);
        // Every value is a multiple of 0.5 far below 2^52: the sum is exact in any order.
        self.f8.1 += f8.iter().flatten().sum::<f64>();
        let n = column("n").as_primitive::<Decimal128Type>();
        self.n.0 += count(n);
        self.n.1 += n.iter().flatten().sum::<i128>();
        let t = column("t").as_string::<i32>();
        self.t.0 += count(t);
        for s in t.iter().flatten() {
            self.t.1 += i128::try_from(s.chars().count()).expect("chars");
            self.t.2 += i128::try_from(s.len()).expect("bytes");
        }
        for (name, slot) in [("ts", &mut self.ts), ("tstz", &mut self.tstz)] {
            let a = column(name).as_primitive::<TimestampMicrosecondType>();
            slot.0 += count(a);
            for v in a.iter().flatten() {
                min_max((&mut slot.1, &mut slot.2), v);
                slot.3 += i128::from(v);
            }
        }
        let d = column("d").as_primitive::<Date32Type>();
        self.d.0 += count(d);
        for v in d.iter().flatten() {
            min_max((&mut self.d.1, &mut self.d.2), v);
            self.d.3 += i128::from(v);
        }
        let b = column("b").as_boolean();
        self.b.0 += count(b);
        self.b.1 += i128::try_from(b.true_count()).expect("true count");
    }

    /// The checksums as SQL prints them.
    fn texts(&self) -> Vec<String> {
        let opt = |v: Option<i64>| v.map_or_else(|| "NULL".to_owned(), |v| v.to_string());
        let opt32 = |v: Option<i32>| v.map_or_else(|| "NULL".to_owned(), |v| v.to_string());
        vec![
            self.rows.to_string(),
            self.id.0.to_string(),
            opt(self.id.1),
            opt(self.id.2),
            self.i4.0.to_string(),
            self.i4.1.to_string(),
            self.i8.0.to_string(),
            self.i8.1.to_string(),
            self.f8.0.to_string(),
            self.f8.1.to_string(),
            self.n.0.to_string(),
            cents(self.n.1),
            self.t.0.to_string(),
            self.t.1.to_string(),
            self.t.2.to_string(),
            self.ts.0.to_string(),
            opt(self.ts.1),
            opt(self.ts.2),
            self.ts.3.to_string(),
            self.tstz.0.to_string(),
            opt(self.tstz.1),
            opt(self.tstz.2),
            self.tstz.3.to_string(),
            self.d.0.to_string(),
            opt32(self.d.1),
            opt32(self.d.2),
            self.d.3.to_string(),
            self.b.0.to_string(),
            self.b.1.to_string(),
        ]
    }
}

/// A scale-2 decimal as PostgreSQL prints a numeric(_, 2) sum.
fn cents(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Peak resident set size of this process (VmHWM), MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    let kb: f64 = line.split_whitespace().nth(1).expect("value").parse().expect("kB");
    kb / 1024.0
}

#[test]
fn a_million_postgres_rows_stream_through_the_tunnel_with_matching_checksums() {
    let Some(server) = PgServer::start_or_skip() else {
        return;
    };
    let started = Instant::now();
    let mut client = server.client();
    client.batch_execute(CREATE).expect("create table");
    client.execute(INSERT, &[&ROWS]).expect("insert rows");
    let load_took = started.elapsed();
    let expected: Vec<String> = {
        let row = client.query_one(CHECKSUMS, &[]).expect("checksums");
        (0..NAMES.len()).map(|i| row.get::<_, Option<String>>(i).unwrap_or_else(|| "NULL".into())).collect()
    };
    assert_eq!(expected[0], ROWS.to_string());
    let sql_took = started.elapsed() - load_took;

    let dir = TempDir::new("pg");
    let gateway = start_default_gateway();
    let datasets = json!({
        "big": {"type": "postgres", "url": server.url(), "query": "SELECT id, i4, i8, f8, n, t, ts, tstz, d, b FROM big"},
    });
    let performance = json!({"parallel_connections": 1, "reconnect_delay": 0.1});
    let yaml = connector_yaml(gateway.local_addr(), TENANT, &connector_token(TENANT), performance, datasets);
    let _connector = InProcessConnector::start(&yaml, dir.path());
    assert!(wait_until(Duration::from_secs(10), || connectors_online(&gateway) >= 1), "the connector registered");
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["big"]), true);

    // Reset the high-water mark where the kernel allows it (clear_refs 5);
    // either way growth is measured against the peak so far.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = peak_rss_mb();
    let stream_started = Instant::now();
    browser.send(json!({"action": "query", "dataset": "big", "query_id": "big"}));
    let mut decoder = StreamDecoder::new();
    let mut sums = Sums::default();
    let mut schema_checked = false;
    let mut bytes: u64 = 0;
    let mut frames: u64 = 0;
    let end = loop {
        match browser.next(Duration::from_secs(60)) {
            Some(Received::Binary(data)) => {
                let header = volley_protocol::header::FrameHeader::decode(&data).expect("level-2 header");
                assert_eq!(header.sequence, frames, "frames in order");
                frames += 1;
                let payload = data.slice(16..);
                bytes += payload.len() as u64;
                let mut buffer = Buffer::from(payload);
                while !buffer.is_empty() {
                    if let Some(batch) = decoder.decode(&mut buffer).expect("a valid IPC stream") {
                        if !schema_checked {
                            let schema = batch.schema();
                            let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
                            assert_eq!(
                                types,
                                [
                                    &DataType::Int64,
                                    &DataType::Int32,
                                    &DataType::Int64,
                                    &DataType::Float64,
                                    &DataType::Decimal128(12, 2),
                                    &DataType::Utf8,
                                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                                    &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                                    &DataType::Date32,
                                    &DataType::Boolean,
                                ],
                                "Arrow types of the PostgreSQL columns"
                            );
                            schema_checked = true;
                        }
                        sums.add(&batch);
                    }
                }
            }
            Some(Received::Json(v)) => match v["type"].as_str() {
                Some("flight_info" | "stream_start") => {}
                Some("stream_end" | "error") => break v,
                _ => panic!("unexpected message: {v}"),
            },
            Some(Received::Close(code)) => panic!("socket closed ({code:?}) mid-stream"),
            None => panic!("no message for 60 s after {frames} frames"),
        }
    };
    let stream_took = stream_started.elapsed();
    let rss_after = peak_rss_mb();
    assert_eq!(end["type"], "stream_end", "{end}");
    assert_eq!(end["total_bytes"].as_u64(), Some(bytes), "total_bytes");
    decoder.finish().expect("the stream ends at a message boundary");

    let got = sums.texts();
    let mut mismatches = Vec::new();
    for ((name, want), got) in NAMES.iter().zip(&expected).zip(&got) {
        // float8 sums: SQL prints the shortest round-trip text; compare as numbers.
        let same = if *name == "f8 sum" { want.parse::<f64>().ok() == got.parse::<f64>().ok() } else { want == got };
        if !same {
            mismatches.push(format!("{name}: SQL {want}, received {got}"));
        }
    }
    assert!(mismatches.is_empty(), "checksums differ:\n{}", mismatches.join("\n"));

    let mb = bytes as f64 / 1e6;
    let growth = rss_after - rss_before;
    eprintln!(
        "pg 1M rows: {:.1} MB/s, peak RSS growth {growth:.1} MB \
         ({ROWS} rows, {mb:.1} MB of IPC in {frames} frames, {stream_took:?}; \
         VmHWM {rss_before:.1} -> {rss_after:.1} MB; load {load_took:?}, SQL checksums {sql_took:?}, total {:?})",
        mb / stream_took.as_secs_f64(),
        started.elapsed()
    );
    assert!(
        growth < RSS_GROWTH_MAX_MB,
        "peak RSS grew by {growth:.1} MB while streaming {mb:.1} MB: the table is not streamed"
    );
}
