//! Cross-check with an independent reader: the concatenated sliced stream
//! (plain, LZ4 and ZSTD, with dictionaries) is read by pyarrow, which must
//! see the same rows, sum and dictionary values.

use std::process::Command;
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use volley_connector::config::Compression;
use volley_connector::slice::{encode_all, SliceOptions};

fn pyarrow_available() -> bool {
    Command::new("python3").args(["-c", "import pyarrow"]).output().map(|o| o.status.success()).unwrap_or(false)
}

const SCRIPT: &str = r#"
import sys, pyarrow as pa, pyarrow.ipc as ipc
with open(sys.argv[1], 'rb') as f:
    reader = ipc.open_stream(f)
    table = reader.read_all()
total = sum(v for v in table.column('id').to_pylist())
labels = set(table.column('label').to_pylist())
print(table.num_rows, total, ','.join(sorted(labels)))
"#;

#[test]
fn pyarrow_reads_the_sliced_stream() {
    if !pyarrow_available() {
        eprintln!("SKIP: python3 with pyarrow is not installed (pip install pyarrow)");
        return;
    }
    let rows = 300_000i64;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let batches: Vec<RecordBatch> = (0..3)
        .map(|part| {
            let start = part * (rows / 3);
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(start..start + rows / 3));
            let labels: DictionaryArray<Int32Type> = (start..start + rows / 3)
                .map(|i| ["alpha", "beta", "gamma"][usize::try_from(i % 3).unwrap()])
                .collect();
            let text: ArrayRef =
                Arc::new(StringArray::from_iter_values((start..start + rows / 3).map(|i| format!("t{i}"))));
            RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(labels), text]).unwrap()
        })
        .collect();
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let options =
            SliceOptions { max_message_bytes: 256 * 1024, min_message_bytes: 16 * 1024, compression, coalesce: true };
        let messages = encode_all(schema.clone(), batches.clone(), options).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sliced.arrows");
        let bytes: Vec<u8> = messages.iter().flat_map(|m| m.bytes.iter().copied()).collect();
        std::fs::write(&path, bytes).unwrap();
        let output = Command::new("python3").arg("-c").arg(SCRIPT).arg(&path).output().unwrap();
        assert!(
            output.status.success(),
            "pyarrow failed ({compression:?}): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected_sum: i64 = (0..rows).sum();
        assert_eq!(stdout.trim(), format!("{rows} {expected_sum} alpha,beta,gamma"), "{compression:?}");
    }
}
