//! Numbers written with a decimal comma (`decimal: ","`), as Spanish and
//! other European spreadsheets export them: `12,5`.
//!
//! arrow's CSV reader knows only the decimal point, and rewriting the text
//! before it parses would also rewrite commas inside text columns. So the
//! reader reads such columns as text, and this module turns them into
//! floats batch by batch:
//!
//! - without `schema:`, a column arrow inferred as text becomes float64
//!   when every non-empty value in the inference sample is a decimal-comma
//!   number ([`is_comma_number`]) — the same rule pyarrow applies with
//!   `decimal_point=","`; columns arrow inferred as integers stay integers;
//! - with `schema:`, its float32/float64 columns are the decimal-comma ones.
//!
//! A value further down that is not such a number fails the stream with
//! the column, the value and the row, as arrow does for a bad number.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{BatchIter, SourceError};

/// Longest part of a bad value quoted in an error, in characters.
const SHOWN_VALUE_CHARS_MAX: usize = 40;

/// `[+-]? (digits [, digits*] | , digits) ([eE] [+-]? digits)?` — no
/// thousands separators, no decimal point, no spaces.
pub fn is_comma_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if bytes.get(i) == Some(&b',') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

fn parse<T: std::str::FromStr>(text: &str) -> Option<T> {
    if !is_comma_number(text) {
        return None;
    }
    text.replacen(',', ".", 1).parse().ok()
}

/// The columns of `inferred` that arrow read as text and whose values in
/// `sample` (the same rows read with every column as text) are all
/// decimal-comma numbers, at least one of them present; with the schema
/// where those columns are float64.
pub fn infer(inferred: &Schema, sample: Option<&RecordBatch>) -> (SchemaRef, Vec<usize>) {
    let mut columns = Vec::new();
    let mut fields: Vec<Field> = inferred.fields().iter().map(|f| f.as_ref().clone()).collect();
    if let Some(sample) = sample {
        for (index, field) in fields.iter_mut().enumerate() {
            if field.data_type() != &DataType::Utf8 {
                continue;
            }
            let Some(values) = sample.columns().get(index).and_then(|c| c.as_any().downcast_ref::<StringArray>())
            else {
                continue;
            };
            let present: Vec<&str> = values.iter().flatten().filter(|v| !v.is_empty()).collect();
            if !present.is_empty() && present.iter().all(|v| is_comma_number(v)) {
                *field = field.clone().with_data_type(DataType::Float64);
                columns.push(index);
            }
        }
    }
    (Arc::new(Schema::new_with_metadata(fields, inferred.metadata().clone())), columns)
}

/// The float columns of a `schema:` override.
pub fn float_columns(schema: &Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.data_type(), DataType::Float32 | DataType::Float64))
        .map(|(i, _)| i)
        .collect()
}

/// `schema` with `columns` as text: what arrow's reader is asked to read.
pub fn as_text(schema: &Schema, columns: &[usize]) -> SchemaRef {
    let fields: Vec<Field> =
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if columns.contains(&i) {
                    f.as_ref().clone().with_data_type(DataType::Utf8)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Batches read with [`as_text`]'s schema, turned into `schema`'s.
pub fn convert(dataset: &str, batches: BatchIter, schema: SchemaRef, columns: Vec<usize>) -> BatchIter {
    let dataset = dataset.to_owned();
    let mut rows_before: u64 = 0;
    Box::new(batches.map(move |batch| {
        let batch = batch?;
        let converted = convert_batch(&dataset, &batch, &schema, &columns, rows_before);
        rows_before += u64::try_from(batch.num_rows()).unwrap_or(u64::MAX);
        converted
    }))
}

fn convert_batch(
    dataset: &str,
    batch: &RecordBatch,
    schema: &SchemaRef,
    columns: &[usize],
    rows_before: u64,
) -> Result<RecordBatch, SourceError> {
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for &index in columns {
        let field = schema.field(index);
        let text = arrays
            .get(index)
            .and_then(|a| a.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| SourceError::invalid(dataset, format!("column `{}` was not read as text", field.name())))?;
        let bad = |row: usize, value: &str| {
            let shown: String = value.chars().take(SHOWN_VALUE_CHARS_MAX).collect();
            let row = rows_before.saturating_add(u64::try_from(row).unwrap_or(u64::MAX)).saturating_add(1);
            SourceError::invalid(
                dataset,
                format!(
                    "column `{}`: `{shown}` in data row {row} is not a number with a decimal comma \
                     (decimal: \",\"; no thousands separators)",
                    field.name()
                ),
            )
        };
        let parsed: ArrayRef = match field.data_type() {
            DataType::Float32 => Arc::new(parse_column::<f32>(text, &bad)?.into_iter().collect::<Float32Array>()),
            _ => Arc::new(parse_column::<f64>(text, &bad)?.into_iter().collect::<Float64Array>()),
        };
        if let Some(slot) = arrays.get_mut(index) {
            *slot = parsed;
        }
    }
    RecordBatch::try_new(Arc::clone(schema), arrays).map_err(|e| SourceError::arrow(dataset, e))
}

/// Every value of `text` parsed (empty and null: null); the first bad one is an error.
fn parse_column<T: std::str::FromStr>(
    text: &StringArray,
    bad: &dyn Fn(usize, &str) -> SourceError,
) -> Result<Vec<Option<T>>, SourceError> {
    text.iter()
        .enumerate()
        .map(|(row, value)| match value {
            None | Some("") => Ok(None),
            Some(value) => parse(value).map(Some).ok_or_else(|| bad(row, value)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves.
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn decimal_comma_numbers_are_recognised_strictly() {
        for good in ["12,5", "-7,25", "1000", "+3", ",25", "-1,", "4,0e2", "1E-3"] {
            assert!(is_comma_number(good), "{good}");
        }
        for bad in ["", ",", "-", "1.5", "1.000,5", "1 000", "12,5 ", "abc", "1e", "1,2,3", "nan", "e5"] {
            assert!(!is_comma_number(bad), "{bad}");
        }
        assert_eq!(parse::<f64>("-7,25"), Some(-7.25));
        assert_eq!(parse::<f64>(",25"), Some(0.25));
        assert_eq!(parse::<f64>("4,0e2"), Some(400.0));
        assert_eq!(parse::<f32>("0,1"), Some(0.1f32));
        assert_eq!(parse::<f64>("1.5"), None);
    }
}
