//! The tunnel's two ends talking to each other through the JSON text and
//! frames they would put on the wire.

use bytes::Bytes;
use volley_protocol::header::{FrameHeader, FrameKind};
use volley_protocol::message::{Codec, ConnectorMessage, ErrorCode, FlightData, GatewayCommand};
use volley_protocol::tunnel::{
    Binary, ConnectorAction, ConnectorEnd, Framer, GatewayEnd, OpenStream, StreamOrder, Transmit, TunnelEvent,
    UNCOUNTED_CREDIT,
};
use volley_protocol::ws::close_code;

const CREDIT: u64 = 4096;
const FRAME_MAX: usize = 1024;

fn query(dataset: &str) -> OpenStream {
    OpenStream { dataset: dataset.to_owned(), live: false, compression: None, history_bytes: None }
}

/// Everything the gateway queued, as the connector reads it.
fn to_connector(gateway: &mut GatewayEnd<&'static str>) -> Vec<String> {
    std::iter::from_fn(|| gateway.poll_transmit()).map(|t| t.to_json()).collect()
}

fn to_gateway(connector: &mut ConnectorEnd<u32>) -> Vec<String> {
    std::iter::from_fn(|| connector.poll_transmit()).map(|m| m.to_json()).collect()
}

fn commands(texts: &[String]) -> Vec<GatewayCommand> {
    texts.iter().map(|t| GatewayCommand::parse(t).unwrap()).collect()
}

/// Describes and starts `stream` on both ends; returns the connector's order.
fn start(gateway: &mut GatewayEnd<&'static str>, connector: &mut ConnectorEnd<u32>, value: u32) -> StreamOrder {
    for text in to_connector(gateway) {
        match connector.handle_text(&text) {
            ConnectorAction::Describe { request_id, dataset } => {
                assert_eq!(dataset, "ventas");
                connector.described(request_id, Ok(FlightData { schema: "/////w==".into(), records: 5 }));
            }
            other => panic!("expected a describe, got {other:?}"),
        }
    }
    for text in to_gateway(connector) {
        assert!(matches!(gateway.handle_text(&text), Some(TunnelEvent::Described { records: 5, .. })));
    }
    let texts = to_connector(gateway);
    assert_eq!(texts.len(), 1, "{texts:?}");
    let ConnectorAction::Start(order) = connector.handle_text(&texts[0]) else { panic!("no start for {texts:?}") };
    assert!(connector.started(&order, value).is_empty());
    let start = ConnectorMessage::StreamStart {
        request_id: order.request_id.clone(),
        schema: "/////w==".into(),
        stream_id: order.header_stream_id,
    };
    assert!(matches!(gateway.handle_text(&start.to_json()), Some(TunnelEvent::Started { .. })));
    order
}

#[test]
fn level2_request_ids_are_the_gateways_own_and_credit_and_cancel_name_the_right_stream() {
    let mut gateway = GatewayEnd::new(true, CREDIT, FRAME_MAX, 64);
    let mut connector = ConnectorEnd::new(true, vec![Codec::Zstd]);
    gateway.open(9, query("ventas"), "stream nine").unwrap();
    let order = start(&mut gateway, &mut connector, 90);
    assert_eq!(order.id, 9);
    assert_eq!(order.header_stream_id, Some(9));
    assert_eq!(order.credit_bytes, CREDIT);
    assert_ne!(order.request_id, "r9", "the request id must not be made from the stream id");

    // Frames within credit route to the stream's value; one frame of overdraft is allowed.
    let mut framer = Framer::new(order.header_stream_id);
    let body = Bytes::from(vec![7u8; 1000]);
    for sequence in 0..5 {
        let frame = framer.frame(FrameKind::RecordBatch, &body);
        match gateway.handle_binary(&frame).unwrap() {
            Binary::Frame { stream_id, sequence: seen, header, stream } => {
                assert_eq!((stream_id, seen, *stream), (9, sequence, "stream nine"));
                assert_eq!(header.map(|h| h.kind), Some(FrameKind::RecordBatch));
            }
            Binary::Dropped => panic!("frame {sequence} dropped"),
        }
    }
    // Five frames of 1016 bytes overdraw 4096 by 984, within one frame; a sixth passes the bound.
    let frame = framer.frame(FrameKind::RecordBatch, &body);
    let violation = gateway.handle_binary(&frame).unwrap_err();
    assert_eq!(violation.close_code, close_code::POLICY_VIOLATION);
    assert!(violation.message.contains("stream 9 exceeded its credit"), "{violation}");

    // Credit names the stream by its id, cancel by the do_get's request id.
    assert!(gateway.credit(9, 2048));
    let texts = to_connector(&mut gateway);
    assert!(matches!(connector.handle_text(&texts[0]), ConnectorAction::Credit { stream: 90, bytes: 2048 }));
    assert_eq!(gateway.cancel(9).map(|(value, _)| value), Some("stream nine"), "level 2 forgets at once");
    let texts = to_connector(&mut gateway);
    assert_eq!(commands(&texts), vec![GatewayCommand::Cancel { request_id: order.request_id.clone() }]);
    assert!(matches!(connector.handle_text(&texts[0]), ConnectorAction::Stop(90)));
    // Frames still in flight are dropped, not a violation.
    assert!(matches!(gateway.handle_binary(&framer.frame(FrameKind::RecordBatch, &body)), Ok(Binary::Dropped)));
    assert!(gateway.is_empty());
}

#[test]
fn the_connector_follows_the_spec_pairing_of_request_r3_with_stream_9() {
    let mut connector: ConnectorEnd<u32> = ConnectorEnd::new(true, vec![Codec::Zstd]);
    let do_get = r#"{"action": "do_get", "request_id": "r3", "ticket": "ticker", "stream_id": 9, "credit_bytes": 4194304, "compression": "zstd"}"#;
    let ConnectorAction::Start(order) = connector.handle_text(do_get) else { panic!("not started") };
    assert_eq!((order.id, order.header_stream_id, order.compression), (9, Some(9), Some(Codec::Zstd)));
    connector.started(&order, 1);
    let credit = r#"{"action": "credit", "stream_id": 9, "bytes": 1048576}"#;
    assert!(matches!(connector.handle_text(credit), ConnectorAction::Credit { stream: 1, bytes: 1048576 }));
    // `credit` for stream 3 names nothing: the request number is not a stream id.
    let wrong = r#"{"action": "credit", "stream_id": 3, "bytes": 1}"#;
    assert!(matches!(connector.handle_text(wrong), ConnectorAction::Ignored(_)));
    assert!(matches!(connector.handle_text(r#"{"action": "cancel", "request_id": "r3"}"#), ConnectorAction::Stop(1)));
    assert!(matches!(
        connector.handle_text(r#"{"action": "cancel", "request_id": "r9"}"#),
        ConnectorAction::Ignored(_)
    ));
}

#[test]
fn the_connector_answers_a_do_get_it_cannot_serve_and_ignores_what_names_nothing() {
    let mut connector: ConnectorEnd<u32> = ConnectorEnd::new(true, vec![Codec::Lz4]);
    let zstd = r#"{"action": "do_get", "request_id": "a", "ticket": "t", "stream_id": 4, "compression": "zstd"}"#;
    assert!(matches!(connector.handle_text(zstd), ConnectorAction::Nothing));
    let no_id = r#"{"action": "do_get", "request_id": "b", "ticket": "t"}"#;
    assert!(matches!(connector.handle_text(no_id), ConnectorAction::Nothing));
    let replies = to_gateway(&mut connector);
    assert_eq!(replies.len(), 2);
    assert!(replies[0].contains("not offered in register") && replies[0].contains("\"request_id\":\"a\""));
    assert!(replies[1].contains("needs a stream_id") && replies[1].contains("bad_request"));
    assert!(matches!(connector.handle_text(r#"{"action": "launch"}"#), ConnectorAction::Ignored(_)));
    connector.handle_text(r#"{"action": "ping"}"#);
    assert_eq!(connector.poll_transmit(), Some(ConnectorMessage::Pong));

    // Level 1: no stream ids on the wire, so the connector numbers its streams and ignores credit.
    let mut level1: ConnectorEnd<u32> = ConnectorEnd::new(false, vec![]);
    let ConnectorAction::Start(first) = level1.handle_text(r#"{"action": "do_get", "request_id": "x", "ticket": "t"}"#)
    else {
        panic!("level 1 not started")
    };
    assert_eq!((first.header_stream_id, first.credit_bytes), (None, UNCOUNTED_CREDIT));
    level1.started(&first, 1);
    let ConnectorAction::Start(second) =
        level1.handle_text(r#"{"action": "do_get", "request_id": "y", "ticket": "t"}"#)
    else {
        panic!("level 1 not started")
    };
    assert_ne!(first.id, second.id);
    assert!(matches!(
        level1.handle_text(&format!(r#"{{"action": "credit", "stream_id": {}, "bytes": 5}}"#, first.id)),
        ConnectorAction::Ignored(_)
    ));
    // A reused request id displaces the stream still running under it.
    let ConnectorAction::Start(again) = level1.handle_text(r#"{"action": "do_get", "request_id": "x", "ticket": "t"}"#)
    else {
        panic!("level 1 not started")
    };
    assert_eq!(level1.started(&again, 3), vec![("x".to_owned(), 1)]);
}

#[test]
fn level1_serves_one_stream_at_a_time_in_order_and_cancel_of_a_waiting_one_sends_nothing() {
    let mut gateway = GatewayEnd::new(false, CREDIT, FRAME_MAX, 64);
    let mut connector = ConnectorEnd::new(false, vec![]);
    assert_eq!(gateway.handle_binary(b"early").unwrap_err().close_code, close_code::PROTOCOL_ERROR);
    for (id, value) in [(1, "one"), (2, "two"), (3, "three")] {
        gateway.open(id, query("ventas"), value).unwrap();
    }
    assert_eq!(gateway.open(2, query("ventas"), "again"), Err("again"));
    let order = start(&mut gateway, &mut connector, 10);
    assert_eq!(order.header_stream_id, None);
    assert_eq!(gateway.cancel(3).map(|(value, _)| value), Some("three"));
    assert!(to_connector(&mut gateway).is_empty(), "a waiting stream's cancel goes nowhere");

    let mut framer = Framer::new(None);
    let message = Bytes::from_static(b"ipc bytes");
    for sequence in 0..2 {
        let frame = framer.frame(FrameKind::Chunk, &message);
        assert_eq!(frame, message, "level-1 frames are the messages themselves");
        assert!(matches!(
            gateway.handle_binary(&frame),
            Ok(Binary::Frame { stream_id: 1, sequence: s, header: None, stream: &"one" }) if s == sequence
        ));
    }
    let end =
        ConnectorMessage::StreamEnd { request_id: order.request_id, total_bytes: 0, stream_id: None, error: None };
    match gateway.handle_text(&end.to_json()) {
        Some(TunnelEvent::Ended { stream_id: 1, value: "one", total_bytes, error: None }) => {
            assert_eq!(total_bytes, 18, "counted when the connector says 0")
        }
        other => panic!("{other:?}"),
    }
    // The next one is described only now.
    let second = start(&mut gateway, &mut connector, 20);
    // A level-1 stream being sent stays current after cancel: its frames are dropped until it ends.
    assert!(gateway.cancel(2).is_none());
    assert_eq!(
        commands(&to_connector(&mut gateway)),
        vec![GatewayCommand::Cancel { request_id: second.request_id.clone() }]
    );
    assert!(matches!(gateway.handle_binary(b"late"), Ok(Binary::Dropped)));
    let error = ConnectorMessage::Error {
        request_id: Some(second.request_id),
        error: volley_protocol::ErrorBody::new(ErrorCode::Cancelled, "stream cancelled"),
    };
    assert!(matches!(gateway.handle_text(&error.to_json()), Some(TunnelEvent::Ended { stream_id: 2, .. })));
    assert!(gateway.is_empty());
}

#[test]
fn the_gateway_answers_what_it_cannot_accept_and_drops_answers_to_nothing() {
    let mut gateway: GatewayEnd<()> = GatewayEnd::new(true, CREDIT, FRAME_MAX, 8);
    assert!(matches!(gateway.handle_text("{not json"), Some(TunnelEvent::Refused(_))));
    assert!(matches!(gateway.poll_transmit(), Some(Transmit::Error(e)) if e.code == ErrorCode::InvalidJson));
    let register = r#"{"action": "register", "tenant_id": "t", "version": "1", "datasets": []}"#;
    assert!(matches!(gateway.handle_text(register), Some(TunnelEvent::Refused(_))));
    assert!(gateway.poll_transmit().is_some());
    gateway.handle_text(r#"{"action": "ping"}"#);
    assert_eq!(gateway.poll_transmit().map(|t| t.to_json()), Some(r#"{"type":"pong"}"#.to_owned()));
    // Answers for requests the gateway never made change nothing.
    let stray = r#"{"request_id": "r1", "type": "stream_start", "schema": "/////w=="}"#;
    assert!(gateway.handle_text(stray).is_none());
    let unnamed = r#"{"type": "error", "code": "internal", "message": "disk on fire"}"#;
    assert!(matches!(gateway.handle_text(unnamed), Some(TunnelEvent::Reported(e)) if e.message == "disk on fire"));
    let long_id = r#"{"request_id": "a-very-long-request-id", "type": "stream_start", "schema": ""}"#;
    assert!(matches!(gateway.handle_text(long_id), Some(TunnelEvent::Refused(_))));
    let bad_header = FrameHeader { kind: FrameKind::Schema, flags: 0, stream_id: 1, sequence: 0 }.encode();
    assert!(gateway.handle_binary(&bad_header[..4]).is_err());
}

/// A draining gateway asks a level-2 tunnel once to move; the connector
/// hears it once, keeps serving its running stream, and may leave only when
/// that stream ended and its replacement is settled. A level-1 tunnel is
/// never asked (its connector knows no such command).
#[test]
fn reconnect_is_sent_once_and_the_connection_leaves_after_its_streams_and_replacement() {
    let mut gateway = GatewayEnd::new(true, CREDIT, FRAME_MAX, 64);
    let mut connector = ConnectorEnd::new(true, vec![]);
    gateway.open(3, query("ventas"), "stream three").unwrap();
    let order = start(&mut gateway, &mut connector, 30);
    assert!(!connector.may_leave(true, |_| true), "not asked to move: it stays");

    assert!(gateway.reconnect("gateway draining", 20));
    assert!(!gateway.reconnect("gateway draining", 20), "once per tunnel");
    let texts = to_connector(&mut gateway);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(matches!(connector.handle_text(&texts[0]), ConnectorAction::Nothing));
    let order_to_move = connector.take_move().expect("the move is handed out");
    assert_eq!((order_to_move.reason.as_str(), order_to_move.grace_seconds), ("gateway draining", Some(20)));
    assert_eq!(connector.take_move(), None, "once");
    assert!(connector.is_moving());
    assert!(matches!(connector.handle_text(&texts[0]), ConnectorAction::Ignored(_)), "a second one is ignored");
    assert_eq!(connector.take_move(), None);

    // The running stream is still served: credit still reaches it.
    assert!(gateway.credit(3, 1024));
    let texts = to_connector(&mut gateway);
    assert!(matches!(connector.handle_text(&texts[0]), ConnectorAction::Credit { stream: 30, bytes: 1024 }));
    assert!(!connector.may_leave(true, |_| false), "its stream is still running");
    assert!(!connector.may_leave(false, |_| true), "its replacement is not settled yet");
    assert!(connector.may_leave(true, |_| true));
    connector.reap(|_| true);
    assert!(connector.may_leave(true, |_| false), "no stream left");
    assert_eq!(order.id, 3);

    let mut level1 = GatewayEnd::<&'static str>::new(false, CREDIT, FRAME_MAX, 64);
    assert!(!level1.reconnect("gateway draining", 20));
    assert!(to_connector(&mut level1).is_empty());
}
