//! What the gateway — and through it, unchanged, browsers — may learn when a
//! request fails at the connector (PROTOCOL.md §4.1).
//!
//! A source error carries file paths, operating-system errors, parser output
//! that quotes the data, SQL text and database messages: none of it is for
//! browsers. [`source_failure`] logs the whole cause under a fresh error id
//! and returns a `source_error` whose message names only the dataset and
//! that id, so a user can report the id and the operator can find the cause.
//! A name that is not in the catalogue stays `dataset_not_found`, whose
//! message repeats only the (sanitised) name that was asked for.

use std::error::Error;

use volley_protocol::message::{ErrorBody, ErrorCode};

use crate::source::SourceError;

/// Hex digits of an error id (64 random bits).
pub const ERROR_ID_HEX_DIGITS: usize = 16;

/// The answer to a request whose dataset could not be opened or read.
pub fn open_failure(request_id: &str, dataset: &str, error: &SourceError) -> ErrorBody {
    match error {
        SourceError::UnknownDataset { .. } => ErrorBody::new(ErrorCode::DatasetNotFound, error.to_string()),
        other => source_failure(request_id, dataset, other),
    }
}

/// Logs `cause` (with its whole chain of sources) under a new error id and
/// returns the `source_error` that may leave the connector.
pub fn source_failure(request_id: &str, dataset: &str, cause: &dyn Error) -> ErrorBody {
    let id = error_id();
    log::warn!("error id {id}: request {request_id}, dataset {dataset:?}: {}", cause_chain(cause));
    ErrorBody::new(
        ErrorCode::SourceError,
        format!("dataset {dataset:?} could not be read from its source; the connector's log has the cause under error id {id}"),
    )
}

fn error_id() -> String {
    format!("{:0width$x}", fastrand::u64(..), width = ERROR_ID_HEX_DIGITS)
}

/// `error` and its sources on one line, each text once (many errors repeat
/// their source's text in their own); control characters become spaces, so
/// a message from a database cannot start a log line of its own.
pub fn cause_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|layer| layer as &(dyn Error + 'static))
        }
    }

    #[test]
    fn the_chain_keeps_every_cause_once_on_one_line() {
        let error = Layer(
            "dataset `pg`: postgres: db error",
            Some(Box::new(Layer("db error", Some(Box::new(Layer("ERROR: relation \"x\"\ndoes not exist", None)))))),
        );
        assert_eq!(cause_chain(&error), "dataset `pg`: postgres: db error: ERROR: relation \"x\" does not exist");
    }

    #[test]
    fn the_public_message_names_the_dataset_and_an_id_only() {
        let cause = SourceError::Invalid { dataset: "ventas".into(), reason: "line 3: secret-value".into() };
        let body = open_failure("r1", "ventas", &cause);
        assert_eq!(body.code, ErrorCode::SourceError);
        assert!(!body.message.contains("secret-value") && !body.message.contains("line"), "{}", body.message);
        assert!(body.message.contains("\"ventas\""), "{}", body.message);
        let id = body.message.rsplit(' ').next().unwrap_or_default();
        assert!(id.len() == ERROR_ID_HEX_DIGITS && id.bytes().all(|b| b.is_ascii_hexdigit()), "{}", body.message);
        let other = open_failure("r2", "ventas", &cause);
        assert_ne!(body.message, other.message, "each failure gets its own id");

        let unknown = SourceError::UnknownDataset { name: "../etc".into() };
        assert_eq!(open_failure("r3", "../etc", &unknown).code, ErrorCode::DatasetNotFound);
    }
}
