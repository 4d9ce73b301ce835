//! ODBC (e.g. SQL Server through Microsoft's driver, PostgreSQL through
//! `odbc-postgresql`): the query runs once, and arrow-odbc fetches its result
//! set in bulk, `batch_rows` rows per batch, into Arrow arrays whose types it
//! derives from the result set's column descriptions. Text and binary
//! columns without a declared length are bounded by [`TEXT_BYTES_MAX`] and
//! [`BINARY_BYTES_MAX`] per value.

use arrow_odbc::odbc_api::{self, ConnectionOptions};
use arrow_odbc::OdbcReaderBuilder;

use super::{Opened, SourceError};
use crate::config::OdbcSpec;

/// Largest text value fetched per cell when the column declares no length, bytes.
pub const TEXT_BYTES_MAX: usize = 64 * 1024;
/// Largest binary value fetched per cell when the column declares no length, bytes.
pub const BINARY_BYTES_MAX: usize = 64 * 1024;
/// Upper bound on the fetch buffer of one batch, bytes.
pub const BATCH_BYTES_MAX: usize = 256 * 1024 * 1024;

pub fn open(dataset: &str, spec: &OdbcSpec, batch_rows: usize) -> Result<Opened, SourceError> {
    let odbc_error = |message: String| SourceError::Odbc {
        dataset: dataset.to_string(),
        message,
    };
    let environment = odbc_api::environment().map_err(|e| odbc_error(e.to_string()))?;
    let connection = environment
        .connect_with_connection_string(&spec.connection_string, ConnectionOptions::default())
        .map_err(|e| odbc_error(e.to_string()))?;
    let cursor = connection
        .into_cursor(&spec.query, (), None)
        .map_err(|failed| odbc_error(failed.error.to_string()))?
        .ok_or_else(|| odbc_error("the query returned no result set".into()))?;
    let reader = OdbcReaderBuilder::new()
        .with_max_num_rows_per_batch(batch_rows)
        .with_max_bytes_per_batch(BATCH_BYTES_MAX)
        .with_max_text_size(TEXT_BYTES_MAX)
        .with_max_binary_size(BINARY_BYTES_MAX)
        .build(cursor)
        .map_err(|e| odbc_error(e.to_string()))?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let owned = dataset.to_string();
    let batches = reader.map(move |r| r.map_err(|e| SourceError::arrow(&owned, e)));
    Ok(Opened {
        schema,
        row_count: None,
        batches: Box::new(batches),
    })
}
