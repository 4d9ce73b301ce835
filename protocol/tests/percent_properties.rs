//! `percent::decode` against an independent implementation, the
//! `percent-encoding` crate: whatever that crate encodes, we decode back to
//! the same text; wherever every `%` starts a well-formed escape, we agree
//! with its decoder byte for byte; and where one does not, we refuse the
//! segment (the reference passes a stray `%` through — we do not guess).

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use volley_protocol::percent::{decode, PercentError};

/// True when every `%` in `text` is followed by two hexadecimal digits.
fn escapes_well_formed(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .all(|(at, _)| bytes.get(at + 1..at + 3).is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)))
}

/// Segments built from the characters that matter: escapes (good and bad),
/// hex digits, multi-byte characters, and plain token characters.
fn segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("%".to_owned()),
        "%[0-9a-fA-F]{2}",
        "[0-9a-fA-F]{1,2}",
        "[a-zA-Z0-9._~-]{1,6}",
        Just("é".to_owned()),
        Just("€".to_owned()),
        Just("%g".to_owned()),
        "%[89a-fA-F][0-9a-fA-F]",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_inverts_the_reference_encoder(text in any::<String>()) {
        let encoded = utf8_percent_encode(&text, NON_ALPHANUMERIC).to_string();
        prop_assert_eq!(decode(&encoded), Ok(text));
    }

    #[test]
    fn decoding_agrees_with_the_reference_decoder_where_escapes_are_well_formed(text in segment()) {
        let reference = percent_decode_str(&text).decode_utf8().map(|decoded| decoded.into_owned());
        match decode(&text) {
            Ok(decoded) => {
                prop_assert!(escapes_well_formed(&text), "accepted a malformed escape in {:?}", text);
                prop_assert_eq!(Ok(decoded), reference.map_err(|_| ()));
            }
            Err(PercentError::BadEscape { at }) => {
                prop_assert!(!escapes_well_formed(&text), "refused well-formed {:?}", text);
                prop_assert_eq!(text.as_bytes().get(at), Some(&b'%'), "the error points at a '%'");
            }
            Err(PercentError::NotUtf8) => {
                prop_assert!(escapes_well_formed(&text));
                prop_assert!(reference.is_err(), "the reference decoded {:?} to UTF-8", text);
            }
        }
    }

    #[test]
    fn decoding_never_panics_on_any_text(text in any::<String>()) {
        let _ = decode(&text);
    }
}
