//! CSV files: schema from the `schema:` override or inferred from the first
//! [`INFER_SCHEMA_ROWS`] rows, then streamed through arrow's push decoder in
//! batches of `batch_rows`; optionally followed for appended lines.
//!
//! The dataset's dialect (`delimiter`, `quote`, `header`) goes to arrow's
//! reader; its `encoding` is decoded to UTF-8 before ([`TextReader`]); its
//! `decimal: ","` columns are read as text and converted after
//! ([`decimal_comma`]). A file read with the wrong dialect is refused with
//! a hint ([`super::csv_hint`]): one column found where another delimiter splits
//! the lines, rows of unequal length, bytes that are not UTF-8.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_csv::reader::Format;
use arrow_schema::{ArrowError, DataType, Field, Schema};

use super::csv_hint::Dialect;
use super::decimal_comma;
use super::delimited::{Follow, LineReader, PushDecoder};
use super::encoding::TextReader;
use super::{BatchIter, Flags, Opened, SourceError};
use crate::config::{schema_from_columns, CsvSpec, DecimalMark, INFER_SCHEMA_ROWS};

pub fn open(dataset: &str, spec: &CsvSpec, batch_rows: usize, flags: &Flags) -> Result<Opened, SourceError> {
    let path = &spec.path;
    let dialect = Dialect {
        path: path.clone(),
        encoding: spec.encoding,
        delimiter: spec.delimiter_byte(),
        quote: spec.quote_byte(),
    };
    let format =
        Format::default().with_header(spec.has_header).with_delimiter(dialect.delimiter).with_quote(dialect.quote);
    let comma = spec.decimal == DecimalMark::Comma;
    let mut file = File::open(path).map_err(|e| SourceError::io(dataset, path, e))?;
    let (schema, comma_columns) = match &spec.schema {
        Some(columns) => {
            let schema = schema_from_columns(columns).map_err(|r| SourceError::invalid(dataset, r))?;
            let comma_columns = if comma { decimal_comma::float_columns(&schema) } else { Vec::new() };
            (schema, comma_columns)
        }
        None => {
            let text = TextReader::new(&mut file, spec.encoding.0);
            let (inferred, _) =
                format.infer_schema(text, Some(INFER_SCHEMA_ROWS)).map_err(|e| dialect.explain(dataset, e))?;
            if inferred.fields().is_empty() {
                return Err(SourceError::invalid(dataset, "cannot infer a schema from an empty file: give `schema:`"));
            }
            if inferred.fields().len() == 1 && spec.delimiter.is_none() {
                if let Some(hint) = dialect.delimiter_hint() {
                    return Err(SourceError::invalid(dataset, hint));
                }
            }
            if comma {
                file.seek(SeekFrom::Start(0)).map_err(|e| SourceError::io(dataset, path, e))?;
                let sample = read_sample_as_text(&mut file, spec, &format, &inferred)
                    .map_err(|e| dialect.explain(dataset, e))?;
                decimal_comma::infer(&inferred, sample.as_ref())
            } else {
                (Arc::new(inferred), Vec::new())
            }
        }
    };
    file.seek(SeekFrom::Start(0)).map_err(|e| SourceError::io(dataset, path, e))?;
    let decoder = arrow_csv::ReaderBuilder::new(decimal_comma::as_text(&schema, &comma_columns))
        .with_header(spec.has_header)
        .with_delimiter(dialect.delimiter)
        .with_quote(dialect.quote)
        .with_batch_size(batch_rows)
        .build_decoder();
    let follow = spec.live.as_ref().filter(|l| l.follow).map(|l| Follow {
        poll: Duration::from_millis(l.poll_ms),
        stop: Arc::clone(&flags.stop),
        caught_up: Arc::clone(&flags.caught_up),
    });
    let input = Box::new(TextReader::new(file, spec.encoding.0));
    let decoder = ExplainedDecoder { decoder, dialect };
    let reader: BatchIter = Box::new(LineReader::new(dataset, path.clone(), input, decoder, follow));
    let batches = if comma_columns.is_empty() {
        reader
    } else {
        decimal_comma::convert(dataset, reader, Arc::clone(&schema), comma_columns)
    };
    Ok(Opened { schema, row_count: None, batches })
}

/// The first [`INFER_SCHEMA_ROWS`] rows with every column read as text.
fn read_sample_as_text(
    file: &mut File,
    spec: &CsvSpec,
    format: &Format,
    inferred: &Schema,
) -> Result<Option<RecordBatch>, ArrowError> {
    let text_fields: Vec<Field> =
        inferred.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect();
    let mut reader = arrow_csv::ReaderBuilder::new(Arc::new(Schema::new(text_fields)))
        .with_format(format.clone())
        .with_batch_size(INFER_SCHEMA_ROWS)
        .build(TextReader::new(file.by_ref(), spec.encoding.0))?;
    reader.next().transpose()
}

/// arrow's CSV decoder, its errors explained with the dataset's dialect
/// (see [`Dialect::explain`]).
struct ExplainedDecoder {
    decoder: arrow_csv::reader::Decoder,
    dialect: Dialect,
}

impl PushDecoder for ExplainedDecoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        self.decoder.decode(bytes)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.decoder.flush()
    }
    fn error(&self, dataset: &str, error: ArrowError) -> SourceError {
        self.dialect.explain(dataset, error)
    }
}
