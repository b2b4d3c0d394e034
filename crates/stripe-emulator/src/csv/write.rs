//! Writing values as Stripe writes them, straight into a byte buffer: exact
//! decimals from integer minor units, `YYYY-MM-DD HH:MM:SS` timestamps in UTC
//! or a time zone, Stripe-looking ids. No floating point, no allocation per
//! value.

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub const DAY: i64 = 86_400;

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A small deterministic stream of random numbers.
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    /// `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `minor` units as a decimal in major units with `exponent` decimals
/// (`-1234`, 2 → `-12.34`; `1500`, 0 → `1500`; `5`, 3 → `0.005`), with
/// `zeros` more leading zeros after the sign (padding that keeps the value).
pub fn push_decimal(out: &mut Vec<u8>, minor: i128, exponent: u32, zeros: usize) {
    if minor < 0 {
        out.push(b'-');
    }
    out.extend(std::iter::repeat_n(b'0', zeros));
    let magnitude = minor.unsigned_abs();
    let unit = 10u128.pow(exponent);
    let (int, frac) = (magnitude / unit, magnitude % unit);
    if int <= u64::MAX as u128 {
        push_u64(out, int as u64);
    } else {
        out.extend_from_slice(int.to_string().as_bytes());
    }
    if exponent > 0 {
        out.push(b'.');
        let mut digits = [b'0'; 39];
        let mut rest = frac;
        for slot in digits[..exponent as usize].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits[..exponent as usize]);
    }
}

/// The same decimal as a `String` (for totals).
pub fn decimal_string(minor: i128, exponent: u32) -> String {
    let mut out = Vec::with_capacity(24);
    push_decimal(&mut out, minor, exponent, 0);
    String::from_utf8(out).unwrap_or_default()
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn two(out: &mut [u8], at: usize, n: u32) {
    out[at] = b'0' + (n / 10) as u8;
    out[at + 1] = b'0' + (n % 10) as u8;
}

fn date_bytes(t: i64) -> [u8; 10] {
    let (year, month, day) = civil(t.div_euclid(DAY));
    let year = year.clamp(0, 9999) as u32;
    let mut text = *b"0000-00-00";
    two(&mut text, 0, year / 100);
    two(&mut text, 2, year % 100);
    two(&mut text, 5, month);
    two(&mut text, 8, day);
    text
}

/// `YYYY-MM-DD` of the wall-clock seconds `t`.
#[cfg(test)]
pub fn push_date(out: &mut Vec<u8>, t: i64) {
    out.extend_from_slice(&date_bytes(t));
}

/// `YYYY-MM-DD HH:MM:SS` of the wall-clock seconds `t`, as Stripe's files
/// write timestamps (no offset, no `T`).
#[cfg(test)]
pub fn push_datetime(out: &mut Vec<u8>, t: i64) {
    let mut text = *b"0000-00-00 00:00:00";
    text[..10].copy_from_slice(&date_bytes(t));
    time_of_day(&mut text, t);
    out.extend_from_slice(&text);
}

/// A run's time zone, with the offset of the last instant asked about
/// remembered until the zone's next transition: rows come in time order, so
/// almost every timestamp is answered without looking the zone up. It also
/// remembers the text of the last few dates written.
#[derive(Debug, Clone)]
pub struct Clock {
    /// `None` for UTC.
    zone: Option<TimeZone>,
    from: i64,
    until: i64,
    offset: i64,
    /// (day number, `YYYY-MM-DD`), by day number modulo 4.
    dates: [(i64, [u8; 10]); 4],
}

impl Clock {
    /// The IANA zone `name`; `None` if there is no such zone.
    pub fn new(name: &str) -> Option<Self> {
        let zone = TimeZone::get(name).ok()?;
        let utc = zone
            .iana_name()
            .is_some_and(|n| n == "UTC" || n == "Etc/UTC");
        Some(Self {
            zone: (!utc).then_some(zone),
            from: 0,
            until: if utc { i64::MAX } else { 0 },
            offset: 0,
            dates: NO_DATES,
        })
    }

    pub fn utc() -> Self {
        Self {
            zone: None,
            from: i64::MIN,
            until: i64::MAX,
            offset: 0,
            dates: NO_DATES,
        }
    }

    /// Seconds east of UTC at the instant `t`.
    pub fn offset(&mut self, t: i64) -> i64 {
        if t >= self.from && t < self.until {
            return self.offset;
        }
        let Some(zone) = &self.zone else {
            return 0;
        };
        let instant = Timestamp::from_second(t).unwrap_or(Timestamp::UNIX_EPOCH);
        self.offset = i64::from(zone.to_offset(instant).seconds());
        // The offset holds from the last transition at or before `t` to the
        // next one after it.
        let after = Timestamp::from_second(t.saturating_add(1)).unwrap_or(instant);
        self.from = zone
            .preceding(after)
            .next()
            .map_or(i64::MIN, |last| last.timestamp().as_second());
        self.until = zone
            .following(instant)
            .next()
            .map_or(i64::MAX, |next| next.timestamp().as_second());
        self.offset
    }

    /// The wall-clock seconds of the instant `t` in this zone.
    pub fn local(&mut self, t: i64) -> i64 {
        t + self.offset(t)
    }

    fn date(&mut self, t: i64) -> [u8; 10] {
        let day = t.div_euclid(DAY);
        let slot = &mut self.dates[day.rem_euclid(4) as usize];
        if slot.0 != day {
            *slot = (day, date_bytes(t));
        }
        slot.1
    }

    /// `YYYY-MM-DD` of the wall-clock seconds `wall`.
    pub fn push_date(&mut self, out: &mut Vec<u8>, wall: i64) {
        let date = self.date(wall);
        out.extend_from_slice(&date);
    }

    /// `YYYY-MM-DD HH:MM:SS` of the wall-clock seconds `wall`, as Stripe's
    /// files write timestamps (no offset, no `T`).
    pub fn push_datetime(&mut self, out: &mut Vec<u8>, wall: i64) {
        let mut text = *b"0000-00-00 00:00:00";
        text[..10].copy_from_slice(&self.date(wall));
        time_of_day(&mut text, wall);
        out.extend_from_slice(&text);
    }
}

/// No date remembered yet (no day number is `i64::MIN`).
const NO_DATES: [(i64, [u8; 10]); 4] = [(i64::MIN, [0; 10]); 4];

fn time_of_day(text: &mut [u8; 19], t: i64) {
    let seconds = t.rem_euclid(DAY) as u32;
    two(text, 11, seconds / 3600);
    two(text, 14, seconds / 60 % 60);
    two(text, 17, seconds % 60);
}

/// Six bits to an id character: letters and digits, as Stripe's ids have
/// (two of them twice, to make 64).
const ID_CHARS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzQr";

/// Characters after the prefix of an id, as in `txn_1Nv0FGQ9PRDGlDfv0xZ6HJmz`.
pub const ID_TAIL: usize = 24;

/// `prefix` and `ID_TAIL + extra` characters made from `key`, the same for
/// the same key.
pub fn push_id(out: &mut Vec<u8>, prefix: &[u8], key: u64, extra: usize) {
    out.extend_from_slice(prefix);
    let mut tail = [0u8; ID_TAIL];
    tail[0] = b'1';
    let mut bits = splitmix(key);
    for (at, slot) in tail.iter_mut().enumerate().skip(1) {
        if at % 10 == 0 {
            bits = splitmix(bits ^ at as u64);
        }
        *slot = ID_CHARS[(bits & 63) as usize];
        bits >>= 6;
    }
    out.extend_from_slice(&tail);
    let mut left = extra;
    while left > 0 {
        bits = splitmix(bits ^ left as u64);
        for _ in 0..left.min(10) {
            out.push(ID_CHARS[(bits & 63) as usize]);
            bits >>= 6;
        }
        left -= left.min(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(minor: i128, exponent: u32, zeros: usize) -> String {
        let mut out = Vec::new();
        push_decimal(&mut out, minor, exponent, zeros);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decimals_follow_the_exponent() {
        assert_eq!(decimal(-1234, 2, 0), "-12.34");
        assert_eq!(decimal(5, 2, 0), "0.05");
        assert_eq!(decimal(0, 2, 0), "0.00");
        assert_eq!(decimal(1500, 0, 0), "1500");
        assert_eq!(decimal(-5, 3, 0), "-0.005");
        assert_eq!(decimal(12_345, 3, 0), "12.345");
        assert_eq!(decimal(-1234, 2, 3), "-00012.34");
        assert_eq!(decimal(i128::from(i64::MAX) * 1000, 2, 0).len(), 23);
    }

    #[test]
    fn timestamps_as_stripe_writes_them() {
        let mut out = Vec::new();
        push_datetime(&mut out, 1_789_380_131);
        assert_eq!(out, b"2026-09-14 10:02:11");
        out.clear();
        push_datetime(&mut out, 0);
        assert_eq!(out, b"1970-01-01 00:00:00");
        out.clear();
        push_date(&mut out, 951_782_400);
        assert_eq!(out, b"2000-02-29");
    }

    #[test]
    fn the_clock_follows_daylight_saving_time() {
        let mut clock = Clock::new("America/New_York").unwrap();
        // 2026-03-08 06:59:59 UTC is 01:59:59 EST; a second later, 03:00 EDT.
        assert_eq!(clock.offset(1_772_953_199), -5 * 3600);
        assert_eq!(clock.offset(1_772_953_200), -4 * 3600);
        assert_eq!(clock.offset(1_772_953_199), -5 * 3600);
        assert_eq!(clock.offset(1_772_953_199 - 86_400), -5 * 3600);
        assert_eq!(clock.offset(1_772_953_200), -4 * 3600);
        assert_eq!(clock.offset(1_772_953_201), -4 * 3600);
        let mut out = Vec::new();
        let wall = clock.local(1_772_953_200);
        clock.push_datetime(&mut out, wall);
        assert_eq!(out, b"2026-03-08 03:00:00");
        out.clear();
        clock.push_datetime(&mut out, wall - 7 * DAY);
        clock.push_date(&mut out, wall);
        assert_eq!(out, b"2026-03-01 03:00:002026-03-08");
        assert_eq!(Clock::new("Etc/UTC").unwrap().offset(1_772_953_200), 0);
        assert_eq!(Clock::new("Asia/Kolkata").unwrap().offset(0), 19_800);
        assert!(Clock::new("Nowhere/City").is_none());
    }

    #[test]
    fn ids_are_stable_and_stretch() {
        let id = |key, extra| {
            let mut out = Vec::new();
            push_id(&mut out, b"txn_", key, extra);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(id(7, 0), id(7, 0));
        assert_ne!(id(7, 0), id(8, 0));
        assert_eq!(id(7, 0).len(), 4 + ID_TAIL);
        assert!(id(7, 25).starts_with(&id(7, 0)));
        assert_eq!(id(7, 25).len(), 4 + ID_TAIL + 25);
        assert!(id(7, 25)[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
