//! PROTOCOL.md is normative: every JSON example in it must parse with the
//! crate's types and survive a parse → to_json → parse round trip, and the
//! error-code (§8) and close-code (§9) tables must match the crate exactly.
//! When one of these tests fails, either the page or the code has a bug.

use std::collections::BTreeSet;
use std::fmt::Debug;

use volley_protocol::header::FrameHeader;
use volley_protocol::ws::{self, close_code};
use volley_protocol::{
    BrowserEvent, BrowserRequest, ConnectorMessage, ErrorCode, GatewayCommand, Limits, ParseError, RegisterReply,
};
use volley_testkit::markdown::table_after;

/// Deleting examples from the page should be a deliberate act, not an accident.
const JSON_EXAMPLES_MIN: usize = 36;

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A fenced code block and where it sits in the page.
struct CodeBlock {
    /// The info string after the opening fence (`json`, or empty).
    tag: String,
    /// The innermost `##`/`###` heading above the block, e.g. `### 4.3 Browser → gateway`.
    heading: String,
    /// 1-based line of the opening fence.
    line: usize,
    body: String,
}

fn code_blocks(markdown: &str) -> Vec<CodeBlock> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut open: Option<CodeBlock> = None;
    for (index, line) in markdown.lines().enumerate() {
        match open.as_mut() {
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::replace(block, CodeBlock::empty()));
                open = None;
            }
            Some(block) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            None if line.trim_start().starts_with("```") => {
                let tag = line.trim_start().trim_start_matches('`').trim().to_owned();
                open = Some(CodeBlock { tag, heading: heading.clone(), line: index + 1, body: String::new() });
            }
            None if line.starts_with("##") => heading = line.to_owned(),
            None => {}
        }
    }
    assert!(open.is_none(), "PROTOCOL.md has an unterminated code block");
    blocks
}

impl CodeBlock {
    fn empty() -> CodeBlock {
        CodeBlock { tag: String::new(), heading: String::new(), line: 0, body: String::new() }
    }
}

/// `Some(Ok)` when `text` parses and round-trips, `Some(Err)` when it parses but
/// the round trip breaks, `None` when this parser does not accept it.
fn round_trip<T: PartialEq + Debug>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, ParseError>,
    to_json: impl Fn(&T) -> String,
) -> Option<Result<(), String>> {
    let first = parse(text).ok()?;
    let json = to_json(&first);
    Some(match parse(&json) {
        Ok(second) if second == first => Ok(()),
        Ok(second) => Err(format!("{json} parses back as {second:?}, not {first:?}")),
        Err(e) => Err(format!("{json} (from {first:?}) does not parse back: {e}")),
    })
}

/// The parsers an example may satisfy, by name, and the result of each.
fn try_every_parser(text: &str) -> Vec<(&'static str, Option<Result<(), String>>)> {
    let id_bytes_max = Limits::DEFAULT.id_bytes_max;
    vec![
        ("ConnectorMessage", round_trip(text, |t| ConnectorMessage::parse(t, id_bytes_max), ConnectorMessage::to_json)),
        ("RegisterReply", round_trip(text, RegisterReply::parse, RegisterReply::to_json)),
        ("GatewayCommand", round_trip(text, GatewayCommand::parse, GatewayCommand::to_json)),
        ("BrowserRequest", round_trip(text, |t| BrowserRequest::parse(t, id_bytes_max), BrowserRequest::to_json)),
        ("BrowserEvent", round_trip(text, BrowserEvent::parse, BrowserEvent::to_json)),
    ]
}

/// Which parser the examples of each §4 subsection are written for.
fn parsers_for_heading(heading: &str) -> &'static [&'static str] {
    if heading.starts_with("### 4.1") {
        &["ConnectorMessage", "RegisterReply"]
    } else if heading.starts_with("### 4.2") {
        &["GatewayCommand"]
    } else if heading.starts_with("### 4.3") {
        &["BrowserRequest"]
    } else if heading.starts_with("### 4.4") {
        &["BrowserEvent"]
    } else {
        &["ConnectorMessage", "RegisterReply", "GatewayCommand", "BrowserRequest", "BrowserEvent"]
    }
}

#[test]
fn every_json_example_parses_and_round_trips() {
    let markdown = protocol_md();
    let examples: Vec<CodeBlock> = code_blocks(&markdown).into_iter().filter(|b| b.tag == "json").collect();
    assert!(
        examples.len() >= JSON_EXAMPLES_MIN,
        "PROTOCOL.md has {} json examples, expected at least {JSON_EXAMPLES_MIN}",
        examples.len()
    );
    let mut failures = Vec::new();
    for example in &examples {
        let text = example.body.trim();
        let results = try_every_parser(text);
        let expected = parsers_for_heading(&example.heading);
        let accepted: Vec<&str> = results.iter().filter(|(_, r)| r.is_some()).map(|(name, _)| *name).collect();
        if !accepted.iter().any(|name| expected.contains(name)) {
            failures.push(format!(
                "line {} ({}): {text}\n  accepted by {accepted:?}, expected one of {expected:?}",
                example.line, example.heading
            ));
        }
        for (name, result) in &results {
            if let Some(Err(why)) = result {
                failures.push(format!("line {}: {name} round trip: {why}", example.line));
            }
        }
    }
    assert!(failures.is_empty(), "PROTOCOL.md examples that the crate refuses:\n{}", failures.join("\n"));
}

#[test]
fn frame_header_example_decodes() {
    // §3.2: "56 02 03 00  07 00 00 00  03 00 00 00 00 00 00 00  | FF FF FF FF ..."
    let markdown = protocol_md();
    let block = code_blocks(&markdown)
        .into_iter()
        .find(|b| b.heading.starts_with("### 3.2"))
        .unwrap_or_else(|| panic!("§3.2 has no example block"));
    let hex = block.body.split('|').next().unwrap_or_default();
    let bytes: Vec<u8> = hex
        .split_whitespace()
        .map(|pair| u8::from_str_radix(pair, 16).unwrap_or_else(|e| panic!("§3.2 byte {pair:?}: {e}")))
        .collect();
    let header = FrameHeader::decode(&bytes).unwrap_or_else(|e| panic!("§3.2 example: {e}"));
    assert_eq!((header.stream_id, header.sequence), (7, 3), "§3.2 says stream 7, frame 3");
    assert_eq!(header.kind, volley_protocol::FrameKind::RecordBatch);
    assert_eq!(header.encode().as_slice(), bytes.as_slice());
}

/// Every `ErrorCode` the protocol defines (`Other` is the forward-compatibility
/// catch-all, not a wire code).
fn defined_error_codes() -> Vec<ErrorCode> {
    use ErrorCode::*;
    let all = vec![
        InvalidJson,
        BadRequest,
        UnknownAction,
        Unauthorized,
        TokenExpired,
        Forbidden,
        Revoked,
        DatasetNotFound,
        DatasetForbidden,
        NotLive,
        ConnectorOffline,
        ConnectorGone,
        QueryTimeout,
        Cancelled,
        Busy,
        TooManyRequests,
        UnknownQuery,
        UnknownStream,
        BadFrameHeader,
        SourceError,
        SlowConsumer,
        RetainedLimit,
        Internal,
        Unavailable,
    ];
    // Exhaustive on purpose: a new variant stops this compiling until it is
    // added to the list above (and then the table check below demands a row).
    for code in &all {
        match code {
            InvalidJson | BadRequest | UnknownAction | Unauthorized | TokenExpired | Forbidden | Revoked
            | DatasetNotFound | DatasetForbidden | NotLive | ConnectorOffline | ConnectorGone | QueryTimeout
            | Cancelled | Busy | TooManyRequests | UnknownQuery | UnknownStream | BadFrameHeader | SourceError
            | SlowConsumer | RetainedLimit | Internal | Unavailable => {}
            Other => unreachable!("Other is not listed"),
        }
    }
    all
}

fn backticked(cell: &str) -> &str {
    cell.trim_matches('`')
}

#[test]
fn error_code_table_matches_error_code() {
    let markdown = protocol_md();
    let table: BTreeSet<String> =
        table_after(&markdown, "## 8.").iter().map(|row| backticked(&row[0]).to_owned()).collect();
    let mut crate_names = BTreeSet::new();
    for code in defined_error_codes() {
        let serde_name = serde_json::to_value(code).unwrap_or_else(|e| panic!("{code:?}: {e}"));
        let serde_name = serde_name.as_str().unwrap_or_else(|| panic!("{code:?} serialises as {serde_name}"));
        assert_eq!(serde_name, code.as_str(), "{code:?}: serde name and as_str differ");
        let back: ErrorCode = serde_json::from_value(serde_json::json!(serde_name)).unwrap_or(ErrorCode::Other);
        assert_eq!(back, code, "{serde_name} does not deserialise to {code:?}");
        crate_names.insert(serde_name.to_owned());
    }
    let only_in_table: Vec<_> = table.difference(&crate_names).collect();
    let only_in_crate: Vec<_> = crate_names.difference(&table).collect();
    assert!(
        only_in_table.is_empty() && only_in_crate.is_empty(),
        "§8 table and ErrorCode differ: only in PROTOCOL.md {only_in_table:?}, only in the crate {only_in_crate:?}"
    );
}

/// Every constant of `ws::close_code`, by name.
const CLOSE_CODES: &[(&str, u16)] = &[
    ("NORMAL", close_code::NORMAL),
    ("GOING_AWAY", close_code::GOING_AWAY),
    ("PROTOCOL_ERROR", close_code::PROTOCOL_ERROR),
    ("UNSUPPORTED_DATA", close_code::UNSUPPORTED_DATA),
    ("INVALID_PAYLOAD", close_code::INVALID_PAYLOAD),
    ("POLICY_VIOLATION", close_code::POLICY_VIOLATION),
    ("MESSAGE_TOO_BIG", close_code::MESSAGE_TOO_BIG),
    ("INTERNAL_ERROR", close_code::INTERNAL_ERROR),
    ("SERVICE_RESTART", close_code::SERVICE_RESTART),
    ("REVOKED", close_code::REVOKED),
    ("TOKEN_EXPIRED", close_code::TOKEN_EXPIRED),
    ("SLOW_CONSUMER", close_code::SLOW_CONSUMER),
    ("HEARTBEAT_TIMEOUT", close_code::HEARTBEAT_TIMEOUT),
    ("CONNECTOR_REFUSED", close_code::CONNECTOR_REFUSED),
    ("IDLE_TIMEOUT", close_code::IDLE_TIMEOUT),
];

#[test]
fn close_code_table_matches_close_code_module() {
    // `CLOSE_CODES` names real constants (it compiles); make sure it names all
    // of them by reading the module's source.
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ws/close.rs"))
        .unwrap_or_else(|e| panic!("reading src/ws/close.rs: {e}"));
    let module = source
        .split("pub mod close_code {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_else(|| panic!("src/ws/close.rs has no `pub mod close_code`"));
    let declared: BTreeSet<&str> = module
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    let listed: BTreeSet<&str> = CLOSE_CODES.iter().map(|(name, _)| *name).collect();
    assert_eq!(declared, listed, "CLOSE_CODES in this test must list every ws::close_code constant");

    let markdown = protocol_md();
    let table: BTreeSet<u16> = table_after(&markdown, "## 9.")
        .iter()
        .map(|row| row[0].parse().unwrap_or_else(|e| panic!("§9 code {:?}: {e}", row[0])))
        .collect();
    let crate_codes: BTreeSet<u16> = CLOSE_CODES.iter().map(|(_, code)| *code).collect();
    assert_eq!(crate_codes.len(), CLOSE_CODES.len(), "two close_code constants share a value");
    let only_in_table: Vec<_> = table.difference(&crate_codes).collect();
    let only_in_crate: Vec<_> = crate_codes.difference(&table).collect();
    assert!(
        only_in_table.is_empty() && only_in_crate.is_empty(),
        "§9 table and ws::close_code differ: only in PROTOCOL.md {only_in_table:?}, only in the crate {only_in_crate:?}"
    );
    for code in table {
        // 1012 is only sent (by a draining gateway, to browsers, which accept
        // it); from a peer it stays refused, as Autobahn's case 7.9 expects of
        // a code RFC 6455 left unassigned.
        if code == close_code::SERVICE_RESTART {
            assert!(!ws::is_valid_close_code(code));
            continue;
        }
        assert!(ws::is_valid_close_code(code), "§9 lists {code}, which our own decoder refuses from a peer");
    }
}

#[test]
fn limits_table_defaults_match_limits_default() {
    let markdown = protocol_md();
    let defaults = Limits::DEFAULT;
    let in_crate: &[(&str, u64)] = &[
        ("handshake_bytes_max", defaults.handshake_bytes_max as u64),
        ("handshake_headers_max", defaults.handshake_headers_max as u64),
        ("control_message_bytes_max", defaults.control_message_bytes_max as u64),
        ("control_frame_bytes_max", volley_protocol::limits::CONTROL_FRAME_BYTES_MAX as u64),
        ("browser_frame_bytes_max", defaults.browser_frame_bytes_max as u64),
        ("connector_frame_bytes_max", defaults.connector_frame_bytes_max as u64),
        ("message_bytes_max", defaults.message_bytes_max as u64),
        ("fragments_max", defaults.fragments_max as u64),
        ("token_bytes_max", defaults.token_bytes_max as u64),
        ("id_bytes_max", defaults.id_bytes_max as u64),
        ("token_leeway_seconds", defaults.token_leeway_seconds),
    ];
    let table = table_after(&markdown, "## 7.");
    for (name, value) in in_crate {
        let row = table
            .iter()
            .find(|row| backticked(&row[0]) == *name)
            .unwrap_or_else(|| panic!("§7 has no row for Limits field {name}"));
        let digits: String = row[1].chars().filter(|c| !c.is_whitespace()).collect();
        let documented: u64 = digits.parse().unwrap_or_else(|e| panic!("§7 default of {name} {:?}: {e}", row[1]));
        assert_eq!(documented, *value, "§7 documents {name} = {documented}, Limits::DEFAULT has {value}");
    }
}
