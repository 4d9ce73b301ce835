//! Batch comparison for tests that decode with arrow-rs.

use arrow_array::RecordBatch;

/// Asserts two batch sequences hold the same rows, whatever their batch boundaries.
pub fn assert_same_rows(expected: &[RecordBatch], actual: &[RecordBatch], what: &str) {
    let total = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert_eq!(total(expected), total(actual), "{what}: row count");
    let expected: Vec<&RecordBatch> = expected.iter().filter(|b| b.num_rows() > 0).collect();
    let actual: Vec<&RecordBatch> = actual.iter().filter(|b| b.num_rows() > 0).collect();
    let (mut i, mut j, mut a, mut b) = (0, 0, 0, 0);
    while i < expected.len() && j < actual.len() {
        let n = (expected[i].num_rows() - a).min(actual[j].num_rows() - b);
        let left = expected[i].slice(a, n);
        let right = actual[j].slice(b, n);
        for (column, (l, r)) in left.columns().iter().zip(right.columns()).enumerate() {
            assert_eq!(l.to_data(), r.to_data(), "{what}: column {column} differs");
        }
        a += n;
        b += n;
        if a == expected[i].num_rows() {
            i += 1;
            a = 0;
        }
        if b == actual[j].num_rows() {
            j += 1;
            b = 0;
        }
    }
}
