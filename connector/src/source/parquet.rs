//! Parquet files: row groups streamed through `ParquetRecordBatchReader` in
//! batches of `batch_rows`, with optional projection onto top-level columns
//! by name. The row count comes from the row groups' metadata.
//!
//! A footer whose `num_rows` disagrees with its row groups (some early
//! writers left it 0) is corrected before reading: parquet-rs caps its batch
//! size at the footer's count and would yield no rows at all from such a
//! file, while pyarrow reads them.

use std::fs::File;
use std::sync::Arc;

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{FileMetaData, ParquetMetaData};

use super::{Opened, SourceError};
use crate::config::ParquetSpec;

/// The file's reader metadata, with the footer's `num_rows` rebuilt from
/// the row groups when the two disagree, and the count the footer itself
/// declared (for the caller's warning).
pub fn reader_metadata(file: &File) -> parquet::errors::Result<(ArrowReaderMetadata, i64)> {
    let options = ArrowReaderOptions::new();
    let loaded = ArrowReaderMetadata::load(file, options.clone())?;
    let in_row_groups: i64 = loaded.metadata().row_groups().iter().map(|group| group.num_rows()).sum();
    let footer = loaded.metadata().file_metadata();
    let declared = footer.num_rows();
    if declared == in_row_groups {
        return Ok((loaded, declared));
    }
    let corrected = FileMetaData::new(
        footer.version(),
        in_row_groups,
        footer.created_by().map(str::to_owned),
        footer.key_value_metadata().cloned(),
        footer.schema_descr_ptr(),
        footer.column_orders().cloned(),
    );
    let fixed = ParquetMetaData::new(corrected, loaded.metadata().row_groups().to_vec());
    Ok((ArrowReaderMetadata::try_new(Arc::new(fixed), options)?, declared))
}

pub fn open(dataset: &str, spec: &ParquetSpec, batch_rows: usize) -> Result<Opened, SourceError> {
    let path = &spec.path;
    let file = File::open(path).map_err(|e| SourceError::io(dataset, path, e))?;
    let parquet_error = |source| SourceError::Parquet { dataset: dataset.to_string(), source };
    let (metadata, declared) = reader_metadata(&file).map_err(parquet_error)?;
    let in_row_groups = metadata.metadata().file_metadata().num_rows();
    if declared != in_row_groups {
        log::warn!(
            "dataset {dataset}: {} says {declared} rows in its footer but its row groups hold {in_row_groups}; \
             reading the row groups",
            path.display()
        );
    }
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata).with_batch_size(batch_rows);
    let row_count = u64::try_from(in_row_groups).ok();
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
