//! When a report is due, and why one that is due is not stored yet.
//!
//! An interval is *due* once Stripe has its data: from the first time this
//! system saw the report type's `data_available_end` reach the interval's
//! end (the scheduler's read of the report type, on its schedule or on
//! `reporting.report_type.updated`). It is *overdue* when it has been due for
//! longer than a grace period and is not `stored`. No I/O here: the ledger
//! keeps the observations, the scheduler and `stripe-reports status` read them.

use std::collections::BTreeMap;

use serde::Serialize;

/// `OVERDUE_AFTER_MINUTES`' default: Stripe's runs take minutes, rarely hours.
pub const DEFAULT_OVERDUE_AFTER_MINUTES: u32 = 120;

/// When each `data_available_end` of one report type was first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Availability {
    first_seen: BTreeMap<i64, i64>,
}

impl Availability {
    pub fn from_entries(entries: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut availability = Self::default();
        for (end, seen) in entries {
            availability.observe(end, seen);
        }
        availability
    }

    /// `(data_available_end, first seen)`, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.first_seen.iter().map(|(end, seen)| (*end, *seen))
    }

    /// Records that `data_available_end` was seen at `now`; keeps the first
    /// sighting. Returns whether this value is new.
    pub fn observe(&mut self, data_available_end: i64, now: i64) -> bool {
        match self.first_seen.get_mut(&data_available_end) {
            Some(seen) => {
                *seen = (*seen).min(now);
                false
            }
            None => {
                self.first_seen.insert(data_available_end, now);
                true
            }
        }
    }

    /// The newest `data_available_end` seen.
    pub fn latest_end(&self) -> Option<i64> {
        self.first_seen.keys().next_back().copied()
    }

    /// Since when the data of an interval ending at `interval_end` has been
    /// seen available: the first sighting of the smallest recorded end that
    /// reaches it. `None` when no recorded end reaches it (not available).
    pub fn since(&self, interval_end: i64) -> Option<i64> {
        self.first_seen
            .range(interval_end..)
            .map(|(_, seen)| *seen)
            .min()
    }
}

/// Where an interval's report stands in the ledger (its latest attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalState {
    /// No run was ever requested for it.
    NeverRequested,
    /// Requested; Stripe has not finished the run.
    Pending,
    /// Stripe finished the run; the file is not in S3 yet.
    Succeeded,
    Stored,
    /// Stripe could not produce it, on its last attempt.
    Failed,
    /// Stripe no longer has the run, and it was not requested again.
    Retired,
}

impl IntervalState {
    /// Why a due interval is not stored, in words for a log line or a table.
    pub fn why_not_stored(self) -> Option<&'static str> {
        match self {
            IntervalState::Stored => None,
            IntervalState::NeverRequested => Some("never requested"),
            IntervalState::Pending => Some("pending at Stripe"),
            IntervalState::Succeeded => Some("succeeded but not stored"),
            IntervalState::Failed => Some("failed at Stripe"),
            IntervalState::Retired => Some("retired (Stripe no longer has the run)"),
        }
    }
}

/// How long an interval has been overdue, if it is: due for longer than
/// `grace_secs` at `now` and not stored.
pub fn overdue_for(due_since: i64, state: IntervalState, now: i64, grace_secs: i64) -> Option<i64> {
    let age = now - due_since;
    (state != IntervalState::Stored && age > grace_secs).then_some(age - grace_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn an_interval_is_due_from_the_first_sighting_of_an_end_reaching_it() {
        let mut seen = Availability::default();
        assert!(seen.observe(10 * DAY, 10 * DAY + 12 * 3600));
        assert!(
            !seen.observe(10 * DAY, 10 * DAY + 13 * 3600),
            "kept the first"
        );
        assert!(seen.observe(11 * DAY, 11 * DAY + 14 * 3600));
        // Day 9 (ends 10*DAY) became available with the first sighting.
        assert_eq!(seen.since(10 * DAY), Some(10 * DAY + 12 * 3600));
        // An earlier interval: as soon as anything reaching it was seen.
        assert_eq!(seen.since(3 * DAY), Some(10 * DAY + 12 * 3600));
        assert_eq!(seen.since(11 * DAY), Some(11 * DAY + 14 * 3600));
        assert_eq!(seen.since(11 * DAY + 1), None, "not available yet");
        assert_eq!(seen.latest_end(), Some(11 * DAY));
        let again = Availability::from_entries(seen.entries().collect::<Vec<_>>());
        assert_eq!(again, seen);
    }

    #[test]
    fn overdue_means_due_longer_than_the_grace_and_not_stored() {
        let grace = 2 * 3600;
        let due = 1_000_000;
        for state in [
            IntervalState::NeverRequested,
            IntervalState::Pending,
            IntervalState::Succeeded,
            IntervalState::Failed,
            IntervalState::Retired,
        ] {
            assert_eq!(
                overdue_for(due, state, due + grace, grace),
                None,
                "{state:?}"
            );
            assert_eq!(overdue_for(due, state, due + grace + 60, grace), Some(60));
            assert!(state.why_not_stored().is_some());
        }
        assert_eq!(
            overdue_for(due, IntervalState::Stored, due + 10 * grace, grace),
            None
        );
        assert_eq!(IntervalState::Stored.why_not_stored(), None);
    }
}
