//! Pre-sliced Arrow IPC encoding: record batches in, whole IPC messages out.
//!
//! [`IpcSlicer`] is sans-IO. It turns a schema and a sequence of record
//! batches into encapsulated IPC stream messages (continuation marker,
//! flatbuffer metadata, 8-byte aligned body), each a [`bytes::Bytes`] that
//! becomes one WebSocket frame: first the schema, then dictionary batches when
//! a dictionary is new or replaced, then record batches, then the
//! end-of-stream marker. Concatenating every emitted message gives a valid
//! Arrow IPC stream.
//!
//! Record-batch messages aim at `[min_message_bytes, max_message_bytes]`:
//! big batches are cut with zero-copy [`RecordBatch::slice`] sized from the
//! bytes per row of the batch, and a slice whose encoding still exceeds the
//! maximum is halved until it fits; small batches are concatenated until they
//! reach the minimum (unless coalescing is off, as for live streams, where
//! latency matters more than frame count). A single row bigger than the
//! maximum is sent alone. Dictionary messages are as large as their
//! dictionary. With compression the bounds are applied to the uncompressed
//! estimate, so compressed messages may fall below the minimum.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::writer::{
    write_message, DictionaryTracker, EncodedData, IpcDataGenerator, IpcWriteContext, IpcWriteOptions,
};
use arrow_ipc::{CompressionType, MetadataVersion};
use arrow_schema::{ArrowError, SchemaRef};
use bytes::Bytes;

use crate::config::{Compression, PerformanceConfig};

/// Body alignment of every message; the IPC format requires 8.
pub const BODY_ALIGNMENT_BYTES: usize = 8;
/// The end-of-stream marker: continuation 0xFFFFFFFF, then a zero length.
pub const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
/// Smallest accepted `max_message_bytes`: below this the metadata dominates.
pub const MESSAGE_BYTES_MAX_FLOOR: usize = 1024;
/// Share of `max_message_bytes` a slice aims at, in percent, so that a slightly
/// low bytes-per-row estimate rarely forces a second encoding.
const TARGET_PERCENT_OF_MAX: usize = 75;
/// Small batches are concatenated until their estimate reaches this share of
/// `min_message_bytes`, in percent: the in-memory estimate runs a few percent
/// above the encoded size, and a concatenation slightly past the minimum
/// still lands far below the maximum.
const COALESCE_PERCENT_OF_MIN: usize = 110;

/// What an encoded message carries; the gateway's frame header repeats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Schema,
    Dictionary,
    RecordBatch,
    EndOfStream,
}

/// One whole IPC message, ready to be one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    pub kind: MessageKind,
    /// Rows in a record batch message; 0 for every other kind.
    pub rows: u64,
    pub bytes: Bytes,
}

/// How to cut and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceOptions {
    /// Target maximum encoded record-batch message size, bytes.
    pub max_message_bytes: usize,
    /// Target minimum, bytes; small batches are concatenated up to it.
    pub min_message_bytes: usize,
    pub compression: Compression,
    /// Concatenate small batches (off for live streams, where each batch
    /// should leave as soon as it arrives).
    pub coalesce: bool,
}

impl SliceOptions {
    pub fn from_performance(performance: &PerformanceConfig) -> Self {
        Self {
            max_message_bytes: performance.max_chunk_bytes,
            min_message_bytes: performance.min_chunk_bytes,
            // Chosen per stream by the gateway (`do_get`), among the codecs offered.
            compression: Compression::None,
            coalesce: true,
        }
    }
}

impl Default for SliceOptions {
    fn default() -> Self {
        Self::from_performance(&PerformanceConfig::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("invalid slice options: {0}")]
    Options(String),
    #[error("batch schema does not match the stream schema")]
    SchemaMismatch,
    #[error("stream already finished")]
    Finished,
    #[error("arrow IPC encoding failed: {0}")]
    Arrow(#[from] ArrowError),
}

/// Encodes one stream; see the module docs.
pub struct IpcSlicer {
    schema: SchemaRef,
    options: SliceOptions,
    generator: IpcDataGenerator,
    tracker: DictionaryTracker,
    write_options: IpcWriteOptions,
    context: IpcWriteContext,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    schema_sent: bool,
    finished: bool,
}

impl std::fmt::Debug for IpcSlicer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcSlicer")
            .field("options", &self.options)
            .field("pending_rows", &self.pending.iter().map(RecordBatch::num_rows).sum::<usize>())
            .field("finished", &self.finished)
            .finish()
    }
}

impl IpcSlicer {
    pub fn new(schema: SchemaRef, options: SliceOptions) -> Result<Self, SliceError> {
        if options.max_message_bytes < MESSAGE_BYTES_MAX_FLOOR {
            return Err(SliceError::Options(format!(
                "max_message_bytes {} is below {MESSAGE_BYTES_MAX_FLOOR}",
                options.max_message_bytes
            )));
        }
        if options.min_message_bytes > options.max_message_bytes {
            return Err(SliceError::Options(format!(
                "min_message_bytes {} is above max_message_bytes {}",
                options.min_message_bytes, options.max_message_bytes
            )));
        }
        let compression = match options.compression {
            Compression::None => None,
            Compression::Lz4 => Some(CompressionType::LZ4_FRAME),
            Compression::Zstd => Some(CompressionType::ZSTD),
        };
        let write_options = IpcWriteOptions::try_new(BODY_ALIGNMENT_BYTES, false, MetadataVersion::V5)?
            .try_with_compression(compression)?;
        Ok(Self {
            schema,
            options,
            generator: IpcDataGenerator::default(),
            // Streams may replace dictionaries; only the file format forbids it.
            tracker: DictionaryTracker::new(false),
            write_options,
            context: IpcWriteContext::default(),
            pending: Vec::new(),
            pending_bytes: 0,
            schema_sent: false,
            finished: false,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Emits the schema message if it has not been emitted yet.
    pub fn start(&mut self, out: &mut Vec<EncodedMessage>) -> Result<(), SliceError> {
        if self.finished {
            return Err(SliceError::Finished);
        }
        if !self.schema_sent {
            let encoded = self.generator.schema_to_bytes_with_dictionary_tracker(
                &self.schema,
                &mut self.tracker,
                &self.write_options,
            );
            out.push(self.message(MessageKind::Schema, 0, encoded)?);
            self.schema_sent = true;
        }
        Ok(())
    }

    /// Adds a batch; may emit nothing (buffered), or several messages.
    pub fn push(&mut self, batch: RecordBatch, out: &mut Vec<EncodedMessage>) -> Result<(), SliceError> {
        self.start(out)?;
        if batch.schema().fields() != self.schema.fields() {
            return Err(SliceError::SchemaMismatch);
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let bytes = slice_bytes(&batch);
        if self.options.coalesce && bytes < self.options.min_message_bytes {
            self.pending.push(batch);
            self.pending_bytes = self.pending_bytes.saturating_add(bytes);
            let threshold = self.options.min_message_bytes / 100 * COALESCE_PERCENT_OF_MIN;
            if self.pending_bytes >= threshold.min(self.options.max_message_bytes / 2) {
                self.flush(out)?;
            }
            return Ok(());
        }
        self.flush(out)?;
        self.encode_sized(&batch, bytes, out)
    }

    /// Encodes whatever is buffered, e.g. when a live source has nothing more for now.
    pub fn flush(&mut self, out: &mut Vec<EncodedMessage>) -> Result<(), SliceError> {
        self.start(out)?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if pending.len() > 1 {
            // Some types (e.g. list views) cannot be concatenated: then the
            // small batches go out one by one, which is still a valid stream.
            if let Ok(batch) = arrow_select::concat::concat_batches(&self.schema, &pending) {
                let bytes = slice_bytes(&batch);
                return self.encode_sized(&batch, bytes, out);
            }
        }
        for batch in pending {
            let bytes = slice_bytes(&batch);
            self.encode_sized(&batch, bytes, out)?;
        }
        Ok(())
    }

    /// Flushes, then emits the end-of-stream marker. Later calls fail.
    pub fn finish(&mut self, out: &mut Vec<EncodedMessage>) -> Result<(), SliceError> {
        self.flush(out)?;
        out.push(EncodedMessage { kind: MessageKind::EndOfStream, rows: 0, bytes: Bytes::from_static(&END_OF_STREAM) });
        self.finished = true;
        Ok(())
    }

    fn encode_sized(
        &mut self,
        batch: &RecordBatch,
        bytes: usize,
        out: &mut Vec<EncodedMessage>,
    ) -> Result<(), SliceError> {
        let rows = batch.num_rows();
        let bytes_per_row = (bytes / rows.max(1)).max(1);
        let target_bytes = self.options.max_message_bytes / 100 * TARGET_PERCENT_OF_MAX;
        let rows_per_slice = (target_bytes / bytes_per_row).clamp(1, rows.max(1));
        let mut offset = 0;
        while offset < rows {
            let length = rows_per_slice.min(rows - offset);
            self.encode_bounded(&batch.slice(offset, length), out)?;
            offset += length;
        }
        Ok(())
    }

    /// Encodes a slice; halves it while its message exceeds the maximum.
    fn encode_bounded(&mut self, slice: &RecordBatch, out: &mut Vec<EncodedMessage>) -> Result<(), SliceError> {
        let (dictionaries, encoded) =
            self.generator.encode(slice, &mut self.tracker, &self.write_options, &mut self.context)?;
        // Dictionaries are now recorded in the tracker as sent, so they must
        // be emitted even if the batch itself is re-cut below.
        for dictionary in dictionaries {
            out.push(self.message(MessageKind::Dictionary, 0, dictionary)?);
        }
        let rows = slice.num_rows();
        let message_bytes = encoded.ipc_message.len() + encoded.arrow_data.len() + 8;
        if message_bytes > self.options.max_message_bytes && rows > 1 {
            let half = rows / 2;
            self.encode_bounded(&slice.slice(0, half), out)?;
            return self.encode_bounded(&slice.slice(half, rows - half), out);
        }
        let rows = u64::try_from(rows).map_err(|_| SliceError::Options("row count overflow".into()))?;
        out.push(self.message(MessageKind::RecordBatch, rows, encoded)?);
        Ok(())
    }

    fn message(&self, kind: MessageKind, rows: u64, encoded: EncodedData) -> Result<EncodedMessage, SliceError> {
        let mut buffer = Vec::with_capacity(encoded.ipc_message.len() + encoded.arrow_data.len() + 16);
        write_message(&mut buffer, encoded, &self.write_options)?;
        Ok(EncodedMessage { kind, rows, bytes: Bytes::from(buffer) })
    }
}

/// Bytes the visible rows of a batch occupy (slices count only their part).
/// Types arrow cannot measure per slice (e.g. views) count whole buffers,
/// which over-estimates: the halving in `encode_bounded` never needs it low.
pub fn slice_bytes(batch: &RecordBatch) -> usize {
    batch.columns().iter().fold(0usize, |total, column| {
        let data = column.to_data();
        let bytes = data.get_slice_memory_size().unwrap_or_else(|_| data.get_array_memory_size());
        total.saturating_add(bytes)
    })
}

/// Encodes a whole batch sequence at once (tests, small results).
pub fn encode_all(
    schema: SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
    options: SliceOptions,
) -> Result<Vec<EncodedMessage>, SliceError> {
    let mut slicer = IpcSlicer::new(Arc::clone(&schema), options)?;
    let mut out = Vec::new();
    slicer.start(&mut out)?;
    for batch in batches {
        slicer.push(batch, &mut out)?;
    }
    slicer.finish(&mut out)?;
    Ok(out)
}
