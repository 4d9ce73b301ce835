//! The JSON helpers every control-message parser shares: a text frame must
//! be a JSON object (`invalid_json` otherwise), its tag (`action`, `type`,
//! `status`) a string, its body the expected shape and its ids within the
//! length limit (`bad_request` otherwise); and the writer that puts the tag
//! first.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ErrorCode, ParseError};

pub(super) fn parse_object(text: &str) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::new(ErrorCode::InvalidJson, "a control message must be a JSON object")),
        Err(e) => Err(ParseError::new(ErrorCode::InvalidJson, format!("not JSON: {e}"))),
    }
}

pub(super) fn typed<T: for<'de> Deserialize<'de>>(map: Map<String, Value>, what: &str) -> Result<T, ParseError> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ParseError::new(ErrorCode::BadRequest, format!("{what}: {e}")))
}

pub(super) fn tag<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ParseError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::new(ErrorCode::BadRequest, format!("{key} must be a string"))),
    }
}

pub(super) fn check_id(field: &str, value: &str, id_bytes_max: usize) -> Result<(), ParseError> {
    if value.is_empty() || value.len() > id_bytes_max {
        return Err(ParseError::new(
            ErrorCode::BadRequest,
            format!("{field} must be 1 to {id_bytes_max} bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

pub(super) fn to_json_with(tag_key: &str, tag_value: &str, body: &impl Serialize) -> String {
    let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        // Put the tag first so logs read naturally.
        let mut ordered = Map::new();
        ordered.insert(tag_key.to_owned(), Value::String(tag_value.to_owned()));
        ordered.append(map);
        return Value::Object(ordered).to_string();
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use crate::message::{BrowserRequest, ConnectorMessage, ErrorCode};

    #[test]
    fn garbage_is_classified() {
        assert_eq!(BrowserRequest::parse("{nope", 64).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(BrowserRequest::parse("[1,2]", 64).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(BrowserRequest::parse(r#"{"action":"drop"}"#, 64).unwrap_err().code, ErrorCode::UnknownAction);
        assert_eq!(BrowserRequest::parse(r#"{"action":"query"}"#, 64).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(BrowserRequest::parse(r#"{"action":7}"#, 64).unwrap_err().code, ErrorCode::BadRequest);
        let long = format!(r#"{{"action":"query","dataset":"{}"}}"#, "x".repeat(65));
        assert_eq!(BrowserRequest::parse(&long, 64).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(ConnectorMessage::parse(r#"{"hello":1}"#, 64).unwrap_err().code, ErrorCode::BadRequest);
    }
}
