//! Line-framed file reading shared by CSV and NDJSON, including follow mode.
//!
//! Bytes are read from the file (for CSV through its text decoding, see
//! [`super::encoding`]) in bounded chunks and handed to a push
//! decoder (arrow's CSV or JSON `Decoder`) only up to the last complete line,
//! so a partial last line is held back until its newline arrives. At end of
//! file a plain dataset feeds the final unterminated line and ends; a
//! followed dataset flushes what it has, then polls the file for appended
//! bytes every `poll_ms` until its stop flag is set. Follow mode assumes
//! records do not contain newlines inside quoted fields.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use super::{sleep_unless_stopped, SourceError, StopFlag};

/// Bytes read from the file per read call.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest accepted line, bytes: a file without newlines must not make us
/// buffer it whole.
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The part of arrow's CSV and JSON decoders we use.
pub trait PushDecoder: Send {
    /// Consumes a prefix of `bytes`; stops early when a batch is full.
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError>;
    /// Emits the rows decoded so far, if any.
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
    /// The error a dataset reports for a decoding failure.
    fn error(&self, dataset: &str, error: ArrowError) -> SourceError {
        SourceError::arrow(dataset, error)
    }
}

impl PushDecoder for arrow_csv::reader::Decoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        arrow_csv::reader::Decoder::decode(self, bytes)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        arrow_csv::reader::Decoder::flush(self)
    }
}

impl PushDecoder for arrow_json::reader::Decoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        arrow_json::reader::Decoder::decode(self, bytes)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        arrow_json::reader::Decoder::flush(self)
    }
}

/// Follow-mode settings.
#[derive(Debug, Clone)]
pub struct Follow {
    pub poll: Duration,
    pub stop: StopFlag,
    /// Set when the file's end is first reached: every row before it is
    /// history (see [`super::IpcStream`]). To hand that moment over even
    /// when no rows are pending then, the reader yields one empty batch.
    pub caught_up: StopFlag,
}

/// Iterator of batches over a line-framed file.
pub struct LineReader<D> {
    dataset: String,
    path: PathBuf,
    input: Box<dyn Read + Send>,
    decoder: D,
    /// Read but not yet consumed bytes; starts at `start`.
    buffer: Vec<u8>,
    start: usize,
    /// The final unterminated line may be fed (plain mode at EOF).
    at_end: bool,
    follow: Option<Follow>,
    /// The schema of the batches produced so far (for the empty batch
    /// that marks the end of the history).
    schema: Option<arrow_schema::SchemaRef>,
    done: bool,
}

impl<D: PushDecoder> LineReader<D> {
    /// `input` reads the file at `path` (named in I/O errors).
    pub fn new(dataset: &str, path: PathBuf, input: Box<dyn Read + Send>, decoder: D, follow: Option<Follow>) -> Self {
        Self {
            dataset: dataset.to_string(),
            path,
            input,
            decoder,
            buffer: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            at_end: false,
            follow,
            schema: None,
            done: false,
        }
    }

    fn step(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        loop {
            // `start` only grows by what the decoder consumed of this tail.
            let pending = self.buffer.get(self.start..).unwrap_or_default();
            // Whole lines only, unless the last line may go too.
            let feedable = if self.at_end {
                pending
            } else {
                pending.iter().rposition(|&b| b == b'\n').and_then(|i| pending.get(..=i)).unwrap_or_default()
            };
            if !feedable.is_empty() {
                let consumed = self.decoder.decode(feedable).map_err(|e| self.decoder.error(&self.dataset, e))?;
                self.start += consumed;
                if consumed < feedable.len() {
                    // The decoder's batch is full.
                    if let Some(batch) = self.flush()? {
                        return Ok(Some(batch));
                    }
                    continue;
                }
            }
            if self.at_end {
                return self.flush();
            }
            // Compact, then read more.
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            if self.buffer.len() > LINE_BYTES_MAX {
                return Err(SourceError::invalid(
                    &self.dataset,
                    format!("a line is longer than {LINE_BYTES_MAX} bytes"),
                ));
            }
            let filled = self.buffer.len();
            self.buffer.resize(filled + READ_CHUNK_BYTES, 0);
            // In bounds: the buffer was just resized to `filled` + a chunk.
            #[allow(clippy::indexing_slicing)]
            let read = self.input.read(&mut self.buffer[filled..]);
            let read = match read {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.buffer.truncate(filled);
                    return Err(SourceError::io(&self.dataset, &self.path, e));
                }
            };
            self.buffer.truncate(filled + read);
            if read > 0 {
                continue;
            }
            // End of file for now.
            match self.follow.clone() {
                None => {
                    // The decoders need the last record terminated.
                    if self.buffer.len() > self.start && self.buffer.last() != Some(&b'\n') {
                        self.buffer.push(b'\n');
                    }
                    self.at_end = true;
                }
                Some(Follow { poll, stop, caught_up }) => {
                    let first_end = !caught_up.swap(true, Ordering::AcqRel);
                    if let Some(batch) = self.flush()? {
                        return Ok(Some(batch));
                    }
                    if first_end {
                        if let Some(schema) = &self.schema {
                            return Ok(Some(RecordBatch::new_empty(schema.clone())));
                        }
                    }
                    if stop.load(Ordering::Acquire) || sleep_unless_stopped(&stop, poll) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        let flushed = self.decoder.flush().map_err(|e| self.decoder.error(&self.dataset, e))?;
        if let (None, Some(batch)) = (&self.schema, &flushed) {
            self.schema = Some(batch.schema());
        }
        Ok(flushed)
    }
}

impl<D: PushDecoder> Iterator for LineReader<D> {
    type Item = Result<RecordBatch, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
