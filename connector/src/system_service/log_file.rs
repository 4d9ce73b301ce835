//! The service's log file: a service has no console, so its log goes to a
//! file that never grows past a configured size (one previous generation is
//! kept).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{ServiceError, LOG_FILE_BYTES_MAX_FLOOR, LOG_FILE_PREVIOUS_SUFFIX};

/// A log file that is rotated when it reaches `bytes_max`: the current file
/// is renamed to `<path>.1` (replacing the previous one) and a new file is
/// started, so the log never takes more than about twice `bytes_max` of disk.
/// Opening appends to an existing file and counts its bytes, so a service
/// that restarts in a loop does not grow it either. A single write larger
/// than `bytes_max` is written whole into a fresh file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    written_bytes: u64,
    bytes_max: u64,
}

impl LogFile {
    /// Opens (creating it and its directory if needed) the log file at `path`.
    pub fn open(path: &Path, bytes_max: u64) -> Result<LogFile, ServiceError> {
        if bytes_max < LOG_FILE_BYTES_MAX_FLOOR {
            return Err(ServiceError::LogLimit { bytes: bytes_max });
        }
        let io_error = |source| ServiceError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error)?;
        let written_bytes = file.metadata().map_err(io_error)?.len();
        Ok(LogFile { path: path.to_path_buf(), file, written_bytes, bytes_max })
    }

    /// Where the previous generation goes.
    pub fn previous_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(LOG_FILE_PREVIOUS_SUFFIX);
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let previous = self.previous_path();
        // Windows refuses to rename onto an existing file.
        match std::fs::remove_file(&previous) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&self.path, &previous)?;
        self.file = OpenOptions::new().create(true).write(true).truncate(true).open(&self.path)?;
        self.written_bytes = 0;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let incoming = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written_bytes > 0 && self.written_bytes.saturating_add(incoming) > self.bytes_max {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.written_bytes = self.written_bytes.saturating_add(u64::try_from(written).unwrap_or(u64::MAX));
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn log_file_rotates_at_its_limit_and_keeps_one_previous_generation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs").join("connector.log");
        let limit = LOG_FILE_BYTES_MAX_FLOOR;
        let mut log = LogFile::open(&path, limit).expect("open");
        let line = format!("{}\n", "a".repeat(1023)); // 1 KiB per line
        let lines_per_file = usize::try_from(limit / 1024).expect("small");
        for index in 0..lines_per_file * 3 + 1 {
            log.write_all(format!("{:06}{}", index, &line[6..]).as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        let current = read(&path);
        let previous = read(&log.previous_path());
        assert_eq!(current.len(), 1024, "one line after the third rotation");
        assert!(current.starts_with(&format!("{:06}", lines_per_file * 3)), "newest line in the current file");
        assert_eq!(u64::try_from(previous.len()).ok(), Some(limit), "previous generation is full");
        assert!(previous.starts_with(&format!("{:06}", lines_per_file * 2)), "previous holds the lines before");
        let files = std::fs::read_dir(path.parent().expect("dir")).expect("list").count();
        assert_eq!(files, 2, "never more than the current file and one previous");
    }

    #[test]
    fn log_file_reopened_counts_what_it_already_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("connector.log");
        let limit = LOG_FILE_BYTES_MAX_FLOOR;
        std::fs::write(&path, vec![b'x'; usize::try_from(limit - 10).expect("small")]).expect("seed the file");
        let mut log = LogFile::open(&path, limit).expect("open");
        log.write_all(b"0123456789").expect("fits exactly");
        assert!(!log.previous_path().exists(), "not rotated at exactly the limit");
        log.write_all(b"!").expect("one byte more");
        assert!(log.previous_path().exists(), "rotated: the existing bytes were counted");
        assert_eq!(read(&path), "!");
    }

    #[test]
    fn log_file_refuses_a_limit_below_the_floor() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = LogFile::open(&dir.path().join("x.log"), 1024).expect_err("too small");
        assert!(matches!(error, ServiceError::LogLimit { bytes: 1024 }));
    }
}
