//! CSV files: schema from the `schema:` override or inferred from the first
//! [`INFER_SCHEMA_ROWS`] rows, then streamed through arrow's push decoder in
//! batches of `batch_rows`; optionally followed for appended lines.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use arrow_csv::reader::Format;

use super::delimited::{Follow, LineReader};
use super::{Opened, SourceError, StopFlag};
use crate::config::{schema_from_columns, CsvSpec, INFER_SCHEMA_ROWS};

pub fn open(dataset: &str, spec: &CsvSpec, batch_rows: usize, stop: &StopFlag) -> Result<Opened, SourceError> {
    let path = &spec.path;
    let mut file = File::open(path).map_err(|e| SourceError::io(dataset, path, e))?;
    let schema = match &spec.schema {
        Some(columns) => schema_from_columns(columns).map_err(|r| SourceError::invalid(dataset, r))?,
        None => {
            let format = Format::default().with_header(spec.has_header);
            let (schema, _) =
                format.infer_schema(&mut file, Some(INFER_SCHEMA_ROWS)).map_err(|e| SourceError::arrow(dataset, e))?;
            if schema.fields().is_empty() {
                return Err(SourceError::invalid(dataset, "cannot infer a schema from an empty file: give `schema:`"));
            }
            file.seek(SeekFrom::Start(0)).map_err(|e| SourceError::io(dataset, path, e))?;
            Arc::new(schema)
        }
    };
    let decoder = arrow_csv::ReaderBuilder::new(Arc::clone(&schema))
        .with_header(spec.has_header)
        .with_batch_size(batch_rows)
        .build_decoder();
    let follow = spec
        .live
        .as_ref()
        .filter(|l| l.follow)
        .map(|l| Follow { poll: Duration::from_millis(l.poll_ms), stop: Arc::clone(stop) });
    let reader = LineReader::new(dataset, path.clone(), file, decoder, follow);
    Ok(Opened { schema, row_count: None, batches: Box::new(reader) })
}
