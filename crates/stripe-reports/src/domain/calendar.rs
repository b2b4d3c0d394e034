//! The interval calendar: whole days, ISO weeks and calendar months in an IANA
//! timezone, as Unix seconds with `start` inclusive and `end` exclusive.
//!
//! Boundaries are the first instant of the local day (jiff's `Date::to_zoned_datetime`, which resolves a skipped midnight to the first instant after the gap),
//! so DST days are 23 or 25 hours long and a day whose midnight is skipped by a
//! DST jump starts at the first instant that exists. All offsets come from the
//! tz database bundled with jiff, never from arithmetic here.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::spec::Frequency;

/// One report interval: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start: i64,
    pub end: i64,
}

impl Interval {
    pub fn seconds(&self) -> i64 {
        self.end - self.start
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("date {0} is outside the supported range")]
    OutOfRange(String),
}

fn out_of_range(what: impl std::fmt::Display) -> CalendarError {
    CalendarError::OutOfRange(what.to_string())
}

/// The first local date of the period of `frequency` that contains `date`.
pub fn period_start(frequency: Frequency, date: Date) -> Date {
    match frequency {
        Frequency::Daily => date,
        Frequency::Weekly => {
            let back = i64::from(date.weekday().to_monday_zero_offset());
            date.checked_sub(back.days()).unwrap_or(date)
        }
        Frequency::Monthly => date.first_of_month(),
    }
}

/// The first local date after the period that starts on `start`.
fn next_period_start(frequency: Frequency, start: Date) -> Result<Date, CalendarError> {
    let step = match frequency {
        Frequency::Daily => 1.day(),
        Frequency::Weekly => 1.week(),
        Frequency::Monthly => 1.month(),
    };
    start.checked_add(step).map_err(|_| out_of_range(start))
}

/// The first instant of a local date in `tz`, as Unix seconds.
pub fn start_of_day(date: Date, tz: &TimeZone) -> Result<i64, CalendarError> {
    date.to_zoned_datetime(tz.clone())
        .map(|zoned| zoned.timestamp().as_second())
        .map_err(|_| out_of_range(date))
}

/// The local date of a Unix instant in `tz`.
pub fn local_date(unix: i64, tz: &TimeZone) -> Result<Date, CalendarError> {
    Timestamp::from_second(unix)
        .map(|ts| ts.to_zoned_datetime(tz.clone()).date())
        .map_err(|_| out_of_range(unix))
}

/// The interval of `frequency` in `tz` that contains the local date `date`.
pub fn interval_containing(
    frequency: Frequency,
    tz: &TimeZone,
    date: Date,
) -> Result<Interval, CalendarError> {
    let first = period_start(frequency, date);
    let next = next_period_start(frequency, first)?;
    Ok(Interval {
        start: start_of_day(first, tz)?,
        end: start_of_day(next, tz)?,
    })
}

/// Every whole interval whose end lies in `(after, until]`, oldest first.
/// The scheduler uses it with `after = now - lookback` and
/// `until = min(now, data_available_end)`.
pub fn intervals_ending_in(
    frequency: Frequency,
    tz: &TimeZone,
    after: i64,
    until: i64,
) -> Result<Vec<Interval>, CalendarError> {
    let mut intervals = Vec::new();
    if until <= after {
        return Ok(intervals);
    }
    // Start from the period containing `after`: its end is the first end > after.
    let mut first = period_start(frequency, local_date(after, tz)?);
    loop {
        let next = next_period_start(frequency, first)?;
        let interval = Interval {
            start: start_of_day(first, tz)?,
            end: start_of_day(next, tz)?,
        };
        if interval.end > until {
            break;
        }
        if interval.end > after {
            intervals.push(interval);
        }
        first = next;
    }
    Ok(intervals)
}

/// Every whole interval that starts on or after local date `from` and ends on
/// or before the start of local date `to` (a backfill window), oldest first.
pub fn intervals_within_dates(
    frequency: Frequency,
    tz: &TimeZone,
    from: Date,
    to: Date,
) -> Result<Vec<Interval>, CalendarError> {
    let lower = start_of_day(from, tz)?;
    let upper = start_of_day(to, tz)?;
    Ok(intervals_ending_in(frequency, tz, lower, upper)?
        .into_iter()
        .filter(|interval| interval.start >= lower)
        .collect())
}

/// ISO weeks start on Monday; re-exported for callers formatting weeks.
pub const ISO_WEEK_START: Weekday = Weekday::Monday;

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn utc_day_is_86400_seconds_start_inclusive_end_exclusive() {
        let day = interval_containing(Frequency::Daily, &TimeZone::UTC, date(2026, 3, 1)).unwrap();
        assert_eq!(day.start, 1_772_323_200);
        assert_eq!(day.seconds(), 86_400);
        let next = interval_containing(Frequency::Daily, &TimeZone::UTC, date(2026, 3, 2)).unwrap();
        assert_eq!(day.end, next.start);
    }

    #[test]
    fn dst_days_are_23_and_25_hours_in_los_angeles_and_berlin() {
        let la = tz("America/Los_Angeles");
        let spring = interval_containing(Frequency::Daily, &la, date(2026, 3, 8)).unwrap();
        let fall = interval_containing(Frequency::Daily, &la, date(2026, 11, 1)).unwrap();
        assert_eq!(spring.seconds(), 23 * 3600);
        assert_eq!(fall.seconds(), 25 * 3600);
        // Midnight PST is 08:00 UTC.
        assert_eq!(spring.start, 1_772_956_800);

        let berlin = tz("Europe/Berlin");
        let spring = interval_containing(Frequency::Daily, &berlin, date(2026, 3, 29)).unwrap();
        let fall = interval_containing(Frequency::Daily, &berlin, date(2026, 10, 25)).unwrap();
        assert_eq!(spring.seconds(), 23 * 3600);
        assert_eq!(fall.seconds(), 25 * 3600);
        let ordinary = interval_containing(Frequency::Daily, &berlin, date(2026, 6, 1)).unwrap();
        assert_eq!(ordinary.seconds(), 24 * 3600);
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_the_first_instant() {
        // America/Santiago springs forward at 24:00 on 2026-09-05: 2026-09-06 starts at 01:00.
        let santiago = tz("America/Santiago");
        let day = interval_containing(Frequency::Daily, &santiago, date(2026, 9, 6)).unwrap();
        let start = Timestamp::from_second(day.start)
            .unwrap()
            .to_zoned_datetime(santiago.clone());
        assert_eq!(start.date(), date(2026, 9, 6));
        assert_eq!(start.hour(), 1);
        assert_eq!(day.seconds(), 23 * 3600);
    }

    #[test]
    fn months_end_at_the_first_of_the_next_month_including_leap_february() {
        let utc = TimeZone::UTC;
        let feb_2028 = interval_containing(Frequency::Monthly, &utc, date(2028, 2, 29)).unwrap();
        assert_eq!(feb_2028.seconds(), 29 * 86_400);
        let feb_2027 = interval_containing(Frequency::Monthly, &utc, date(2027, 2, 14)).unwrap();
        assert_eq!(feb_2027.seconds(), 28 * 86_400);
        let dec = interval_containing(Frequency::Monthly, &utc, date(2026, 12, 31)).unwrap();
        assert_eq!(dec.end, start_of_day(date(2027, 1, 1), &utc).unwrap());
        let jan31 = interval_containing(Frequency::Monthly, &utc, date(2027, 1, 31)).unwrap();
        assert_eq!(jan31.seconds(), 31 * 86_400);
        // A month in New York that contains the spring DST change is one hour short.
        let ny = tz("America/New_York");
        let march = interval_containing(Frequency::Monthly, &ny, date(2026, 3, 15)).unwrap();
        assert_eq!(march.seconds(), 31 * 86_400 - 3600);
    }

    #[test]
    fn leap_day_is_its_own_day() {
        let day = interval_containing(Frequency::Daily, &TimeZone::UTC, date(2028, 2, 29)).unwrap();
        assert_eq!(
            local_date(day.start, &TimeZone::UTC).unwrap(),
            date(2028, 2, 29)
        );
        assert_eq!(
            local_date(day.end, &TimeZone::UTC).unwrap(),
            date(2028, 3, 1)
        );
    }

    #[test]
    fn iso_weeks_start_monday_including_week_53() {
        let utc = TimeZone::UTC;
        // 2026 has 53 ISO weeks: week 53 runs Mon 2026-12-28 to Mon 2027-01-04.
        let week = interval_containing(Frequency::Weekly, &utc, date(2027, 1, 2)).unwrap();
        let start = local_date(week.start, &utc).unwrap();
        assert_eq!(start, date(2026, 12, 28));
        assert_eq!(start.weekday(), ISO_WEEK_START);
        assert_eq!(start.iso_week_date().week(), 53);
        assert_eq!(local_date(week.end, &utc).unwrap(), date(2027, 1, 4));
        // A Monday is the first day of its own week.
        let monday = interval_containing(Frequency::Weekly, &utc, date(2026, 12, 28)).unwrap();
        assert_eq!(monday, week);
        // Week containing the Berlin fall-back change is an hour longer.
        let berlin = tz("Europe/Berlin");
        let fall = interval_containing(Frequency::Weekly, &berlin, date(2026, 10, 25)).unwrap();
        assert_eq!(fall.seconds(), 7 * 86_400 + 3600);
    }

    #[test]
    fn intervals_ending_in_a_window_are_whole_and_ordered() {
        let utc = TimeZone::UTC;
        let mar1 = start_of_day(date(2026, 3, 1), &utc).unwrap();
        let mar8 = start_of_day(date(2026, 3, 8), &utc).unwrap();
        let days = intervals_ending_in(Frequency::Daily, &utc, mar1, mar8).unwrap();
        assert_eq!(days.len(), 7);
        assert_eq!(days[0].end, mar1 + 86_400);
        assert_eq!(days[6].end, mar8);
        assert!(days.windows(2).all(|w| w[0].end == w[1].start));
        // One second short of an interval end leaves that interval out.
        let short = intervals_ending_in(Frequency::Daily, &utc, mar1, mar8 - 1).unwrap();
        assert_eq!(short.len(), 6);
        assert!(
            intervals_ending_in(Frequency::Daily, &utc, mar8, mar1)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn backfill_window_keeps_only_intervals_inside_it() {
        let ny = tz("America/New_York");
        let months =
            intervals_within_dates(Frequency::Monthly, &ny, date(2026, 1, 1), date(2026, 4, 1))
                .unwrap();
        assert_eq!(months.len(), 3);
        let weeks =
            intervals_within_dates(Frequency::Weekly, &ny, date(2026, 3, 1), date(2026, 3, 31))
                .unwrap();
        // Mondays 2, 9, 16, 23 start whole weeks ending by the 30th.
        assert_eq!(weeks.len(), 4);
        assert_eq!(local_date(weeks[0].start, &ny).unwrap(), date(2026, 3, 2));
        // The week containing the DST change (Sunday 2026-03-08) is 167 hours.
        assert_eq!(weeks[0].seconds(), 7 * 86_400 - 3600);
    }
}
