//! Result columns: which PostgreSQL types are read and as what Arrow type
//! ([`ColumnKind`]), and a fetched set of rows built into a record batch.

use std::error::Error as StdError;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use postgres::types::{FromSql, Type};
use postgres::Row;

use super::decode::{PgDate, PgNumeric, PgTimestamp};

/// Widest numeric precision that fits Decimal128.
const DECIMAL128_PRECISION_MAX: i32 = 38;

/// How one result column is read and what Arrow type it becomes.
#[derive(Debug, Clone, Copy)]
pub(super) enum ColumnKind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Decimal { precision: u8, scale: i8 },
    NumericAsFloat,
    Text,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
}

impl ColumnKind {
    pub(super) fn of(ty: &Type, type_modifier: i32) -> Option<Self> {
        Some(match *ty {
            Type::BOOL => ColumnKind::Bool,
            Type::INT2 => ColumnKind::Int16,
            Type::INT4 => ColumnKind::Int32,
            Type::INT8 => ColumnKind::Int64,
            Type::FLOAT4 => ColumnKind::Float32,
            Type::FLOAT8 => ColumnKind::Float64,
            Type::NUMERIC => numeric_kind(type_modifier),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => ColumnKind::Text,
            Type::BYTEA => ColumnKind::Bytea,
            Type::DATE => ColumnKind::Date,
            Type::TIMESTAMP => ColumnKind::Timestamp,
            Type::TIMESTAMPTZ => ColumnKind::TimestampTz,
            _ => return None,
        })
    }

    pub(super) fn data_type(self) -> DataType {
        match self {
            ColumnKind::Bool => DataType::Boolean,
            ColumnKind::Int16 => DataType::Int16,
            ColumnKind::Int32 => DataType::Int32,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Float32 => DataType::Float32,
            ColumnKind::Float64 | ColumnKind::NumericAsFloat => DataType::Float64,
            ColumnKind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnKind::Text => DataType::Utf8,
            ColumnKind::Bytea => DataType::Binary,
            ColumnKind::Date => DataType::Date32,
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnKind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// numeric typmod is ((precision << 16) | scale) + 4, or -1 when unconstrained.
fn numeric_kind(type_modifier: i32) -> ColumnKind {
    const VARHDRSZ: i32 = 4;
    if type_modifier < VARHDRSZ {
        return ColumnKind::NumericAsFloat;
    }
    let packed = type_modifier - VARHDRSZ;
    let precision = (packed >> 16) & 0xFFFF;
    let scale = packed & 0xFFFF;
    match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(p), Ok(s)) if precision <= DECIMAL128_PRECISION_MAX && p >= 1 && scale <= precision => {
            ColumnKind::Decimal { precision: p, scale: s }
        }
        _ => ColumnKind::NumericAsFloat,
    }
}

pub(super) fn rows_to_batch(
    schema: &SchemaRef,
    columns: &[ColumnKind],
    rows: &[Row],
) -> Result<RecordBatch, Box<dyn StdError + Send + Sync>> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (index, kind) in columns.iter().enumerate() {
        arrays.push(build_column(*kind, rows, index)?);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}

fn build_column(kind: ColumnKind, rows: &[Row], index: usize) -> Result<ArrayRef, Box<dyn StdError + Send + Sync>> {
    fn values<'a, T: FromSql<'a>>(
        rows: &'a [Row],
        index: usize,
    ) -> impl Iterator<Item = Result<Option<T>, postgres::Error>> + 'a {
        rows.iter().map(move |row| row.try_get::<_, Option<T>>(index))
    }
    Ok(match kind {
        ColumnKind::Bool => Arc::new(values::<bool>(rows, index).collect::<Result<BooleanArray, _>>()?),
        ColumnKind::Int16 => Arc::new(values::<i16>(rows, index).collect::<Result<Int16Array, _>>()?),
        ColumnKind::Int32 => Arc::new(values::<i32>(rows, index).collect::<Result<Int32Array, _>>()?),
        ColumnKind::Int64 => Arc::new(values::<i64>(rows, index).collect::<Result<Int64Array, _>>()?),
        ColumnKind::Float32 => Arc::new(values::<f32>(rows, index).collect::<Result<Float32Array, _>>()?),
        ColumnKind::Float64 => Arc::new(values::<f64>(rows, index).collect::<Result<Float64Array, _>>()?),
        ColumnKind::NumericAsFloat => Arc::new(
            values::<PgNumeric>(rows, index)
                .map(|v| v.map(|o| o.and_then(|n| n.to_f64())))
                .collect::<Result<Float64Array, _>>()?,
        ),
        ColumnKind::Decimal { precision, scale } => {
            let mut decoded = Vec::with_capacity(rows.len());
            for value in values::<PgNumeric>(rows, index) {
                decoded.push(match value? {
                    Some(n) => n.to_i128(i32::from(scale))?,
                    None => None,
                });
            }
            Arc::new(Decimal128Array::from(decoded).with_precision_and_scale(precision, scale)?)
        }
        ColumnKind::Text => Arc::new(values::<&str>(rows, index).collect::<Result<StringArray, _>>()?),
        ColumnKind::Bytea => Arc::new(values::<&[u8]>(rows, index).collect::<Result<BinaryArray, _>>()?),
        ColumnKind::Date => Arc::new(
            values::<PgDate>(rows, index).map(|v| v.map(|o| o.map(|d| d.0))).collect::<Result<Date32Array, _>>()?,
        ),
        ColumnKind::Timestamp | ColumnKind::TimestampTz => {
            let array = values::<PgTimestamp>(rows, index)
                .map(|v| v.map(|o| o.map(|t| t.0)))
                .collect::<Result<TimestampMicrosecondArray, _>>()?;
            if matches!(kind, ColumnKind::TimestampTz) {
                Arc::new(array.with_timezone("UTC"))
            } else {
                Arc::new(array)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmod_selects_decimal_or_float() {
        let typmod = |p: i32, s: i32| ((p << 16) | s) + 4;
        assert!(matches!(numeric_kind(typmod(12, 3)), ColumnKind::Decimal { precision: 12, scale: 3 }));
        assert!(matches!(numeric_kind(-1), ColumnKind::NumericAsFloat));
        assert!(matches!(numeric_kind(typmod(60, 2)), ColumnKind::NumericAsFloat));
    }
}
