//! A timed pass and the medians of a side's passes: the connector's own
//! pass (open by name, slice to IPC, count and drop each message) is timed
//! here; the pyarrow side's passes come back from its script.

use std::time::Instant;

use serde_json::{json, Value};
use volley_connector::slice::{MessageKind, SliceOptions};
use volley_connector::Catalog;

/// Bytes in the MB of every "MB/s" figure.
const MB: f64 = 1e6;

/// One timed pass.
#[derive(Debug, Clone, Default)]
pub(super) struct Pass {
    pub(super) rows: u64,
    pub(super) ipc_bytes: u64,
    pub(super) messages: u64,
    pub(super) record_batch_messages: u64,
    pub(super) seconds: f64,
    pub(super) cpu_seconds: Option<f64>,
    /// The schema the reader produced, `name: type, …`.
    pub(super) schema: String,
}

/// The connector's path: open the dataset by name, slice to IPC, drop each message.
pub(super) fn volley_pass(catalog: &Catalog, name: &str) -> Result<Pass, String> {
    let cpu_before = crate::procfs::cpu_seconds(std::process::id());
    let started = Instant::now();
    let stream = catalog
        .open(name)
        .map_err(|e| e.to_string())?
        .into_ipc(SliceOptions::default(), None)
        .map_err(|e| e.to_string())?;
    let mut pass = Pass {
        schema: stream
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", "),
        ..Pass::default()
    };
    for message in stream {
        let message = message.map_err(|e| e.to_string())?;
        pass.rows += message.rows;
        pass.ipc_bytes += message.bytes.len() as u64;
        pass.messages += 1;
        if message.kind == MessageKind::RecordBatch {
            pass.record_batch_messages += 1;
        }
    }
    pass.seconds = started.elapsed().as_secs_f64();
    pass.cpu_seconds =
        crate::procfs::cpu_seconds(std::process::id()).zip(cpu_before).map(|(after, before)| after - before);
    Ok(pass)
}

/// The median of the finite values (NaN when there are none).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Median figures of a side's passes.
pub(super) fn summary(passes: &[Pass], source_bytes: u64) -> Value {
    let seconds = median(&passes.iter().map(|p| p.seconds).collect::<Vec<_>>());
    let rows = passes.first().map_or(0, |p| p.rows);
    let ipc_bytes = passes.first().map_or(0, |p| p.ipc_bytes);
    let cpu: Vec<f64> = passes.iter().filter_map(|p| p.cpu_seconds).collect();
    json!({
        "rows": rows,
        "ipc_bytes": ipc_bytes,
        "median_seconds": seconds,
        "rows_per_s": rows as f64 / seconds,
        "ipc_mb_per_s": ipc_bytes as f64 / MB / seconds,
        "source_mb_per_s": source_bytes as f64 / MB / seconds,
        "median_cpu_seconds": if cpu.is_empty() { Value::Null } else { json!(median(&cpu)) },
        "samples_seconds": passes.iter().map(|p| p.seconds).collect::<Vec<_>>(),
        "samples_cpu_seconds": passes.iter().map(|p| p.cpu_seconds).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
