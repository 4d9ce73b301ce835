//! pyarrow as the independent reader of the IPC streams Volley writes: a
//! reader that shares no code with arrow-rs.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `script` with `python3 -c` and `args`; its standard output.
fn python(script: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Vec<u8> {
    let output = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 runs");
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Runs pyarrow on IPC stream files; returns one `rows checksum` line per file.
pub fn pyarrow_summary(paths: &[&Path]) -> Vec<String> {
    let script = r#"
import sys, hashlib, pyarrow.ipc as ipc
for p in sys.argv[1:]:
    with open(p, 'rb') as f:
        t = ipc.open_stream(f).read_all()
    h = hashlib.sha256()
    for name in t.column_names:
        h.update(name.encode())
        h.update(repr(t.column(name).to_pylist()).encode())
    print(t.num_rows, t.num_columns, h.hexdigest())
"#;
    String::from_utf8(python(script, paths)).expect("utf8").lines().map(str::to_owned).collect()
}

/// What pyarrow says about an IPC stream, compared with its own read of a source file.
#[derive(Debug)]
pub struct PyarrowCheck {
    /// Rows of the IPC stream.
    pub rows: u64,
    /// Rows of the source file.
    pub source_rows: u64,
    /// The IPC stream's columns.
    pub columns: Vec<String>,
    /// Columns whose values differ from the source's (after casting to the source's type).
    pub mismatches: Vec<String>,
    /// Sum of the checksum column: (IPC, source).
    pub checksum: (f64, f64),
}

/// Reads `ipc` (an IPC stream file) with pyarrow and compares every column
/// with pyarrow's own read of `source` (`csv` or `parquet`); `checksum_column`
/// is summed on both sides.
pub fn pyarrow_compare(ipc: &Path, kind: &str, source: &Path, checksum_column: &str) -> PyarrowCheck {
    let script = r#"
import sys, json, hashlib
import pyarrow as pa, pyarrow.ipc as ipc, pyarrow.csv as pcsv, pyarrow.parquet as pq, pyarrow.compute as pc
ipc_path, kind, src, col = sys.argv[1:5]
with open(ipc_path, 'rb') as f:
    t = ipc.open_stream(f).read_all()
s = pcsv.read_csv(src) if kind == 'csv' else pq.read_table(src)
def digest(c):
    if pa.types.is_dictionary(c.type):
        c = c.cast(c.type.value_type)
    return hashlib.sha256(repr(c.to_pylist()).encode()).hexdigest()
mismatches = []
for name in s.column_names:
    if name not in t.column_names:
        mismatches.append(name + ': missing')
        continue
    a, b = t.column(name), s.column(name)
    if a.type != b.type:
        try:
            a = a.cast(b.type)
        except Exception as e:
            mismatches.append(f'{name}: {a.type} vs {b.type}: {e}')
            continue
    if digest(a) != digest(b):
        mismatches.append(f'{name}: values differ ({t.schema.field(name).type} vs {b.type})')
def total(table):
    v = pc.sum(table.column(col)).as_py()
    return float(v or 0)
print(json.dumps({'rows': t.num_rows, 'source_rows': s.num_rows, 'columns': t.column_names,
                  'mismatches': mismatches, 'checksum': [total(t), total(s)]}))
"#;
    let args = [ipc.as_os_str(), OsStr::new(kind), source.as_os_str(), OsStr::new(checksum_column)];
    let v: Value = serde_json::from_slice(&python(script, args)).expect("pyarrow prints JSON");
    PyarrowCheck {
        rows: v["rows"].as_u64().expect("rows"),
        source_rows: v["source_rows"].as_u64().expect("source_rows"),
        columns: v["columns"].as_array().expect("columns").iter().map(|c| c.as_str().unwrap_or("").into()).collect(),
        mismatches: v["mismatches"]
            .as_array()
            .expect("mismatches")
            .iter()
            .map(|c| c.as_str().unwrap_or("").into())
            .collect(),
        checksum: (v["checksum"][0].as_f64().expect("sum"), v["checksum"][1].as_f64().expect("sum")),
    }
}

/// pyarrow's read of an IPC stream: (rows, the values of `column` as JSON).
pub fn pyarrow_read(ipc: &Path, column: &str) -> (u64, Vec<Value>) {
    let script = r#"
import sys, json, pyarrow.ipc as ipc
with open(sys.argv[1], 'rb') as f:
    t = ipc.open_stream(f).read_all()
print(json.dumps({'rows': t.num_rows, 'values': [str(v) for v in t.column(sys.argv[2]).to_pylist()]}))
"#;
    let v: Value =
        serde_json::from_slice(&python(script, [ipc.as_os_str(), OsStr::new(column)])).expect("pyarrow prints JSON");
    (v["rows"].as_u64().expect("rows"), v["values"].as_array().expect("values").clone())
}
