//! Helpers of the scheduler tests, built on `test-support`: a report type,
//! the moto-backed ledger and download queue, the scheduler under test.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use stripe_emulator::{Emulator, ReportTypeConfig};
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::config::RateSettings;
use stripe_reports::domain::ledger::StoredObject;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{
    ClaimEnd, ClaimToken, DownloadLease, EventClaim, Ledger, LedgerError, Recorded, RunFacts,
    RunRecord, TableFile, Transition,
};
use stripe_reports::scheduler::AccountSchedulers;
use stripe_reports::stripe::{RetryPolicy, StripeClient};
#[allow(unused_imports)] // each test binary uses part of these
pub use test_support::{ACCOUNT, Clock, DAY, account, event_file};

pub const API_KEY: &str = "sk_test_scheduler_tests";

/// The scheduler's reading of the clock with room to invoke again.
pub trait ClockWithRoom {
    /// Reads the system clock for a test that invokes again up to `secs`
    /// later and expects the same day then: in the last `secs` before
    /// midnight UTC, `now` is moved back to leave that room.
    fn read_with_room(secs: i64) -> Clock;
}

impl ClockWithRoom for Clock {
    fn read_with_room(secs: i64) -> Clock {
        let clock = Clock::read();
        Clock::at(clock.now.min(clock.today + DAY - 1 - secs))
    }
}

/// A report type with data from a year ago up to the clock's UTC midnight.
pub fn report_type(clock: &Clock, id: &str) -> ReportTypeConfig {
    let mut kind = ReportTypeConfig::new(id);
    kind.data_available_start = Some(clock.today - 400 * DAY);
    kind.data_available_end = Some(clock.today);
    kind
}

pub async fn emulator(types: Vec<ReportTypeConfig>) -> Emulator {
    test_support::emulator(API_KEY, types, Duration::from_millis(20)).await
}

pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub ledger: DynamoLedger,
    pub download_url: String,
}

pub async fn aws() -> Aws {
    let sdk = test_support::local_aws().await;
    let ledger = test_support::ledger(&sdk).await;
    let (sqs, download_url) = test_support::queue(&sdk, "dl").await;
    Aws {
        sqs,
        ledger,
        download_url,
    }
}

impl Aws {
    /// Every message on the download queue, received and deleted.
    pub async fn drain(&self) -> Vec<Value> {
        test_support::drain(&self.sqs, &self.download_url).await
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 10,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    }
}

/// A client with the one account's key, for what a test does at Stripe
/// itself (a Dashboard run, an orphan).
pub fn stripe(emulator: &Emulator) -> StripeClient {
    test_support::stripe_client(emulator, API_KEY, "127.0.0.1", retry())
}

/// Each account's client for the emulator, for `(account, api key)` pairs.
pub fn clients(emulator: &Emulator, pairs: &[(&str, &str)]) -> AccountClients {
    test_support::account_clients(emulator, pairs, "127.0.0.1", retry())
}

pub type Service = AccountSchedulers<DynamoLedger, AccountClients, SqsQueue>;

/// The scheduler of the accounts in `pairs` (taken as configured), over
/// the test's ledger and download queue.
pub fn schedulers<L: Ledger + Clone>(
    ledger: L,
    aws: &Aws,
    emulator: &Emulator,
    pairs: &[(&str, &str)],
    specs: Vec<ReportSpec>,
    lookback_days: u32,
) -> AccountSchedulers<L, AccountClients, SqsQueue> {
    let mut service = AccountSchedulers::new(
        test_support::trusted_accounts(pairs),
        ledger,
        clients(emulator, pairs),
        SqsQueue::new(aws.sqs.clone(), &aws.download_url),
        specs,
        lookback_days,
    );
    // Tests run against the emulator: a faster rate keeps them short.
    service.rates = RateSettings::fixed(100.0);
    service
}

/// The scheduler of the emulator's one account ([`ACCOUNT`]).
pub fn scheduler(
    aws: &Aws,
    emulator: &Emulator,
    specs: Vec<ReportSpec>,
    lookback_days: u32,
) -> Service {
    schedulers(
        aws.ledger.clone(),
        aws,
        emulator,
        &[(ACCOUNT, API_KEY)],
        specs,
        lookback_days,
    )
}

/// The request key of the one account's request.
pub fn request_key(spec: &ReportSpec, interval: Interval, attempt: u32) -> RequestKey {
    RequestKey::new(&account(), spec, interval, attempt)
}

/// Waits until the emulator has finished every run.
pub async fn settle(emulator: &Emulator) {
    for _ in 0..200 {
        if emulator.runs().iter().all(|r| r["status"] != "pending") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("runs never finished");
}

/// The real ledger, with faults switched on and off by the test: every
/// `record_requested` failing (DynamoDB throttled or down right after
/// Stripe's create), or every read of a first-attempt request key failing.
#[derive(Clone)]
pub struct FaultyLedger<L> {
    pub inner: L,
    pub writes_fail: Arc<AtomicBool>,
    pub first_attempt_reads_fail: Arc<AtomicBool>,
    pub run_reads_fail: Arc<AtomicBool>,
}

impl<L> FaultyLedger<L> {
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            writes_fail: Default::default(),
            first_attempt_reads_fail: Default::default(),
            run_reads_fail: Default::default(),
        }
    }
}

/// Keys of later attempts end in `#a<n>` (the 16-hex hash before it may
/// itself start with an `a`).
fn is_first_attempt(key: &RequestKey) -> bool {
    let last = key.as_str().rsplit('#').next().unwrap_or_default();
    !(last.len() < 8 && last.starts_with('a') && last[1..].bytes().all(|b| b.is_ascii_digit()))
}

fn injected() -> LedgerError {
    LedgerError::Unavailable("injected: ProvisionedThroughputExceededException".into())
}

impl<L: Ledger> Ledger for FaultyLedger<L> {
    async fn requested_run(&self, key: &RequestKey) -> Result<Option<String>, LedgerError> {
        if self.first_attempt_reads_fail.load(Ordering::SeqCst) && is_first_attempt(key) {
            return Err(injected());
        }
        self.inner.requested_run(key).await
    }
    async fn record_requested(
        &self,
        key: &RequestKey,
        run: &RunFacts,
        now: i64,
    ) -> Result<Recorded, LedgerError> {
        if self.writes_fail.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.record_requested(key, run, now).await
    }
    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, LedgerError> {
        if self.run_reads_fail.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.run(run_id).await
    }
    async fn mark_succeeded(&self, run: &RunFacts, now: i64) -> Result<Transition, LedgerError> {
        self.inner.mark_succeeded(run, now).await
    }
    async fn mark_failed(
        &self,
        run: &RunFacts,
        error: &str,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.inner.mark_failed(run, error, now).await
    }
    async fn mark_retired(
        &self,
        run: &RunFacts,
        reason: &str,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.inner.mark_retired(run, reason, now).await
    }
    async fn lease_download(
        &self,
        run_id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<DownloadLease, LedgerError> {
        self.inner.lease_download(run_id, owner, now, until).await
    }
    async fn release_download(&self, run_id: &str, owner: &str) -> Result<(), LedgerError> {
        self.inner.release_download(run_id, owner).await
    }
    async fn mark_stored(
        &self,
        run: &RunFacts,
        stored: &StoredObject,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.inner.mark_stored(run, stored, now).await
    }
    async fn mark_tabled(
        &self,
        account: &AccountId,
        run_id: &str,
        table: &TableFile,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.inner.mark_tabled(account, run_id, table, now).await
    }
    async fn claim_event(
        &self,
        id: &str,
        event_type: &str,
        now: i64,
        stale: i64,
    ) -> Result<EventClaim, LedgerError> {
        self.inner.claim_event(id, event_type, now, stale).await
    }
    async fn finish_event(
        &self,
        id: &str,
        token: &ClaimToken,
        now: i64,
    ) -> Result<ClaimEnd, LedgerError> {
        self.inner.finish_event(id, token, now).await
    }
    async fn release_event(&self, id: &str, token: &ClaimToken) -> Result<ClaimEnd, LedgerError> {
        self.inner.release_event(id, token).await
    }
    async fn availability(
        &self,
        account: &AccountId,
        report_type: &str,
    ) -> Result<stripe_reports::domain::due::Availability, LedgerError> {
        self.inner.availability(account, report_type).await
    }
    async fn record_availability(
        &self,
        account: &AccountId,
        report_type: &str,
        data_available_end: i64,
        now: i64,
    ) -> Result<(), LedgerError> {
        self.inner
            .record_availability(account, report_type, data_available_end, now)
            .await
    }
    async fn unfinished_runs(&self, account: &AccountId) -> Result<Vec<RunRecord>, LedgerError> {
        self.inner.unfinished_runs(account).await
    }
}

type FaultyService = AccountSchedulers<FaultyLedger<DynamoLedger>, AccountClients, SqsQueue>;

/// [`scheduler`] over a [`FaultyLedger`] (its faults shared by every
/// account's scheduler it makes).
pub fn faulty_scheduler(
    aws: &Aws,
    emulator: &Emulator,
    specs: Vec<ReportSpec>,
    lookback_days: u32,
) -> FaultyService {
    schedulers(
        FaultyLedger::new(aws.ledger.clone()),
        aws,
        emulator,
        &[(ACCOUNT, API_KEY)],
        specs,
        lookback_days,
    )
}

/// A schedule-queue batch: the sample event with its one message naming
/// `report_type` of `account`.
pub fn schedule_message_of(account: &str, report_type: &str) -> Value {
    let mut batch = event_file("scheduler-sqs.json");
    batch["Records"][0]["body"] = serde_json::json!(
        serde_json::json!({"report_type": report_type, "data_available_end": 0, "account": account})
            .to_string()
    );
    batch
}

/// [`schedule_message_of`] the one account.
pub fn schedule_message(report_type: &str) -> Value {
    schedule_message_of(ACCOUNT, report_type)
}
