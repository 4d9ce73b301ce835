//! Percent-decoding of request path segments (RFC 3986 §2.1), strict.
//!
//! The gateway reads a session token out of `/stream/{session}` and
//! `/session-check/{session}`. The segment is decoded on bytes: every `%`
//! must be followed by two hexadecimal digits, and the decoded bytes must be
//! UTF-8. Anything else is refused, never guessed at: a lenient decoder that
//! passes a stray `%` through is how two parsers come to disagree about one
//! token, and slicing the text around a `%` at a byte offset the peer chose
//! is how a decoder panics inside a multi-byte character.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// Why a path segment could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("malformed percent-escape at byte {at} of the path segment (write a literal % as %25)")]
    BadEscape {
        /// Offset of the `%` in the segment.
        at: usize,
    },
    /// The decoded bytes are not UTF-8.
    #[error("the path segment does not decode to UTF-8 text")]
    NotUtf8,
}

/// Decodes one percent-encoded path segment. `+` is left as is (it means a
/// space only in form bodies, not in paths).
pub fn decode(segment: &str) -> Result<String, PercentError> {
    let bytes = segment.as_bytes();
    if !bytes.contains(&b'%') {
        return Ok(segment.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    let mut at = 0;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'%' {
            out.push(byte);
            rest = tail;
            at += 1;
            continue;
        }
        let value = match tail {
            [high, low, ..] => hex_value(*high).zip(hex_value(*low)).map(|(high, low)| high << 4 | low),
            _ => None,
        };
        let Some(value) = value else {
            return Err(PercentError::BadEscape { at });
        };
        out.push(value);
        rest = tail.get(2..).unwrap_or_default();
        at += 3;
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

/// The value of one hexadecimal digit (either case).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_segments_are_returned_unchanged() {
        assert_eq!(decode("eyJhbGciOi.J9.sig-_"), Ok("eyJhbGciOi.J9.sig-_".to_owned()));
        assert_eq!(decode(""), Ok(String::new()));
        assert_eq!(decode("a+b"), Ok("a+b".to_owned()));
    }

    #[test]
    fn escapes_decode_in_either_case() {
        assert_eq!(decode("a%2Eb%2ec"), Ok("a.b.c".to_owned()));
        assert_eq!(decode("%25"), Ok("%".to_owned()));
        assert_eq!(decode("caf%C3%A9"), Ok("café".to_owned()));
    }

    #[test]
    fn a_percent_before_a_multibyte_character_is_refused_not_sliced() {
        // The bytes of `/session-check/%a` + "é" that once panicked the gateway.
        assert_eq!(decode("%aé"), Err(PercentError::BadEscape { at: 0 }));
        assert_eq!(decode("x%éa"), Err(PercentError::BadEscape { at: 1 }));
        assert_eq!(decode("%é"), Err(PercentError::BadEscape { at: 0 }));
    }

    #[test]
    fn truncated_and_non_hex_escapes_are_refused() {
        for (segment, at) in [("%", 0), ("%a", 0), ("ab%4", 2), ("%zz", 0), ("%4g", 0), ("ok%20%2", 5), ("%+1", 0)] {
            assert_eq!(decode(segment), Err(PercentError::BadEscape { at }), "{segment:?}");
        }
    }

    #[test]
    fn escapes_that_decode_to_invalid_utf8_are_refused() {
        assert_eq!(decode("%ff"), Err(PercentError::NotUtf8));
        assert_eq!(decode("%C3"), Err(PercentError::NotUtf8));
    }
}
