//! Live mode's watermark: the largest value of the watermark column seen so
//! far, sent as `$1` of the next run (in binary when the parameter has its
//! exact type, else as text), and the text of the first run's `$1`.

use arrow_array::{
    Array, ArrayRef, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    StringArray, TimestampMicrosecondArray,
};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::decode::{DecodeError, PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// `$1` for the first run when no `initial` is configured, in text format.
pub(super) fn lowest_text(ty: &Type) -> &'static str {
    match *ty {
        Type::INT2 => "-32768",
        Type::INT4 => "-2147483648",
        Type::INT8 => "-9223372036854775808",
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => "-Infinity",
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => "-infinity",
        _ => "",
    }
}

/// The last watermark value, sent as `$1`.
#[derive(Debug, Clone)]
pub(super) enum Watermark {
    /// Sent in text format; PostgreSQL parses it as the parameter's type.
    Text(String),
    Int(i64),
    Float(f64),
    /// Microseconds since 1970-01-01.
    TimestampMicros(i64),
    /// Days since 1970-01-01.
    Date(i32),
}

impl Watermark {
    pub(super) fn largest_in(array: &ArrayRef) -> Option<Watermark> {
        let any = array.as_any();
        if let Some(a) = any.downcast_ref::<Int16Array>() {
            return a.iter().flatten().max().map(|v| Watermark::Int(i64::from(v)));
        }
        if let Some(a) = any.downcast_ref::<Int32Array>() {
            return a.iter().flatten().max().map(|v| Watermark::Int(i64::from(v)));
        }
        if let Some(a) = any.downcast_ref::<Int64Array>() {
            return a.iter().flatten().max().map(Watermark::Int);
        }
        if let Some(a) = any.downcast_ref::<Float32Array>() {
            return a.iter().flatten().map(f64::from).reduce(f64::max).map(Watermark::Float);
        }
        if let Some(a) = any.downcast_ref::<Float64Array>() {
            return a.iter().flatten().reduce(f64::max).map(Watermark::Float);
        }
        if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
            return a.iter().flatten().max().map(Watermark::TimestampMicros);
        }
        if let Some(a) = any.downcast_ref::<Date32Array>() {
            return a.iter().flatten().max().map(Watermark::Date);
        }
        if let Some(a) = any.downcast_ref::<StringArray>() {
            return a.iter().flatten().max().map(|v| Watermark::Text(v.to_string()));
        }
        if let Some(a) = any.downcast_ref::<Decimal128Array>() {
            let best = (0..a.len()).filter(|i| a.is_valid(*i)).max_by_key(|i| a.value(*i))?;
            return Some(Watermark::Text(a.value_as_string(best)));
        }
        None
    }

    pub(super) fn greater_than(&self, other: &Watermark) -> bool {
        match (self, other) {
            (Watermark::Int(a), Watermark::Int(b)) => a > b,
            (Watermark::Float(a), Watermark::Float(b)) => a > b,
            (Watermark::TimestampMicros(a), Watermark::TimestampMicros(b)) => a > b,
            (Watermark::Date(a), Watermark::Date(b)) => a > b,
            (Watermark::Text(a), Watermark::Text(b)) => a > b,
            _ => true,
        }
    }
}

impl Watermark {
    /// Typed values go in binary when the parameter has their exact type;
    /// everything else goes as text and PostgreSQL parses it.
    fn is_binary_for(&self, ty: &Type) -> bool {
        matches!(
            (self, ty),
            (Watermark::Int(_), &Type::INT2 | &Type::INT4 | &Type::INT8)
                | (Watermark::TimestampMicros(_), &Type::TIMESTAMP | &Type::TIMESTAMPTZ)
                | (Watermark::Date(_), &Type::DATE)
        )
    }
}

impl ToSql for Watermark {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, DecodeError> {
        use bytes::BufMut;
        let mismatch = || -> DecodeError { format!("watermark {self:?} cannot be sent as {ty}").into() };
        if self.is_binary_for(ty) {
            match (self, ty) {
                (Watermark::Int(v), &Type::INT2) => out.put_i16(i16::try_from(*v).map_err(|_| mismatch())?),
                (Watermark::Int(v), &Type::INT4) => out.put_i32(i32::try_from(*v).map_err(|_| mismatch())?),
                (Watermark::Int(v), _) => out.put_i64(*v),
                (Watermark::TimestampMicros(v), _) => out.put_i64(v.saturating_sub(PG_EPOCH_MICROS)),
                (Watermark::Date(v), _) => out.put_i32(v.saturating_sub(PG_EPOCH_DAYS)),
                _ => return Err(mismatch()),
            }
        } else {
            match self {
                Watermark::Text(text) => out.put_slice(text.as_bytes()),
                Watermark::Int(v) => out.put_slice(v.to_string().as_bytes()),
                Watermark::Float(v) => out.put_slice(v.to_string().as_bytes()),
                Watermark::TimestampMicros(_) | Watermark::Date(_) => return Err(mismatch()),
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> postgres::types::Format {
        if self.is_binary_for(ty) {
            postgres::types::Format::Binary
        } else {
            postgres::types::Format::Text
        }
    }

    to_sql_checked!();
}
