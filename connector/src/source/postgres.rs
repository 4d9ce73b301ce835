//! PostgreSQL: a query streamed through a portal, `batch_rows` rows per
//! fetch, on a producer thread that owns the connection and hands batches
//! over a bounded channel (so at most [`CHANNEL_BATCHES`] batches wait in
//! memory, and dropping the iterator ends the query).
//!
//! Types: int2/int4/int8 → Int16/32/64, float4/float8 → Float32/64,
//! numeric(p,s) with p ≤ 38 → Decimal128(p,s), unconstrained or wider
//! numeric → Float64 (lossy; cast in SQL for exact text), text/varchar/
//! bpchar/name → Utf8, bool, date → Date32, timestamp → Timestamp(µs),
//! timestamptz → Timestamp(µs, "UTC"), bytea → Binary. Other types are
//! refused by name at open time; cast them in the query (`col::text`).
//! Infinite dates/timestamps become the extreme representable values; numeric
//! NaN/±Infinity become null in a decimal column.
//!
//! Live mode (`live: {interval_ms, watermark}`) re-runs the query every
//! `interval_ms` with `$1` = the largest value of the watermark column seen
//! so far (the first run uses `initial`, sent as text, or the lowest value of
//! the parameter's type). Text watermarks compare in Rust byte order.
//! Connections are plain TCP (no TLS).

use std::error::Error as StdError;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Row, Statement};

use super::{sleep_unless_stopped, Opened, SourceError, StopFlag};
use crate::config::PostgresSpec;

/// Batches buffered between the database thread and the consumer.
pub const CHANNEL_BATCHES: usize = 2;
/// Time allowed to connect to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Days from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Widest numeric precision that fits Decimal128.
const DECIMAL128_PRECISION_MAX: i32 = 38;

type Message = Result<RecordBatch, SourceError>;

pub fn open(dataset: &str, spec: &PostgresSpec, batch_rows: usize, stop: &StopFlag) -> Result<Opened, SourceError> {
    let (schema_tx, schema_rx) = mpsc::sync_channel::<Result<SchemaRef, SourceError>>(1);
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Message>(CHANNEL_BATCHES);
    let job = Job { dataset: dataset.to_string(), spec: spec.clone(), batch_rows, stop: Arc::clone(stop) };
    std::thread::Builder::new()
        .name(format!("pg-{dataset}"))
        .spawn(move || job.run(schema_tx, batch_tx))
        .map_err(|e| SourceError::invalid(dataset, format!("cannot start reader thread: {e}")))?;
    let schema = schema_rx.recv().map_err(|_| SourceError::ReaderGone { dataset: dataset.to_string() })??;
    Ok(Opened { schema, row_count: None, batches: Box::new(ChannelBatches { receiver: batch_rx }) })
}

/// The consumer end: ends when the producer thread drops its sender.
struct ChannelBatches {
    receiver: Receiver<Message>,
}

impl Iterator for ChannelBatches {
    type Item = Message;
    fn next(&mut self) -> Option<Message> {
        self.receiver.recv().ok()
    }
}

struct Job {
    dataset: String,
    spec: PostgresSpec,
    batch_rows: usize,
    stop: StopFlag,
}

impl Job {
    fn pg_error(&self, source: postgres::Error) -> SourceError {
        SourceError::Postgres { dataset: self.dataset.clone(), source }
    }

    fn run(self, schema_tx: SyncSender<Result<SchemaRef, SourceError>>, batches: SyncSender<Message>) {
        let setup = self.connect_and_prepare();
        let (mut client, statement, columns, schema) = match setup {
            Ok(parts) => parts,
            Err(e) => {
                // The opener may be gone already; nothing else to tell.
                let _ = schema_tx.send(Err(e));
                return;
            }
        };
        if schema_tx.send(Ok(Arc::clone(&schema))).is_err() {
            return;
        }
        drop(schema_tx);
        let result = match &self.spec.live {
            None => self.run_once(&mut client, &statement, &columns, &schema, &[], &batches).map(|_| ()),
            Some(_) => self.run_polling(&mut client, &statement, &columns, &schema, &batches),
        };
        if let Err(e) = result {
            let _ = batches.send(Err(e));
        }
    }

    fn connect_and_prepare(&self) -> Result<(Client, Statement, Vec<ColumnKind>, SchemaRef), SourceError> {
        let mut config: postgres::Config = self.spec.url.parse().map_err(|e| self.pg_error(e))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let mut client = config.connect(NoTls).map_err(|e| self.pg_error(e))?;
        let statement = client.prepare(&self.spec.query).map_err(|e| self.pg_error(e))?;
        let expected_params = usize::from(self.spec.live.is_some());
        if statement.params().len() != expected_params {
            return Err(SourceError::invalid(
                &self.dataset,
                format!(
                    "the query has {} parameters; expected {expected_params} ($1 only in live mode)",
                    statement.params().len()
                ),
            ));
        }
        let mut kinds = Vec::new();
        let mut fields = Vec::new();
        for column in statement.columns() {
            let kind = ColumnKind::of(column.type_(), column.type_modifier()).ok_or_else(|| {
                SourceError::unsupported(
                    &self.dataset,
                    format!(
                        "column `{}` has type {}; cast it in the query (e.g. `{}::text`)",
                        column.name(),
                        column.type_(),
                        column.name()
                    ),
                )
            })?;
            fields.push(Field::new(column.name(), kind.data_type(), true));
            kinds.push(kind);
        }
        Ok((client, statement, kinds, Arc::new(Schema::new(fields))))
    }

    /// Runs the statement once; returns the largest watermark seen (live mode).
    fn run_once(
        &self,
        client: &mut Client,
        statement: &Statement,
        columns: &[ColumnKind],
        schema: &SchemaRef,
        params: &[&(dyn ToSql + Sync)],
        batches: &SyncSender<Message>,
    ) -> Result<Option<Watermark>, SourceError> {
        let watermark_index = self.spec.live.as_ref().and_then(|live| schema.index_of(&live.watermark).ok());
        let fetch_rows = i32::try_from(self.batch_rows).unwrap_or(i32::MAX);
        let mut transaction = client.transaction().map_err(|e| self.pg_error(e))?;
        let portal = transaction.bind(statement, params).map_err(|e| self.pg_error(e))?;
        let mut largest: Option<Watermark> = None;
        loop {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let rows = transaction.query_portal(&portal, fetch_rows).map_err(|e| self.pg_error(e))?;
            if rows.is_empty() {
                break;
            }
            let complete = rows.len() < self.batch_rows;
            let batch = rows_to_batch(schema, columns, &rows)
                .map_err(|e| SourceError::invalid(&self.dataset, e.to_string()))?;
            if let Some(index) = watermark_index {
                if let Some(candidate) = Watermark::largest_in(batch.column(index)) {
                    largest = Some(match largest {
                        Some(current) if !candidate.greater_than(&current) => current,
                        _ => candidate,
                    });
                }
            }
            if batches.send(Ok(batch)).is_err() {
                break; // consumer gone: rolling back ends the query
            }
            if complete {
                break;
            }
        }
        transaction.commit().map_err(|e| self.pg_error(e))?;
        Ok(largest)
    }

    fn run_polling(
        &self,
        client: &mut Client,
        statement: &Statement,
        columns: &[ColumnKind],
        schema: &SchemaRef,
        batches: &SyncSender<Message>,
    ) -> Result<(), SourceError> {
        let Some(live) = &self.spec.live else {
            return Ok(());
        };
        if schema.index_of(&live.watermark).is_err() {
            return Err(SourceError::invalid(
                &self.dataset,
                format!("watermark column `{}` is not in the query result", live.watermark),
            ));
        }
        let param_type = statement.params().first().cloned().unwrap_or(Type::TEXT);
        let mut watermark = match &live.initial {
            Some(text) => Watermark::Text(text.clone()),
            None => Watermark::Text(lowest_text(&param_type).to_string()),
        };
        let interval = Duration::from_millis(live.interval_ms);
        loop {
            let found = self.run_once(client, statement, columns, schema, &[&watermark], batches)?;
            if let Some(found) = found {
                watermark = found;
            }
            if sleep_unless_stopped(&self.stop, interval) {
                return Ok(());
            }
        }
    }
}

/// `$1` for the first run when no `initial` is configured, in text format.
fn lowest_text(ty: &Type) -> &'static str {
    match *ty {
        Type::INT2 => "-32768",
        Type::INT4 => "-2147483648",
        Type::INT8 => "-9223372036854775808",
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => "-Infinity",
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => "-infinity",
        _ => "",
    }
}

/// How one result column is read and what Arrow type it becomes.
#[derive(Debug, Clone, Copy)]
enum ColumnKind {
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
    fn of(ty: &Type, type_modifier: i32) -> Option<Self> {
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

    fn data_type(self) -> DataType {
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

fn rows_to_batch(
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

type DecodeError = Box<dyn StdError + Sync + Send>;

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(raw).map_err(|_| format!("expected {N} bytes, got {}", raw.len()).into())
}

/// date → days since 1970-01-01.
struct PgDate(i32);

impl<'a> FromSql<'a> for PgDate {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        let days = i32::from_be_bytes(fixed::<4>(raw)?);
        Ok(PgDate(days.saturating_add(PG_EPOCH_DAYS)))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

/// timestamp/timestamptz → microseconds since 1970-01-01 UTC.
struct PgTimestamp(i64);

impl<'a> FromSql<'a> for PgTimestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        let micros = i64::from_be_bytes(fixed::<8>(raw)?);
        Ok(PgTimestamp(micros.saturating_add(PG_EPOCH_MICROS)))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ
    }
}

/// numeric in PostgreSQL's binary form: base-10000 digits, a weight (power of
/// 10000 of the first digit), a sign and a display scale.
struct PgNumeric {
    digits: Vec<i16>,
    weight: i16,
    sign: u16,
}

const NUMERIC_POSITIVE: u16 = 0x0000;
const NUMERIC_NEGATIVE: u16 = 0x4000;
/// Most base-10000 digits accepted (PostgreSQL's own limit is 131072 + 16383 decimal digits).
const NUMERIC_DIGITS_MAX: usize = 40_000;

impl<'a> FromSql<'a> for PgNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        // Header: digit count, weight, sign, display scale (unused), 2 bytes each.
        let Some((&[c0, c1, w0, w1, s0, s1, _, _], body)) = raw.split_first_chunk::<8>() else {
            return Err("numeric shorter than its header".into());
        };
        let count = usize::from(u16::from_be_bytes([c0, c1]));
        let weight = i16::from_be_bytes([w0, w1]);
        let sign = u16::from_be_bytes([s0, s1]);
        if count > NUMERIC_DIGITS_MAX {
            return Err("numeric has too many digits".into());
        }
        if body.len() != count * 2 {
            return Err("numeric digit count does not match its length".into());
        }
        // Every chunk of `chunks_exact(2)` has two bytes, so none is skipped.
        let digits =
            body.chunks_exact(2).filter_map(|pair| pair.first_chunk().copied()).map(i16::from_be_bytes).collect();
        Ok(PgNumeric { digits, weight, sign })
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl PgNumeric {
    fn is_finite(&self) -> bool {
        self.sign == NUMERIC_POSITIVE || self.sign == NUMERIC_NEGATIVE
    }

    fn to_f64(&self) -> Option<f64> {
        match self.sign {
            NUMERIC_POSITIVE | NUMERIC_NEGATIVE => {}
            0xD000 => return Some(f64::INFINITY),
            0xF000 => return Some(f64::NEG_INFINITY),
            _ => return Some(f64::NAN),
        }
        let mut value = 0.0f64;
        for (position, digit) in self.digits.iter().enumerate() {
            let exponent = i32::from(self.weight) - i32::try_from(position).ok()?;
            value += f64::from(*digit) * 10_000f64.powi(exponent);
        }
        Some(if self.sign == NUMERIC_NEGATIVE { -value } else { value })
    }

    /// The value times 10^scale, or `None` for NaN/±Infinity.
    fn to_i128(&self, scale: i32) -> Result<Option<i128>, DecodeError> {
        if !self.is_finite() {
            return Ok(None);
        }
        let overflow = || -> DecodeError { "numeric value does not fit Decimal128".into() };
        let mut mantissa: i128 = 0;
        for digit in &self.digits {
            mantissa =
                mantissa.checked_mul(10_000).and_then(|m| m.checked_add(i128::from(*digit))).ok_or_else(overflow)?;
        }
        let count = i32::try_from(self.digits.len()).map_err(|_| overflow())?;
        // mantissa × 10000^(weight − count + 1) × 10^scale
        let exponent = 4 * (i32::from(self.weight) - count + 1) + scale;
        let magnitude = if exponent >= 0 {
            let factor = 10i128.checked_pow(u32::try_from(exponent).map_err(|_| overflow())?).ok_or_else(overflow)?;
            mantissa.checked_mul(factor).ok_or_else(overflow)?
        } else {
            match 10i128.checked_pow(exponent.unsigned_abs()) {
                Some(divisor) => mantissa / divisor,
                None => 0,
            }
        };
        Ok(Some(if self.sign == NUMERIC_NEGATIVE { -magnitude } else { magnitude }))
    }
}

/// The last watermark value, sent as `$1`.
#[derive(Debug, Clone)]
enum Watermark {
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
    fn largest_in(array: &ArrayRef) -> Option<Watermark> {
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

    fn greater_than(&self, other: &Watermark) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[i16], weight: i16, sign: u16) -> PgNumeric {
        PgNumeric { digits: digits.to_vec(), weight, sign }
    }

    #[test]
    fn numeric_binary_form_converts_to_decimal_and_float() {
        // 12345.678 = [1, 2345, 6780] with weight 1
        let n = numeric(&[1, 2345, 6780], 1, NUMERIC_POSITIVE);
        assert_eq!(n.to_i128(3).unwrap(), Some(12_345_678));
        assert_eq!(n.to_i128(0).unwrap(), Some(12_345));
        assert!((n.to_f64().unwrap() - 12_345.678).abs() < 1e-9);
        // -0.0005 = [5] with weight -1
        let n = numeric(&[5], -1, NUMERIC_NEGATIVE);
        assert_eq!(n.to_i128(4).unwrap(), Some(-5));
        // 2e12 = [2] with weight 3
        assert_eq!(numeric(&[2], 3, NUMERIC_POSITIVE).to_i128(2).unwrap(), Some(200_000_000_000_000));
        // NaN becomes null, overflow is an error
        assert_eq!(numeric(&[], 0, 0xC000).to_i128(2).unwrap(), None);
        assert!(numeric(&[9999; 12], 11, NUMERIC_POSITIVE).to_i128(2).is_err());
    }

    #[test]
    fn numeric_decoder_checks_lengths() {
        assert!(PgNumeric::from_sql(&Type::NUMERIC, &[0, 1]).is_err());
        // declares 2 digits, carries 1
        assert!(PgNumeric::from_sql(&Type::NUMERIC, &[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(PgDate::from_sql(&Type::DATE, &[0, 0, 1]).is_err());
    }

    #[test]
    fn numeric_typmod_selects_decimal_or_float() {
        let typmod = |p: i32, s: i32| ((p << 16) | s) + 4;
        assert!(matches!(numeric_kind(typmod(12, 3)), ColumnKind::Decimal { precision: 12, scale: 3 }));
        assert!(matches!(numeric_kind(-1), ColumnKind::NumericAsFloat));
        assert!(matches!(numeric_kind(typmod(60, 2)), ColumnKind::NumericAsFloat));
    }
}
