//! Saturating conversions for the bench's schedule arithmetic.

/// A u128 (nanoseconds, products of rates) as u64, saturating: the bench's
/// schedule values never approach 2^64, and saturating is the honest
/// answer if they did.
pub fn sat_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}
