//! Exact amounts: decimal text in major units ↔ an `i128` count of
//! thousandths ([`AMOUNT_SCALE`]). No floating point anywhere.

use std::fmt;
use std::str::FromStr;

use crate::schema::{AMOUNT_PRECISION, AMOUNT_SCALE};

/// An amount in major units, held exactly as a count of 10^-[`AMOUNT_SCALE`]
/// units (`12.34` is `Amount(12_340)`), as stored in the `DECIMAL(38, 3)`
/// columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

/// Why a text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a decimal number (digits, one optional sign, one optional decimal separator)")]
    Syntax,
    #[error("more than {AMOUNT_SCALE} decimals (amounts are never rounded)")]
    TooManyDecimals,
    #[error("more than {} digits before the decimal separator", AMOUNT_PRECISION as u32 - AMOUNT_SCALE)]
    TooLarge,
}

const SCALE_FACTOR: i128 = 10i128.pow(AMOUNT_SCALE);
const MAX_INTEGER_DIGITS: usize = AMOUNT_PRECISION as usize - AMOUNT_SCALE as usize;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// From a count of 10^-[`AMOUNT_SCALE`] units.
    pub const fn from_units(units: i128) -> Self {
        Amount(units)
    }

    /// The count of 10^-[`AMOUNT_SCALE`] units (the stored decimal's unscaled value).
    pub const fn units(self) -> i128 {
        self.0
    }

    /// Parses `-1234.5`, `+0.001`, `1000`: an optional sign, at least one
    /// digit, then optionally `separator` (`.` unless the run asked Stripe
    /// for `decimal_separator=,`) and 1 to [`AMOUNT_SCALE`] digits. Nothing
    /// else: no spaces, thousands separators, exponents or currency signs.
    pub fn parse(text: &[u8], separator: u8) -> Result<Self, AmountError> {
        let (negative, rest) = match text.first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (integer, fraction) = match rest.iter().position(|&b| b == separator) {
            Some(at) => {
                let fraction = &rest[at + 1..];
                if fraction.is_empty() {
                    return Err(AmountError::Syntax);
                }
                (&rest[..at], Some(fraction))
            }
            None => (rest, None),
        };
        if integer.is_empty() || !integer.iter().all(u8::is_ascii_digit) {
            return Err(AmountError::Syntax);
        }
        let significant = integer.iter().skip_while(|&&b| b == b'0').count();
        if significant > MAX_INTEGER_DIGITS {
            return Err(AmountError::TooLarge);
        }
        let mut units: i128 = 0;
        for &b in integer {
            units = units * 10 + i128::from(b - b'0');
        }
        let mut scaled = 0;
        if let Some(fraction) = fraction {
            if !fraction.iter().all(u8::is_ascii_digit) {
                return Err(AmountError::Syntax);
            }
            if fraction.len() > AMOUNT_SCALE as usize {
                return Err(AmountError::TooManyDecimals);
            }
            for &b in fraction {
                units = units * 10 + i128::from(b - b'0');
            }
            scaled = fraction.len() as u32;
        }
        // At most 35 + 3 digits: within i128 (and within DECIMAL(38, 3)).
        units *= 10i128.pow(AMOUNT_SCALE - scaled);
        Ok(Amount(if negative { -units } else { units }))
    }

    /// `self + other`, or `None` past `DECIMAL(38, 3)`.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        let sum = self.0.checked_add(other.0)?;
        (sum.unsigned_abs() < 10u128.pow(u32::from(AMOUNT_PRECISION))).then_some(Amount(sum))
    }
}

/// Always [`AMOUNT_SCALE`] decimals: `-12.340`, `1000.000`, `0.000`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let factor = SCALE_FACTOR.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / factor,
            abs % factor,
            width = AMOUNT_SCALE as usize
        )
    }
}

/// With `.` as the separator, as [`Amount::parse`].
impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse(s.as_bytes(), b'.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i128, AmountError> {
        Amount::parse(s.as_bytes(), b'.').map(Amount::units)
    }

    #[test]
    fn major_units_become_exact_thousandths() {
        assert_eq!(parse("12.34"), Ok(12_340));
        assert_eq!(parse("-12.34"), Ok(-12_340));
        assert_eq!(parse("+0.5"), Ok(500));
        assert_eq!(parse("1000"), Ok(1_000_000));
        assert_eq!(parse("-0.001"), Ok(-1));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("007.10"), Ok(7_100));
        assert_eq!(parse(&"9".repeat(35)), Ok(10i128.pow(35) * 1000 - 1000));
        assert_eq!(Amount::parse(b"-3,5", b','), Ok(Amount(-3_500)));
    }

    #[test]
    fn anything_else_is_refused_not_rounded() {
        assert_eq!(parse("0.0001"), Err(AmountError::TooManyDecimals));
        assert_eq!(parse("1.2500"), Err(AmountError::TooManyDecimals));
        assert_eq!(parse(&"9".repeat(36)), Err(AmountError::TooLarge));
        for bad in [
            "", "-", ".5", "5.", "1,000.00", "1e3", " 1", "1 ", "$1", "--1", "1.2.3", "NaN", "1.-2",
        ] {
            assert_eq!(parse(bad), Err(AmountError::Syntax), "{bad:?}");
        }
        // With `,` as the separator, `.` is not one.
        assert_eq!(Amount::parse(b"3.5", b','), Err(AmountError::Syntax));
    }

    #[test]
    fn display_has_the_scale_and_round_trips() {
        for (units, text) in [
            (0, "0.000"),
            (-1, "-0.001"),
            (12_340, "12.340"),
            (-1_000_000, "-1000.000"),
        ] {
            assert_eq!(Amount(units).to_string(), text);
            assert_eq!(text.parse::<Amount>(), Ok(Amount(units)));
        }
        let max = Amount(10i128.pow(38) - 1);
        assert_eq!(max.checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_add(Amount(-2)), Some(Amount(-1)));
    }
}
