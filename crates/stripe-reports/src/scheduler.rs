//! The scheduler use case: plan → create → record → reconcile.
//!
//! Level-triggered: each invocation works out which report runs *should*
//! exist and creates only the missing ones, so running it twice, late,
//! concurrently or after an outage is safe. Every create carries the request
//! key as `Idempotency-Key`, so a crash between Stripe and the ledger write is
//! healed by the next invocation (same key → Stripe returns the same run).
//! Beyond Stripe's 24 h key window that no longer holds, so before anything
//! is created every entry point reads Stripe's runs for the window and adopts
//! each run whose request the ledger does not hold (an orphan), whatever its
//! state; when that list cannot be read, nothing new is created.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, warn};

use crate::accounts::{AccountState, Accounts};
use crate::domain::account::AccountId;
use crate::domain::calendar::{self, CalendarError, Interval};
use crate::domain::config::{RateSettings, RequestRates};
use crate::domain::due::{Availability, DEFAULT_OVERDUE_AFTER_MINUTES, IntervalState, overdue_for};
use crate::domain::ledger::RunStatus;
use crate::domain::request_key::RequestKey;
use crate::domain::spec::ReportSpec;
use crate::ports::{
    DownloadQueue, Ledger, LedgerError, Recorded, RunFacts, RunRecord, StripeApi, StripeByAccount,
    Transition,
};
use crate::rate::{RateLimiter, SharedPace};
use crate::status::walk_attempts;
use crate::stripe::{CreateReportRun, ReportRun, ReportType, StripeError, StripeRunStatus};

/// A failed run is requested once more (attempt 1); a second failure is final.
pub const MAX_ATTEMPTS: u32 = 2;
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(6 * 3600);
/// Work items (intervals to request, runs to settle, report types to read)
/// in flight at once per account, at least. Each waits for its slot, then
/// for Stripe's answer and the ledger (a created run is one ledger read and
/// two writes around its request), so keeping the pace needs
/// pace × (answer time + ledger time) in flight: the scheduler keeps
/// [`IN_FLIGHT_SECONDS`] of its pace in flight, up to [`MAX_CONCURRENCY`].
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Seconds of the pace in flight: the pace holds while a work item takes
/// up to this long (Stripe answers a create in well under a second).
pub const IN_FLIGHT_SECONDS: f64 = 2.0;
pub const MAX_CONCURRENCY: usize = 256;
/// A succeeded run still not stored after this long is enqueued again.
pub const REENQUEUE_AFTER_SECS: i64 = 3600;
const DAY: i64 = 86_400;

/// What one invocation did. Logged as one JSON line and returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Intervals that should have a run (data available, inside the window).
    pub planned: u64,
    /// Runs created at Stripe by this invocation.
    pub created: u64,
    /// Planned intervals whose request was recorded before.
    pub already_requested: u64,
    /// Intervals inside the window whose data Stripe does not have yet.
    pub unavailable: u64,
    /// Runs at Stripe recorded under the request they answer, which the
    /// ledger did not hold (orphaned by a failed ledger write, or a
    /// Dashboard run with a spec's exact parameters).
    pub adopted: u64,
    /// Planned intervals not requested because Stripe's run list could not
    /// be read (an orphan could not be ruled out); the next invocation does.
    pub deferred: u64,
    /// Finished runs put on the download queue by reconcile.
    pub enqueued: u64,
    /// Runs found failed at Stripe and recorded as such.
    pub failed: u64,
    /// Unfinished runs Stripe no longer has (404), retired by this invocation.
    pub retired: u64,
    /// Runs pending longer than the stuck age.
    pub stuck: u64,
    /// Planned intervals due for longer than the overdue grace and not
    /// stored (counted by the scheduled invocation).
    pub overdue: u64,
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
        self.adopted += other.adopted;
        self.deferred += other.deferred;
        self.enqueued += other.enqueued;
        self.failed += other.failed;
        self.retired += other.retired;
        self.stuck += other.stuck;
        self.overdue += other.overdue;
        self.errors += other.errors;
    }

    fn error() -> Self {
        Summary {
            errors: 1,
            ..Summary::default()
        }
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

/// The body of a backfill invocation:
/// `{"backfill": {"from", "to", "report_types"?, "accounts"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backfill {
    pub from: Date,
    pub to: Date,
    #[serde(default)]
    pub report_types: Option<Vec<String>>,
    /// Only these accounts (default: every configured account).
    #[serde(default)]
    pub accounts: Option<Vec<AccountId>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("backfill: {0}")]
    BadBackfill(String),
    #[error("report type {0} is not in REPORTS")]
    UnknownReportType(String),
    #[error("{0}")]
    Account(String),
    #[error("{0}")]
    Calendar(#[from] CalendarError),
}

/// Whether this invocation may create runs at Stripe: only once Stripe's run
/// list for the window was read and every orphan in it adopted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creates {
    Allowed,
    /// The list could not be read: a free request key may hide an orphan
    /// older than Stripe's idempotency window.
    Deferred,
}

/// Whether planning counts the overdue intervals: the schedule does (its
/// count is the `OverdueIntervals` metric); a schedule-queue message or a
/// backfill covers only part of the specs, so it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overdue {
    Count,
    Skip,
}

/// The request (spec, interval, attempt) a run answers.
type Request<'a> = (&'a ReportSpec, Interval, u32);

/// A report type as read from Stripe, or the failure counted for it.
type TypeRead = Result<(ReportType, Availability), Summary>;

fn facts_of(account: &AccountId, run: &ReportRun) -> RunFacts {
    RunFacts {
        account: account.clone(),
        run_id: run.id.clone(),
        report_type: run.report_type.clone(),
        interval_start: run.parameters.interval_start,
        interval_end: run.parameters.interval_end,
    }
}

/// One account's scheduler: its dependencies and settings. Everything it
/// reads and writes is that account's (its key, its request keys, its
/// ledger items); [`AccountSchedulers`] runs one per configured account.
pub struct Scheduler<L, S, D> {
    pub account: AccountId,
    pub ledger: L,
    pub stripe: S,
    pub downloads: D,
    pub specs: Vec<ReportSpec>,
    pub lookback_days: u32,
    pub stuck_after: Duration,
    /// How long an interval may be due and not stored before it is overdue.
    pub overdue_after: Duration,
    pub limiter: Arc<RateLimiter>,
    /// Work items in flight at once (the limiter still caps the rate).
    pub concurrency: usize,
}

impl<L: Ledger, S: StripeApi, D: DownloadQueue> Scheduler<L, S, D> {
    /// The scheduler of `account`, over the specs that apply to it.
    pub fn new(
        account: AccountId,
        ledger: L,
        stripe: S,
        downloads: D,
        specs: Vec<ReportSpec>,
        lookback_days: u32,
    ) -> Self {
        let specs = specs
            .into_iter()
            .filter(|spec| spec.applies_to(&account))
            .collect();
        Self {
            account,
            ledger,
            stripe,
            downloads,
            specs,
            lookback_days,
            stuck_after: DEFAULT_STUCK_AFTER,
            overdue_after: Duration::from_secs(u64::from(DEFAULT_OVERDUE_AFTER_MINUTES) * 60),
            limiter: Arc::new(RateLimiter::new(
                RateSettings::default().rates_for(None).pace(),
            )),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Runs for intervals inside the lookback were created after the
    /// interval ended (the scheduler requests nothing Stripe has no data
    /// for), so none was created before this.
    fn lookback_since(&self, now: i64) -> i64 {
        now - i64::from(self.lookback_days) * DAY - DAY
    }

    /// The scheduled invocation: reconcile (adopting orphans first), then
    /// plan every spec over the lookback and count what is overdue.
    pub async fn run_scheduled(&self, now: i64) -> Summary {
        let (listed, mut summary) = self.list_runs(self.lookback_since(now)).await;
        let (reconciled, creates) = self.reconcile_listed(listed, now).await;
        summary.add(&reconciled);
        let window = Window::Lookback {
            days: self.lookback_days,
        };
        let specs: Vec<&ReportSpec> = self.specs.iter().collect();
        summary.add(
            &self
                .plan_and_create(&specs, &window, creates, Overdue::Count, now)
                .await,
        );
        summary
    }

    /// The polling path alone: reads Stripe's runs of the lookback and the
    /// ledger's unfinished runs, and settles each (see [`Self::run_scheduled`]).
    pub async fn reconcile(&self, now: i64) -> Summary {
        let (listed, mut summary) = self.list_runs(self.lookback_since(now)).await;
        summary.add(&self.reconcile_listed(listed, now).await.0);
        summary
    }

    /// New data for one report type (the schedule queue): adopt its
    /// orphans, then plan its specs.
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
        Ok(self
            .adopt_then_plan(&specs, &window, self.lookback_since(now), now)
            .await)
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
        // Every interval of the backfill ends after `from` in any timezone
        // (offsets are under a day), and its run was created after it ended.
        let since = calendar::start_of_day(backfill.from, &jiff::tz::TimeZone::UTC)
            .map(|start| start - 2 * DAY)
            .unwrap_or(0);
        Ok(self.adopt_then_plan(&specs, &window, since, now).await)
    }

    /// Adopts the orphans among Stripe's runs created since `since` of the
    /// given specs' types, then plans and creates what is still missing.
    async fn adopt_then_plan(
        &self,
        specs: &[&ReportSpec],
        window: &Window,
        since: i64,
        now: i64,
    ) -> Summary {
        let (listed, mut summary) = self.list_runs(since).await;
        let creates = match listed {
            Some(runs) => {
                let types: HashSet<&str> = specs.iter().map(|s| s.report_type.as_str()).collect();
                let runs: Vec<ReportRun> = runs
                    .into_iter()
                    .filter(|run| types.contains(run.report_type.as_str()))
                    .collect();
                let (_, adopted) = self.adopt_all(runs, now).await;
                summary.add(&adopted);
                if adopted.errors == 0 {
                    Creates::Allowed
                } else {
                    Creates::Deferred
                }
            }
            None => Creates::Deferred,
        };
        summary.add(
            &self
                .plan_and_create(specs, window, creates, Overdue::Skip, now)
                .await,
        );
        summary
    }

    /// Stripe's runs created since `since`, or `None` (counted as an error)
    /// when the list cannot be read.
    async fn list_runs(&self, since: i64) -> (Option<Vec<ReportRun>>, Summary) {
        self.limiter.acquire().await;
        match self.stripe.report_runs_created_since(since).await {
            Ok(runs) => (Some(runs), Summary::default()),
            Err(err) => {
                warn!(error = %err, "cannot list report runs: nothing new is created until it can be read");
                (None, Summary::error())
            }
        }
    }

    async fn report_type(&self, id: &str) -> Result<ReportType, StripeError> {
        self.limiter.acquire().await;
        self.stripe.report_type(id).await
    }

    /// A report type and when each of its `data_available_end` values was
    /// first seen, this sighting recorded (it is what makes intervals due).
    async fn report_type_seen(
        &self,
        id: &str,
        now: i64,
    ) -> Result<(ReportType, Availability), Summary> {
        let kind = self.report_type(id).await.map_err(|err| {
            warn!(report_type = %id, error = %err, "cannot read report type");
            Summary::error()
        })?;
        let mut seen = self.ledger.availability(&self.account, id).await.map_err(|err| {
            warn!(report_type = %id, error = %err, "cannot read when its data became available");
            Summary::error()
        })?;
        if seen.observe(kind.data_available_end, now)
            && let Err(err) = self
                .ledger
                .record_availability(&self.account, id, kind.data_available_end, now)
                .await
        {
            warn!(report_type = %id, error = %err, "cannot record when its data became available");
            return Err(Summary::error());
        }
        Ok((kind, seen))
    }

    /// Plans each spec (reading its report type once), creates what is
    /// missing and, for the schedule, counts the overdue intervals.
    async fn plan_and_create(
        &self,
        specs: &[&ReportSpec],
        window: &Window,
        creates: Creates,
        overdue: Overdue,
        now: i64,
    ) -> Summary {
        let mut summary = Summary::default();
        // Each report type read once, several at once (one at a time,
        // Stripe's answer time and not the pace would set how long this takes).
        // Owned ids, as for the work below: a stream of borrowed ones makes
        // the future's type higher-ranked, which tokio::spawn cannot accept.
        let distinct: HashSet<String> = specs.iter().map(|s| s.report_type.clone()).collect();
        let read: Vec<(String, TypeRead)> = futures_util::stream::iter(distinct)
            .map(|id| async move {
                let kind = self.report_type_seen(&id, now).await;
                (id, kind)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut types: HashMap<String, Option<(ReportType, Availability)>> = HashMap::new();
        for (id, kind) in read {
            let kind = match kind {
                Ok(kind) => Some(kind),
                Err(failed) => {
                    summary.add(&failed);
                    None
                }
            };
            types.insert(id, kind);
        }
        // Owned specs: a stream of borrowed ones makes the future's type
        // higher-ranked, which tokio::spawn (the local runner) cannot accept.
        let mut work: Vec<(ReportSpec, Interval, i64)> = Vec::new();
        for spec in specs {
            let Some(Some((kind, seen))) = types.get(&spec.report_type) else {
                continue;
            };
            match plan(spec, kind, window, now) {
                Ok(plan) => {
                    summary.planned += plan.available.len() as u64;
                    summary.unavailable += plan.unavailable;
                    work.extend(plan.available.into_iter().map(|interval| {
                        let due_since = seen.since(interval.end).unwrap_or(now);
                        ((*spec).clone(), interval, due_since)
                    }));
                }
                Err(err) => {
                    warn!(report_type = %spec.report_type, error = %err, "cannot plan");
                    summary.errors += 1;
                }
            }
        }
        let grace = self.overdue_after.as_secs() as i64;
        let outcomes: Vec<Summary> = futures_util::stream::iter(work)
            .map(|(spec, interval, due_since)| async move {
                let (mut summary, state) =
                    self.ensure_requested(&spec, interval, creates, now).await;
                if overdue == Overdue::Count
                    && let Some(late) = overdue_for(due_since, state, now, grace)
                {
                    summary.overdue += 1;
                    warn!(
                        report_type = %spec.report_type,
                        frequency = spec.frequency.as_str(),
                        timezone = %spec.timezone,
                        interval_start = interval.start,
                        interval_end = interval.end,
                        due_since,
                        overdue_secs = late,
                        state = ?state,
                        why = state.why_not_stored().unwrap_or_default(),
                        "report overdue"
                    );
                }
                summary
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for outcome in &outcomes {
            summary.add(outcome);
        }
        if summary.deferred > 0 {
            warn!(
                deferred = summary.deferred,
                "planned intervals not requested: Stripe's run list could not be read"
            );
        }
        summary
    }

    /// Makes sure an interval has a live request, and says where it stands:
    /// walks its attempts in order — a run that failed at Stripe or was
    /// retired is requested again under the next attempt, up to
    /// [`MAX_ATTEMPTS`] — and creates the first one missing. Each invocation
    /// does this afresh, so a re-request that could not be made now is made
    /// by the next one.
    async fn ensure_requested(
        &self,
        spec: &ReportSpec,
        interval: Interval,
        creates: Creates,
        now: i64,
    ) -> (Summary, IntervalState) {
        let mut summary = Summary::default();
        let walked = match walk_attempts(&self.ledger, &self.account, spec, interval).await {
            Ok(walked) => walked,
            Err(err) => {
                warn!(report_type = %spec.report_type, interval_start = interval.start, error = %err, "cannot read the ledger");
                summary.errors += 1;
                return (summary, IntervalState::NeverRequested);
            }
        };
        match walked.next_free {
            Some(attempt) => {
                let key = RequestKey::new(&self.account, spec, interval, attempt);
                let created = self
                    .create(spec, interval, attempt, &key, creates, now)
                    .await;
                let state = if created.created + created.already_requested > 0 {
                    IntervalState::Pending
                } else {
                    walked.state
                };
                summary.add(&created);
                (summary, state)
            }
            None => {
                if matches!(walked.state, IntervalState::Failed | IntervalState::Retired) {
                    info!(report_type = %spec.report_type, interval_start = interval.start, state = ?walked.state, "the last attempt failed: not requested again");
                }
                summary.already_requested += 1;
                (summary, walked.state)
            }
        }
    }

    /// Creates the run of one request at Stripe, with the request key as
    /// Idempotency-Key, and records it.
    async fn create(
        &self,
        spec: &ReportSpec,
        interval: Interval,
        attempt: u32,
        key: &RequestKey,
        creates: Creates,
        now: i64,
    ) -> Summary {
        let mut summary = Summary::default();
        if creates == Creates::Deferred {
            summary.deferred += 1;
            return summary;
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
            account: self.account.clone(),
            run_id: run.id.clone(),
            report_type: run.report_type.clone(),
            interval_start: Some(interval.start),
            interval_end: Some(interval.end),
        };
        match self.ledger.record_requested(key, &facts, now).await {
            Ok(Recorded::New) => {
                info!(run_id = %run.id, report_type = %spec.report_type, interval_start = interval.start, attempt, "report run created");
                summary.created += 1;
            }
            Ok(Recorded::OtherAccount { owner }) => {
                warn!(run_id = %run.id, owner = %owner, "the run just created is held in the ledger for another account: not recorded");
                summary.errors += 1;
            }
            Ok(Recorded::AlreadyRequested { run_id }) => {
                // A concurrent invocation recorded it first (same key → same run).
                info!(run_id = %run_id, report_type = %spec.report_type, "report run recorded by another invocation");
                summary.already_requested += 1;
            }
            Err(err) => {
                // Stripe has the run; the next invocation repeats the create with
                // the same Idempotency-Key (or, past Stripe's key window, adopts
                // the run from Stripe's list) and records the same run.
                warn!(run_id = %run.id, request_key = %key, error = %err, "run created but not recorded");
                summary.errors += 1;
            }
        }
        summary
    }

    /// The polling path over Stripe's listed runs (`None`: the list could
    /// not be read) and the ledger's unfinished runs: first every orphan is
    /// adopted (all of them, before anything else, so no re-request can
    /// take a key an orphan answers); then finished runs whose webhook never
    /// came are enqueued, failed runs recorded, stuck runs counted, runs
    /// Stripe no longer has retired, and runs created elsewhere (the
    /// Dashboard) of configured types recorded. Returns whether runs may be
    /// created afterwards: only when the list was read and every adoption
    /// was decided.
    async fn reconcile_listed(
        &self,
        listed: Option<Vec<ReportRun>>,
        now: i64,
    ) -> (Summary, Creates) {
        let mut summary = Summary::default();
        let listed_ok = listed.is_some();
        let unfinished = match self.ledger.unfinished_runs(&self.account).await {
            Ok(unfinished) => unfinished,
            Err(err) => {
                warn!(error = %err, "cannot list unfinished runs");
                summary.errors += 1;
                Vec::new()
            }
        };
        let waiting: HashSet<&str> = unfinished
            .iter()
            .map(|record| record.facts.run_id.as_str())
            .collect();
        let configured: HashSet<&str> = self.specs.iter().map(|s| s.report_type.as_str()).collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut runs: Vec<ReportRun> = Vec::new();
        for run in listed.unwrap_or_default() {
            seen.insert(run.id.clone());
            // A run the ledger waits for is finished even when its report
            // type was removed from REPORTS since it was requested.
            if configured.contains(run.report_type.as_str()) || waiting.contains(run.id.as_str()) {
                runs.push(run);
            }
        }
        // Runs the ledger still waits for but the list did not show (older
        // than the list window): read them each, several at once (one at a
        // time, Stripe's answer time and not the pace would set how long
        // this takes).
        // Owned records (see `plan_and_create`).
        let unlisted: Vec<RunRecord> = unfinished
            .iter()
            .filter(|r| !seen.contains(&r.facts.run_id))
            .cloned()
            .collect();
        let read: Vec<Result<ReportRun, Summary>> = futures_util::stream::iter(unlisted)
        .map(|record| async move {
            self.limiter.acquire().await;
            match self.stripe.report_run(&record.facts.run_id).await {
                Ok(run) => Ok(run),
                // Stripe's own "no such object", while the same key just
                // listed runs (so the key and the API base are right).
                Err(err) if err.is_resource_missing() && listed_ok => {
                    let span = tracing::info_span!("run", run_id = %record.facts.run_id, report_type = %record.facts.report_type);
                    Err(self.retire(&record, &err, now).instrument(span).await)
                }
                Err(err) => {
                    warn!(run_id = %record.facts.run_id, error = %err, "cannot read report run");
                    Err(Summary::error())
                }
            }
        })
        .buffer_unordered(self.concurrency.max(1))
        .collect()
        .await;
        for outcome in read {
            match outcome {
                Ok(run) => runs.push(run),
                Err(settled) => summary.add(&settled),
            }
        }
        let (runs, adopted) = self.adopt_all(runs, now).await;
        summary.add(&adopted);
        let creates = if listed_ok && adopted.errors == 0 {
            Creates::Allowed
        } else {
            Creates::Deferred
        };
        let outcomes: Vec<Summary> = futures_util::stream::iter(runs)
            .map(|(run, record)| {
                let span =
                    tracing::info_span!("run", run_id = %run.id, report_type = %run.report_type);
                self.settle_run(run, record, now).instrument(span)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for outcome in &outcomes {
            summary.add(outcome);
        }
        (summary, creates)
    }

    /// Reads each run's ledger item and adopts the orphans among them, all
    /// before anything else happens. Returns the runs whose item could be
    /// read, with the item as read, and what adoption did.
    async fn adopt_all(
        &self,
        runs: Vec<ReportRun>,
        now: i64,
    ) -> (Vec<(ReportRun, Option<RunRecord>)>, Summary) {
        /// A run, and its ledger item as read with whether it was adopted.
        type Adoption = (ReportRun, Result<(Option<RunRecord>, bool), LedgerError>);
        let outcomes: Vec<Adoption> = futures_util::stream::iter(runs)
            .map(|run| {
                let span =
                    tracing::info_span!("run", run_id = %run.id, report_type = %run.report_type);
                async move {
                    let adopted = async {
                        let record = self.ledger.run(&run.id).await?;
                        let newly = self.adopt(&run, record.as_ref(), now).await?;
                        Ok((record, newly))
                    }
                    .await;
                    (run, adopted)
                }
                .instrument(span)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut summary = Summary::default();
        let mut read = Vec::with_capacity(outcomes.len());
        for (run, outcome) in outcomes {
            match outcome {
                Ok((record, newly)) => {
                    summary.adopted += u64::from(newly);
                    read.push((run, record));
                }
                Err(err) => {
                    warn!(run_id = %run.id, error = %err, "cannot read or adopt run: nothing new is created this time");
                    summary.errors += 1;
                }
            }
        }
        (read, summary)
    }

    /// An unfinished run Stripe answers 404 for: moved to `retired` with the
    /// reason, counted once (the transition is conditional), then quiet: it
    /// is no longer unfinished, so no longer read. Its interval is requested
    /// again by planning (see [`Self::ensure_requested`]), on every
    /// invocation until that succeeds.
    async fn retire(&self, record: &RunRecord, err: &StripeError, now: i64) -> Summary {
        let mut summary = Summary::default();
        let reason = format!(
            "Stripe no longer has this run with the configured key ({err}); \
             was the key switched between test and live mode, or the test data deleted?"
        );
        match self.ledger.mark_retired(&record.facts, &reason, now).await {
            Ok(Transition::Applied) => {
                warn!(reason = %reason, "report run retired");
                summary.retired += 1;
            }
            Ok(Transition::Refused { .. }) => {}
            Ok(Transition::OtherAccount { owner }) => {
                warn!(owner = %owner, "the ledger holds this run for another account: left alone");
                summary.errors += 1;
            }
            Err(err) => {
                warn!(error = %err, "cannot retire report run");
                summary.errors += 1;
            }
        }
        summary
    }

    /// Records `run` under the request it answers when the ledger holds no
    /// request for it (no item, or an item without `request_key`: a webhook
    /// recorded it after the scheduler's own ledger write failed), whatever
    /// its state. Returns whether this call adopted it.
    async fn adopt(
        &self,
        run: &ReportRun,
        record: Option<&RunRecord>,
        now: i64,
    ) -> Result<bool, LedgerError> {
        if record.is_some_and(|r| r.request_key.is_some()) {
            return Ok(false);
        }
        let Some((spec, interval, attempt)) = self.request_of(run).await? else {
            return Ok(false);
        };
        let key = RequestKey::new(&self.account, spec, interval, attempt);
        match self
            .ledger
            .record_requested(&key, &facts_of(&self.account, run), now)
            .await?
        {
            Recorded::New => {
                info!(
                    attempt,
                    request_key = %key,
                    "adopted a run whose request the ledger did not hold"
                );
                Ok(true)
            }
            // The same run (a repeated adoption: its link is now written),
            // or another run took this request meanwhile (a concurrent
            // adoption): this one is looked at again on the next invocation.
            Recorded::AlreadyRequested { .. } => Ok(false),
            // Stripe listed it with this account's key, yet the ledger holds
            // it for another (a delivery attributed elsewhere): left as it
            // is, and nothing else is held up by it.
            Recorded::OtherAccount { owner } => {
                warn!(owner = %owner, "the ledger holds this run for another account: not adopted");
                Ok(false)
            }
        }
    }

    /// Brings the ledger in line with what Stripe says of one run.
    async fn settle_run(&self, run: ReportRun, record: Option<RunRecord>, now: i64) -> Summary {
        let mut summary = Summary::default();
        let facts = facts_of(&self.account, &run);
        if record.as_ref().is_some_and(|r| r.status.is_final())
            && run.status != StripeRunStatus::Failed
        {
            return summary;
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
                    Ok(Transition::Applied) => match self
                        .downloads
                        .enqueue_download(&self.account, &run.id)
                        .await
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
                    Ok(Transition::OtherAccount { owner }) => {
                        warn!(owner = %owner, "the ledger holds this run for another account: left alone");
                        summary.errors += 1;
                    }
                    Err(err) => {
                        warn!(error = %err, "cannot mark succeeded");
                        summary.errors += 1;
                    }
                }
            }
            StripeRunStatus::Failed => {
                // Recorded here; planning requests the interval again
                // (the next attempt) once the failure is in the ledger.
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
                    Ok(Transition::OtherAccount { owner }) => {
                        warn!(owner = %owner, "the ledger holds this run for another account: left alone");
                        summary.errors += 1;
                    }
                    Err(err) => {
                        warn!(error = %err, "cannot mark failed");
                        summary.errors += 1;
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

    /// The spec, interval and attempt whose request key this run answers:
    /// the first attempt of a spec with exactly the run's parameters whose
    /// key is free or already names this run. A ledger read that fails is
    /// an error, never a guess: guessing "free" could record the run under
    /// the wrong attempt.
    async fn request_of(&self, run: &ReportRun) -> Result<Option<Request<'_>>, LedgerError> {
        let (Some(start), Some(end)) = (run.parameters.interval_start, run.parameters.interval_end)
        else {
            return Ok(None);
        };
        let interval = Interval { start, end };
        let candidates = self.specs.iter().filter(|spec| {
            spec.report_type == run.report_type
                && CreateReportRun::for_spec(spec, interval).parameters == run.parameters
        });
        for spec in candidates {
            for attempt in 0..MAX_ATTEMPTS {
                let key = RequestKey::new(&self.account, spec, interval, attempt);
                let answers = match self.ledger.requested_run(&key).await? {
                    None => true,
                    Some(run_id) => run_id == run.id,
                };
                if answers {
                    return Ok(Some((spec, interval, attempt)));
                }
            }
        }
        Ok(None)
    }
}

/// One account's part of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSummary {
    /// The account's id (or, for a one-account configuration whose key
    /// could not be checked, what names it).
    pub account: String,
    #[serde(flatten)]
    pub summary: Summary,
    /// Why the account could not be worked at all (its key could not be
    /// checked, or is another account's): it waits, the others go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
}

impl AccountSummary {
    /// Whether the account needs a person: it could not be worked, or some
    /// of its requests failed (a revoked key answers 401 to each).
    pub fn is_failing(&self) -> bool {
        self.failing.is_some() || self.summary.errors > 0
    }
}

/// What one invocation did, account by account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub accounts: Vec<AccountSummary>,
}

impl Outcome {
    /// Every account's counts added up.
    pub fn total(&self) -> Summary {
        let mut total = Summary::default();
        for account in &self.accounts {
            total.add(&account.summary);
        }
        total
    }

    /// How many accounts need a person (the `FailingAccounts` metric).
    pub fn failing_accounts(&self) -> u64 {
        self.accounts.iter().filter(|a| a.is_failing()).count() as u64
    }
}

/// The scheduler of every configured account. Each account is worked by
/// its own [`Scheduler`], with its own key and its own rate limiter at its
/// own mode's rates (Stripe limits each account on its own), all at once: N
/// accounts take about the time of the largest, and one that fails (a
/// revoked key, a 429 storm, an outage) neither stops nor slows the others.
pub struct AccountSchedulers<L, S, D> {
    pub accounts: Arc<Accounts>,
    pub ledger: L,
    pub stripe: S,
    pub downloads: D,
    pub specs: Vec<ReportSpec>,
    pub lookback_days: u32,
    pub stuck_after: Duration,
    pub overdue_after: Duration,
    /// Each account's request rates (`STRIPE_MAX_RPS`,
    /// `STRIPE_MAX_RPS_PER_ENDPOINT`; unset, by its key's mode).
    pub rates: RateSettings,
    /// The sequence of request slots every invocation working an account
    /// takes from (the ledger table); `None`: each invocation paces itself.
    pub shared_pace: Option<Arc<dyn SharedPace>>,
    pub concurrency: usize,
    /// Kept across the invocations of a warm function, so that back-to-back
    /// invocations share one account's pacing.
    limiters: std::sync::Mutex<HashMap<AccountId, Arc<RateLimiter>>>,
}

impl<L, S, D> AccountSchedulers<L, S, D>
where
    L: Ledger + Clone,
    S: StripeByAccount,
    D: DownloadQueue + Clone,
{
    pub fn new(
        accounts: Arc<Accounts>,
        ledger: L,
        stripe: S,
        downloads: D,
        specs: Vec<ReportSpec>,
        lookback_days: u32,
    ) -> Self {
        Self {
            accounts,
            ledger,
            stripe,
            downloads,
            specs,
            lookback_days,
            stuck_after: DEFAULT_STUCK_AFTER,
            overdue_after: Duration::from_secs(u64::from(DEFAULT_OVERDUE_AFTER_MINUTES) * 60),
            rates: RateSettings::default(),
            shared_pace: None,
            concurrency: DEFAULT_CONCURRENCY,
            limiters: Default::default(),
        }
    }

    /// The rates `account` is paced at: the configured ones, else those of
    /// its key's mode.
    pub async fn rates_of(&self, account: &AccountId) -> RequestRates {
        self.rates
            .rates_for(self.accounts.key_livemode(account).await)
    }

    /// The account's limiter, at the rates of its key's mode now (a key
    /// switched between test and live mode while warm gets new rates).
    async fn limiter(&self, account: &AccountId) -> Arc<RateLimiter> {
        let rates = self.rates_of(account).await;
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(limiter) = limiters.get(account)
            && limiter.per_second() == rates.pace()
        {
            return limiter.clone();
        }
        info!(
            account = %account,
            account_limit = rates.account,
            endpoint_limit = rates.endpoint,
            requests_per_second = rates.pace(),
            shared = self.shared_pace.is_some(),
            "Stripe requests of this account are paced"
        );
        let mut limiter = RateLimiter::new(rates.pace());
        if let Some(pace) = &self.shared_pace {
            limiter = limiter.with_shared_pace(pace.clone(), account.clone());
        }
        let limiter = Arc::new(limiter);
        limiters.insert(account.clone(), limiter.clone());
        limiter
    }

    /// The scheduler of one account.
    pub async fn scheduler(&self, account: &AccountId) -> Scheduler<L, S::Api, D> {
        let mut scheduler = Scheduler::new(
            account.clone(),
            self.ledger.clone(),
            self.stripe.for_account(account),
            self.downloads.clone(),
            self.specs.clone(),
            self.lookback_days,
        );
        scheduler.stuck_after = self.stuck_after;
        scheduler.overdue_after = self.overdue_after;
        let limiter = self.limiter(account).await;
        scheduler.concurrency = in_flight(limiter.per_second(), self.concurrency);
        scheduler.limiter = limiter;
        scheduler
    }

    /// Runs `work` for every account that can be worked (of `only`, when
    /// given), all at once, and reports the others as failing. Each
    /// account's key is checked inside its own task, so one whose check is
    /// slow or refused holds up no other.
    async fn each<F, Fut>(&self, only: Option<&[AccountId]>, work: F) -> Outcome
    where
        F: Fn(Scheduler<L, S::Api, D>) -> Fut,
        Fut: Future<Output = Summary> + Send,
    {
        let entries = self.accounts.entries().await;
        // The accounts taken by an entry: a second entry of one account
        // (a key rotated into the wrong entry) must not work it twice.
        let taken: std::sync::Mutex<HashSet<AccountId>> = Default::default();
        let runs = entries
            .entries()
            .iter()
            .filter(|entry| match (&entry.account, only) {
                (Some(id), Some(only)) => only.contains(id),
                _ => true,
            })
            .map(|entry| {
                let work = &work;
                let taken = &taken;
                async move {
                    let state = match self.accounts.state_of(entry).await {
                        AccountState::Ready(account) => {
                            if only.is_some_and(|only| !only.contains(&account)) {
                                return None;
                            }
                            let mut taken =
                                taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                            if taken.insert(account.clone()) {
                                AccountState::Ready(account)
                            } else {
                                AccountState::Failing {
                                    reason: format!(
                                        "is the same Stripe account as another entry ({account})"
                                    ),
                                    account: account.to_string(),
                                }
                            }
                        }
                        failing => failing,
                    };
                    Some(match state {
                        AccountState::Ready(account) => {
                            let span = tracing::info_span!("account", account = %account);
                            let summary = async { work(self.scheduler(&account).await).await }
                                .instrument(span)
                                .await;
                            AccountSummary {
                                account: account.to_string(),
                                summary,
                                failing: None,
                            }
                        }
                        AccountState::Failing { account, reason } => {
                            tracing::error!(account = %account, reason = %reason, "Stripe account cannot be worked: its reports wait");
                            AccountSummary {
                                account,
                                summary: Summary::error(),
                                failing: Some(reason),
                            }
                        }
                    })
                }
            });
        Outcome {
            accounts: futures_util::future::join_all(runs)
                .await
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// The scheduled invocation, for every account (see [`Scheduler::run_scheduled`]).
    pub async fn run_scheduled(&self, now: i64) -> Outcome {
        self.each(None, |scheduler| async move {
            scheduler.run_scheduled(now).await
        })
        .await
    }

    /// The polling path alone, for every account.
    pub async fn reconcile(&self, now: i64) -> Outcome {
        self.each(
            None,
            |scheduler| async move { scheduler.reconcile(now).await },
        )
        .await
    }

    /// New data for one account's report type (the schedule queue).
    pub async fn run_for_type(
        &self,
        account: &AccountId,
        report_type: &str,
        now: i64,
    ) -> Result<Summary, SchedulerError> {
        match self.accounts.api_key(account).await {
            Ok(_) => {}
            Err(err) => return Err(SchedulerError::Account(err.to_string())),
        }
        let span = tracing::info_span!("account", account = %account);
        async {
            self.scheduler(account)
                .await
                .run_for_type(report_type, now)
                .await
        }
        .instrument(span)
        .await
    }

    /// A backfill, for every account it names (all when it names none),
    /// each over the specs it has of the report types named.
    pub async fn run_backfill(
        &self,
        backfill: &Backfill,
        now: i64,
    ) -> Result<Outcome, SchedulerError> {
        if let Some(types) = &backfill.report_types
            && let Some(unknown) = types
                .iter()
                .find(|t| !self.specs.iter().any(|s| &s.report_type == *t))
        {
            return Err(SchedulerError::UnknownReportType(unknown.clone()));
        }
        if let Some(named) = &backfill.accounts
            && let Some(configured) = self.accounts.configured().await
            && let Some(unknown) = named.iter().find(|a| !configured.contains(a))
        {
            return Err(SchedulerError::Account(format!(
                "{unknown} is not a configured account"
            )));
        }
        let outcome = self
            .each(backfill.accounts.as_deref(), |scheduler| async move {
                let types: Vec<String> = scheduler
                    .specs
                    .iter()
                    .map(|spec| spec.report_type.clone())
                    .filter(|t| {
                        backfill
                            .report_types
                            .as_ref()
                            .is_none_or(|only| only.contains(t))
                    })
                    .collect();
                if types.is_empty() {
                    return Summary::default();
                }
                let own = Backfill {
                    report_types: Some(types),
                    ..backfill.clone()
                };
                scheduler
                    .run_backfill(&own, now)
                    .await
                    .unwrap_or_else(|err| {
                        warn!(error = %err, "backfill refused");
                        Summary::error()
                    })
            })
            .await;
        Ok(outcome)
    }
}

/// Work items in flight for `pace` requests per second: [`IN_FLIGHT_SECONDS`]
/// of it, at least `minimum`, at most [`MAX_CONCURRENCY`].
pub fn in_flight(pace: f64, minimum: usize) -> usize {
    let needed = (pace * IN_FLIGHT_SECONDS).ceil();
    let needed = if needed.is_finite() && needed > 0.0 {
        needed.min(MAX_CONCURRENCY as f64) as usize
    } else {
        0
    };
    needed.max(minimum).max(1)
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
        // Two whole days end in the window; the one ending at MAR10 is not
        // available, so exactly one is left, and it ends before MAR10.
        assert_eq!(short.available.len(), 1, "{short:?}");
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
