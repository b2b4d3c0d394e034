//! The scheduler use case: plan → create → record → reconcile.
//!
//! Level-triggered: each invocation works out which report runs *should*
//! exist and creates only the missing ones, so running it twice, late,
//! concurrently or after an outage is safe. Every create carries the request
//! key as `Idempotency-Key`, so a crash between Stripe and the ledger write is
//! healed by the next invocation (same key → Stripe returns the same run);
//! beyond Stripe's 24 h key window, reconcile adopts the orphaned run from
//! Stripe's run list before anything new is created.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::domain::calendar::{self, CalendarError, Interval};
use crate::domain::ledger::RunStatus;
use crate::domain::request_key::RequestKey;
use crate::domain::spec::ReportSpec;
use crate::ports::{DownloadQueue, Ledger, Recorded, RunFacts, StripeApi, Transition};
use crate::rate::RateLimiter;
use crate::stripe::{CreateReportRun, ReportRun, ReportType, StripeRunStatus};

/// A failed run is requested once more (attempt 1); a second failure is final.
pub const MAX_ATTEMPTS: u32 = 2;
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_MAX_RPS: u32 = 20;
/// A succeeded run still not stored after this long is enqueued again.
pub const REENQUEUE_AFTER_SECS: i64 = 3600;
const DAY: i64 = 86_400;

/// What one invocation did. Logged as one JSON line and returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Intervals that should have a run (data available, inside the window).
    pub planned: u64,
    /// Runs created at Stripe by this invocation.
    pub created: u64,
    /// Planned intervals whose request was recorded before.
    pub already_requested: u64,
    /// Intervals inside the window whose data Stripe does not have yet.
    pub unavailable: u64,
    /// Finished runs put on the download queue by reconcile.
    pub enqueued: u64,
    /// Runs found failed at Stripe and recorded as such.
    pub failed: u64,
    /// Runs pending longer than the stuck age.
    pub stuck: u64,
    /// Requests that could not be made (retried by the next invocation).
    pub errors: u64,
}

impl Summary {
    /// Adds another summary's counts to this one.
    pub fn add(&mut self, other: &Summary) {
        self.planned += other.planned;
        self.created += other.created;
        self.already_requested += other.already_requested;
        self.unavailable += other.unavailable;
        self.enqueued += other.enqueued;
        self.failed += other.failed;
        self.stuck += other.stuck;
        self.errors += other.errors;
    }
}

/// Which intervals to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// Intervals ending within the last `days` days (the lookback).
    Lookback { days: u32 },
    /// Intervals inside `[from, to)` local dates (a backfill).
    Dates { from: Date, to: Date },
}

/// The body of a backfill invocation: `{"backfill": {"from", "to", "report_types"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backfill {
    pub from: Date,
    pub to: Date,
    #[serde(default)]
    pub report_types: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("backfill: {0}")]
    BadBackfill(String),
    #[error("report type {0} is not in REPORTS")]
    UnknownReportType(String),
    #[error("{0}")]
    Calendar(#[from] CalendarError),
}

/// The scheduler's dependencies and settings.
pub struct Scheduler<L, S, D> {
    pub ledger: L,
    pub stripe: S,
    pub downloads: D,
    pub specs: Vec<ReportSpec>,
    pub lookback_days: u32,
    pub stuck_after: Duration,
    pub limiter: Arc<RateLimiter>,
    /// Stripe requests in flight at once (the limiter still caps the rate).
    pub concurrency: usize,
}

impl<L: Ledger, S: StripeApi, D: DownloadQueue> Scheduler<L, S, D> {
    pub fn new(
        ledger: L,
        stripe: S,
        downloads: D,
        specs: Vec<ReportSpec>,
        lookback_days: u32,
    ) -> Self {
        Self {
            ledger,
            stripe,
            downloads,
            specs,
            lookback_days,
            stuck_after: DEFAULT_STUCK_AFTER,
            limiter: Arc::new(RateLimiter::new(DEFAULT_MAX_RPS)),
            concurrency: 16,
        }
    }

    /// The scheduled invocation: reconcile, then plan every spec over the lookback.
    pub async fn run_scheduled(&self, now: i64) -> Summary {
        let mut summary = self.reconcile(now).await;
        let window = Window::Lookback {
            days: self.lookback_days,
        };
        let specs: Vec<&ReportSpec> = self.specs.iter().collect();
        summary.add(&self.plan_and_create(&specs, &window, now).await);
        summary
    }

    /// New data for one report type (the schedule queue): plan its specs.
    pub async fn run_for_type(
        &self,
        report_type: &str,
        now: i64,
    ) -> Result<Summary, SchedulerError> {
        let specs: Vec<&ReportSpec> = self
            .specs
            .iter()
            .filter(|s| s.report_type == report_type)
            .collect();
        if specs.is_empty() {
            return Err(SchedulerError::UnknownReportType(report_type.to_owned()));
        }
        let window = Window::Lookback {
            days: self.lookback_days,
        };
        Ok(self.plan_and_create(&specs, &window, now).await)
    }

    /// A backfill: plan the given dates instead of the lookback.
    pub async fn run_backfill(
        &self,
        backfill: &Backfill,
        now: i64,
    ) -> Result<Summary, SchedulerError> {
        if backfill.from >= backfill.to {
            return Err(SchedulerError::BadBackfill(format!(
                "from ({}) must be before to ({})",
                backfill.from, backfill.to
            )));
        }
        let specs: Vec<&ReportSpec> = match &backfill.report_types {
            None => self.specs.iter().collect(),
            Some(types) => {
                for t in types {
                    if !self.specs.iter().any(|s| &s.report_type == t) {
                        return Err(SchedulerError::UnknownReportType(t.clone()));
                    }
                }
                self.specs
                    .iter()
                    .filter(|s| types.contains(&s.report_type))
                    .collect()
            }
        };
        let window = Window::Dates {
            from: backfill.from,
            to: backfill.to,
        };
        Ok(self.plan_and_create(&specs, &window, now).await)
    }

    async fn report_type(&self, id: &str) -> Result<ReportType, crate::stripe::StripeError> {
        self.limiter.acquire().await;
        self.stripe.report_type(id).await
    }

    /// Plans each spec (reading its report type once) and creates what is missing.
    async fn plan_and_create(&self, specs: &[&ReportSpec], window: &Window, now: i64) -> Summary {
        let mut summary = Summary::default();
        let mut types: HashMap<&str, Option<ReportType>> = HashMap::new();
        for spec in specs {
            if types.contains_key(spec.report_type.as_str()) {
                continue;
            }
            let kind = match self.report_type(&spec.report_type).await {
                Ok(kind) => Some(kind),
                Err(err) => {
                    warn!(report_type = %spec.report_type, error = %err, "cannot read report type");
                    summary.errors += 1;
                    None
                }
            };
            types.insert(spec.report_type.as_str(), kind);
        }
        // Owned specs: a stream of borrowed ones makes the future's type
        // higher-ranked, which tokio::spawn (the local runner) cannot accept.
        let mut work: Vec<(ReportSpec, Interval)> = Vec::new();
        for spec in specs {
            let Some(Some(kind)) = types.get(spec.report_type.as_str()) else {
                continue;
            };
            match plan(spec, kind, window, now) {
                Ok(plan) => {
                    summary.planned += plan.available.len() as u64;
                    summary.unavailable += plan.unavailable;
                    work.extend(
                        plan.available
                            .into_iter()
                            .map(|interval| ((*spec).clone(), interval)),
                    );
                }
                Err(err) => {
                    warn!(report_type = %spec.report_type, error = %err, "cannot plan");
                    summary.errors += 1;
                }
            }
        }
        let outcomes: Vec<Summary> =
            futures_util::stream::iter(work)
                .map(|(spec, interval)| async move {
                    self.ensure_requested(&spec, interval, 0, now).await
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
        for outcome in &outcomes {
            summary.add(outcome);
        }
        summary
    }

    /// Makes sure the request (spec, interval, attempt) has a run: creates it
    /// at Stripe with the request key as Idempotency-Key and records it.
    async fn ensure_requested(
        &self,
        spec: &ReportSpec,
        interval: Interval,
        attempt: u32,
        now: i64,
    ) -> Summary {
        let mut summary = Summary::default();
        let key = RequestKey::new(spec, interval, attempt);
        match self.ledger.requested_run(&key).await {
            Ok(Some(_)) => {
                summary.already_requested += 1;
                return summary;
            }
            Ok(None) => {}
            Err(err) => {
                warn!(request_key = %key, error = %err, "cannot read the ledger");
                summary.errors += 1;
                return summary;
            }
        }
        self.limiter.acquire().await;
        let run = match self
            .stripe
            .create_report_run(&CreateReportRun::for_spec(spec, interval), key.as_str())
            .await
        {
            Ok(run) => run,
            Err(err) => {
                warn!(request_key = %key, report_type = %spec.report_type, error = %err, "cannot create report run");
                summary.errors += 1;
                return summary;
            }
        };
        let facts = RunFacts {
            run_id: run.id.clone(),
            report_type: run.report_type.clone(),
            interval_start: Some(interval.start),
            interval_end: Some(interval.end),
        };
        match self.ledger.record_requested(&key, &facts, now).await {
            Ok(Recorded::New) => {
                info!(run_id = %run.id, report_type = %spec.report_type, interval_start = interval.start, attempt, "report run created");
                summary.created += 1;
            }
            Ok(Recorded::AlreadyRequested { run_id }) => {
                // A concurrent invocation recorded it first (same key → same run).
                info!(run_id = %run_id, report_type = %spec.report_type, "report run recorded by another invocation");
                summary.already_requested += 1;
            }
            Err(err) => {
                // Stripe has the run; the next invocation repeats the create with
                // the same Idempotency-Key and records the same run.
                warn!(run_id = %run.id, request_key = %key, error = %err, "run created but not recorded");
                summary.errors += 1;
            }
        }
        summary
    }

    /// The polling path: finished runs whose webhook never came, failed runs
    /// to re-request, stuck runs, and runs created elsewhere (the Dashboard,
    /// or orphaned by a crash) of configured types.
    pub async fn reconcile(&self, now: i64) -> Summary {
        let mut summary = Summary::default();
        let since = now - i64::from(self.lookback_days) * DAY - DAY;
        self.limiter.acquire().await;
        let listed = match self.stripe.report_runs_created_since(since).await {
            Ok(runs) => runs,
            Err(err) => {
                warn!(error = %err, "cannot list report runs");
                summary.errors += 1;
                Vec::new()
            }
        };
        let configured: HashSet<&str> = self.specs.iter().map(|s| s.report_type.as_str()).collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut runs: Vec<ReportRun> = Vec::new();
        for run in listed {
            seen.insert(run.id.clone());
            if configured.contains(run.report_type.as_str()) {
                runs.push(run);
            }
        }
        // Runs the ledger still waits for but the list did not show (older
        // than the list window): read them one by one.
        match self.ledger.unfinished_runs().await {
            Ok(unfinished) => {
                for record in unfinished
                    .into_iter()
                    .filter(|r| !seen.contains(&r.facts.run_id))
                {
                    self.limiter.acquire().await;
                    match self.stripe.report_run(&record.facts.run_id).await {
                        Ok(run) => runs.push(run),
                        Err(err) => {
                            warn!(run_id = %record.facts.run_id, error = %err, "cannot read report run");
                            summary.errors += 1;
                        }
                    }
                }
            }
            Err(err) => {
                warn!(error = %err, "cannot list unfinished runs");
                summary.errors += 1;
            }
        }
        let outcomes: Vec<Summary> = futures_util::stream::iter(runs)
            .map(|run| self.reconcile_run(run, now))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for outcome in &outcomes {
            summary.add(outcome);
        }
        summary
    }

    async fn reconcile_run(&self, run: ReportRun, now: i64) -> Summary {
        let mut summary = Summary::default();
        let span = tracing::info_span!("run", run_id = %run.id, report_type = %run.report_type);
        let _entered = span.enter();
        let facts = RunFacts {
            run_id: run.id.clone(),
            report_type: run.report_type.clone(),
            interval_start: run.parameters.interval_start,
            interval_end: run.parameters.interval_end,
        };
        let record = match self.ledger.run(&run.id).await {
            Ok(record) => record,
            Err(err) => {
                warn!(error = %err, "cannot read the ledger");
                summary.errors += 1;
                return summary;
            }
        };
        if record.as_ref().is_some_and(|r| r.status.is_final())
            && run.status != StripeRunStatus::Failed
        {
            return summary;
        }
        // Which of our requests this run answers (spec + attempt), if any.
        let request = self
            .request_of(&run, record.as_ref().and_then(|r| r.request_key.as_deref()))
            .await;
        if record.is_none()
            && let Some((spec, interval, attempt)) = &request
        {
            // Orphaned by a crash between Stripe and the ledger: adopt it.
            let key = RequestKey::new(spec, *interval, *attempt);
            match self.ledger.record_requested(&key, &facts, now).await {
                Ok(Recorded::New) => info!(attempt, "adopted a run missing from the ledger"),
                Ok(Recorded::AlreadyRequested { .. }) => {}
                Err(err) => {
                    warn!(error = %err, "cannot record adopted run");
                    summary.errors += 1;
                    return summary;
                }
            }
        }
        match run.status {
            StripeRunStatus::Succeeded => {
                // Enqueue a run the ledger did not know finished (missed webhook,
                // Dashboard run), or one that finished long ago and is still not
                // stored (its download kept failing): not every succeeded run on
                // every invocation, which would flood the queue with duplicates.
                let waiting = record.as_ref().is_some_and(|r| {
                    r.status == RunStatus::Succeeded && now - r.updated < REENQUEUE_AFTER_SECS
                });
                if waiting {
                    return summary;
                }
                match self.ledger.mark_succeeded(&facts, now).await {
                    Ok(Transition::Applied) => match self.downloads.enqueue_download(&run.id).await
                    {
                        Ok(()) => {
                            info!("finished run enqueued for download by reconcile");
                            summary.enqueued += 1;
                        }
                        Err(err) => {
                            warn!(error = %err, "cannot enqueue download");
                            summary.errors += 1;
                        }
                    },
                    Ok(Transition::Refused { .. }) => {}
                    Err(err) => {
                        warn!(error = %err, "cannot mark succeeded");
                        summary.errors += 1;
                    }
                }
            }
            StripeRunStatus::Failed => {
                let error = run
                    .error
                    .as_deref()
                    .unwrap_or("Stripe reported the run failed without an error message");
                match self.ledger.mark_failed(&facts, error, now).await {
                    Ok(Transition::Applied) => {
                        warn!(error, "report run failed at Stripe");
                        summary.failed += 1;
                    }
                    Ok(Transition::Refused { .. }) => {}
                    Err(err) => {
                        warn!(error = %err, "cannot mark failed");
                        summary.errors += 1;
                        return summary;
                    }
                }
                if let Some((spec, interval, attempt)) = request {
                    if attempt + 1 < MAX_ATTEMPTS {
                        // Only what the re-request did counts: finding it made
                        // by an earlier invocation is not news.
                        let retry = self
                            .ensure_requested(spec, interval, attempt + 1, now)
                            .await;
                        summary.created += retry.created;
                        summary.errors += retry.errors;
                    } else {
                        warn!(
                            attempt,
                            "report run failed on its last attempt: not requested again"
                        );
                    }
                }
            }
            StripeRunStatus::Pending | StripeRunStatus::Other(_) => {
                let age = now - run.created;
                if age > self.stuck_after.as_secs() as i64 {
                    warn!(age_secs = age, "report run stuck in pending");
                    summary.stuck += 1;
                }
            }
        }
        summary
    }

    /// The spec, interval and attempt whose request key this run answers: the
    /// ledger's `request_key` when known, else the first attempt of the spec
    /// (with the run's parameters) whose key is free or already names this run.
    async fn request_of(
        &self,
        run: &ReportRun,
        recorded_key: Option<&str>,
    ) -> Option<(&ReportSpec, Interval, u32)> {
        let interval = Interval {
            start: run.parameters.interval_start?,
            end: run.parameters.interval_end?,
        };
        let candidates = self.specs.iter().filter(|spec| {
            spec.report_type == run.report_type
                && CreateReportRun::for_spec(spec, interval).parameters == run.parameters
        });
        for spec in candidates {
            for attempt in 0..MAX_ATTEMPTS {
                let key = RequestKey::new(spec, interval, attempt);
                let answers = match recorded_key {
                    Some(recorded) => recorded == key.as_str(),
                    None => match self.ledger.requested_run(&key).await {
                        Ok(None) => true,
                        Ok(Some(run_id)) => run_id == run.id,
                        Err(_) => false,
                    },
                };
                if answers {
                    return Some((spec, interval, attempt));
                }
            }
        }
        None
    }
}

/// The intervals of one spec inside a window, split by availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub available: Vec<Interval>,
    pub unavailable: u64,
}

/// Whole intervals of `spec` inside `window` (at `now`), of which those with
/// `interval_start ≥ data_available_start` and `interval_end ≤ data_available_end`
/// are available. Intervals still in the future are not counted at all.
pub fn plan(
    spec: &ReportSpec,
    kind: &ReportType,
    window: &Window,
    now: i64,
) -> Result<Plan, CalendarError> {
    let tz = spec.time_zone();
    let intervals = match window {
        Window::Lookback { days } => {
            calendar::intervals_ending_in(spec.frequency, &tz, now - i64::from(*days) * DAY, now)?
        }
        Window::Dates { from, to } => {
            calendar::intervals_within_dates(spec.frequency, &tz, *from, *to)?
                .into_iter()
                .filter(|interval| interval.end <= now)
                .collect()
        }
    };
    let (available, unavailable): (Vec<Interval>, Vec<Interval>) =
        intervals.into_iter().partition(|interval| {
            interval.start >= kind.data_available_start && interval.end <= kind.data_available_end
        });
    Ok(Plan {
        available,
        unavailable: unavailable.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::Frequency;

    fn kind(start: i64, end: i64) -> ReportType {
        ReportType {
            id: "balance.summary.1".into(),
            object: "reporting.report_type".into(),
            name: "Balance".into(),
            data_available_start: start,
            data_available_end: end,
            default_columns: None,
            livemode: false,
            updated: 0,
            version: 1,
        }
    }

    // 2026-03-10 00:00 UTC
    const MAR10: i64 = 1_773_100_800;

    #[test]
    fn lookback_plans_whole_available_days_only() {
        let spec = ReportSpec::new("balance.summary.1");
        let now = MAR10 + 13 * 3600;
        // Stripe has data up to the start of Mar 9: Mar 9 is unavailable.
        let plan = plan(
            &spec,
            &kind(0, MAR10 - DAY),
            &Window::Lookback { days: 7 },
            now,
        )
        .unwrap();
        assert_eq!(plan.available.len(), 6);
        assert_eq!(plan.unavailable, 1);
        assert_eq!(plan.available.last().unwrap().end, MAR10 - DAY);
    }

    #[test]
    fn availability_edge_is_inclusive_of_interval_end() {
        let spec = ReportSpec::new("balance.summary.1");
        let now = MAR10 + 13 * 3600;
        let exact = plan(&spec, &kind(0, MAR10), &Window::Lookback { days: 2 }, now).unwrap();
        assert_eq!(exact.available.last().unwrap().end, MAR10);
        let short = plan(
            &spec,
            &kind(0, MAR10 - 1),
            &Window::Lookback { days: 2 },
            now,
        )
        .unwrap();
        assert!(short.available.iter().all(|i| i.end < MAR10));
        assert_eq!(short.unavailable, 1);
        // data_available_start cuts the start of the window.
        let late_start = plan(
            &spec,
            &kind(MAR10 - DAY, MAR10),
            &Window::Lookback { days: 7 },
            now,
        )
        .unwrap();
        assert_eq!(late_start.available.len(), 1);
    }

    #[test]
    fn backfill_is_clipped_to_availability_and_the_past() {
        let mut spec = ReportSpec::new("balance.summary.1");
        spec.frequency = Frequency::Weekly;
        let from = jiff::civil::date(2026, 1, 1);
        let to = jiff::civil::date(2026, 3, 1);
        let p = plan(&spec, &kind(0, MAR10), &Window::Dates { from, to }, MAR10).unwrap();
        // Whole ISO weeks starting 2026-01-05 .. ending by 2026-03-01.
        assert_eq!(p.available.len(), 7);
        assert_eq!(p.unavailable, 0);
    }
}
