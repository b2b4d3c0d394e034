//! Where each report spec stands: the use case behind `stripe-reports
//! status`, and the walk over a request's attempts that the scheduler uses
//! too. Reads the ledger only (point reads of the request and run items of
//! the intervals asked about, and each report type's availability record),
//! so its cost follows the window asked for, never the ledger's history.

use futures_util::StreamExt;
use serde::Serialize;

use crate::domain::account::AccountId;
use crate::domain::calendar::{self, CalendarError, Interval};
use crate::domain::due::{IntervalState, overdue_for};
use crate::domain::ledger::RunStatus;
use crate::domain::request_key::RequestKey;
use crate::domain::spec::ReportSpec;
use crate::ports::{Ledger, LedgerError, RunRecord};
use crate::scheduler::MAX_ATTEMPTS;

/// What the ledger says of one interval of a spec: its state, the run of
/// its latest attempt, and the first attempt still free when the latest one
/// failed or was retired (the scheduler requests that one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempts {
    pub state: IntervalState,
    pub latest: Option<RunRecord>,
    pub next_free: Option<u32>,
}

/// Walks the attempts of (account, spec, interval) in order: the first
/// missing request key ends the walk, and so does a run that is neither
/// failed nor retired.
pub async fn walk_attempts<L: Ledger>(
    ledger: &L,
    account: &AccountId,
    spec: &ReportSpec,
    interval: Interval,
) -> Result<Attempts, LedgerError> {
    let mut walked = Attempts {
        state: IntervalState::NeverRequested,
        latest: None,
        next_free: Some(0),
    };
    for attempt in 0..MAX_ATTEMPTS {
        let key = RequestKey::new(account, spec, interval, attempt);
        let Some(run_id) = ledger.requested_run(&key).await? else {
            walked.next_free = Some(attempt);
            return Ok(walked);
        };
        let record = ledger.run(&run_id).await?;
        walked.state = match record.as_ref().map(|record| record.status) {
            Some(RunStatus::Failed) => IntervalState::Failed,
            Some(RunStatus::Retired) => IntervalState::Retired,
            Some(RunStatus::Stored) => IntervalState::Stored,
            Some(RunStatus::Succeeded) => IntervalState::Succeeded,
            // No run item yet: the moment between the two writes of a request.
            Some(RunStatus::Pending) | None => IntervalState::Pending,
        };
        walked.latest = record;
        walked.next_free = None;
        if !matches!(walked.state, IntervalState::Failed | IntervalState::Retired) {
            return Ok(walked);
        }
    }
    Ok(walked)
}

/// One interval, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntervalStatus {
    pub interval_start: i64,
    pub interval_end: i64,
    /// The local date the interval starts on (the S3 key's `date=`).
    pub date: String,
    pub state: IntervalState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When its data was first seen available.
    pub due_since: i64,
    /// Seconds since its run was requested (unfinished runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<i64>,
    /// Seconds it has been overdue, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_secs: Option<i64>,
    /// Stored: seconds from first seen available to stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness_secs: Option<i64>,
    /// Stripe's error, or why the run was retired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One report spec's standing over the window, for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecStatus {
    pub account: AccountId,
    pub spec: ReportSpec,
    /// The newest stored interval in the window.
    pub last_stored: Option<IntervalStatus>,
    /// Intervals whose data is available and that are not stored, newest
    /// first: pending, succeeded, failed, retired or never requested.
    pub not_stored: Vec<IntervalStatus>,
    /// Freshness of the stored intervals, newest first.
    pub recent_freshness_secs: Vec<i64>,
    /// Intervals of the window whose data Stripe does not have yet.
    pub not_yet_available: u64,
}

impl SpecStatus {
    pub fn overdue(&self) -> impl Iterator<Item = &IntervalStatus> {
        self.not_stored.iter().filter(|i| i.overdue_secs.is_some())
    }

    /// Failed or retired on the last attempt: needs a person.
    pub fn failed(&self) -> impl Iterator<Item = &IntervalStatus> {
        self.not_stored
            .iter()
            .filter(|i| matches!(i.state, IntervalState::Failed | IntervalState::Retired))
    }

    /// Whether anything here is overdue or failed (`status` exits non-zero).
    pub fn needs_attention(&self) -> bool {
        self.overdue().next().is_some() || self.failed().next().is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// The standing of every spec of every account given over intervals ending
/// in the last `days` days, at `now`, with `grace_secs` before a due
/// interval is overdue.
pub async fn status<L: Ledger>(
    ledger: &L,
    accounts: &[AccountId],
    specs: &[ReportSpec],
    days: u32,
    now: i64,
    grace_secs: i64,
    concurrency: usize,
) -> Result<Vec<SpecStatus>, StatusError> {
    let mut statuses = Vec::with_capacity(specs.len() * accounts.len());
    let pairs = accounts.iter().flat_map(|account| {
        specs
            .iter()
            .filter(|spec| spec.applies_to(account))
            .map(move |spec| (account, spec))
    });
    for (account, spec) in pairs {
        let seen = ledger.availability(account, &spec.report_type).await?;
        let tz = spec.time_zone();
        let window = calendar::intervals_ending_in(
            spec.frequency,
            &tz,
            now - i64::from(days) * 86_400,
            now,
        )?;
        let mut not_yet_available = 0;
        let mut due = Vec::new();
        for interval in window {
            match seen.since(interval.end) {
                Some(since) => due.push((interval, since)),
                None => not_yet_available += 1,
            }
        }
        let mut intervals: Vec<IntervalStatus> = futures_util::stream::iter(due)
            .map(|(interval, due_since)| {
                let tz = tz.clone();
                async move {
                    let walked = walk_attempts(ledger, account, spec, interval).await?;
                    let latest = walked.latest.as_ref();
                    let stored_at = latest
                        .filter(|run| run.status == RunStatus::Stored)
                        .map(|run| run.updated);
                    Ok::<_, StatusError>(IntervalStatus {
                        interval_start: interval.start,
                        interval_end: interval.end,
                        date: calendar::local_date(interval.start, &tz)
                            .map(|date| date.to_string())
                            .unwrap_or_default(),
                        state: walked.state,
                        run_id: latest.map(|run| run.facts.run_id.clone()),
                        due_since,
                        age_secs: latest
                            .filter(|run| !run.status.is_final())
                            .map(|run| now - run.created),
                        overdue_secs: overdue_for(due_since, walked.state, now, grace_secs),
                        freshness_secs: stored_at.map(|at| (at - due_since).max(0)),
                        error: latest.and_then(|run| run.error.clone()),
                    })
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        intervals.sort_by_key(|i| std::cmp::Reverse(i.interval_start));
        let (stored, not_stored): (Vec<_>, Vec<_>) = intervals
            .into_iter()
            .partition(|i| i.state == IntervalState::Stored);
        statuses.push(SpecStatus {
            account: account.clone(),
            spec: spec.clone(),
            recent_freshness_secs: stored.iter().filter_map(|i| i.freshness_secs).collect(),
            last_stored: stored.into_iter().next(),
            not_stored,
            not_yet_available,
        });
    }
    Ok(statuses)
}
