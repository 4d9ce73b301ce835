//! Parquet files: row groups streamed through `ParquetRecordBatchReader` in
//! batches of `batch_rows`, with optional projection onto top-level columns
//! by name. The row count comes from the file metadata.

use std::fs::File;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{Opened, SourceError};
use crate::config::ParquetSpec;

pub fn open(dataset: &str, spec: &ParquetSpec, batch_rows: usize) -> Result<Opened, SourceError> {
    let path = &spec.path;
    let file = File::open(path).map_err(|e| SourceError::io(dataset, path, e))?;
    let parquet_error = |source| SourceError::Parquet { dataset: dataset.to_string(), source };
    let mut builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?.with_batch_size(batch_rows);
    let row_count = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
    if let Some(columns) = &spec.columns {
        let arrow_schema = builder.schema();
        let mut roots = Vec::with_capacity(columns.len());
        for name in columns {
            let index = arrow_schema
                .index_of(name)
                .map_err(|_| SourceError::invalid(dataset, format!("column `{name}` is not in {}", path.display())))?;
            roots.push(index);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(parquet_error)?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let owned = dataset.to_string();
    let batches = reader.map(move |result| result.map_err(|e| SourceError::arrow(&owned, e)));
    Ok(Opened { schema, row_count, batches: Box::new(batches) })
}
