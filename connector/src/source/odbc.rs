//! ODBC (e.g. SQL Server through Microsoft's driver, PostgreSQL through
//! `odbc-postgresql`): the query runs once, and arrow-odbc fetches its result
//! set in bulk, `batch_rows` rows per batch, into Arrow arrays whose types it
//! derives from the result set's column descriptions. Text and binary
//! columns without a declared length are bounded by [`TEXT_BYTES_MAX`] and
//! [`BINARY_BYTES_MAX`] per value.
//!
//! One deviation from arrow-odbc's type mapping: every ODBC `FLOAT(n)` column
//! becomes Float64. Drivers disagree on whether `n` counts binary or decimal
//! digits (the PostgreSQL driver reports float8 as `FLOAT(17)`, which
//! arrow-odbc reads as single precision and truncates); Float64 is never lossy.

use std::sync::Arc;

use arrow_odbc::odbc_api::{self, ConnectionOptions, ResultSetMetadata};
use arrow_odbc::OdbcReaderBuilder;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{Opened, SourceError};
use crate::config::OdbcSpec;

/// Largest text value fetched per cell when the column declares no length, bytes.
pub const TEXT_BYTES_MAX: usize = 64 * 1024;
/// Largest binary value fetched per cell when the column declares no length, bytes.
pub const BINARY_BYTES_MAX: usize = 64 * 1024;
/// Upper bound on the fetch buffer of one batch, bytes.
pub const BATCH_BYTES_MAX: usize = 256 * 1024 * 1024;

pub fn open(dataset: &str, spec: &OdbcSpec, batch_rows: usize) -> Result<Opened, SourceError> {
    let odbc_error = |message: String| SourceError::Odbc { dataset: dataset.to_string(), message };
    let environment = odbc_api::environment().map_err(|e| odbc_error(e.to_string()))?;
    let connection = environment
        .connect_with_connection_string(&spec.connection_string, ConnectionOptions::default())
        .map_err(|e| odbc_error(e.to_string()))?;
    let cursor = connection
        .into_cursor(&spec.query, (), None)
        .map_err(|failed| odbc_error(failed.error.to_string()))?
        .ok_or_else(|| odbc_error("the query returned no result set".into()))?;
    let mut cursor = cursor;
    let schema = odbc_schema(&mut cursor).map_err(odbc_error)?;
    let reader = OdbcReaderBuilder::new()
        .with_schema(schema)
        .with_max_num_rows_per_batch(batch_rows)
        .with_max_bytes_per_batch(BATCH_BYTES_MAX)
        .with_max_text_size(TEXT_BYTES_MAX)
        .with_max_binary_size(BINARY_BYTES_MAX)
        .build(cursor)
        .map_err(|e| odbc_error(e.to_string()))?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let owned = dataset.to_string();
    let batches = reader.map(move |r| r.map_err(|e| SourceError::arrow(&owned, e)));
    Ok(Opened { schema, row_count: None, batches: Box::new(batches) })
}

/// arrow-odbc's schema, with `FLOAT(n)` widened to Float64 (see module docs).
fn odbc_schema(cursor: &mut impl ResultSetMetadata) -> Result<SchemaRef, String> {
    let inferred = arrow_odbc::arrow_schema_from(cursor, None, false).map_err(|e| e.to_string())?;
    let mut fields = Vec::with_capacity(inferred.fields().len());
    for (index, field) in inferred.fields().iter().enumerate() {
        let column = u16::try_from(index + 1).map_err(|_| "too many columns".to_string())?;
        let odbc_type = cursor.col_data_type(column).map_err(|e| e.to_string())?;
        let field: Field =
            if matches!(odbc_type, odbc_api::DataType::Float { .. }) && field.data_type() == &DataType::Float32 {
                field.as_ref().clone().with_data_type(DataType::Float64)
            } else {
                field.as_ref().clone()
            };
        fields.push(field);
    }
    Ok(Arc::new(Schema::new_with_metadata(fields, inferred.metadata().clone())))
}
