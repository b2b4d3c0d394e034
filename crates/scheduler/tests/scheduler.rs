//! The scheduler through its handler, against the Stripe emulator and moto's server.

mod common;

use common::*;
use serde_json::{Value, json};
use stripe_emulator::{ErrorStorm, Faults};
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::{Frequency, ReportSpec};
use stripe_reports::ports::{Ledger, LedgerError, Recorded, RunFacts, Transition};
use stripe_reports::scheduler::{Scheduler, Summary};

fn summary(value: Value) -> Summary {
    serde_json::from_value(value).unwrap()
}

fn scheduled() -> Value {
    event_file("scheduler-scheduled.json")
}

#[tokio::test]
async fn rerunning_five_times_creates_each_run_once() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        7,
    );
    let now = now();
    let first = summary(
        scheduler::handle_at(&service, scheduled(), now)
            .await
            .unwrap(),
    );
    assert_eq!(first.planned, 7);
    assert_eq!(first.created, 7);
    assert_eq!(first.errors, 0);
    for _ in 0..2 {
        let again = summary(
            scheduler::handle_at(&service, scheduled(), now + 60)
                .await
                .unwrap(),
        );
        assert_eq!((again.created, again.already_requested), (0, 7));
    }
    // Two at once.
    let (a, b) = tokio::join!(
        scheduler::handle_at(&service, scheduled(), now + 120),
        scheduler::handle_at(&service, scheduled(), now + 120)
    );
    assert_eq!(summary(a.unwrap()).created + summary(b.unwrap()).created, 0);
    let last = summary(
        scheduler::handle_at(&service, scheduled(), now + 180)
            .await
            .unwrap(),
    );
    assert_eq!(last.created, 0);
    assert_eq!(emulator.stats().runs_created, 7);
}

#[tokio::test]
async fn concurrent_first_invocations_make_one_run_per_interval() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        5,
    );
    let now = now();
    let (a, b) = tokio::join!(
        scheduler::handle_at(&service, scheduled(), now),
        scheduler::handle_at(&service, scheduled(), now)
    );
    let (a, b) = (summary(a.unwrap()), summary(b.unwrap()));
    assert_eq!(a.created + b.created, 5, "{a:?} {b:?}");
    assert_eq!(emulator.stats().runs_created, 5);
}

#[tokio::test]
async fn availability_edge_includes_an_interval_ending_exactly_at_data_available_end() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    // data_available_end one second before today's midnight: yesterday is not available.
    emulator.set_data_available_end("balance.summary.1", today() - 1);
    let short = summary(
        scheduler::handle_at(&service, scheduled(), now())
            .await
            .unwrap(),
    );
    assert_eq!((short.planned, short.unavailable, short.created), (0, 1, 0));
    assert_eq!(
        emulator.stats().runs_created,
        0,
        "nothing Stripe has no data for is requested"
    );
    // Exactly at midnight: yesterday is available.
    emulator.set_data_available_end("balance.summary.1", today());
    let exact = summary(
        scheduler::handle_at(&service, scheduled(), now())
            .await
            .unwrap(),
    );
    assert_eq!((exact.planned, exact.unavailable, exact.created), (1, 0, 1));
    let run = &emulator.runs()[0];
    assert_eq!(run["parameters"]["interval_end"], today());
    assert_eq!(run["parameters"]["interval_start"], today() - DAY);
}

#[tokio::test]
async fn weekly_and_monthly_specs_in_new_york_follow_dst() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let mut weekly = ReportSpec::new("balance.summary.1");
    weekly.frequency = Frequency::Weekly;
    weekly.timezone = "America/New_York".into();
    let mut monthly = weekly.clone();
    monthly.frequency = Frequency::Monthly;
    let service = scheduler(&aws, &emulator, vec![weekly, monthly], 7);
    // Backfill across the most recent March DST change that is wholly past
    // (the emulator has a year of data).
    let utc = jiff::tz::TimeZone::UTC;
    let today_date = jiff::Timestamp::from_second(today())
        .unwrap()
        .to_zoned_datetime(utc)
        .date();
    let year = if today_date >= jiff::civil::date(today_date.year(), 4, 2) {
        today_date.year()
    } else {
        today_date.year() - 1
    };
    let backfill =
        json!({"backfill": {"from": format!("{year}-02-23"), "to": format!("{year}-04-01")}});
    let result = summary(
        scheduler::handle_at(&service, backfill, now())
            .await
            .unwrap(),
    );
    // Weeks starting Mondays from Feb 23 to Mar 23 (5), and March (1).
    assert_eq!(result.created, 6, "{result:?}");
    let mut lengths: Vec<(String, i64)> = emulator
        .runs()
        .iter()
        .map(|r| {
            let p = &r["parameters"];
            assert_eq!(p["timezone"], "America/New_York");
            (
                jiff::Timestamp::from_second(p["interval_start"].as_i64().unwrap())
                    .unwrap()
                    .to_zoned_datetime(jiff::tz::TimeZone::get("America/New_York").unwrap())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string(),
                (p["interval_end"].as_i64().unwrap() - p["interval_start"].as_i64().unwrap())
                    / 3600,
            )
        })
        .collect();
    lengths.sort();
    // Every interval starts at local midnight; the DST week is 167 h, March 743 h.
    assert!(
        lengths.iter().all(|(start, _)| start.ends_with("00:00")),
        "{lengths:?}"
    );
    let hours: Vec<i64> = lengths.iter().map(|(_, h)| *h).collect();
    assert_eq!(
        hours.iter().filter(|h| **h == 168).count(),
        4,
        "{lengths:?}"
    );
    assert_eq!(
        hours.iter().filter(|h| **h == 167).count(),
        1,
        "{lengths:?}"
    );
    assert_eq!(
        hours.iter().filter(|h| **h == 31 * 24 - 1).count(),
        1,
        "{lengths:?}"
    );
}

#[tokio::test]
async fn backfill_event_over_a_month_creates_each_day_once() {
    let emulator = emulator(vec![
        report_type("balance.summary.1"),
        report_type("payouts.itemized.3"),
    ])
    .await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![
            ReportSpec::new("balance.summary.1"),
            ReportSpec::new("payouts.itemized.3"),
        ],
        7,
    );
    let event = event_file("scheduler-backfill.json");
    assert_eq!(
        event["backfill"]["report_types"],
        json!(["balance.summary.1"])
    );
    let result = summary(
        scheduler::handle_at(&service, event.clone(), now())
            .await
            .unwrap(),
    );
    assert_eq!((result.planned, result.created), (31, 31));
    let again = summary(scheduler::handle_at(&service, event, now()).await.unwrap());
    assert_eq!((again.created, again.already_requested), (0, 31));
    assert!(
        emulator
            .runs()
            .iter()
            .all(|r| r["report_type"] == "balance.summary.1")
    );
    // Bad backfills are refused with a clear error and create nothing.
    for bad in [
        json!({"backfill": {"from": "2026-11-01", "to": "2026-10-01"}}),
        json!({"backfill": {"from": "2026-10-01", "to": "2026-11-01", "report_types": ["nope.1"]}}),
        json!({"backfill": {"from": "yesterday"}}),
    ] {
        assert!(scheduler::handle_at(&service, bad, now()).await.is_err());
    }
    assert_eq!(emulator.stats().runs_created, 31);
}

#[tokio::test]
async fn a_schedule_queue_message_plans_only_its_type_and_poison_fails_alone() {
    let emulator = emulator(vec![
        report_type("balance.summary.1"),
        report_type("payouts.itemized.3"),
    ])
    .await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![
            ReportSpec::new("balance.summary.1"),
            ReportSpec::new("payouts.itemized.3"),
        ],
        3,
    );
    let mut batch = event_file("scheduler-sqs.json");
    let mut poison = batch["Records"][0].clone();
    poison["messageId"] = json!("poison-1");
    poison["body"] = json!("{not json");
    let mut unknown = batch["Records"][0].clone();
    unknown["messageId"] = json!("unknown-type-1");
    unknown["body"] = json!(r#"{"report_type":"tax.transactions.1","data_available_end":1}"#);
    batch["Records"]
        .as_array_mut()
        .unwrap()
        .extend([poison, unknown]);
    let response = scheduler::handle_at(&service, batch, now()).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "poison-1"}, {"itemIdentifier": "unknown-type-1"}]})
    );
    let runs = emulator.runs();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["report_type"] == "balance.summary.1"));
}

#[tokio::test]
async fn reconcile_enqueues_a_succeeded_run_whose_webhook_never_came() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        2,
    );
    let now = now();
    let first = summary(
        scheduler::handle_at(&service, scheduled(), now)
            .await
            .unwrap(),
    );
    assert_eq!(first.created, 2);
    settle(&emulator).await;
    let second = summary(
        scheduler::handle_at(&service, scheduled(), now + 600)
            .await
            .unwrap(),
    );
    assert_eq!(second.enqueued, 2);
    let mut messages: Vec<String> = aws
        .drain()
        .await
        .iter()
        .map(|m| m["run_id"].as_str().unwrap().to_owned())
        .collect();
    messages.sort();
    let mut runs: Vec<String> = emulator
        .runs()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    runs.sort();
    assert_eq!(messages, runs);
    for id in &runs {
        assert_eq!(
            aws.ledger.run(id).await.unwrap().unwrap().status,
            RunStatus::Succeeded
        );
    }
    // The next reconcile does not flood the queue with the same runs...
    let third = summary(
        scheduler::handle_at(&service, scheduled(), now + 900)
            .await
            .unwrap(),
    );
    assert_eq!(third.enqueued, 0);
    // ...but one still not stored an hour later is enqueued again.
    let later = summary(
        scheduler::handle_at(&service, scheduled(), now + 600 + 3601)
            .await
            .unwrap(),
    );
    assert_eq!(later.enqueued, 2);
}

#[tokio::test]
async fn reconcile_adopts_a_dashboard_run_of_a_configured_type() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    // A run made in the Dashboard: other parameters than any spec's.
    let client = stripe(&emulator);
    let mut dashboard = ReportSpec::new("balance.summary.1");
    dashboard.timezone = "Europe/Paris".into();
    let interval = stripe_reports::domain::calendar::Interval {
        start: today() - 3 * DAY,
        end: today() - 2 * DAY,
    };
    let run = client
        .create_report_run(
            &stripe_reports::stripe::CreateReportRun::for_spec(&dashboard, interval),
            "dashboard-1",
        )
        .await
        .unwrap();
    settle(&emulator).await;
    let result = summary(
        scheduler::handle_at(&service, scheduled(), now())
            .await
            .unwrap(),
    );
    assert_eq!((result.created, result.enqueued), (1, 1), "{result:?}");
    let messages = aws.drain().await;
    assert!(
        messages.contains(&json!({"run_id": run.id})),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_failed_run_is_recorded_and_requested_again_once_not_twice() {
    let mut failing = report_type("balance.summary.1");
    failing.fail = true;
    let emulator = emulator(vec![failing]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    let now = now();
    let first = summary(
        scheduler::handle_at(&service, scheduled(), now)
            .await
            .unwrap(),
    );
    assert_eq!(first.created, 1);
    settle(&emulator).await;
    let second = summary(
        scheduler::handle_at(&service, scheduled(), now + 600)
            .await
            .unwrap(),
    );
    assert_eq!((second.failed, second.created), (1, 1), "{second:?}");
    settle(&emulator).await;
    let third = summary(
        scheduler::handle_at(&service, scheduled(), now + 1200)
            .await
            .unwrap(),
    );
    assert_eq!((third.failed, third.created), (1, 0), "{third:?}");
    let fourth = summary(
        scheduler::handle_at(&service, scheduled(), now + 1800)
            .await
            .unwrap(),
    );
    assert_eq!((fourth.failed, fourth.created), (0, 0), "{fourth:?}");
    assert_eq!(
        emulator.stats().runs_created,
        2,
        "one request and one re-request"
    );
    for run in emulator.runs() {
        let record = aws
            .ledger
            .run(run["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, RunStatus::Failed);
        assert!(record.error.unwrap().contains("Unable to generate"));
    }
}

/// The real ledger, with the first `record_requested` failing: the crash
/// window between Stripe's create and the ledger write.
#[derive(Clone)]
struct FirstWriteFails<L> {
    inner: L,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<L: Ledger> Ledger for FirstWriteFails<L> {
    async fn requested_run(&self, key: &RequestKey) -> Result<Option<String>, LedgerError> {
        self.inner.requested_run(key).await
    }
    async fn record_requested(
        &self,
        key: &RequestKey,
        run: &RunFacts,
        now: i64,
    ) -> Result<Recorded, LedgerError> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(LedgerError::Unavailable(
                "injected: the process died here".into(),
            ));
        }
        self.inner.record_requested(key, run, now).await
    }
    async fn run(
        &self,
        run_id: &str,
    ) -> Result<Option<stripe_reports::ports::RunRecord>, LedgerError> {
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
    async fn mark_stored(
        &self,
        run: &RunFacts,
        stored: &stripe_reports::domain::ledger::StoredObject,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.inner.mark_stored(run, stored, now).await
    }
    async fn claim_event(
        &self,
        id: &str,
        t: &str,
        now: i64,
        stale: i64,
    ) -> Result<stripe_reports::ports::EventClaim, LedgerError> {
        self.inner.claim_event(id, t, now, stale).await
    }
    async fn finish_event(&self, id: &str, now: i64) -> Result<(), LedgerError> {
        self.inner.finish_event(id, now).await
    }
    async fn release_event(&self, id: &str) -> Result<(), LedgerError> {
        self.inner.release_event(id).await
    }
    async fn unfinished_runs(&self) -> Result<Vec<stripe_reports::ports::RunRecord>, LedgerError> {
        self.inner.unfinished_runs().await
    }
}

#[tokio::test]
async fn a_crash_between_stripe_and_the_ledger_never_makes_a_second_run() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let mut service = Scheduler::new(
        FirstWriteFails {
            inner: aws.ledger.clone(),
            failed: Default::default(),
        },
        stripe(&emulator),
        stripe_reports::aws::SqsQueue::new(aws.sqs.clone(), &aws.download_url),
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    service.limiter = std::sync::Arc::new(stripe_reports::rate::RateLimiter::new(100));
    let crashed = scheduler::handle_at(&service, scheduled(), now()).await;
    assert!(
        crashed.is_err(),
        "an invocation with errors fails so Lambda retries it"
    );
    assert_eq!(emulator.stats().runs_created, 1);
    // The retry (here from the schedule queue, which plans without reconciling)
    // repeats the create with the same Idempotency-Key: same run, recorded now.
    let response = scheduler::handle_at(&service, event_file("scheduler-sqs.json"), now())
        .await
        .unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(emulator.stats().runs_created, 1);
    assert_eq!(emulator.stats().idempotent_replays, 1);
    let run_id = emulator.runs()[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        aws.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Pending
    );
}

#[tokio::test]
async fn an_orphaned_run_older_than_stripes_idempotency_window_is_adopted_not_recreated() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    // Stripe has the run for the planned interval, created with another key
    // (as if the Idempotency-Key had expired), and the ledger knows nothing.
    let interval = stripe_reports::domain::calendar::Interval {
        start: today() - DAY,
        end: today(),
    };
    let spec = ReportSpec::new("balance.summary.1");
    let orphan = stripe(&emulator)
        .create_report_run(
            &stripe_reports::stripe::CreateReportRun::for_spec(&spec, interval),
            "expired-key",
        )
        .await
        .unwrap();
    let result = summary(
        scheduler::handle_at(&service, scheduled(), now())
            .await
            .unwrap(),
    );
    assert_eq!(
        (result.created, result.already_requested),
        (0, 1),
        "{result:?}"
    );
    assert_eq!(emulator.stats().runs_created, 1);
    let key = RequestKey::new(&spec, interval, 0);
    assert_eq!(
        aws.ledger.requested_run(&key).await.unwrap(),
        Some(orphan.id)
    );
}

#[tokio::test]
async fn a_429_storm_is_ridden_out() {
    let emulator = emulator(vec![report_type("balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        7,
    );
    emulator.set_faults(Faults {
        storm: Some(ErrorStorm {
            status: 429,
            fraction: 0.5,
            should_retry: None,
            seconds: 5.0,
        }),
        ..Faults::default()
    });
    let result = summary(
        scheduler::handle_at(&service, scheduled(), now())
            .await
            .unwrap(),
    );
    assert_eq!((result.created, result.errors), (7, 0), "{result:?}");
    assert!(emulator.stats().injected_errors > 0, "the storm happened");
    assert_eq!(emulator.stats().runs_created, 7);
}

#[tokio::test]
async fn a_stuck_pending_run_is_counted() {
    let emulator = stripe_emulator::Emulator::start(
        stripe_emulator::EmulatorConfig {
            api_key: API_KEY.into(),
            report_types: vec![report_type("balance.summary.1")],
            run_delay: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    let now = now();
    scheduler::handle_at(&service, scheduled(), now)
        .await
        .unwrap();
    let soon = summary(
        scheduler::handle_at(&service, scheduled(), now + 3600)
            .await
            .unwrap(),
    );
    assert_eq!(soon.stuck, 0);
    let late = summary(
        scheduler::handle_at(&service, scheduled(), now + 7 * 3600)
            .await
            .unwrap(),
    );
    assert_eq!(late.stuck, 1);
}
