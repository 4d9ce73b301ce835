//! The whole request head as the gateway meets it: `handshake::parse_request`
//! (request line and headers, default and small limits), then
//! `route::route` (which endpoint, and the strict percent-decoding of the
//! session id in the path), `route::redact_path`, and for upgrades
//! `validate_upgrade`. Contracts: only 400/431 refusals from parsing, only
//! 400 from routing, a decoded session id is never longer than its encoded
//! form, and a redacted path never contains the session id.
//!
//! Seeds: fuzz/seeds/http_request (browser and tunnel upgrades, a session
//! check, the `%a` + multi-byte character path that once panicked a worker).
#![no_main]

use libfuzzer_sys::fuzz_target;
use volley_protocol::handshake::{parse_request, validate_upgrade};
use volley_protocol::route::{redact_path, route, Route, SESSION_CHECK_PREFIX, STREAM_PREFIX};
use volley_protocol::Limits;

const SMALL: Limits = Limits { handshake_bytes_max: 200, handshake_headers_max: 4, ..Limits::DEFAULT };

fuzz_target!(|data: &[u8]| {
    for limits in [&Limits::DEFAULT, &SMALL] {
        let Ok(Some((request, used))) = parse_request(data, limits) else { continue };
        assert!(used <= data.len() && used <= limits.handshake_bytes_max);
        let path = request.path();
        let redacted = redact_path(path);
        match route(&request) {
            Ok(Route::Stream { session }) | Ok(Route::SessionCheck { session }) => {
                let prefix = if path.starts_with(STREAM_PREFIX) { STREAM_PREFIX } else { SESSION_CHECK_PREFIX };
                let encoded = path.strip_prefix(prefix).expect("routed by its prefix");
                assert!(session.len() <= encoded.len(), "decoding never lengthens a session id");
                assert_eq!(redacted, format!("{prefix}<redacted {} bytes>", encoded.len()), "no session id in logs");
                let _ = validate_upgrade(&request);
            }
            Ok(Route::Connect) | Ok(Route::Echo) => {
                let _ = validate_upgrade(&request);
            }
            Ok(Route::Other) => {}
            Err(e) => assert_eq!(e.status, 400, "routing refuses with 400 only: {e}"),
        }
    }
});
