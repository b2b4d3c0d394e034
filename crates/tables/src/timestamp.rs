//! Report timestamps (`2026-09-14 10:02:11`) → microseconds since
//! 1970-01-01 00:00:00 of the same clock, exactly (no floating point, no
//! time zone database: the text is the wall time of the column's clock).

/// Why a text is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error(
        "not a timestamp (YYYY-MM-DD, optionally followed by a space or T and HH:MM:SS with up to 6 decimals)"
    )]
    Syntax,
    #[error("not a date or time of day that exists")]
    OutOfRange,
    #[error("a time zone offset other than UTC's")]
    Offset,
}

fn digits(text: &[u8]) -> Option<u32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, &b| n * 10 + u32::from(b - b'0')))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days from 1970-01-01 to `year-month-day` (proleptic Gregorian; Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`, with
/// up to 6 decimals of seconds (`.123456`), into microseconds since the
/// epoch of the text's own clock. `utc_suffix_allowed`: for a `*_utc`
/// column, a trailing `Z`, `+00:00` or ` UTC` is accepted (it says what the
/// column name already says); any other offset is refused rather than
/// guessed at.
pub fn parse_micros(text: &[u8], utc_suffix_allowed: bool) -> Result<i64, TimestampError> {
    use TimestampError::*;
    let mut text = text;
    for suffix in [b"Z".as_slice(), b"+00:00", b" UTC"] {
        if let Some(rest) = text.strip_suffix(suffix)
            && rest.len() > 10
        {
            if !utc_suffix_allowed {
                return Err(Offset);
            }
            text = rest;
            break;
        }
    }
    if text.len() < 10 || text[4] != b'-' || text[7] != b'-' {
        return Err(Syntax);
    }
    let year = digits(&text[0..4]).ok_or(Syntax)?;
    let month = digits(&text[5..7]).ok_or(Syntax)?;
    let day = digits(&text[8..10]).ok_or(Syntax)?;
    let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
    if text.len() > 10 {
        let time = &text[11..];
        if !matches!(text[10], b' ' | b'T') || time.len() < 8 || time[2] != b':' || time[5] != b':'
        {
            return Err(Syntax);
        }
        hour = digits(&time[0..2]).ok_or(Syntax)?;
        minute = digits(&time[3..5]).ok_or(Syntax)?;
        second = digits(&time[6..8]).ok_or(Syntax)?;
        let fraction = &time[8..];
        if !fraction.is_empty() {
            let decimals = fraction.strip_prefix(b".").ok_or(Syntax)?;
            if decimals.len() > 6 {
                // Finer than the stored microseconds: refuse, never round.
                return Err(Syntax);
            }
            micros = digits(decimals).ok_or(Syntax)? * 10u32.pow(6 - decimals.len() as u32);
        }
    }
    let year = i64::from(year);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return Err(OutOfRange),
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(OutOfRange);
    }
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3_600
        + i64::from(minute) * 60
        + i64::from(second);
    Ok(seconds * 1_000_000 + i64::from(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i64, TimestampError> {
        parse_micros(s.as_bytes(), true)
    }

    #[test]
    fn the_forms_stripe_writes_and_their_near_relatives() {
        assert_eq!(parse("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(parse("2026-09-14 10:02:11"), Ok(1_789_380_131_000_000));
        assert_eq!(parse("2026-09-14T10:02:11"), Ok(1_789_380_131_000_000));
        assert_eq!(parse("2026-09-14 10:02:11Z"), Ok(1_789_380_131_000_000));
        assert_eq!(parse("2026-09-14 10:02:11 UTC"), Ok(1_789_380_131_000_000));
        assert_eq!(parse("2026-09-14 10:02:11.5"), Ok(1_789_380_131_500_000));
        assert_eq!(parse("2026-09-14"), Ok(1_789_344_000_000_000));
        assert_eq!(parse("2024-02-29 23:59:59"), Ok(1_709_251_199_000_000));
        assert_eq!(parse("1969-12-31 23:59:59"), Ok(-1_000_000));
    }

    #[test]
    fn impossible_or_ambiguous_text_is_refused() {
        assert_eq!(
            parse("2023-02-29 00:00:00"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(parse("2026-13-01"), Err(TimestampError::OutOfRange));
        assert_eq!(
            parse("2026-09-14 24:00:00"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            parse("2026-09-14 23:59:60"),
            Err(TimestampError::OutOfRange)
        );
        for bad in [
            "",
            "1789380131",
            "2026/09/14",
            "2026-09-14 10:02",
            "2026-09-14 10:02:11.1234567",
            "14-09-2026",
            "2026-09-14 10:02:11+02:00",
        ] {
            assert_eq!(parse(bad), Err(TimestampError::Syntax), "{bad:?}");
        }
        assert_eq!(
            parse_micros(b"2026-09-14 10:02:11Z", false),
            Err(TimestampError::Offset)
        );
    }
}
