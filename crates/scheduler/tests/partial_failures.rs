//! The scheduler under partial failure, through its handler, against the
//! Stripe emulator and moto's server: a ledger write lost after a create, a
//! ledger read that fails, Stripe's run list unreadable, a run Stripe no
//! longer has, a report type removed while its runs were pending, a currency
//! written in capitals. Each test replays the sequence that used to lose or
//! duplicate a report.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::{Value, json};
use stripe_emulator::{Faults, Injection};
use stripe_reports::aws::SqsQueue;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::{RunStatus, StoredObject};
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::{ReportSpec, read_specs};
use stripe_reports::ports::{
    ClaimEnd, ClaimToken, DownloadLease, EventClaim, Ledger, LedgerError, Recorded, RunFacts,
    RunRecord, Transition,
};
use stripe_reports::rate::RateLimiter;
use stripe_reports::scheduler::{Scheduler, Summary};
use stripe_reports::stripe::CreateReportRun;

const BALANCE: &str = "balance.summary.1";

fn summary(value: Value) -> Summary {
    serde_json::from_value(value).unwrap()
}

fn scheduled() -> Value {
    event_file("scheduler-scheduled.json")
}

fn schedule_message(report_type: &str) -> Value {
    let mut batch = event_file("scheduler-sqs.json");
    batch["Records"][0]["body"] =
        json!(json!({"report_type": report_type, "data_available_end": 0}).to_string());
    batch
}

fn day(clock: &Clock, days_ago: i64) -> Interval {
    Interval {
        start: clock.today - days_ago * DAY,
        end: clock.today - (days_ago - 1) * DAY,
    }
}

/// The real ledger, with faults switched on and off by the test: every
/// `record_requested` failing (DynamoDB throttled or down right after
/// Stripe's create), or every read of a first-attempt request key failing.
#[derive(Clone)]
struct FaultyLedger<L> {
    inner: L,
    writes_fail: Arc<AtomicBool>,
    first_attempt_reads_fail: Arc<AtomicBool>,
}

impl<L> FaultyLedger<L> {
    fn new(inner: L) -> Self {
        Self {
            inner,
            writes_fail: Default::default(),
            first_attempt_reads_fail: Default::default(),
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
    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, LedgerError> {
        self.inner.unfinished_runs().await
    }
}

type FaultyService = Scheduler<
    FaultyLedger<stripe_reports::aws::DynamoLedger>,
    stripe_reports::stripe::StripeClient,
    SqsQueue,
>;

fn faulty_scheduler(
    aws: &Aws,
    emulator: &stripe_emulator::Emulator,
    specs: Vec<ReportSpec>,
    lookback_days: u32,
) -> FaultyService {
    let mut service = Scheduler::new(
        FaultyLedger::new(aws.ledger.clone()),
        stripe(emulator),
        SqsQueue::new(aws.sqs.clone(), &aws.download_url),
        specs,
        lookback_days,
    );
    service.limiter = Arc::new(RateLimiter::new(100));
    service
}

/// What the webhook and the downloader write for a run that finished and
/// was stored: the `run#` item, without the request key.
async fn stored_through_the_webhook(aws: &Aws, run: &Value, clock: &Clock) {
    let facts = RunFacts {
        run_id: run["id"].as_str().unwrap().to_owned(),
        report_type: run["report_type"].as_str().unwrap().to_owned(),
        interval_start: run["parameters"]["interval_start"].as_i64(),
        interval_end: run["parameters"]["interval_end"].as_i64(),
    };
    assert_eq!(
        aws.ledger.mark_succeeded(&facts, clock.now).await.unwrap(),
        Transition::Applied
    );
    let stored = StoredObject {
        s3_key: format!("stripe/{}.csv", facts.run_id),
        bytes: 4096,
        sha256: "0".repeat(64),
        file_id: "file_1".into(),
    };
    assert_eq!(
        aws.ledger
            .mark_stored(&facts, &stored, clock.now)
            .await
            .unwrap(),
        Transition::Applied
    );
}

#[tokio::test]
async fn an_orphan_stored_through_the_webhook_is_adopted_not_created_again_a_day_later() {
    // Each entry point that can create runs: the schedule, a schedule-queue
    // message (report_type.updated) and a backfill.
    for (entry, event) in [
        ("scheduled", scheduled()),
        ("schedule queue", schedule_message(BALANCE)),
        ("backfill", Value::Null),
    ] {
        let clock = Clock::read();
        let emulator = emulator(vec![report_type(&clock, BALANCE)]).await;
        let aws = aws().await;
        let spec = ReportSpec::new(BALANCE);
        let service = faulty_scheduler(&aws, &emulator, vec![spec.clone()], 2);
        // 1. Stripe creates the runs; every ledger write fails, Lambda's
        //    retries too (the invocation fails).
        service.ledger.writes_fail.store(true, Ordering::SeqCst);
        assert!(
            scheduler::handle_at(&service, scheduled(), clock.now)
                .await
                .is_err(),
            "{entry}: an invocation with errors fails"
        );
        service.ledger.writes_fail.store(false, Ordering::SeqCst);
        assert_eq!(emulator.stats().runs_created, 2, "{entry}");
        assert_eq!(
            aws.ledger
                .requested_run(&RequestKey::new(&spec, day(&clock, 1), 0))
                .await
                .unwrap(),
            None,
            "{entry}: the request was never recorded"
        );
        // 2. The runs succeed and are stored through the webhook: their
        //    `run#` items exist, without a request key.
        settle(&emulator).await;
        let runs = emulator.runs();
        for run in &runs {
            stored_through_the_webhook(&aws, run, &clock).await;
        }
        // 3. A day later Stripe's idempotency keys have expired.
        assert_eq!(emulator.expire_idempotency_keys(), 2, "{entry}");
        let later = clock.now + DAY;
        let event = match entry {
            "backfill" => {
                let date = |unix: i64| {
                    jiff::Timestamp::from_second(unix)
                        .unwrap()
                        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                        .date()
                        .to_string()
                };
                json!({"backfill": {"from": date(clock.today - 2 * DAY), "to": date(clock.today)}})
            }
            _ => event,
        };
        let answer = scheduler::handle_at(&service, event, later)
            .await
            .unwrap_or_else(|err| panic!("{entry}: {err}"));
        if entry == "scheduled" || entry == "backfill" {
            let result = summary(answer);
            assert_eq!(
                (result.created, result.adopted),
                (0, 2),
                "{entry}: {result:?}"
            );
        } else {
            assert_eq!(answer, json!({"batchItemFailures": []}), "{entry}");
        }
        assert_eq!(
            emulator.stats().runs_created,
            2,
            "{entry}: no second run for an interval that has one"
        );
        // Each run is now recorded under the request it answers, and stays stored.
        for run in &runs {
            let id = run["id"].as_str().unwrap();
            let interval = Interval {
                start: run["parameters"]["interval_start"].as_i64().unwrap(),
                end: run["parameters"]["interval_end"].as_i64().unwrap(),
            };
            let key = RequestKey::new(&spec, interval, 0);
            assert_eq!(
                aws.ledger.requested_run(&key).await.unwrap().as_deref(),
                Some(id),
                "{entry}"
            );
            let record = aws.ledger.run(id).await.unwrap().unwrap();
            assert_eq!(record.status, RunStatus::Stored, "{entry}");
            assert_eq!(record.request_key.as_deref(), Some(key.as_str()), "{entry}");
        }
        // And it stays that way.
        let again = summary(
            scheduler::handle_at(&service, scheduled(), later + 60)
                .await
                .unwrap(),
        );
        assert_eq!((again.created, again.adopted), (0, 0), "{entry}: {again:?}");
        assert_eq!(emulator.stats().runs_created, 2, "{entry}");
    }
}

fn list_unreadable() -> Faults {
    Faults {
        inject: vec![Injection {
            path_prefix: "/v1/reporting/report_runs".into(),
            method: Some("GET".into()),
            status: 500,
            should_retry: None,
            times: 1000,
            body: None,
            retry_after: None,
        }],
        ..Faults::default()
    }
}

#[tokio::test]
async fn when_stripes_run_list_cannot_be_read_nothing_new_is_created() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    let service = scheduler(&aws, &emulator, vec![ReportSpec::new(BALANCE)], 3);
    emulator.set_faults(list_unreadable());
    // The schedule: an error (Lambda retries it), and nothing created, since
    // a free request key might hide an orphan past Stripe's key window.
    let failed = scheduler::handle_at(&service, scheduled(), clock.now).await;
    let message = failed.unwrap_err().to_string();
    assert!(message.contains("\"deferred\":3"), "{message}");
    assert!(message.contains("\"created\":0"), "{message}");
    // The schedule queue and a backfill: the same.
    let response = scheduler::handle_at(&service, schedule_message(BALANCE), clock.now)
        .await
        .unwrap();
    assert_eq!(response["batchItemFailures"].as_array().unwrap().len(), 1);
    let backfill = json!({"backfill": {"from": "2026-01-01", "to": "2026-01-05"}});
    assert!(
        scheduler::handle_at(&service, backfill, clock.now)
            .await
            .is_err()
    );
    assert_eq!(emulator.stats().runs_created, 0);
    // Once the list can be read, everything is created, once.
    emulator.set_faults(Faults::default());
    let healed = summary(
        scheduler::handle_at(&service, scheduled(), clock.now + 60)
            .await
            .unwrap(),
    );
    assert_eq!((healed.created, healed.deferred, healed.errors), (3, 0, 0));
    assert_eq!(emulator.stats().runs_created, 3);
}

#[tokio::test]
async fn a_ledger_read_error_is_an_error_not_a_guess_at_the_attempt() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    let spec = ReportSpec::new(BALANCE);
    let service = faulty_scheduler(&aws, &emulator, vec![spec.clone()], 1);
    // An orphan for the planned interval: Stripe has it, the ledger does not.
    let interval = day(&clock, 1);
    let orphan = stripe(&emulator)
        .create_report_run(&CreateReportRun::for_spec(&spec, interval), "lost-key")
        .await
        .unwrap();
    // Reads of the first attempt's key fail (throttled): reconcile must not
    // conclude the run answers the second attempt.
    service
        .ledger
        .first_attempt_reads_fail
        .store(true, Ordering::SeqCst);
    let result = service.reconcile(clock.now).await;
    assert!(result.errors >= 1, "{result:?}");
    assert_eq!(result.adopted, 0, "{result:?}");
    for attempt in 0..2 {
        assert_eq!(
            aws.ledger
                .requested_run(&RequestKey::new(&spec, interval, attempt))
                .await
                .unwrap(),
            None,
            "attempt {attempt}: nothing recorded on a guess"
        );
    }
    assert!(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .is_err()
    );
    assert_eq!(emulator.stats().runs_created, 1, "nothing created either");
    // Once reads work, the orphan is adopted under the first attempt.
    service
        .ledger
        .first_attempt_reads_fail
        .store(false, Ordering::SeqCst);
    let healed = summary(
        scheduler::handle_at(&service, scheduled(), clock.now + 60)
            .await
            .unwrap(),
    );
    assert_eq!((healed.adopted, healed.created), (1, 0), "{healed:?}");
    assert_eq!(
        aws.ledger
            .requested_run(&RequestKey::new(&spec, interval, 0))
            .await
            .unwrap(),
        Some(orphan.id)
    );
}

#[tokio::test]
async fn a_currency_in_capitals_is_one_request_with_its_lowercase_twin() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    // As REPORTS and `fetch --currency` read them.
    let upper: ReportSpec =
        serde_json::from_value(json!({"report_type": BALANCE, "currency": "USD"})).unwrap();
    let lower: ReportSpec =
        serde_json::from_value(json!({"report_type": BALANCE, "currency": "usd"})).unwrap();
    let specs = read_specs(vec![upper]).unwrap();
    let lower = read_specs(vec![lower]).unwrap().remove(0);
    assert_eq!(specs[0], lower);
    // An orphan Stripe holds for the lowercase request (Stripe echoes "usd").
    let interval = day(&clock, 1);
    let orphan = stripe(&emulator)
        .create_report_run(&CreateReportRun::for_spec(&lower, interval), "lost-key")
        .await
        .unwrap();
    assert_eq!(orphan.parameters.currency.as_deref(), Some("usd"));
    let service = scheduler(&aws, &emulator, specs, 2);
    let result = summary(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    // The capitalised spec recognises its own run, and creates the other day.
    assert_eq!((result.adopted, result.created), (1, 1), "{result:?}");
    assert!(
        emulator
            .runs()
            .iter()
            .all(|run| run["parameters"]["currency"] == "usd")
    );
    // `fetch --currency usd` uses the same key with the same parameters:
    // Stripe replays the run instead of answering idempotency_error.
    let created = emulator
        .runs()
        .into_iter()
        .find(|run| run["id"] != orphan.id.as_str())
        .unwrap();
    let key = RequestKey::new(&lower, day(&clock, 2), 0);
    let replayed = stripe(&emulator)
        .create_report_run(
            &CreateReportRun::for_spec(&lower, day(&clock, 2)),
            key.as_str(),
        )
        .await
        .unwrap();
    assert_eq!(replayed.id, created["id"].as_str().unwrap());
    assert_eq!(emulator.stats().runs_created, 2);
}

#[tokio::test]
async fn a_run_stripe_no_longer_has_is_retired_once_then_quiet() {
    let clock = Clock::read();
    let spec = ReportSpec::new(BALANCE);
    let test_mode = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    let before = scheduler(&aws, &test_mode, vec![spec.clone()], 2);
    let first = summary(
        scheduler::handle_at(&before, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!(first.created, 2);
    let old_runs: Vec<String> = test_mode
        .runs()
        .iter()
        .map(|run| run["id"].as_str().unwrap().to_owned())
        .collect();
    // The key changes (test → live): the same ledger, another Stripe, which
    // answers 404 for the runs it never had.
    let live_mode = emulator(vec![report_type(&clock, BALANCE)]).await;
    let after = scheduler(&aws, &live_mode, vec![spec.clone()], 2);
    let switched = summary(
        scheduler::handle_at(&after, scheduled(), clock.now + 60)
            .await
            .expect("a run Stripe no longer has is not an error"),
    );
    assert_eq!((switched.retired, switched.errors), (2, 0), "{switched:?}");
    // Its interval is still wanted: requested once more, under the new key.
    assert_eq!(switched.created, 2, "{switched:?}");
    assert_eq!(live_mode.stats().runs_created, 2);
    for id in &old_runs {
        let record = aws.ledger.run(id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Retired);
        let reason = record.error.unwrap();
        assert!(
            reason.contains("404") && reason.contains("no longer"),
            "{reason}"
        );
    }
    // Counted once, then quiet: no error, nothing retired or created again.
    for later in [clock.now + 120, clock.now + 7200] {
        let quiet = summary(
            scheduler::handle_at(&after, scheduled(), later)
                .await
                .unwrap(),
        );
        assert_eq!(
            (quiet.retired, quiet.created, quiet.errors),
            (0, 0, 0),
            "{quiet:?}"
        );
    }
    assert_eq!(live_mode.stats().runs_created, 2);
}

#[tokio::test]
async fn runs_of_a_report_type_removed_from_reports_are_still_finished() {
    let clock = Clock::read();
    let payouts = "payouts.itemized.3";
    let emulator = emulator(vec![
        report_type(&clock, BALANCE),
        report_type(&clock, payouts),
    ])
    .await;
    let aws = aws().await;
    let both = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new(BALANCE), ReportSpec::new(payouts)],
        1,
    );
    let first = summary(
        scheduler::handle_at(&both, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!(first.created, 2);
    settle(&emulator).await;
    // payouts.itemized.3 is removed from REPORTS while its run is pending in
    // the ledger: what was requested while it was configured is finished.
    let balance_only = scheduler(&aws, &emulator, vec![ReportSpec::new(BALANCE)], 1);
    let reconciled = summary(
        scheduler::handle_at(&balance_only, scheduled(), clock.now + 600)
            .await
            .unwrap(),
    );
    assert_eq!(reconciled.enqueued, 2, "{reconciled:?}");
    let mut enqueued: Vec<String> = aws
        .drain()
        .await
        .iter()
        .map(|message| message["run_id"].as_str().unwrap().to_owned())
        .collect();
    enqueued.sort();
    let mut runs: Vec<String> = emulator
        .runs()
        .iter()
        .map(|run| run["id"].as_str().unwrap().to_owned())
        .collect();
    runs.sort();
    assert_eq!(enqueued, runs);
    // Nothing new is requested for the removed type.
    assert_eq!(reconciled.created, 0);
    assert_eq!(emulator.stats().runs_created, 2);
}
