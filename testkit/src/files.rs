//! Files for tests: the shared test data, temp dirs, and the generated large
//! Parquet dataset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable naming the shared test data folder.
pub const TESTDATA_ENV: &str = "VOLLEY_TESTDATA";

/// `$VOLLEY_TESTDATA`, else `../shared/testdata` from the checkout's root
/// (a `shared` folder beside the checkout).
pub fn testdata() -> PathBuf {
    std::env::var_os(TESTDATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"))
}

/// The 100-row CSV of the shared test data.
pub fn aggregate_csv() -> PathBuf {
    testdata().join("csv/aggregate_test_100.csv")
}

/// An 8-row Parquet file of the shared test data.
pub fn alltypes_parquet() -> PathBuf {
    testdata().join("parquet/alltypes_plain.parquet")
}

/// A directory under the system's temp dir, removed on drop. Created with
/// the process's umask (unlike `tempfile`'s 0700), so that a container's or
/// a service's user can read what a test puts there.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory whose name carries `tag`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "volley-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}

/// Rows of the generated large dataset.
pub const BIG_ROWS: usize = 200_000;

/// A 200k-row Parquet file written by pyarrow (`scripts/data/big_parquet.py`):
/// an int64 id, a float64, a dictionary-encoded string and a plain string.
///
/// The script is deterministic, so the file is kept in the system's temp dir
/// under a name made of the script's hash and the row count, and written
/// once for every test process that asks (written to a name of its own, then
/// renamed into place, so processes running at once do not see half a file).
pub fn big_parquet() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/data/big_parquet.py");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).expect("read big_parquet.py").hash(&mut hasher);
        let path = std::env::temp_dir().join(format!("volley-big-{BIG_ROWS}-{:016x}.parquet", hasher.finish()));
        if !path.exists() {
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            let output = Command::new("python3")
                .arg(&script)
                .arg(&partial)
                .arg(BIG_ROWS.to_string())
                .output()
                .expect("python3 runs");
            assert!(output.status.success(), "generating the big Parquet: {}", String::from_utf8_lossy(&output.stderr));
            std::fs::rename(&partial, &path).expect("rename the big Parquet into place");
        }
        path
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_fresh_apart_and_removed_on_drop() {
        let a = TempDir::new("kit");
        let b = TempDir::new("kit");
        assert_ne!(a.path(), b.path());
        let file = write_file(&a, "x.txt", b"x");
        assert_eq!(std::fs::read(&file).expect("read"), b"x");
        let kept = a.path().to_owned();
        drop(a);
        assert!(!kept.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn the_shared_test_data_is_found() {
        assert!(aggregate_csv().is_file(), "{} (set {TESTDATA_ENV})", aggregate_csv().display());
        assert!(alltypes_parquet().is_file(), "{}", alltypes_parquet().display());
    }
}
