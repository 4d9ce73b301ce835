//! PROTOCOL.md §5.4 IPC body compression, as the gateway decides it: a
//! connector is asked only for a codec it offered in `register`, a client
//! only gets a codec it accepted (the gateway's preference order decides
//! among them), compression is off unless configured, and live streams are
//! shared per (dataset, codec). Real sockets and the in-process gateway; the
//! fake connector records every command it receives (it sends its frames as
//! they are: whether bytes really are compressed is the real connector's
//! test, `cli/tests/compression.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use volley_engine::{Gateway, GatewayConfig};
use volley_protocol::header::FrameKind;
use volley_protocol::Codec;
use volley_testkit::browser::{Browser, QueryResult, Received};
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, Behaviour, ConnectorHandle, ConnectorSpec, DatasetSpec};
use volley_testkit::ipc::{golden, ipc_messages, PRIMITIVE};
use volley_testkit::tokens::{session_token, TENANT};
use volley_testkit::wait_until;

/// A gateway that may use `codecs`, most preferred first.
fn compressing(codecs: &[Codec]) -> GatewayConfig {
    let mut config = config();
    config.compression.codecs = codecs.to_vec();
    config
}

/// `do_get`'s `compression` field (`None` when absent).
/// A gateway with `config` and a level-2 connector serving the primitive
/// golden file as `ventas`, offering `codecs`, registered.
fn serve_ventas(config: GatewayConfig, codecs: &[&str]) -> (Gateway, ConnectorHandle) {
    let gateway = start(config);
    let frames = ipc_messages(&golden(PRIMITIVE));
    let connector = spawn_connector(
        gateway.local_addr(),
        ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames)]).offering(codecs),
    );
    wait_connectors(&gateway, 1);
    (gateway, connector)
}

fn asked(command: &Value) -> Option<String> {
    command.get("compression").map(|c| c.as_str().expect("compression is a string").to_owned())
}

/// `stream_start`'s `compression` field (`None` when absent).
fn announced(result: &QueryResult) -> Option<String> {
    let start = result.start.as_ref().expect("stream_start");
    start.get("compression").map(|c| c.as_str().expect("compression is a string").to_owned())
}

/// Runs one query with `compression` in the request (omitted when `None`).
fn query(browser: &mut Browser, dataset: &str, query_id: &str, compression: Option<&[&str]>) -> QueryResult {
    let mut request = json!({"action": "query", "dataset": dataset, "query_id": query_id});
    if let Some(codecs) = compression {
        request["compression"] = json!(codecs);
    }
    browser.send(request);
    let result = browser.collect(query_id, Duration::from_secs(10));
    assert_eq!(result.error_code(), None, "{query_id}: {:?}", result.end);
    result
}

#[test]
fn a_connector_is_never_asked_for_a_codec_it_did_not_offer() {
    let gateway = start(compressing(&[Codec::Zstd, Codec::Lz4]));
    let addr = gateway.local_addr();
    let frames = ipc_messages(&golden(PRIMITIVE));
    // Two tunnels of the tenant serve the same dataset: one offers nothing,
    // the other only lz4 (the gateway's second choice).
    let plain = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames.clone())]));
    let lz4 = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames.clone())]).offering(&["lz4", "brotli"]),
    );
    wait_connectors(&gateway, 2);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);

    // A client that decodes both: zstd is preferred but nobody offers it, so
    // every such query goes to the lz4 tunnel, with lz4.
    for i in 0..4 {
        let result = query(&mut browser, "ventas", &format!("both{i}"), Some(&["zstd", "lz4"]));
        assert_eq!(announced(&result).as_deref(), Some("lz4"), "{:?}", result.start);
        assert!(result.bytes() == frames.iter().flat_map(|(_, b)| b.to_vec()).collect::<Vec<u8>>());
    }
    // A client that decodes nothing, or says nothing, or names only codecs
    // the gateway does not know: uncompressed, on either tunnel (round robin).
    for (i, compression) in [None, Some(&[][..]), Some(&["brotli"][..]), None].into_iter().enumerate() {
        let result = query(&mut browser, "ventas", &format!("plain{i}"), compression);
        assert_eq!(announced(&result), None, "{compression:?}: {:?}", result.start);
    }

    let plain_gets = plain.commands("do_get");
    let lz4_gets = lz4.commands("do_get");
    assert!(!plain_gets.is_empty(), "round robin never reached the tunnel without codecs");
    for command in &plain_gets {
        assert_eq!(asked(command), None, "the tunnel that offered no codec was asked: {command}");
    }
    let lz4_codecs: Vec<Option<String>> = lz4_gets.iter().map(asked).collect();
    assert_eq!(lz4_codecs.iter().filter(|c| c.as_deref() == Some("lz4")).count(), 4, "{lz4_codecs:?}");
    assert!(lz4_codecs.iter().all(|c| c.is_none() || c.as_deref() == Some("lz4")), "{lz4_codecs:?}");
    assert_eq!(plain_gets.len() + lz4_gets.len(), 8);
}

#[test]
fn compression_is_off_unless_the_gateway_is_configured() {
    let (gateway, connector) = serve_ventas(config(), &["zstd", "lz4"]);
    let addr = gateway.local_addr();
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    let result = query(&mut browser, "ventas", "q1", Some(&["zstd", "lz4"]));
    assert_eq!(announced(&result), None);
    let command = connector.wait_command("do_get", Duration::from_secs(5)).expect("do_get");
    assert_eq!(asked(&command), None, "{command}");
}

#[test]
fn the_gateway_preference_decides_among_codecs_both_sides_accept() {
    let (gateway, connector) = serve_ventas(compressing(&[Codec::Lz4, Codec::Zstd]), &["zstd", "lz4"]);
    let addr = gateway.local_addr();
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    // The client's order does not matter: the gateway prefers lz4.
    assert_eq!(announced(&query(&mut browser, "ventas", "q1", Some(&["zstd", "lz4"]))).as_deref(), Some("lz4"));
    assert_eq!(announced(&query(&mut browser, "ventas", "q2", Some(&["zstd"]))).as_deref(), Some("zstd"));
    let codecs: Vec<Option<String>> = connector.commands("do_get").iter().map(asked).collect();
    assert_eq!(codecs, [Some("lz4".to_owned()), Some("zstd".to_owned())]);
}

/// `compression.assume_client_codecs` is what a client that names nothing
/// (a seed page on a level-1 socket) is assumed to decode.
#[test]
fn clients_that_name_no_codec_get_the_assumed_ones() {
    let mut config = compressing(&[Codec::Zstd]);
    config.compression.assume_client_codecs = vec![Codec::Zstd];
    let (gateway, _connector) = serve_ventas(config, &["zstd"]);
    let addr = gateway.local_addr();
    let token = session_token(TENANT, &["*"]);
    let mut seed = Browser::connect(addr, &token, false);
    assert_eq!(announced(&query(&mut seed, "ventas", "q1", None)).as_deref(), Some("zstd"));
    let mut modern = Browser::connect(addr, &token, true);
    assert_eq!(announced(&query(&mut modern, "ventas", "q2", Some(&[]))), None, "[] overrides the assumption");
}

/// When every tunnel that offers the preferred codec is at its stream limit,
/// the request falls back to the next acceptable choice instead of failing.
#[test]
fn a_busy_compressing_tunnel_falls_back_to_an_uncompressed_one() {
    let mut config = compressing(&[Codec::Zstd]);
    config.limits.streams_per_connector_max = 1;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let frames = ipc_messages(&golden(PRIMITIVE));
    let zstd = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::query("ventas", frames.clone()),
            DatasetSpec::query("stuck", frames.clone()).with(Behaviour::Stall),
        ])
        .offering(&["zstd"]),
    );
    let plain = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames)]));
    wait_connectors(&gateway, 2);
    let mut browser = Browser::connect(addr, &session_token(TENANT, &["*"]), true);
    // Occupy the zstd tunnel's only stream slot.
    browser.send(json!({"action": "query", "dataset": "stuck", "query_id": "stuck", "compression": ["zstd"]}));
    zstd.wait_command("do_get", Duration::from_secs(5)).expect("the stalled stream started");
    let result = query(&mut browser, "ventas", "q1", Some(&["zstd"]));
    assert_eq!(announced(&result), None, "{:?}", result.start);
    let command = plain.wait_command("do_get", Duration::from_secs(5)).expect("served by the other tunnel");
    assert_eq!(asked(&command), None);
}

/// A live subscriber is attached only to a stream whose codec it accepted:
/// subscribers that get different codecs read different upstream streams of
/// the same dataset; subscribers that get the same codec share one.
#[test]
fn live_streams_are_shared_per_codec() {
    let gateway = start(compressing(&[Codec::Zstd, Codec::Lz4]));
    let addr = gateway.local_addr();
    let connector =
        spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::live("ticker")]).offering(&["zstd", "lz4"]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ticker"]);
    let subscribe = |query_id: &str, compression: Option<&[&str]>| {
        let mut browser = Browser::connect(addr, &token, true);
        let mut request = json!({"action": "subscribe", "dataset": "ticker", "query_id": query_id});
        if let Some(codecs) = compression {
            request["compression"] = json!(codecs);
        }
        browser.send(request);
        browser
    };
    let mut zstd_a = subscribe("za", Some(&["zstd", "lz4"]));
    let mut plain = subscribe("p", None);
    let mut lz4 = subscribe("l", Some(&["lz4"]));
    assert!(
        wait_until(Duration::from_secs(5), || connector.commands("do_get").len() == 3),
        "one upstream stream per codec: {:?}",
        connector.commands("do_get")
    );
    let schema = ipc_messages(&golden(PRIMITIVE))[0].1.clone();
    connector.live_frame("ticker", FrameKind::Schema, schema);
    // A late joiner that accepts zstd shares the running zstd stream.
    let start_of = |browser: &mut Browser| loop {
        match browser.next(Duration::from_secs(5)) {
            Some(Received::Json(v)) if v["type"] == "stream_start" => break v,
            Some(Received::Json(v)) if v["type"] == "flight_info" => continue,
            other => panic!("expected stream_start, got {other:?}"),
        }
    };
    let starts: Vec<Value> = [&mut zstd_a, &mut plain, &mut lz4].into_iter().map(start_of).collect();
    let mut zstd_b = subscribe("zb", Some(&["zstd"]));
    let late = start_of(&mut zstd_b);
    assert_eq!(connector.commands("do_get").len(), 3, "the late zstd joiner started no new stream");

    let codecs: Vec<Option<&str>> = starts.iter().map(|s| s["compression"].as_str()).collect();
    assert_eq!(codecs, [Some("zstd"), None, Some("lz4")], "{starts:?}");
    assert_eq!(late["compression"], "zstd");
    assert_eq!(late["stream_id"], starts[0]["stream_id"], "zstd subscribers share one stream");
    let ids: BTreeSet<u64> = starts.iter().map(|s| s["stream_id"].as_u64().expect("stream_id")).collect();
    assert_eq!(ids.len(), 3, "three codecs, three streams: {starts:?}");
    let mut asked_codecs: Vec<Option<String>> = connector.commands("do_get").iter().map(asked).collect();
    asked_codecs.sort();
    assert_eq!(asked_codecs, [None, Some("lz4".to_owned()), Some("zstd".to_owned())]);

    // Every subscriber receives the batches of its own stream only.
    connector.live_frame("ticker", FrameKind::RecordBatch, bytes::Bytes::from(vec![7u8; 512]));
    for (browser, start) in [(&mut zstd_a, &starts[0]), (&mut plain, &starts[1]), (&mut lz4, &starts[2])] {
        let mut kinds = Vec::new();
        while !kinds.contains(&FrameKind::RecordBatch) {
            match browser.next(Duration::from_secs(5)) {
                Some(Received::Binary(data)) => {
                    let header = volley_protocol::FrameHeader::decode(&data).expect("header");
                    assert_eq!(Some(u64::from(header.stream_id)), start["stream_id"].as_u64());
                    kinds.push(header.kind);
                }
                other => panic!("expected frames, got {other:?}"),
            }
        }
    }
}
