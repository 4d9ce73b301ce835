//! Newline-delimited JSON files: schema from the `schema:` override or
//! inferred from the first [`INFER_SCHEMA_ROWS`] lines, then streamed through
//! arrow's push decoder; optionally followed for appended lines.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use super::delimited::{Follow, LineReader};
use super::{Flags, Opened, SourceError};
use crate::config::{schema_from_columns, JsonSpec, INFER_SCHEMA_ROWS};

pub fn open(dataset: &str, spec: &JsonSpec, batch_rows: usize, flags: &Flags) -> Result<Opened, SourceError> {
    let path = &spec.path;
    let mut file = File::open(path).map_err(|e| SourceError::io(dataset, path, e))?;
    let schema = match &spec.schema {
        Some(columns) => schema_from_columns(columns).map_err(|r| SourceError::invalid(dataset, r))?,
        None => {
            let (schema, _) = arrow_json::reader::infer_json_schema(BufReader::new(&mut file), Some(INFER_SCHEMA_ROWS))
                .map_err(|e| SourceError::arrow(dataset, e))?;
            if schema.fields().is_empty() {
                return Err(SourceError::invalid(dataset, "cannot infer a schema from an empty file: give `schema:`"));
            }
            file.seek(SeekFrom::Start(0)).map_err(|e| SourceError::io(dataset, path, e))?;
            Arc::new(schema)
        }
    };
    let decoder = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(batch_rows)
        .build_decoder()
        .map_err(|e| SourceError::arrow(dataset, e))?;
    let follow = spec.live.as_ref().filter(|l| l.follow).map(|l| Follow {
        poll: Duration::from_millis(l.poll_ms),
        stop: Arc::clone(&flags.stop),
        caught_up: Arc::clone(&flags.caught_up),
    });
    let reader = LineReader::new(dataset, path.clone(), Box::new(file), decoder, follow);
    Ok(Opened { schema, row_count: None, batches: Box::new(reader) })
}
