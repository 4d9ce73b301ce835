//! Every control-message parser and the token verifiers on arbitrary text.
//! Whatever a parser accepts must survive parse → to_json → parse unchanged,
//! and refusals carry one of the three parse error codes.
//!
//! Seeds: fuzz/seeds/control_message (the PROTOCOL.md examples and tokens
//! signed with `SECRET`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use volley_protocol::message::{BrowserEvent, BrowserRequest, ConnectorMessage, GatewayCommand, RegisterReply};
use volley_protocol::token::{self, Validation};
use volley_protocol::{ErrorCode, Limits, ParseError};

/// The secret the seed tokens are signed with, so the fuzzer starts past the signature check.
const SECRET: &[u8] = b"fuzz-secret";
/// 2025-01-01; the seed tokens are valid then.
const NOW_SECONDS: i64 = 1_735_689_600;

fn check_refusal(error: ParseError) {
    assert!(
        matches!(error.code, ErrorCode::InvalidJson | ErrorCode::BadRequest | ErrorCode::UnknownAction),
        "unexpected parse error code {:?}",
        error.code
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let id_bytes_max = Limits::DEFAULT.id_bytes_max;

    match ConnectorMessage::parse(text, id_bytes_max) {
        Ok(m) => assert_eq!(ConnectorMessage::parse(&m.to_json(), id_bytes_max), Ok(m)),
        Err(e) => check_refusal(e),
    }
    match GatewayCommand::parse(text) {
        Ok(m) => assert_eq!(GatewayCommand::parse(&m.to_json()), Ok(m)),
        Err(e) => check_refusal(e),
    }
    match BrowserRequest::parse(text, id_bytes_max) {
        Ok(m) => assert_eq!(BrowserRequest::parse(&m.to_json(), id_bytes_max), Ok(m)),
        Err(e) => check_refusal(e),
    }
    match BrowserEvent::parse(text) {
        Ok(m) => assert_eq!(BrowserEvent::parse(&m.to_json()), Ok(m)),
        Err(e) => check_refusal(e),
    }
    match RegisterReply::parse(text) {
        Ok(m) => assert_eq!(RegisterReply::parse(&m.to_json()), Ok(m)),
        Err(e) => check_refusal(e),
    }

    let secrets: &[&[u8]] = &[SECRET];
    let validation = Validation {
        secrets,
        now: NOW_SECONDS,
        leeway_seconds: i64::try_from(Limits::DEFAULT.token_leeway_seconds).unwrap_or(i64::MAX),
        token_bytes_max: Limits::DEFAULT.token_bytes_max,
    };
    let token = text.trim();
    if let Err(e) = token::verify_session(token, &validation) {
        let _ = e.code();
    }
    if let Err(e) = token::verify_connector(token, &validation) {
        let _ = e.code();
    }
});
