//! Data sources: open a configured dataset by name, get its schema, an
//! optional cheap row count, and a streaming iterator of record batches.
//!
//! One file per kind: [`csv`], [`ndjson`] (both built on the line-framed
//! reader in [`delimited`], which also implements follow mode; CSV dialects
//! use [`encoding`] for text that is not UTF-8, [`decimal_comma`] for
//! `decimal: ","` and [`csv_hint`] to say what to change), [`parquet`],
//! [`arrow`] (IPC file or stream), [`postgres`] (one-shot or watermark
//! polling) and `odbc` (only with the `odbc` cargo feature). No source loads
//! a whole table: each reads at most a batch (plus a bounded read-ahead) at a
//! time.
//!
//! [`Catalog`] is the only way in: a request names a dataset, and anything
//! that is not a configured name (paths, SQL text, `../..`) is refused.
//! [`OpenDataset::into_ipc`] turns an opened dataset into pre-sliced IPC
//! messages ([`IpcStream`]). A live dataset runs until its [`StopFlag`] is set.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
// Covers every source below: the gateway names the dataset, and file
// contents and database answers are input the connector does not control.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod arrow;
pub mod csv;
pub mod csv_hint;
pub mod decimal_comma;
pub mod delimited;
pub mod encoding;
pub mod ndjson;
#[cfg(feature = "odbc")]
pub mod odbc;
pub mod parquet;
pub mod postgres;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

use crate::config::{Config, SourceSpec};
use volley_protocol::tunnel::HISTORY_FRAME_OVERHEAD_BYTES;

use crate::slice::{EncodedMessage, IpcSlicer, MessageKind, SliceError, SliceOptions};

/// Set to `true` to stop a dataset stream (a live one otherwise never ends).
pub type StopFlag = Arc<AtomicBool>;

/// A streaming sequence of record batches. Ends after the first error.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, SourceError>> + Send>;

/// A dataset could not be opened or read; every variant names the dataset.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The requested name is not a configured dataset (this is also the
    /// answer to paths and SQL text).
    #[error("unknown dataset `{name}`: only configured dataset names can be requested")]
    UnknownDataset { name: String },
    #[error("dataset `{dataset}`: cannot read {}: {source}", path.display())]
    Io {
        dataset: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset `{dataset}`: {source}")]
    Arrow {
        dataset: String,
        #[source]
        source: ArrowError,
    },
    #[error("dataset `{dataset}`: parquet: {source}")]
    Parquet {
        dataset: String,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("dataset `{dataset}`: postgres: {source}")]
    Postgres {
        dataset: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("dataset `{dataset}`: odbc: {message}")]
    Odbc { dataset: String, message: String },
    /// The data is valid but not something we serve (e.g. big-endian IPC,
    /// an unsupported SQL column type).
    #[error("dataset `{dataset}`: unsupported: {reason}")]
    Unsupported { dataset: String, reason: String },
    /// The data is malformed or does not match the configured schema.
    #[error("dataset `{dataset}`: {reason}")]
    Invalid { dataset: String, reason: String },
    /// A producer thread ended without saying why.
    #[error("dataset `{dataset}`: reader thread ended unexpectedly")]
    ReaderGone { dataset: String },
}

impl SourceError {
    pub(crate) fn arrow(dataset: &str, source: ArrowError) -> Self {
        SourceError::Arrow { dataset: dataset.to_string(), source }
    }
    pub(crate) fn io(dataset: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        SourceError::Io { dataset: dataset.to_string(), path: path.to_path_buf(), source }
    }
    pub(crate) fn invalid(dataset: &str, reason: impl Into<String>) -> Self {
        SourceError::Invalid { dataset: dataset.to_string(), reason: reason.into() }
    }
    pub(crate) fn unsupported(dataset: &str, reason: impl Into<String>) -> Self {
        SourceError::Unsupported { dataset: dataset.to_string(), reason: reason.into() }
    }
}

/// The flags a source shares with whoever reads it.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Set by the reader: stop (a live source ends at its next poll).
    pub stop: StopFlag,
    /// Set by a followed file when it first reaches its end: what came
    /// before is the dataset's history ([`IpcStream`] bounds it).
    pub caught_up: StopFlag,
}

/// What a source module returns from `open`.
pub struct Opened {
    pub schema: SchemaRef,
    /// Exact row count when it is cheap to know (file metadata), else `None`.
    pub row_count: Option<u64>,
    pub batches: BatchIter,
}

/// An opened dataset: schema and row count are known, batches not yet read.
pub struct OpenDataset {
    name: String,
    schema: SchemaRef,
    row_count: Option<u64>,
    live: bool,
    batches: BatchIter,
    stop: StopFlag,
    /// A followed file's "caught up" flag ([`Flags::caught_up`]); `None`
    /// for sources that do not tell history from new data.
    history_edge: Option<StopFlag>,
}

impl std::fmt::Debug for OpenDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDataset")
            .field("name", &self.name)
            .field("row_count", &self.row_count)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl OpenDataset {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    /// Exact total rows when cheap to know (Parquet metadata, Arrow file footer).
    pub fn row_count(&self) -> Option<u64> {
        self.row_count
    }
    /// True for follow / polling datasets, which end only when stopped.
    pub fn is_live(&self) -> bool {
        self.live
    }
    /// The flag that stops this dataset; clone it before consuming `self`.
    pub fn stop_flag(&self) -> StopFlag {
        Arc::clone(&self.stop)
    }
    /// The raw batches.
    pub fn into_batches(self) -> BatchIter {
        self.batches
    }
    /// Pre-sliced IPC messages: schema first (available at once, before any
    /// batch is read), then dictionaries and batches, then end-of-stream.
    /// Live datasets do not coalesce small batches, so each leaves at once.
    ///
    /// `history_bytes` (live streams, `do_get`'s): of a followed file's rows
    /// from before its end when the stream began, only the newest record
    /// batch messages within this many bytes, each counted with
    /// [`HISTORY_FRAME_OVERHEAD_BYTES`], are sent — all at once when the
    /// end is reached — then new rows as they come. Sources that cannot
    /// tell history from new data (SQL polling) send all of it.
    pub fn into_ipc(self, mut options: SliceOptions, history_bytes: Option<u64>) -> Result<IpcStream, SliceError> {
        if self.live {
            options.coalesce = false;
        }
        let history = match (self.live, history_bytes, self.history_edge) {
            (true, Some(budget), Some(caught_up)) => {
                Some(History { budget, held: VecDeque::new(), batch_bytes: 0, caught_up })
            }
            _ => None,
        };
        let mut slicer = IpcSlicer::new(Arc::clone(&self.schema), options)?;
        let mut queue = Vec::new();
        slicer.start(&mut queue)?;
        Ok(IpcStream {
            name: self.name,
            batches: self.batches,
            slicer,
            queue: queue.into(),
            stop: self.stop,
            live: self.live,
            history,
            done: false,
        })
    }
}

/// Errors while producing IPC messages.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("dataset `{dataset}`: {source}")]
    Slice {
        dataset: String,
        #[source]
        source: SliceError,
    },
}

/// Iterator of encoded IPC messages for one dataset. Blocking: a live
/// dataset's `next` waits for new data (checking its stop flag at every poll).
/// After the stop flag is set it flushes, emits end-of-stream and ends. After
/// an error it ends without end-of-stream (the receiver must treat the
/// stream as failed).
pub struct IpcStream {
    name: String,
    batches: BatchIter,
    slicer: IpcSlicer,
    queue: VecDeque<EncodedMessage>,
    stop: StopFlag,
    live: bool,
    /// Holding a followed file's history back until its end is reached.
    history: Option<History>,
    done: bool,
}

/// A followed file's history, held until the file's end is first reached:
/// dictionaries and schema in order, record batches only the newest within
/// `budget` (see [`OpenDataset::into_ipc`]).
struct History {
    budget: u64,
    held: VecDeque<EncodedMessage>,
    /// The held record batches' bytes, each with [`HISTORY_FRAME_OVERHEAD_BYTES`].
    batch_bytes: u64,
    caught_up: StopFlag,
}

impl History {
    fn cost(message: &EncodedMessage) -> u64 {
        (message.bytes.len() as u64).saturating_add(HISTORY_FRAME_OVERHEAD_BYTES)
    }

    /// Holds `messages`, dropping the oldest record batches beyond the budget.
    fn hold(&mut self, messages: Vec<EncodedMessage>) {
        for message in messages {
            if message.kind == MessageKind::RecordBatch {
                self.batch_bytes = self.batch_bytes.saturating_add(Self::cost(&message));
            }
            self.held.push_back(message);
        }
        while self.batch_bytes > self.budget {
            let Some(oldest) = self.held.iter().position(|m| m.kind == MessageKind::RecordBatch) else { break };
            if let Some(dropped) = self.held.remove(oldest) {
                self.batch_bytes = self.batch_bytes.saturating_sub(Self::cost(&dropped));
            }
        }
    }
}

impl IpcStream {
    pub fn stop_flag(&self) -> StopFlag {
        Arc::clone(&self.stop)
    }
    pub fn schema(&self) -> &SchemaRef {
        self.slicer.schema()
    }

    fn slice_error(&mut self, source: SliceError) -> Option<Result<EncodedMessage, StreamError>> {
        self.done = true;
        self.queue.clear();
        Some(Err(StreamError::Slice { dataset: self.name.clone(), source }))
    }
}

impl Iterator for IpcStream {
    type Item = Result<EncodedMessage, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some(Ok(message));
            }
            if self.done {
                return None;
            }
            let mut out = Vec::new();
            let step = if self.stop.load(Ordering::Acquire) {
                self.done = true;
                self.slicer.finish(&mut out)
            } else {
                match self.batches.next() {
                    Some(Ok(batch)) => {
                        let pushed = self.slicer.push(batch, &mut out);
                        if self.live && pushed.is_ok() {
                            self.slicer.flush(&mut out)
                        } else {
                            pushed
                        }
                    }
                    Some(Err(error)) => {
                        self.done = true;
                        return Some(Err(StreamError::Source(error)));
                    }
                    None => {
                        self.done = true;
                        self.slicer.finish(&mut out)
                    }
                }
            };
            if let Err(error) = step {
                return self.slice_error(error);
            }
            match self.history.as_mut() {
                Some(history) => {
                    history.hold(out);
                    // The end of the file was reached (or the stream is
                    // over): the history goes out, then rows as they come.
                    if history.caught_up.load(Ordering::Acquire) || self.done {
                        self.queue.extend(history.held.drain(..));
                        self.history = None;
                    }
                }
                None => self.queue.extend(out),
            }
        }
    }
}

/// The configured datasets; the only door from a request to data.
#[derive(Debug, Clone)]
pub struct Catalog {
    datasets: Arc<BTreeMap<String, SourceSpec>>,
}

impl Catalog {
    pub fn new(config: &Config) -> Self {
        Self { datasets: Arc::new(config.datasets.clone()) }
    }

    /// Dataset names, for `register`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.datasets.keys().map(String::as_str)
    }

    pub fn spec(&self, name: &str) -> Option<&SourceSpec> {
        self.datasets.get(name)
    }

    /// Opens a dataset by its configured name. Anything else is refused with
    /// [`SourceError::UnknownDataset`]: the name is looked up exactly, never
    /// interpreted as a path or query.
    pub fn open(&self, name: &str) -> Result<OpenDataset, SourceError> {
        let spec = self.datasets.get(name).ok_or_else(|| SourceError::UnknownDataset { name: printable(name) })?;
        let flags = Flags::default();
        let opened = open_spec(name, spec, &flags)?;
        let follows_file = matches!(spec, SourceSpec::Csv(_) | SourceSpec::Json(_)) && spec.is_live();
        Ok(OpenDataset {
            name: name.to_string(),
            schema: opened.schema,
            row_count: opened.row_count,
            live: spec.is_live(),
            batches: opened.batches,
            stop: flags.stop,
            history_edge: follows_file.then_some(flags.caught_up),
        })
    }
}

/// Opens one source definition (also usable without a catalog, e.g. `--test`).
pub fn open_spec(name: &str, spec: &SourceSpec, flags: &Flags) -> Result<Opened, SourceError> {
    let batch_rows = spec.batch_rows();
    let stop = &flags.stop;
    match spec {
        SourceSpec::Csv(s) => csv::open(name, s, batch_rows, flags),
        SourceSpec::Json(s) => ndjson::open(name, s, batch_rows, flags),
        SourceSpec::Parquet(s) => parquet::open(name, s, batch_rows),
        SourceSpec::Arrow(s) => arrow::open(name, &s.path),
        SourceSpec::Postgres(s) => postgres::open(name, s, batch_rows, stop),
        #[cfg(feature = "odbc")]
        SourceSpec::Odbc(s) => odbc::open(name, s, batch_rows),
        // Config loading refuses these already; a spec built by hand gets the same answer.
        #[cfg(not(feature = "odbc"))]
        SourceSpec::Odbc(_) => Err(SourceError::Unsupported {
            dataset: name.to_string(),
            reason: crate::config::ODBC_NOT_BUILT.to_string(),
        }),
    }
}

/// A requested name shown in an error: truncated and without control characters.
fn printable(name: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 64;
    name.chars().take(SHOWN_CHARS_MAX).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Sleeps up to `total`, waking early when `stop` is set; returns true if stopped.
pub(crate) fn sleep_unless_stopped(stop: &StopFlag, total: Duration) -> bool {
    const SLICE: Duration = Duration::from_millis(20);
    let mut left = total;
    while !left.is_zero() {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        let step = left.min(SLICE);
        std::thread::sleep(step);
        left = left.saturating_sub(step);
    }
    stop.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    /// The tunnel moves streams onto its own threads.
    #[test]
    fn streams_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<super::OpenDataset>();
        assert_send::<super::IpcStream>();
        assert_send::<super::Catalog>();
    }
}
