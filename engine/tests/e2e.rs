//! End-to-end: real sockets, the gateway in-process, a fake connector and
//! browsers as independent clients. Level 1, level 2, mixed levels, routes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use volley_protocol::header::{FrameKind, FLAG_LAST};
use volley_testkit::browser::{Browser, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec, SCHEMA_B64};
use volley_testkit::http::{http_body, http_get, metrics_json};
use volley_testkit::ipc::{chunks, golden, golden_path, ipc_messages, synthetic_frames, LARGE_OFFSETS, PRIMITIVE};
use volley_testkit::pyarrow::pyarrow_summary;
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

/// PROTOCOL.md §2 level 1: a seed connector's chunks, concatenated by a seed
/// browser between stream_start and stream_end, are the source IPC stream
/// byte for byte, and pyarrow reads them as the source table.
#[test]
fn level1_connector_to_level1_browser_delivers_the_exact_ipc_stream() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let source = golden(PRIMITIVE);
    // Odd chunk size: level-1 chunk boundaries carry no meaning.
    let _connector =
        spawn_connector(addr, ConnectorSpec::level1(vec![DatasetSpec::query("prim", chunks(&source, 1000))]));
    wait_connectors(&gateway, 1);

    let mut browser = Browser::connect(addr, &session_token(TENANT, &["prim"]), false);
    let result = browser.query("prim", "q1");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    let start = result.start.as_ref().expect("stream_start");
    assert_eq!(start["request_id"], "q1");
    assert!(start.get("stream_id").is_none(), "no stream_id at level 1: {start}");
    let end = result.end.as_ref().expect("stream_end");
    assert_eq!(end["type"], "stream_end");
    assert_eq!(end["total_bytes"], source.len() as u64);
    // Binary frames only between stream_start and stream_end.
    let first_binary = result.order.iter().position(|t| t == "binary").expect("binary frames");
    let start_pos = result.order.iter().position(|t| t == "stream_start").expect("start");
    assert!(start_pos < first_binary);
    let received = result.bytes();
    assert_eq!(received.len(), source.len());
    assert!(received == source, "payload bytes differ from the source file");

    // pyarrow reads the received bytes as the source table.
    let dir = std::env::temp_dir().join(format!("volley-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let got = dir.join("level1-received.stream");
    std::fs::write(&got, &received).expect("write");
    let summary = pyarrow_summary(&[&got, &golden_path(PRIMITIVE)]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!(summary[0], summary[1], "pyarrow: received table differs from the source");
    let rows: u64 = summary[0].split_whitespace().next().and_then(|r| r.parse().ok()).expect("rows");
    assert!(rows > 0, "{summary:?}");
}

/// PROTOCOL.md §2–3 level 2: two concurrent queries on one browser socket,
/// demultiplexed by stream_id; each stream's payloads are its source, its
/// sequences are contiguous from 0, flight_info precedes stream_start, and
/// headers arrive unchanged (kinds, LAST flag).
#[test]
fn level2_browser_multiplexes_two_concurrent_queries_on_one_socket() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let a = golden(PRIMITIVE);
    let b = golden(LARGE_OFFSETS);
    let a_msgs = ipc_messages(&a);
    let b_msgs = ipc_messages(&b);
    assert!(a_msgs.len() > 3 && b_msgs.len() > 3);
    let _connector = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![DatasetSpec::query("a", a_msgs.clone()), DatasetSpec::query("b", b_msgs.clone())]),
    );
    wait_connectors(&gateway, 1);

    let mut browser = Browser::connect(addr, &session_token(TENANT, &["a", "b"]), true);
    let hello = browser.hello.clone().expect("hello");
    assert_eq!(hello["protocol"], 2);
    assert_eq!(hello["tenant"], TENANT);
    browser.send(json!({"action": "query", "dataset": "a", "query_id": "qa"}));
    browser.send(json!({"action": "query", "dataset": "b", "query_id": "qb"}));

    let mut stream_of: HashMap<String, u32> = HashMap::new();
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    let mut frames: HashMap<u32, Vec<(volley_protocol::header::FrameHeader, bytes::Bytes)>> = HashMap::new();
    let mut ends: HashMap<String, serde_json::Value> = HashMap::new();
    let mut interleaved = false;
    let mut last_stream = 0;
    while ends.len() < 2 {
        match browser.next(Duration::from_secs(10)).expect("messages keep coming") {
            Received::Json(v) => {
                let query = v["query_id"].as_str().expect("query_id on every stream message").to_owned();
                let kind = v["type"].as_str().expect("type").to_owned();
                events.entry(query.clone()).or_default().push(kind.clone());
                match kind.as_str() {
                    "stream_start" => {
                        let id = u32::try_from(v["stream_id"].as_u64().expect("stream_id at level 2")).expect("u32");
                        assert!(id != 0);
                        stream_of.insert(query, id);
                    }
                    "stream_end" => {
                        ends.insert(query, v);
                    }
                    "flight_info" => assert_eq!(v["schema"], SCHEMA_B64),
                    other => panic!("unexpected {other}: {v}"),
                }
            }
            Received::Binary(data) => {
                let header = volley_protocol::header::FrameHeader::decode(&data).expect("header");
                assert!(stream_of.values().any(|id| *id == header.stream_id), "frame before its stream_start");
                if last_stream != 0 && last_stream != header.stream_id {
                    interleaved = true;
                }
                last_stream = header.stream_id;
                frames.entry(header.stream_id).or_default().push((header, data.slice(16..)));
            }
            Received::Close(code) => panic!("closed: {code:?}"),
        }
    }
    assert_ne!(stream_of["qa"], stream_of["qb"], "two streams");
    for (query, source, msgs) in [("qa", &a, &a_msgs), ("qb", &b, &b_msgs)] {
        let ev = &events[query];
        assert_eq!(ev, &vec!["flight_info".to_owned(), "stream_start".into(), "stream_end".into()], "{query}");
        let got = &frames[&stream_of[query]];
        assert_eq!(got.len(), msgs.len(), "{query}: one frame per IPC message");
        for (i, ((header, payload), (kind, body))) in got.iter().zip(msgs.iter()).enumerate() {
            assert_eq!(header.sequence, i as u64, "{query}: contiguous sequences");
            assert_eq!(header.kind, *kind, "{query}: kind forwarded unchanged");
            assert_eq!(header.flags & FLAG_LAST != 0, i + 1 == msgs.len(), "{query}: LAST only on the last frame");
            assert!(payload == body, "{query}: frame {i} differs");
        }
        let joined: Vec<u8> = got.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        assert!(&joined == source, "{query}: payload bytes differ from the source");
        let end = &ends[query];
        assert_eq!(end["stream_id"], stream_of[query]);
        assert_eq!(end["total_bytes"], source.len() as u64);
        assert!(end.get("error").is_none(), "{end}");
    }
    // Not required by the spec, but shows the socket really carried both at once.
    eprintln!("streams interleaved on the socket: {interleaved}");
}

/// PROTOCOL.md §3.3: a level-2 connector's frames reach a level-1 browser
/// without their 16-byte headers, and a level-1 connector's chunks reach a
/// level-2 browser with a gateway-built `chunk` header.
#[test]
fn gateway_translates_between_protocol_levels() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let source = golden(PRIMITIVE);
    let _l2 = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("v2data", ipc_messages(&source))]));
    let _l1 = spawn_connector(addr, ConnectorSpec::level1(vec![DatasetSpec::query("v1data", chunks(&source, 777))]));
    wait_connectors(&gateway, 2);

    let mut old = Browser::connect(addr, &session_token(TENANT, &["*"]), false);
    let result = old.query("v2data", "q1");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(result.bytes() == source, "level-1 browser of a level-2 connector: headers must be stripped");

    let mut new = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = new.query("v1data", "q2");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(result.bytes() == source, "level-2 browser of a level-1 connector");
    assert_eq!(result.headers.len(), source.len().div_ceil(777));
    let stream_id = result.start.as_ref().and_then(|s| s["stream_id"].as_u64()).expect("stream_id");
    for (i, h) in result.headers.iter().enumerate() {
        assert_eq!(h.kind, FrameKind::Chunk);
        assert_eq!(u64::from(h.stream_id), stream_id);
        assert_eq!(h.sequence, i as u64);
    }
}

/// `list` answers only the datasets the token allows, from connectors online now.
#[test]
fn list_shows_only_allowed_online_datasets() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let _c = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::query("ventas", synthetic_frames(1, 64)),
            DatasetSpec::query("nomina", synthetic_frames(1, 64)),
            DatasetSpec::live("ticker"),
        ]),
    );
    wait_connectors(&gateway, 1);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["ventas", "ticker"]), true);
    browser.send(json!({"action": "list"}));
    let reply = browser.next_json(Duration::from_secs(5));
    assert_eq!(reply["type"], "datasets");
    assert_eq!(
        reply["datasets"],
        json!([{"name": "ticker", "live": true}, {"name": "ventas", "live": false}]),
        "sorted, filtered by permisos"
    );
    browser.send(json!({"action": "ping"}));
    assert_eq!(browser.next_json(Duration::from_secs(5))["type"], "pong");
}

/// PROTOCOL.md §4.4 `datasets_changed`: a level-2 session hears, unasked,
/// that a connector came or went when that changes the datasets it may read —
/// and only then: a session that may not read the new dataset hears nothing.
#[test]
fn sessions_hear_their_datasets_change_as_connectors_come_and_go() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let _first =
        spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("ventas", synthetic_frames(1, 64))]));
    wait_connectors(&gateway, 1);
    let mut both = Browser::connect(addr, &session_token(TENANT, &["ventas", "nomina"]), true);
    let mut ventas_only = Browser::connect(addr, &session_token(TENANT, &["ventas"]), true);
    for browser in [&mut both, &mut ventas_only] {
        browser.send(json!({"action": "list"}));
        assert_eq!(browser.next_json(Duration::from_secs(5))["datasets"], json!([{"name": "ventas", "live": false}]));
    }

    let second =
        spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("nomina", synthetic_frames(1, 64))]));
    wait_connectors(&gateway, 2);
    let pushed = both.next_json(Duration::from_secs(5));
    assert_eq!(pushed["type"], "datasets_changed", "{pushed}");
    assert_eq!(
        pushed["datasets"],
        json!([{"name": "nomina", "live": false}, {"name": "ventas", "live": false}]),
        "the whole list, filtered by permisos"
    );
    // Nothing this session may read changed: it hears nothing (its next
    // message is the answer to its ping).
    std::thread::sleep(Duration::from_millis(600));
    ventas_only.send(json!({"action": "ping"}));
    assert_eq!(ventas_only.next_json(Duration::from_secs(5))["type"], "pong");

    second.vanish();
    let pushed = both.next_json(Duration::from_secs(10));
    assert_eq!(pushed["type"], "datasets_changed", "{pushed}");
    assert_eq!(pushed["datasets"], json!([{"name": "ventas", "live": false}]), "nomina went with its connector");
}

/// The observability endpoints: /health JSON fields, /metrics in the
/// Prometheus text format, /metrics.json with merged histograms that count
/// the traffic that just went through.
#[test]
fn health_and_metrics_routes_report_the_gateway_state() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let source = golden(PRIMITIVE);
    let _c = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("prim", ipc_messages(&source))]));
    wait_connectors(&gateway, 1);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = browser.query("prim", "q1");
    assert!(result.bytes() == source);

    let (status, text) = http_get(addr, "/health");
    assert_eq!(status, 200, "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
    let health: serde_json::Value = serde_json::from_str(http_body(&text)).expect("health JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["workers"], 2);
    assert_eq!(health["connectors"], 1);
    assert_eq!(health["sessions"], 1);

    // Workers publish once a second.
    let mut metrics = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(4), || {
            metrics = metrics_json(addr);
            // Each worker publishes on its own second: the connector's worker
            // (frames_in) may publish after the browser's (frames_out).
            metrics["counters"]["frames_out"].as_u64().unwrap_or(0) >= result.payloads.len() as u64
                && metrics["counters"]["frames_in"].as_u64().unwrap_or(0) >= result.payloads.len() as u64
        }),
        "frames_out/frames_in never counted the query: {metrics}"
    );
    assert_eq!(metrics["workers"], 2);
    assert_eq!(metrics["connectors"], 1);
    assert!(metrics["counters"]["frames_in"].as_u64().unwrap_or(0) >= result.payloads.len() as u64);
    assert!(metrics["ring_bytes"].is_u64());
    for name in ["relay_latency_us", "ttfb_us", "stream_duration_ms", "ring_occupancy_bytes"] {
        let h = &metrics["histograms"][name];
        for field in ["count", "min", "p50", "p90", "p99", "p999", "max", "mean", "distribution"] {
            assert!(!h[field].is_null(), "histogram {name} lacks {field}: {h}");
        }
    }
    assert!(metrics["histograms"]["relay_latency_us"]["count"].as_u64().unwrap_or(0) > 0);
    assert!(metrics["histograms"]["ttfb_us"]["count"].as_u64().unwrap_or(0) > 0);
    assert!(metrics["histograms"]["stream_duration_ms"]["count"].as_u64().unwrap_or(0) > 0);

    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    let body = http_body(&text);
    for line in [
        "# TYPE volley_workers gauge",
        "volley_workers 2",
        "volley_connectors 1",
        "# TYPE volley_frames_out_total counter",
        "# TYPE volley_relay_latency_seconds summary",
        "volley_relay_latency_seconds{quantile=\"0.99\"}",
        "volley_relay_latency_seconds_count",
    ] {
        assert!(body.contains(line), "/metrics lacks {line:?}:\n{body}");
    }
    // Every sample line is `name[{labels}] number`.
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}
