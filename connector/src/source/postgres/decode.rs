//! PostgreSQL's binary forms of date, timestamp and numeric, decoded into
//! the values the Arrow columns hold.

use std::error::Error as StdError;

use postgres::types::{FromSql, Type};

/// Days from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
pub(super) const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub(super) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub(super) type DecodeError = Box<dyn StdError + Sync + Send>;

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(raw).map_err(|_| format!("expected {N} bytes, got {}", raw.len()).into())
}

/// date → days since 1970-01-01.
pub(super) struct PgDate(pub(super) i32);

impl<'a> FromSql<'a> for PgDate {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        let days = i32::from_be_bytes(fixed::<4>(raw)?);
        Ok(PgDate(days.saturating_add(PG_EPOCH_DAYS)))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

/// timestamp/timestamptz → microseconds since 1970-01-01 UTC.
pub(super) struct PgTimestamp(pub(super) i64);

impl<'a> FromSql<'a> for PgTimestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        let micros = i64::from_be_bytes(fixed::<8>(raw)?);
        Ok(PgTimestamp(micros.saturating_add(PG_EPOCH_MICROS)))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ
    }
}

/// numeric in PostgreSQL's binary form: base-10000 digits, a weight (power of
/// 10000 of the first digit), a sign and a display scale.
pub(super) struct PgNumeric {
    digits: Vec<i16>,
    weight: i16,
    sign: u16,
}

const NUMERIC_POSITIVE: u16 = 0x0000;
const NUMERIC_NEGATIVE: u16 = 0x4000;
/// Most base-10000 digits accepted (PostgreSQL's own limit is 131072 + 16383 decimal digits).
const NUMERIC_DIGITS_MAX: usize = 40_000;

impl<'a> FromSql<'a> for PgNumeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, DecodeError> {
        // Header: digit count, weight, sign, display scale (unused), 2 bytes each.
        let Some((&[c0, c1, w0, w1, s0, s1, _, _], body)) = raw.split_first_chunk::<8>() else {
            return Err("numeric shorter than its header".into());
        };
        let count = usize::from(u16::from_be_bytes([c0, c1]));
        let weight = i16::from_be_bytes([w0, w1]);
        let sign = u16::from_be_bytes([s0, s1]);
        if count > NUMERIC_DIGITS_MAX {
            return Err("numeric has too many digits".into());
        }
        if body.len() != count * 2 {
            return Err("numeric digit count does not match its length".into());
        }
        // Every chunk of `chunks_exact(2)` has two bytes, so none is skipped.
        let digits =
            body.chunks_exact(2).filter_map(|pair| pair.first_chunk().copied()).map(i16::from_be_bytes).collect();
        Ok(PgNumeric { digits, weight, sign })
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl PgNumeric {
    fn is_finite(&self) -> bool {
        self.sign == NUMERIC_POSITIVE || self.sign == NUMERIC_NEGATIVE
    }

    pub(super) fn to_f64(&self) -> Option<f64> {
        match self.sign {
            NUMERIC_POSITIVE | NUMERIC_NEGATIVE => {}
            0xD000 => return Some(f64::INFINITY),
            0xF000 => return Some(f64::NEG_INFINITY),
            _ => return Some(f64::NAN),
        }
        let mut value = 0.0f64;
        for (position, digit) in self.digits.iter().enumerate() {
            let exponent = i32::from(self.weight) - i32::try_from(position).ok()?;
            value += f64::from(*digit) * 10_000f64.powi(exponent);
        }
        Some(if self.sign == NUMERIC_NEGATIVE { -value } else { value })
    }

    /// The value times 10^scale, or `None` for NaN/±Infinity.
    pub(super) fn to_i128(&self, scale: i32) -> Result<Option<i128>, DecodeError> {
        if !self.is_finite() {
            return Ok(None);
        }
        let overflow = || -> DecodeError { "numeric value does not fit Decimal128".into() };
        let mut mantissa: i128 = 0;
        for digit in &self.digits {
            mantissa =
                mantissa.checked_mul(10_000).and_then(|m| m.checked_add(i128::from(*digit))).ok_or_else(overflow)?;
        }
        let count = i32::try_from(self.digits.len()).map_err(|_| overflow())?;
        // mantissa × 10000^(weight − count + 1) × 10^scale
        let exponent = 4 * (i32::from(self.weight) - count + 1) + scale;
        let magnitude = if exponent >= 0 {
            let factor = 10i128.checked_pow(u32::try_from(exponent).map_err(|_| overflow())?).ok_or_else(overflow)?;
            mantissa.checked_mul(factor).ok_or_else(overflow)?
        } else {
            match 10i128.checked_pow(exponent.unsigned_abs()) {
                Some(divisor) => mantissa / divisor,
                None => 0,
            }
        };
        Ok(Some(if self.sign == NUMERIC_NEGATIVE { -magnitude } else { magnitude }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[i16], weight: i16, sign: u16) -> PgNumeric {
        PgNumeric { digits: digits.to_vec(), weight, sign }
    }

    #[test]
    fn numeric_binary_form_converts_to_decimal_and_float() {
        // 12345.678 = [1, 2345, 6780] with weight 1
        let n = numeric(&[1, 2345, 6780], 1, NUMERIC_POSITIVE);
        assert_eq!(n.to_i128(3).unwrap(), Some(12_345_678));
        assert_eq!(n.to_i128(0).unwrap(), Some(12_345));
        assert!((n.to_f64().unwrap() - 12_345.678).abs() < 1e-9);
        // -0.0005 = [5] with weight -1
        let n = numeric(&[5], -1, NUMERIC_NEGATIVE);
        assert_eq!(n.to_i128(4).unwrap(), Some(-5));
        // 2e12 = [2] with weight 3
        assert_eq!(numeric(&[2], 3, NUMERIC_POSITIVE).to_i128(2).unwrap(), Some(200_000_000_000_000));
        // NaN becomes null, overflow is an error
        assert_eq!(numeric(&[], 0, 0xC000).to_i128(2).unwrap(), None);
        assert!(numeric(&[9999; 12], 11, NUMERIC_POSITIVE).to_i128(2).is_err());
    }

    #[test]
    fn numeric_decoder_checks_lengths() {
        assert!(PgNumeric::from_sql(&Type::NUMERIC, &[0, 1]).is_err());
        // declares 2 digits, carries 1
        assert!(PgNumeric::from_sql(&Type::NUMERIC, &[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(PgDate::from_sql(&Type::DATE, &[0, 0, 1]).is_err());
    }
}
