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
//!
//! Files: this one opens the query and runs it (one-shot or polling) on the
//! reader thread; `columns` maps result columns to Arrow types and builds
//! each batch; `decode` reads PostgreSQL's binary date, timestamp and numeric
//! values; `watermark` keeps the largest value seen and sends it as `$1`.

mod columns;
mod decode;
mod watermark;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{sleep_unless_stopped, Opened, SourceError, StopFlag};
use crate::config::PostgresSpec;

use columns::{rows_to_batch, ColumnKind};
use watermark::{lowest_text, Watermark};

/// Batches buffered between the database thread and the consumer.
pub const CHANNEL_BATCHES: usize = 2;
/// Time allowed to connect to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
