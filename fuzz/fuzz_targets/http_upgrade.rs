//! `handshake::parse_request` + `validate_upgrade` on arbitrary bytes, with the
//! default limits and with small ones; the limits must hold for whatever is
//! accepted.
//!
//! Seeds: fuzz/seeds/http_upgrade (the RFC 6455 §1.2 request and Volley's
//! tunnel and browser upgrades).
#![no_main]

use libfuzzer_sys::fuzz_target;
use volley_protocol::handshake::{parse_request, upgrade_response, validate_upgrade};
use volley_protocol::Limits;

const SMALL: Limits = Limits { handshake_bytes_max: 200, handshake_headers_max: 4, ..Limits::DEFAULT };

fuzz_target!(|data: &[u8]| {
    for limits in [&Limits::DEFAULT, &SMALL] {
        match parse_request(data, limits) {
            Ok(Some((request, used))) => {
                assert!(used <= data.len(), "used more bytes than given");
                assert!(used <= limits.handshake_bytes_max, "request over handshake_bytes_max accepted");
                let _ = (request.path(), request.query(), request.wants_upgrade());
                if let Ok(upgrade) = validate_upgrade(&request) {
                    let response = upgrade_response(&upgrade);
                    assert!(response.starts_with(b"HTTP/1.1 101 "));
                }
            }
            Ok(None) => assert!(data.len() < limits.handshake_bytes_max, "waiting past handshake_bytes_max"),
            Err(e) => assert!(matches!(e.status, 400 | 431), "unexpected status {}", e.status),
        }
    }
});
