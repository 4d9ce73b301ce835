//! Saturating conversions for the bench's schedule arithmetic, and byte
//! counts with units (`4MiB`) as the command line takes them.

/// A u128 (nanoseconds, products of rates) as u64, saturating: the bench's
/// schedule values never approach 2^64, and saturating is the honest
/// answer if they did.
pub fn sat_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

const UNITS: [(&str, u64); 8] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("kb", 1000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("", 1),
];

/// A byte count as a person writes it: a whole number with an optional unit,
/// `4MiB`, `512KiB`, `1GiB` (powers of 1024), `64KB`, `4MB` (powers of
/// 1000), `4096` or `4096B` (bytes); case and a space before the unit do not
/// matter. The error says what was wrong and what is accepted.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let accepted = "a whole number with an optional unit: B, KiB, MiB, GiB (×1024) or KB, MB, GB (×1000), e.g. 4MiB";
    if number.is_empty() {
        return Err(format!("size {text:?} does not start with a number; write {accepted}"));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!("size {text:?}: unknown unit {unit:?}; write {accepted}"));
    };
    let value: u64 = number.parse().map_err(|_| format!("size {text:?}: {number} is too large"))?;
    value.checked_mul(*scale).ok_or_else(|| format!("size {text:?} is too large (more than 2^64 bytes)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("64KB"), Ok(64_000));
        assert_eq!(parse_bytes("4mb"), Ok(4_000_000));
        assert_eq!(parse_bytes("2 GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4096B"), Ok(4096));
        assert_eq!(parse_bytes(" 0 "), Ok(0));
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for bad in ["", "MiB", "4XB", "4.5MiB", "-1", "4 MiB extra"] {
            let error = parse_bytes(bad).expect_err(bad);
            assert!(error.contains("e.g. 4MiB") || error.contains("too large"), "{bad}: {error}");
        }
        assert!(parse_bytes("99999999999999999999").expect_err("overflow").contains("too large"));
        assert!(parse_bytes("20000000000GiB").expect_err("overflow").contains("too large"));
    }
}
