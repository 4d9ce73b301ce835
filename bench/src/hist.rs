//! HDR histogram helpers: construction with fixed ranges, saturating
//! recording, V2 serialisation as base64 (the form stored in results), and
//! summaries.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Histogram of nanoseconds, 1 ns .. 100 s, 3 significant digits.
pub fn new_ns() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Histogram of microseconds, 1 µs .. 1 h, 3 significant digits.
pub fn new_us() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records `value`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, value: u64) {
    let v = value.clamp(h.low(), h.high());
    let _ = h.record(v);
}

/// V2-serialised, base64 (standard alphabet, padded).
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    let _ = V2Serializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Inverse of [`encode`].
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("base64: {e}"))?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| format!("HDR V2: {e:?}"))
}

/// Adds `text` (encoded) into `into`.
pub fn merge_encoded(into: &mut Histogram<u64>, text: Option<&String>) -> Result<(), String> {
    if let Some(text) = text {
        let other = decode(text)?;
        into.add(&other).map_err(|e| format!("merge: {e:?}"))?;
    }
    Ok(())
}

/// Percentiles the results and the summary table report.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 100.0];

/// A histogram as stored in a result: unit, count, percentiles, and the raw data.
pub fn record_json(h: &Histogram<u64>, unit: &str) -> Value {
    json!({
        "unit": unit,
        "count": h.len(),
        "min": h.min(),
        "mean": h.mean(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "max": h.max(),
        "hdr_v2_base64": encode(h),
    })
}
