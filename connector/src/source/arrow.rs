//! Arrow IPC files: the `ARROW1` magic selects the file format (random
//! access, row count summed from the record-batch headers named in the
//! footer), anything else is read as a stream. Big-endian data is refused:
//! arrow-rs cannot decode it and browsers would show wrong values.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_ipc::Endianness;

use super::{Opened, SourceError};

/// Magic at the start and end of an Arrow IPC file.
pub const FILE_MAGIC: &[u8; 6] = b"ARROW1";
/// Largest flatbuffer metadata we read ourselves (schema peek, footer,
/// batch headers), bytes: a declared length is checked against it before
/// allocating.
pub const METADATA_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most record-batch blocks a file footer may list for the cheap row count.
pub const FILE_BLOCKS_MAX: usize = 1_000_000;
const CONTINUATION: [u8; 4] = [0xFF; 4];

pub fn open(dataset: &str, path: &Path) -> Result<Opened, SourceError> {
    let io_error = |e| SourceError::io(dataset, path, e);
    let mut file = File::open(path).map_err(io_error)?;
    let mut magic = [0u8; 6];
    let is_file = match file.read_exact(&mut magic) {
        Ok(()) => &magic == FILE_MAGIC,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(io_error(e)),
    };
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let owned = dataset.to_string();
    if is_file {
        let row_count = file_row_count(&mut file).ok().flatten();
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        let reader = FileReader::try_new_buffered(file, None).map_err(|e| SourceError::arrow(dataset, e))?;
        let schema = reader.schema();
        let batches = reader.map(move |r| r.map_err(|e| SourceError::arrow(&owned, e)));
        Ok(Opened { schema, row_count, batches: Box::new(batches) })
    } else {
        if stream_is_big_endian(&mut file).unwrap_or(false) {
            return Err(SourceError::unsupported(dataset, "big-endian Arrow IPC (browsers would decode wrong values)"));
        }
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        let reader = StreamReader::try_new_buffered(file, None).map_err(|e| SourceError::arrow(dataset, e))?;
        let schema = reader.schema();
        let batches = reader.map(move |r| r.map_err(|e| SourceError::arrow(&owned, e)));
        Ok(Opened { schema, row_count: None, batches: Box::new(batches) })
    }
}

/// Reads one encapsulated message's metadata at the current position
/// (with or without the 0xFFFFFFFF continuation marker). `None` at end of stream.
fn read_metadata(reader: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut word = [0u8; 4];
    reader.read_exact(&mut word)?;
    if word == CONTINUATION {
        reader.read_exact(&mut word)?;
    }
    let length = usize::try_from(i32::from_le_bytes(word)).map_err(|_| invalid("negative length"))?;
    if length == 0 {
        return Ok(None);
    }
    if length > METADATA_BYTES_MAX {
        return Err(invalid("metadata too long"));
    }
    let mut metadata = vec![0u8; length];
    reader.read_exact(&mut metadata)?;
    Ok(Some(metadata))
}

fn invalid(reason: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
}

/// True when the stream's schema message says big-endian.
fn stream_is_big_endian(file: &mut File) -> std::io::Result<bool> {
    let Some(metadata) = read_metadata(file)? else {
        return Ok(false);
    };
    let message = arrow_ipc::root_as_message(&metadata).map_err(|_| invalid("bad message"))?;
    Ok(message.header_as_schema().is_some_and(|schema| schema.endianness() == Endianness::Big))
}

/// Sums the `length` of every record batch listed in the footer, reading only
/// their metadata. `None` when the file is not well formed (the reader will
/// then report the real error).
fn file_row_count(file: &mut File) -> std::io::Result<Option<u64>> {
    let file_length = file.seek(SeekFrom::End(0))?;
    // trailer: footer length (i32) + magic
    let trailer_start = file_length.checked_sub(10).ok_or_else(|| invalid("too short"))?;
    file.seek(SeekFrom::Start(trailer_start))?;
    let mut trailer = [0u8; 10];
    file.read_exact(&mut trailer)?;
    let mut length_bytes = [0u8; 4];
    length_bytes.copy_from_slice(&trailer[..4]);
    let footer_length = usize::try_from(i32::from_le_bytes(length_bytes)).map_err(|_| invalid("negative footer"))?;
    if footer_length > METADATA_BYTES_MAX {
        return Err(invalid("footer too long"));
    }
    let footer_start = trailer_start
        .checked_sub(u64::try_from(footer_length).map_err(|_| invalid("footer"))?)
        .ok_or_else(|| invalid("footer before start"))?;
    file.seek(SeekFrom::Start(footer_start))?;
    let mut footer_bytes = vec![0u8; footer_length];
    file.read_exact(&mut footer_bytes)?;
    let footer = arrow_ipc::root_as_footer(&footer_bytes).map_err(|_| invalid("bad footer"))?;
    let Some(blocks) = footer.recordBatches() else {
        return Ok(Some(0));
    };
    if blocks.len() > FILE_BLOCKS_MAX {
        return Ok(None);
    }
    let mut reader = BufReader::new(file);
    let mut rows = 0u64;
    for block in blocks.iter() {
        let offset = u64::try_from(block.offset()).map_err(|_| invalid("negative offset"))?;
        reader.seek(SeekFrom::Start(offset))?;
        let Some(metadata) = read_metadata(&mut reader)? else {
            return Ok(None);
        };
        let message = arrow_ipc::root_as_message(&metadata).map_err(|_| invalid("bad message"))?;
        let Some(batch) = message.header_as_record_batch() else {
            return Ok(None);
        };
        let length = u64::try_from(batch.length()).map_err(|_| invalid("negative length"))?;
        rows = rows.checked_add(length).ok_or_else(|| invalid("row overflow"))?;
    }
    Ok(Some(rows))
}
