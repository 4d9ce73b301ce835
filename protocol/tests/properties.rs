//! Property tests for every parser in the crate.
//!
//! - (a) WebSocket frames round-trip through `encode_header` and `FrameDecoder`,
//!   masked (server role) and unmasked (client role), whole or fed in chunks
//!   split anywhere.
//! - (b) `FrameDecoder` + `MessageAssembler` never panic on arbitrary bytes and
//!   keep their limits.
//! - (c) `handshake::parse_request` never panics and enforces its byte and
//!   header limits.
//! - (d) the level-2 `FrameHeader` round-trips and its decoder never panics.
//! - (e) the control-message parsers and `token::verify_session` never panic;
//!   whatever they accept round-trips through `to_json`.
//! - (f) fragmented messages with interleaved control frames reassemble.
//! - (g) tungstenite, an independent implementation, agrees with our encoder
//!   and decoder byte for byte.
//!
//! Case counts are chosen so the whole file runs in a few seconds in a debug
//! build; `PROPTEST_CASES=N` runs N cases of every property instead.

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode as TungOpCode};
use tungstenite::protocol::frame::{Frame as TungFrame, FrameHeader as TungHeader};
use volley_protocol::handshake::{parse_request, validate_upgrade};
use volley_protocol::header::{FrameHeader, FrameKind, FLAG_LAST};
use volley_protocol::limits::{CONTROL_FRAME_BYTES_MAX, WS_HEADER_BYTES_MAX};
use volley_protocol::message::{BrowserEvent, BrowserRequest, ConnectorMessage, GatewayCommand, RegisterReply};
use volley_protocol::token::{self, Validation};
use volley_protocol::ws::{
    apply_mask, encode_frame, encode_header, encode_masked_frame, is_valid_close_code, Frame, FrameDecoder, Message,
    MessageAssembler, OpCode, Role, WsError,
};
use volley_protocol::{ErrorCode, Limits};

/// `cases` cases, or `PROPTEST_CASES` when it is set (for longer runs).
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig::with_cases(cases)
}

/// Largest data payload the round-trip properties generate: past the 16-bit
/// length boundary (65 535) so all three length encodings are exercised.
const DATA_PAYLOAD_BYTES_MAX: usize = 70_000;

/// A frame as the tests describe it, before encoding.
#[derive(Debug, Clone)]
struct FrameSpec {
    fin: bool,
    opcode: OpCode,
    payload: Vec<u8>,
}

/// Deterministic filler: generating 70 000 bytes through proptest element by
/// element is slow in a debug build, so large payloads come from a seed.
fn payload_from_seed(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Data payload lengths, weighted towards the 7-bit/16-bit/64-bit boundaries.
fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..=130,
        2 => 65_530usize..=65_540,
        2 => 0usize..=DATA_PAYLOAD_BYTES_MAX,
        1 => prop::sample::select(vec![125usize, 126, 127, 65_535, 65_536, DATA_PAYLOAD_BYTES_MAX]),
    ]
}

fn data_frame() -> impl Strategy<Value = FrameSpec> {
    let opcode = prop::sample::select(vec![OpCode::Continuation, OpCode::Text, OpCode::Binary]);
    (any::<bool>(), opcode, data_len(), any::<u64>()).prop_map(|(fin, opcode, len, seed)| FrameSpec {
        fin,
        opcode,
        payload: payload_from_seed(len, seed),
    })
}

fn control_frame() -> impl Strategy<Value = FrameSpec> {
    let opcode = prop::sample::select(vec![OpCode::Close, OpCode::Ping, OpCode::Pong]);
    // RFC 6455 §5.5: control frames are never fragmented and carry ≤ 125 bytes.
    (opcode, vec(any::<u8>(), 0..=CONTROL_FRAME_BYTES_MAX)).prop_map(|(opcode, payload)| FrameSpec {
        fin: true,
        opcode,
        payload,
    })
}

fn any_frame() -> impl Strategy<Value = FrameSpec> {
    prop_oneof![data_frame(), control_frame()]
}

/// Encodes `spec` the way a client (masked) or server (unmasked) writes it.
fn encode(spec: &FrameSpec, mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = encode_header(spec.fin, spec.opcode, spec.payload.len(), mask);
    let mut out = header.as_slice().to_vec();
    let start = out.len();
    out.extend_from_slice(&spec.payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
    out
}

/// Feeds `wire` to a decoder in chunks of the given sizes (cycled), checking
/// after every chunk that exactly the frames wholly received have come out:
/// `Ok(None)` until a frame is complete, the frame as soon as it is.
fn decode_in_chunks(role: Role, wire: &[u8], frame_ends: &[usize], chunk_sizes: &[usize]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(role, DATA_PAYLOAD_BYTES_MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut sizes = chunk_sizes.iter().cycle();
    while fed < wire.len() {
        let size = sizes.next().copied().unwrap_or(1).max(1).min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + size]);
        fed += size;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) must not consume bytes");
                    break;
                }
                Err(e) => panic!("valid frames refused after {fed} bytes: {e}"),
            }
        }
        let complete = frame_ends.iter().filter(|&&end| end <= fed).count();
        assert_eq!(frames.len(), complete, "after {fed} of {} bytes", wire.len());
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    frames
}

fn assert_frames_match(decoded: &[Frame], specs: &[FrameSpec]) {
    assert_eq!(decoded.len(), specs.len());
    for (frame, spec) in decoded.iter().zip(specs) {
        assert_eq!((frame.fin, frame.opcode), (spec.fin, spec.opcode));
        assert!(frame.payload == spec.payload, "payload of {} bytes differs", spec.payload.len());
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1usize..=16, 1usize..=20_000], 1..6)
}

// ------------------------------------------------------------------ (a)

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn masked_frames_round_trip_through_the_server_decoder(
        specs in vec(any_frame(), 1..4),
        keys in vec(any::<[u8; 4]>(), 4),
        chunks in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        let mut ends = Vec::new();
        for (spec, key) in specs.iter().zip(keys.iter().cycle()) {
            let bytes = encode(spec, Some(*key));
            if spec.fin {
                prop_assert_eq!(&encode_masked_frame(spec.opcode, &spec.payload, *key)[..], &bytes[..]);
            }
            let decoder = FrameDecoder::new(Role::Server, DATA_PAYLOAD_BYTES_MAX);
            prop_assert_eq!(decoder.frame_len_hint(&bytes), Some(bytes.len()));
            wire.extend_from_slice(&bytes);
            ends.push(wire.len());
        }
        // Whole, then in chunks split anywhere.
        let whole = decode_in_chunks(Role::Server, &wire, &ends, &[wire.len()]);
        assert_frames_match(&whole, &specs);
        let chunked = decode_in_chunks(Role::Server, &wire, &ends, &chunks);
        assert_frames_match(&chunked, &specs);
    }

    #[test]
    fn unmasked_frames_round_trip_through_the_client_decoder(
        specs in vec(any_frame(), 1..4),
        chunks in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        let mut ends = Vec::new();
        for spec in &specs {
            let bytes = encode(spec, None);
            if spec.fin {
                prop_assert_eq!(&encode_frame(spec.opcode, &spec.payload)[..], &bytes[..]);
            }
            wire.extend_from_slice(&bytes);
            ends.push(wire.len());
        }
        let whole = decode_in_chunks(Role::Client, &wire, &ends, &[wire.len()]);
        assert_frames_match(&whole, &specs);
        let chunked = decode_in_chunks(Role::Client, &wire, &ends, &chunks);
        assert_frames_match(&chunked, &specs);
    }
}

// ------------------------------------------------------------------ (b)

/// Decodes and assembles `bytes` until an error or "need more"; checks that
/// nothing handed out breaks a limit. Returns how many frames were decoded.
fn decode_and_assemble(role: Role, bytes: &[u8], frame_bytes_max: usize, message_bytes_max: usize) -> usize {
    let text_bytes_max = message_bytes_max / 2;
    let fragments_max = 4;
    let mut decoder = FrameDecoder::new(role, frame_bytes_max);
    let mut assembler = MessageAssembler::new(message_bytes_max, text_bytes_max, fragments_max);
    let mut buf = BytesMut::from(bytes);
    let mut frames = 0;
    // Each decoded frame consumes at least its 2 header bytes, so this loop is bounded.
    loop {
        let before = buf.len();
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) must not consume bytes");
                return frames;
            }
            Err(_) => return frames,
        };
        frames += 1;
        assert!(buf.len() + 2 <= before, "a frame consumed fewer than 2 bytes");
        assert!(frame.payload.len() <= frame_bytes_max);
        if frame.opcode.is_control() {
            assert!(frame.fin && frame.payload.len() <= CONTROL_FRAME_BYTES_MAX);
        }
        match assembler.push(frame) {
            Ok(Some(Message::Text(text))) => {
                assert!(std::str::from_utf8(&text).is_ok());
                assert!(text.len() <= text_bytes_max);
            }
            Ok(Some(Message::Binary(data))) => assert!(data.len() <= message_bytes_max),
            Ok(Some(Message::Close(Some((code, _))))) => assert!(is_valid_close_code(code)),
            Ok(Some(Message::Close(None) | Message::Ping(_) | Message::Pong(_))) | Ok(None) => {}
            // The connection would be closed; each error maps to a close code.
            Err(e) => {
                let _ = e.close_code();
                return frames;
            }
        }
    }
}

/// Byte strings that look like frames: valid encodings (either role) with
/// random corruption, so the fuzzing reaches past the first header byte.
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let small_frame = (any::<bool>(), 0u8..16, vec(any::<u8>(), 0..200), any::<Option<[u8; 4]>>());
    (vec(small_frame, 0..6), vec((any::<prop::sample::Index>(), any::<u8>()), 0..4), any::<prop::sample::Index>())
        .prop_map(|(frames, flips, cut)| {
            let mut out = Vec::new();
            for (fin, bits, payload, mask) in frames {
                let mut bytes = encode(&FrameSpec { fin, opcode: OpCode::Binary, payload }, mask);
                // Any opcode, reserved ones included.
                bytes[0] = (bytes[0] & 0xF0) | bits;
                out.extend_from_slice(&bytes);
            }
            if !out.is_empty() {
                for (at, byte) in flips {
                    let at = at.index(out.len());
                    out[at] ^= byte;
                }
                let keep = cut.index(out.len() + 1);
                out.truncate(keep.max(out.len() / 2));
            }
            out
        })
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn decoder_and_assembler_never_panic_on_arbitrary_bytes(
        bytes in prop_oneof![vec(any::<u8>(), 0..512), frame_like_bytes()],
        frame_bytes_max in prop_oneof![0usize..300, Just(1usize << 20)],
        message_bytes_max in prop_oneof![0usize..600, Just(1usize << 20)],
    ) {
        for role in [Role::Server, Role::Client] {
            decode_and_assemble(role, &bytes, frame_bytes_max, message_bytes_max);
            let decoder = FrameDecoder::new(role, frame_bytes_max);
            if let Some(total) = decoder.frame_len_hint(&bytes) {
                prop_assert!(total <= frame_bytes_max + WS_HEADER_BYTES_MAX);
            }
        }
    }
}

// ------------------------------------------------------------------ (c)

/// Header lines for a request, well-formed so that only the limits can refuse them.
fn header_line() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Origin",
        "Content-Length",
        "Authorization",
        "X-Other",
    ]);
    let value = prop_oneof![
        Just("websocket".to_owned()),
        Just("Upgrade".to_owned()),
        Just("keep-alive, Upgrade".to_owned()),
        Just("13".to_owned()),
        Just("dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
        Just("chat, volley.v2".to_owned()),
        "[ -~]{0,40}",
    ];
    (name, value).prop_map(|(name, value)| format!("{name}: {value}\r\n"))
}

fn request_text() -> impl Strategy<Value = (Vec<u8>, usize, bool)> {
    let method = prop::sample::select(vec!["GET", "POST", "HEAD"]);
    (method, "/[a-z0-9/?=&._-]{0,30}", vec(header_line(), 0..40), any::<bool>()).prop_map(
        |(method, path, headers, complete)| {
            let mut text = format!("{method} {path} HTTP/1.1\r\n");
            for line in &headers {
                text.push_str(line);
            }
            if complete {
                text.push_str("\r\n");
            }
            (text.into_bytes(), headers.len(), complete)
        },
    )
}

fn check_request(bytes: &[u8], limits: &Limits) -> Result<Option<usize>, u16> {
    match parse_request(bytes, limits) {
        Ok(Some((request, used))) => {
            assert!(used <= bytes.len() && used <= limits.handshake_bytes_max, "used {used} of {}", bytes.len());
            if let Ok(upgrade) = validate_upgrade(&request) {
                let key = request.websocket_key.as_deref().unwrap_or_default();
                assert_eq!(upgrade.accept, tungstenite::handshake::derive_accept_key(key.as_bytes()));
            }
            Ok(Some(used))
        }
        Ok(None) => {
            assert!(bytes.len() < limits.handshake_bytes_max, "waiting for more than handshake_bytes_max");
            Ok(None)
        }
        Err(e) => {
            assert!(matches!(e.status, 400 | 431), "unexpected status {}", e.status);
            Err(e.status)
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn parse_request_never_panics_on_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..1024),
        handshake_bytes_max in prop_oneof![0usize..2048, Just(Limits::DEFAULT.handshake_bytes_max)],
        handshake_headers_max in 0usize..40,
    ) {
        let limits = Limits { handshake_bytes_max, handshake_headers_max, ..Limits::DEFAULT };
        let _ = check_request(&bytes, &limits);
    }

    #[test]
    fn parse_request_enforces_its_limits(
        (bytes, header_count, complete) in request_text(),
        handshake_bytes_max in prop_oneof![0usize..2048, Just(Limits::DEFAULT.handshake_bytes_max)],
        handshake_headers_max in 0usize..40,
    ) {
        let limits = Limits { handshake_bytes_max, handshake_headers_max, ..Limits::DEFAULT };
        let outcome = check_request(&bytes, &limits);
        let within_bytes = bytes.len() <= handshake_bytes_max;
        if complete && within_bytes && header_count <= handshake_headers_max {
            // A Content-Length that is not a number is the one refusal left.
            prop_assert!(matches!(outcome, Ok(Some(used)) if used == bytes.len()) || outcome == Err(400),
                "{outcome:?}");
        }
        if header_count > handshake_headers_max {
            prop_assert!(!matches!(outcome, Ok(Some(_))), "{header_count} headers accepted, limit {handshake_headers_max}");
        }
        if !within_bytes {
            prop_assert!(outcome.is_err(), "{} bytes accepted, limit {handshake_bytes_max}: {outcome:?}", bytes.len());
        }
    }
}

// ------------------------------------------------------------------ (d)

fn frame_kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(vec![
        FrameKind::Chunk,
        FrameKind::Schema,
        FrameKind::Dictionary,
        FrameKind::RecordBatch,
        FrameKind::EndOfStream,
    ])
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn frame_header_round_trips(
        kind in frame_kind(),
        last in any::<bool>(),
        stream_id in 1u32..,
        sequence in any::<u64>(),
        payload in vec(any::<u8>(), 0..32),
    ) {
        let header = FrameHeader { kind, flags: if last { FLAG_LAST } else { 0 }, stream_id, sequence };
        let mut frame = header.encode().to_vec();
        frame.extend_from_slice(&payload);
        prop_assert_eq!(FrameHeader::decode(&frame), Ok(header));
        prop_assert_eq!(header.is_last(), last);
    }

    #[test]
    fn frame_header_decode_never_panics(bytes in vec(any::<u8>(), 0..40)) {
        if let Ok(header) = FrameHeader::decode(&bytes) {
            prop_assert_eq!(&header.encode()[..], &bytes[..16]);
        }
    }
}

// ------------------------------------------------------------------ (e)

/// JSON values built from the protocol's own field names, so parsers get past
/// `invalid_json` and into their typed decoding.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "action",
        "type",
        "status",
        "request_id",
        "query_id",
        "tenant_id",
        "dataset",
        "datasets",
        "data",
        "schema",
        "records",
        "stream_id",
        "total_bytes",
        "error",
        "code",
        "message",
        "ticket",
        "descriptor",
        "path",
        "live",
        "protocol",
        "token",
        "credit_bytes",
        "bytes",
        "session_id",
        "limits",
        "user",
        "tenant",
        "expires_at",
        "name",
        "next_sequence",
        "skipped_frames",
        "version",
        "compression",
        "heartbeat_seconds",
    ]);
    let word = prop::sample::select(vec![
        "register",
        "ping",
        "pong",
        "query",
        "list",
        "subscribe",
        "unsubscribe",
        "cancel",
        "get_flight_info",
        "do_get",
        "credit",
        "stream_start",
        "stream_end",
        "error",
        "ok",
        "hello",
        "datasets",
        "flight_info",
        "gap",
        "unsubscribed",
        "unauthorized",
        "source_error",
        "ventas",
        "r1",
        "q1",
        "zstd",
    ]);
    // No floats: serde_json's default float parsing is not exact for every
    // value, and no field of the protocol is a float.
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..10).prop_map(Value::from),
        word.prop_map(Value::from),
        ".{0,70}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((key.clone(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// The JSON examples of PROTOCOL.md: valid messages of every kind, as
/// starting points for mutation.
fn spec_examples() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap_or_default();
    let mut examples = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match block.as_mut() {
            Some(body) if line.starts_with("```") => {
                examples.extend(serde_json::from_str(body).ok());
                block = None;
            }
            Some(body) => body.push_str(line),
            None if line.trim() == "```json" => block = Some(String::new()),
            None => {}
        }
    }
    assert!(!examples.is_empty(), "no json examples in PROTOCOL.md");
    examples
}

/// A spec example with a few top-level fields removed or replaced, so the
/// typed decoders see nearly-valid messages (and accept many of them).
fn mutated_example() -> impl Strategy<Value = String> {
    let examples = spec_examples();
    let edit = (any::<bool>(), any::<prop::sample::Index>(), json_value());
    (prop::sample::select(examples), vec(edit, 0..3)).prop_map(|(mut example, edits)| {
        if let Value::Object(map) = &mut example {
            for (remove, at, value) in edits {
                let keys: Vec<String> = map.keys().cloned().collect();
                if keys.is_empty() {
                    break;
                }
                let key = &keys[at.index(keys.len())];
                if remove {
                    map.remove(key);
                } else {
                    map.insert(key.clone(), value);
                }
            }
        }
        example.to_string()
    })
}

fn message_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        1 => "[\\[\\]{}\":,0-9a-z_ -]{0,80}",
        2 => json_value().prop_map(|v| v.to_string()),
        4 => mutated_example(),
    ]
}

/// Parse failures are always one of the three codes PROTOCOL.md §4 names.
fn assert_parse_code(code: ErrorCode) {
    assert!(matches!(code, ErrorCode::InvalidJson | ErrorCode::BadRequest | ErrorCode::UnknownAction), "{code:?}");
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn control_message_parsers_never_panic_and_round_trip(text in message_text(), id_bytes_max in 0usize..80) {
        match ConnectorMessage::parse(&text, id_bytes_max) {
            Ok(message) => {
                prop_assert_eq!(ConnectorMessage::parse(&message.to_json(), id_bytes_max), Ok(message));
            }
            Err(e) => assert_parse_code(e.code),
        }
        match BrowserRequest::parse(&text, id_bytes_max) {
            Ok(request) => prop_assert_eq!(BrowserRequest::parse(&request.to_json(), id_bytes_max), Ok(request)),
            Err(e) => assert_parse_code(e.code),
        }
        match GatewayCommand::parse(&text) {
            Ok(command) => prop_assert_eq!(GatewayCommand::parse(&command.to_json()), Ok(command)),
            Err(e) => assert_parse_code(e.code),
        }
        match BrowserEvent::parse(&text) {
            Ok(event) => prop_assert_eq!(BrowserEvent::parse(&event.to_json()), Ok(event)),
            Err(e) => assert_parse_code(e.code),
        }
        match RegisterReply::parse(&text) {
            Ok(reply) => prop_assert_eq!(RegisterReply::parse(&reply.to_json()), Ok(reply)),
            Err(e) => assert_parse_code(e.code),
        }
    }
}

/// Token-shaped strings: three dot-separated base64url parts of JSON-ish data.
fn token_text() -> impl Strategy<Value = String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let part = prop_oneof![
        json_value().prop_map(|v| URL_SAFE_NO_PAD.encode(v.to_string())),
        Just(URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#)),
        Just(URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)),
        "[A-Za-z0-9_=+/-]{0,60}",
    ];
    prop_oneof![any::<String>(), vec(part, 0..5).prop_map(|parts| parts.join(".")),]
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn verify_session_never_panics(
        text in token_text(),
        now in any::<i64>(),
        leeway_seconds in prop_oneof![Just(30i64), any::<i64>()],
        token_bytes_max in prop_oneof![Just(4096usize), 0usize..64],
    ) {
        let secrets: &[&[u8]] = &[b"s3cret", b""];
        let validation = Validation { secrets, now, leeway_seconds, token_bytes_max };
        if let Err(e) = token::verify_session(&text, &validation) {
            let _ = e.code();
        }
        if text.len() > token_bytes_max {
            let refused = matches!(token::verify_session(&text, &validation), Err(token::TokenError::TooLong { .. }));
            prop_assert!(refused);
        }
    }
}

// ------------------------------------------------------------------ (f)

/// A message, the cut points that fragment it, and control frames to slip in
/// before chosen fragments.
#[derive(Debug, Clone)]
struct Fragmented {
    text: bool,
    body: Vec<u8>,
    /// Sorted offsets into `body`; repeats make empty fragments.
    cuts: Vec<usize>,
    /// (fragment index, control frame sent just before that fragment)
    controls: Vec<(usize, FrameSpec)>,
}

fn fragmented_message() -> impl Strategy<Value = Fragmented> {
    let body = prop_oneof![
        any::<String>().prop_map(|s| (true, s.into_bytes())),
        "[a-zé€😀]{0,300}".prop_map(|s| (true, s.into_bytes())),
        vec(any::<u8>(), 0..600).prop_map(|b| (false, b)),
    ];
    let controls =
        vec((0usize..8, control_frame().prop_filter("close ends a conversation", |f| f.opcode != OpCode::Close)), 0..4);
    (body, vec(any::<prop::sample::Index>(), 0..6), controls).prop_map(|((text, body), cuts, controls)| {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        cuts.sort_unstable();
        Fragmented { text, body, cuts, controls }
    })
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn fragmented_messages_reassemble(
        message in fragmented_message(),
        key in any::<[u8; 4]>(),
    ) {
        let Fragmented { text, body, cuts, controls } = message;
        // Fragments: body[0..c1], body[c1..c2], …, body[cn..]; empty ones allowed.
        let mut bounds = vec![0];
        bounds.extend(&cuts);
        bounds.push(body.len());
        let fragments: Vec<&[u8]> = bounds.windows(2).map(|w| &body[w[0]..w[1]]).collect();
        let mut wire = Vec::new();
        let mut expected_controls = Vec::new();
        for (index, fragment) in fragments.iter().enumerate() {
            if index > 0 {
                for (_, control) in controls.iter().filter(|(at, _)| *at == index) {
                    wire.extend(encode(control, Some(key)));
                    expected_controls.push(control.clone());
                }
            }
            let opcode = match (index, text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let fin = index + 1 == fragments.len();
            wire.extend(encode(&FrameSpec { fin, opcode, payload: fragment.to_vec() }, Some(key)));
        }
        let mut decoder = FrameDecoder::new(Role::Server, 1 << 16);
        let mut assembler = MessageAssembler::new(1 << 16, 1 << 16, 16);
        let mut buf = BytesMut::from(&wire[..]);
        let mut messages = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            if let Some(message) = assembler.push(frame).map_err(|e| TestCaseError::fail(e.to_string()))? {
                messages.push(message);
            }
        }
        prop_assert!(buf.is_empty());
        let Some(whole) = messages.pop() else {
            return Err(TestCaseError::fail("no message came out"));
        };
        let body = Bytes::from(body);
        prop_assert_eq!(whole, if text { Message::Text(body) } else { Message::Binary(body) });
        prop_assert_eq!(messages.len(), expected_controls.len());
        for (message, control) in messages.iter().zip(&expected_controls) {
            let payload = Bytes::from(control.payload.clone());
            let expected = if control.opcode == OpCode::Ping { Message::Ping(payload) } else { Message::Pong(payload) };
            prop_assert_eq!(message, &expected);
        }
    }

    #[test]
    fn too_many_fragments_are_refused(fragments_max in 1usize..8, extra in 1usize..4) {
        let mut assembler = MessageAssembler::new(1 << 10, 1 << 10, fragments_max);
        let count = fragments_max + extra;
        let mut outcome = Ok(None);
        for index in 0..count {
            let opcode = if index == 0 { OpCode::Binary } else { OpCode::Continuation };
            let frame = Frame { fin: index + 1 == count, opcode, payload: Bytes::from_static(b"x") };
            outcome = assembler.push(frame);
            if outcome.is_err() {
                prop_assert_eq!(index, fragments_max, "refused at the first fragment over the limit");
                break;
            }
        }
        let too_large = matches!(outcome, Err(WsError::MessageTooLarge { .. }));
        prop_assert!(too_large, "{:?}", outcome);
    }
}

// ------------------------------------------------------------------ (g)

fn to_tungstenite(opcode: OpCode) -> TungOpCode {
    match opcode {
        OpCode::Continuation => TungOpCode::Data(Data::Continue),
        OpCode::Text => TungOpCode::Data(Data::Text),
        OpCode::Binary => TungOpCode::Data(Data::Binary),
        OpCode::Close => TungOpCode::Control(Control::Close),
        OpCode::Ping => TungOpCode::Control(Control::Ping),
        OpCode::Pong => TungOpCode::Control(Control::Pong),
    }
}

fn tungstenite_bytes(spec: &FrameSpec, mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = TungHeader {
        is_final: spec.fin,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: to_tungstenite(spec.opcode),
        mask,
    };
    let mut out = Vec::new();
    if let Err(e) = TungFrame::from_payload(header, Bytes::from(spec.payload.clone())).format(&mut out) {
        panic!("tungstenite cannot format {spec:?}: {e}");
    }
    out
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn tungstenite_and_we_encode_and_decode_alike(spec in any_frame(), mask in any::<Option<[u8; 4]>>()) {
        let theirs = tungstenite_bytes(&spec, mask);
        let ours = encode(&spec, mask);
        prop_assert!(theirs == ours, "encodings differ for {} bytes", spec.payload.len());

        // Their bytes through our decoder.
        let role = if mask.is_some() { Role::Server } else { Role::Client };
        let mut buf = BytesMut::from(&theirs[..]);
        let frame = FrameDecoder::new(role, DATA_PAYLOAD_BYTES_MAX)
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some(frame) = frame else { return Err(TestCaseError::fail("our decoder wants more bytes")) };
        assert_frames_match(&[frame], std::slice::from_ref(&spec));

        // Our bytes through their header parser.
        let mut cursor = Cursor::new(&ours[..]);
        let parsed = TungHeader::parse(&mut cursor).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some((header, len)) = parsed else { return Err(TestCaseError::fail("tungstenite wants more bytes")) };
        prop_assert_eq!(header.is_final, spec.fin);
        prop_assert_eq!(header.opcode, to_tungstenite(spec.opcode));
        prop_assert_eq!(header.mask, mask);
        prop_assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
        prop_assert_eq!(Ok(len), u64::try_from(spec.payload.len()));
        let start = usize::try_from(cursor.position()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut payload = ours[start..].to_vec();
        if let Some(key) = mask {
            apply_mask(&mut payload, key);
        }
        prop_assert!(payload == spec.payload);
    }
}

/// What tungstenite's header parser says about the frame at the start of
/// `bytes`, judged by RFC 6455 rules for `role` with our frame limit: `Some(true)`
/// when it is a valid, complete frame, `Some(false)` when it is invalid, `None`
/// when more bytes are needed to tell.
fn tungstenite_verdict(bytes: &[u8], role: Role, frame_bytes_max: usize) -> Option<bool> {
    let mut cursor = Cursor::new(bytes);
    let (header, len) = match TungHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return None,
        Err(_) => return Some(false),
    };
    let control = matches!(header.opcode, TungOpCode::Control(_));
    let valid = !header.rsv1
        && !header.rsv2
        && !header.rsv3
        && header.mask.is_some() == (role == Role::Server)
        && len >> 63 == 0
        && (!control || (header.is_final && len <= 125))
        && usize::try_from(len).is_ok_and(|len| len <= frame_bytes_max);
    if !valid {
        return Some(false);
    }
    let total = usize::try_from(cursor.position()).ok()?.checked_add(usize::try_from(len).ok()?)?;
    (bytes.len() >= total).then_some(true)
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn tungstenite_and_we_agree_on_arbitrary_bytes(
        bytes in prop_oneof![vec(any::<u8>(), 0..64), frame_like_bytes()],
        frame_bytes_max in prop_oneof![0usize..200, Just(1usize << 20)],
    ) {
        for role in [Role::Server, Role::Client] {
            let ours = FrameDecoder::new(role, frame_bytes_max).decode(&mut BytesMut::from(&bytes[..]));
            match (tungstenite_verdict(&bytes, role, frame_bytes_max), &ours) {
                (Some(true), Ok(Some(_))) | (Some(false), Err(_)) => {}
                // Our decoder refuses a bad header as soon as it sees the bad
                // bit; tungstenite's parser waits for the whole header.
                (None, Ok(None) | Err(_)) => {}
                (verdict, outcome) => {
                    return Err(TestCaseError::fail(format!("{role:?}: tungstenite {verdict:?}, ours {outcome:?}")));
                }
            }
        }
    }
}

/// A number in a message's free-form JSON (`hello`'s `limits`) survives
/// parse → to_json → parse unchanged. The fuzzer found a long decimal that
/// serde_json's fast float parser read one unit in the last place off, so
/// the re-parsed message differed; the exact parser (`float_roundtrip`)
/// fixes it.
#[test]
fn a_long_decimal_in_hello_limits_round_trips() {
    let text = r#"{"type": "hello", "protocol": 2, "user": "ana", "tenant": "abct-123", "expires_at": 1795000000, "limits": {"x": 222222222222222222222222222222222222222222222222222222222222222222222222222223.66666666666666666666666666665536, "pending_requests_max": 16}}"#;
    let event = volley_protocol::BrowserEvent::parse(text).expect("a hello");
    assert_eq!(volley_protocol::BrowserEvent::parse(&event.to_json()), Ok(event));
}
