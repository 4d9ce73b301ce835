//! IPC body compression end to end (PROTOCOL.md §5.4): the real gateway
//! (in-process, real sockets) configured to compress, the real connector
//! (in-process) producing LZ4_FRAME or ZSTD bodies, and browsers that accept
//! zstd, lz4 or nothing. Every IPC message a browser receives is inspected
//! (its flatbuffer's `BodyCompression`), decoded with arrow-rs and compared
//! with arrow-rs's read of the source, and read by pyarrow, which must agree
//! with its own read of the source.
//!
//! `measure_wire_bytes_and_throughput` (ignored) prints bytes on the wire
//! and time per codec for `perf-results/extra/compression/`.

use std::fs::File;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::{CompressionType, MessageHeader};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};
use tungstenite::Bytes;
use volley_engine::Gateway;
use volley_protocol::header::FrameKind;
use volley_protocol::Codec;
use volley_testkit::arrow::assert_same_rows;
use volley_testkit::browser::{Browser, QueryResult, Received};
use volley_testkit::connector::{connector_yaml, InProcessConnector};
use volley_testkit::engine::{connectors_online, gateway_config, start};
use volley_testkit::files::{alltypes_parquet, big_parquet, write_file, TempDir, BIG_ROWS};
use volley_testkit::gateway::ScriptedGateway;
use volley_testkit::pyarrow::{pyarrow_compare, pyarrow_read};
use volley_testkit::tokens::{connector_token, session_token};
use volley_testkit::wait_until;

const TENANT: &str = "squeeze";

/// A gateway on a free port that may use `codecs`, most preferred first.
fn gateway_with(codecs: &[Codec]) -> Gateway {
    let mut config = gateway_config(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.compression.codecs = codecs.to_vec();
    start(config)
}

/// The real connector for [`TENANT`] on `gateway`, registered.
fn connector(gateway: &Gateway, performance: Value, datasets: Value, dir: &TempDir) -> InProcessConnector {
    let yaml = connector_yaml(gateway.local_addr(), TENANT, &connector_token(TENANT), performance, datasets);
    let connector = InProcessConnector::start(&yaml, dir.path());
    assert!(wait_until(Duration::from_secs(10), || connectors_online(gateway) >= 1), "the connector registered");
    connector
}

fn one_tunnel() -> Value {
    json!({"parallel_connections": 1, "reconnect_delay": 0.1})
}

/// One query with `compression` in the request (omitted when `None`).
fn query(browser: &mut Browser, dataset: &str, query_id: &str, compression: Option<&[&str]>) -> QueryResult {
    let mut request = json!({"action": "query", "dataset": dataset, "query_id": query_id});
    if let Some(codecs) = compression {
        request["compression"] = json!(codecs);
    }
    browser.send(request);
    let result = browser.collect(query_id, Duration::from_secs(60));
    assert_eq!(result.error_code(), None, "{query_id}: {:?}", result.end);
    result
}

/// `stream_start`'s `compression`, `None` when absent.
fn announced(start: &Value) -> Option<&str> {
    start.get("compression").map(|c| c.as_str().expect("compression is a string"))
}

/// The body compression each IPC message of `payloads` declares: one entry
/// per dictionary or record batch message (schema messages and the
/// end-of-stream marker carry none), read from its flatbuffer.
fn body_compression(payloads: &[Bytes]) -> Vec<(FrameKind, Option<CompressionType>)> {
    let mut out = Vec::new();
    for payload in payloads {
        let mut at = 0;
        while at < payload.len() {
            assert_eq!(&payload[at..at + 4], &[0xFF; 4], "continuation marker");
            let meta_len = usize::try_from(u32::from_le_bytes(payload[at + 4..at + 8].try_into().expect("4 bytes")))
                .expect("usize");
            if meta_len == 0 {
                break;
            }
            let message = arrow_ipc::root_as_message(&payload[at + 8..at + 8 + meta_len]).expect("IPC message");
            let body = usize::try_from(message.bodyLength()).expect("body length");
            match message.header_type() {
                MessageHeader::RecordBatch => {
                    let batch = message.header_as_record_batch().expect("record batch");
                    out.push((FrameKind::RecordBatch, batch.compression().map(|c| c.codec())));
                }
                MessageHeader::DictionaryBatch => {
                    let dictionary = message.header_as_dictionary_batch().expect("dictionary batch");
                    let data = dictionary.data().expect("dictionary data");
                    out.push((FrameKind::Dictionary, data.compression().map(|c| c.codec())));
                }
                _ => {}
            }
            at += 8 + meta_len + body;
        }
    }
    out
}

/// Asserts that every dictionary and record batch message carries `codec`
/// (`None`: that none is compressed), and that there are some.
fn assert_bodies(payloads: &[Bytes], codec: Option<CompressionType>, what: &str) {
    let declared = body_compression(payloads);
    assert!(declared.iter().any(|(kind, _)| *kind == FrameKind::RecordBatch), "{what}: no record batches");
    for (i, (kind, declared)) in declared.iter().enumerate() {
        assert_eq!(*declared, codec, "{what}: message {i} ({kind:?}) declares {declared:?}, expected {codec:?}");
    }
}

fn read_ipc(bytes: &[u8]) -> (SchemaRef, Vec<RecordBatch>) {
    let reader = StreamReader::try_new(Cursor::new(bytes), None).expect("arrow-rs reads the stream");
    let schema = reader.schema();
    (schema, reader.collect::<Result<Vec<_>, _>>().expect("arrow-rs decodes every batch"))
}

fn read_parquet(path: &Path) -> (SchemaRef, Vec<RecordBatch>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open parquet")).expect("parquet");
    let reader = builder.build().expect("reader");
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    (schema, reader.collect::<Result<Vec<_>, _>>().expect("parquet batches"))
}

/// arrow-rs decodes the received stream into the source's table, and pyarrow
/// reads the same bytes as its own read of the source.
fn assert_same_table(result: &QueryResult, source: &Path, dir: &TempDir, name: &str) {
    let bytes = result.bytes();
    let (schema, batches) = read_ipc(&bytes);
    let (want_schema, want) = read_parquet(source);
    assert_eq!(schema, want_schema, "{name}: schema");
    assert_same_rows(&want, &batches, name);
    let path = write_file(dir, &format!("{name}.arrows"), &bytes);
    let check = pyarrow_compare(&path, "parquet", source, "id");
    assert_eq!(check.rows, check.source_rows, "{name}: pyarrow rows");
    assert!(check.mismatches.is_empty(), "{name}: pyarrow sees other values: {:?}", check.mismatches);
    assert_eq!(check.checksum.0, check.checksum.1, "{name}: pyarrow checksum");
}

// ------------------------------------------------------------ (a) queries

#[test]
fn zstd_and_lz4_clients_receive_compressed_ipc_that_decodes_to_the_source() {
    let dir = TempDir::new("compressed-query");
    let source = big_parquet();
    let gateway = gateway_with(&[Codec::Zstd, Codec::Lz4]);
    let _connector = connector(&gateway, one_tunnel(), json!({"big": {"type": "parquet", "path": source}}), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);

    let mut wire = Vec::new();
    for (query_id, accepts, expected) in [
        ("both", Some(&["lz4", "zstd"][..]), Some(CompressionType::ZSTD)),
        ("lz4-only", Some(&["lz4"][..]), Some(CompressionType::LZ4_FRAME)),
        ("silent", None, None),
    ] {
        let result = query(&mut browser, "big", query_id, accepts);
        let start = result.start.as_ref().expect("stream_start");
        let name = expected.map(|c| if c == CompressionType::ZSTD { "zstd" } else { "lz4" });
        assert_eq!(announced(start), name, "{query_id}: {start}");
        assert_bodies(&result.payloads, expected, query_id);
        // Dictionaries are compressed like record batches.
        assert!(body_compression(&result.payloads).iter().any(|(kind, _)| *kind == FrameKind::Dictionary));
        assert_same_table(&result, &source, &dir, query_id);
        let total = result.bytes().len();
        assert_eq!(result.end.as_ref().expect("end")["total_bytes"].as_u64(), Some(total as u64));
        wire.push((query_id, total));
    }
    eprintln!("IPC bytes received: {wire:?}");
    let plain = wire[2].1;
    assert!(wire[0].1 < plain && wire[1].1 < plain, "compressed streams are smaller: {wire:?}");
}

// -------------------------------------------- (b) live, mixed clients

#[test]
fn a_client_without_codecs_reads_the_same_live_dataset_uncompressed_next_to_a_zstd_subscriber() {
    let dir = TempDir::new("compressed-live");
    let ticker = dir.join("ticker.csv");
    std::fs::write(&ticker, "seq,symbol,price\n1,OLD1,10.5\n2,OLD2,11.25\n").expect("write ticker");
    let gateway = gateway_with(&[Codec::Zstd]);
    let datasets = json!({"ticker": {"type": "csv", "path": ticker, "live": {"follow": true, "poll_ms": 50}}});
    let _connector = connector(&gateway, one_tunnel(), datasets, &dir);
    let token = session_token(TENANT, &["ticker"]);
    let subscribe = |query_id: &str, compression: Option<&[&str]>| {
        let mut browser = Browser::connect(gateway.local_addr(), &token, true);
        let mut request = json!({"action": "subscribe", "dataset": "ticker", "query_id": query_id});
        if let Some(codecs) = compression {
            request["compression"] = json!(codecs);
        }
        browser.send(request);
        let start = loop {
            match browser.next(Duration::from_secs(10)) {
                Some(Received::Json(v)) if v["type"] == "stream_start" => break v,
                Some(Received::Json(v)) if v["type"] == "flight_info" => continue,
                other => panic!("{query_id}: expected stream_start, got {other:?}"),
            }
        };
        (browser, start)
    };
    let (mut zstd, zstd_start) = subscribe("z", Some(&["zstd", "lz4"]));
    let (mut plain, plain_start) = subscribe("p", None);
    assert_eq!(announced(&zstd_start), Some("zstd"), "{zstd_start}");
    assert_eq!(announced(&plain_start), None, "{plain_start}");
    assert_ne!(zstd_start["stream_id"], plain_start["stream_id"], "different codecs, different streams");

    let appended: Vec<String> = (0..6).map(|i| format!("NEW{i}")).collect();
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().append(true).open(&ticker).expect("open ticker");
        for (i, symbol) in appended.iter().enumerate() {
            writeln!(file, "{},{symbol},{}.5", 3 + i, 100 + i).expect("append");
        }
    }
    let expected_rows = 2 + appended.len();
    let mut tables = Vec::new();
    for (name, browser, codec) in [("zstd", &mut zstd, Some(CompressionType::ZSTD)), ("plain", &mut plain, None)] {
        let mut payloads: Vec<Bytes> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        let (stream, decoded) = loop {
            assert!(Instant::now() < deadline, "{name}: the appended rows did not arrive");
            match browser.next(Duration::from_millis(300)) {
                Some(Received::Binary(data)) => {
                    payloads.push(data.slice(16..));
                    continue;
                }
                Some(other) => panic!("{name}: unexpected message while live: {other:?}"),
                None if payloads.is_empty() => continue,
                None => {}
            }
            let mut stream: Vec<u8> = payloads.iter().flat_map(|p| p.iter().copied()).collect();
            stream.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
            let (_, batches) = read_ipc(&stream);
            if batches.iter().map(RecordBatch::num_rows).sum::<usize>() >= expected_rows {
                break (stream, batches);
            }
        };
        assert_bodies(&payloads, codec, name);
        let path = write_file(&dir, &format!("live-{name}.arrows"), &stream);
        let (rows, symbols) = pyarrow_read(&path, "symbol");
        assert_eq!(usize::try_from(rows).expect("rows"), expected_rows, "{name}: pyarrow rows");
        tables.push((symbols, decoded));
    }
    assert_eq!(tables[0].0, tables[1].0, "pyarrow: both subscribers read the same rows");
    let tail: Vec<&str> =
        tables[0].0.iter().rev().take(appended.len()).rev().map(|v| v.as_str().unwrap_or("")).collect();
    assert_eq!(tail, appended.iter().map(String::as_str).collect::<Vec<_>>());
    assert_same_rows(&tables[0].1, &tables[1].1, "zstd vs plain subscriber (arrow-rs)");
}

// ----------------------------- (c) the connector's offer bounds the choice

#[test]
fn a_connector_offering_no_codec_serves_uncompressed_streams() {
    let dir = TempDir::new("offers-none");
    let source = alltypes_parquet();
    let gateway = gateway_with(&[Codec::Zstd, Codec::Lz4]);
    let performance = json!({"parallel_connections": 1, "reconnect_delay": 0.1, "compression": "none"});
    let _connector = connector(&gateway, performance, json!({"all": {"type": "parquet", "path": source}}), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    let result = query(&mut browser, "all", "q1", Some(&["zstd", "lz4"]));
    assert_eq!(announced(result.start.as_ref().expect("stream_start")), None);
    assert_bodies(&result.payloads, None, "all");
    assert_same_table(&result, &source, &dir, "offers-none");
}

/// The connector's own guard, with a scripted gateway on a real socket: it
/// offers what `performance.compression` says and refuses to stream with a
/// codec it did not offer.
#[test]
fn connector_offers_its_configured_codecs_and_refuses_any_other() {
    let dir = TempDir::new("offer-guard");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let performance = json!({"parallel_connections": 1, "reconnect_delay": 0.1, "compression": "lz4"});
    let yaml = connector_yaml(
        addr,
        TENANT,
        &connector_token(TENANT),
        performance,
        json!({"all": {"type": "parquet", "path": alltypes_parquet()}}),
    );
    let connector = InProcessConnector::start(&yaml, dir.path());
    let mut gateway = ScriptedGateway::accept(&listener);
    let register = gateway.read_json();
    assert_eq!(register["compression"], json!(["lz4"]), "{register}");
    gateway.send(json!({"status": "ok", "data": {"session_id": "c-1", "protocol": 2, "heartbeat_seconds": 15}}));
    for (i, codec) in ["zstd", "snappy", ""].into_iter().enumerate() {
        let request_id = format!("r{i}");
        gateway.send(json!({"action": "do_get", "request_id": request_id, "ticket": "all", "stream_id": 10 + i,
                   "credit_bytes": 1 << 20, "compression": codec}));
        let reply = gateway.read_json();
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("bad_request")), "{reply}");
        assert_eq!(reply["request_id"], request_id.as_str());
    }
    gateway
        .send(json!({"action": "do_get", "request_id": "r9", "ticket": "all", "stream_id": 9, "credit_bytes": 1 << 30,
               "compression": "lz4"}));
    let start = gateway.read_json();
    assert_eq!(start["type"], "stream_start", "{start}");
    let (frames, end) = gateway.read_stream();
    let payloads: Vec<_> = frames.iter().map(|data| data.slice(16..)).collect();
    assert_eq!(end["type"], "stream_end", "{end}");
    assert_bodies(&payloads, Some(CompressionType::LZ4_FRAME), "lz4 on request");
    connector.stop_within(volley_connector::tunnel::SHUTDOWN_GRACE + Duration::from_secs(1));
}

// ------------------------------------------------------------ measurement

/// Bytes on the wire and time to read the 200k-row dataset through the real
/// gateway and connector, per codec. Run in release:
/// `cargo test --release -p volley --test compression -- --ignored --nocapture measure`
#[test]
#[ignore = "a measurement, not a check; see perf-results/extra/compression"]
fn measure_wire_bytes_and_throughput() {
    const ROUNDS: usize = 5;
    let dir = TempDir::new("measure");
    let source = big_parquet();
    let gateway = gateway_with(&[Codec::Zstd, Codec::Lz4]);
    let _connector = connector(&gateway, one_tunnel(), json!({"big": {"type": "parquet", "path": source}}), &dir);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);
    println!("codec\tround\tframes\twire_bytes\tseconds\tMB_per_s_wire\trows_per_s");
    for (codec, accepts) in [("none", &[][..]), ("lz4", &["lz4"][..]), ("zstd", &["zstd"][..])] {
        for round in 0..ROUNDS {
            let started = Instant::now();
            let result = query(&mut browser, "big", &format!("{codec}-{round}"), Some(accepts));
            let seconds = started.elapsed().as_secs_f64();
            let wire: usize = result.payloads.iter().map(|p| p.len() + 16).sum();
            println!(
                "{codec}\t{round}\t{}\t{wire}\t{seconds:.3}\t{:.1}\t{:.0}",
                result.payloads.len(),
                wire as f64 / seconds / 1e6,
                BIG_ROWS as f64 / seconds
            );
        }
    }
}
