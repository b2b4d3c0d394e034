//! The scheduler under partial failure, through its handler, against the
//! Stripe emulator and moto's server: a ledger write lost after a create, a
//! ledger read that fails, Stripe's run list unreadable, a run Stripe no
//! longer has, a report type removed while its runs were pending, a currency
//! written in capitals. Each test replays the sequence that used to lose or
//! duplicate a report.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::{Value, json};
use stripe_emulator::{Faults, Injection};
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::{RunStatus, StoredObject};
use stripe_reports::domain::spec::{ReportSpec, read_specs};
use stripe_reports::ports::{Ledger, RunFacts, Transition};
use stripe_reports::scheduler::Summary;
use stripe_reports::stripe::CreateReportRun;

const BALANCE: &str = "balance.summary.1";

fn summary(value: Value) -> Summary {
    serde_json::from_value(value).unwrap()
}

fn scheduled() -> Value {
    event_file("scheduler-scheduled.json")
}

fn day(clock: &Clock, days_ago: i64) -> Interval {
    Interval {
        start: clock.today - days_ago * DAY,
        end: clock.today - (days_ago - 1) * DAY,
    }
}

/// What the webhook and the downloader write for a run that finished and
/// was stored: the `run#` item, without the request key.
async fn stored_through_the_webhook(aws: &Aws, run: &Value, clock: &Clock) {
    let facts = RunFacts {
        account: account(),
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
                .requested_run(&request_key(&spec, day(&clock, 1), 0))
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
            let key = request_key(&spec, interval, 0);
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
            account: None,
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
    let result = service.reconcile(clock.now).await.total();
    assert!(result.errors >= 1, "{result:?}");
    assert_eq!(result.adopted, 0, "{result:?}");
    for attempt in 0..2 {
        assert_eq!(
            aws.ledger
                .requested_run(&request_key(&spec, interval, attempt))
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
            .requested_run(&request_key(&spec, interval, 0))
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
    let key = request_key(&lower, day(&clock, 2), 0);
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

#[tokio::test]
async fn when_an_orphan_cannot_be_adopted_nothing_new_is_created() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    let spec = ReportSpec::new(BALANCE);
    let service = faulty_scheduler(&aws, &emulator, vec![spec.clone()], 1);
    // An orphan past Stripe's key window for the one planned interval.
    let orphan = stripe(&emulator)
        .create_report_run(
            &CreateReportRun::for_spec(&spec, day(&clock, 1)),
            "lost-key",
        )
        .await
        .unwrap();
    // Stripe's list is read, but the orphan's ledger item cannot be: its
    // adoption is undecided, so its request key being free proves nothing.
    service.ledger.run_reads_fail.store(true, Ordering::SeqCst);
    let failed = scheduler::handle_at(&service, scheduled(), clock.now).await;
    let message = failed.unwrap_err().to_string();
    assert!(message.contains("\"deferred\":1"), "{message}");
    assert_eq!(
        emulator.stats().runs_created,
        1,
        "no second run for the interval"
    );
    service.ledger.run_reads_fail.store(false, Ordering::SeqCst);
    let healed = summary(
        scheduler::handle_at(&service, scheduled(), clock.now + 60)
            .await
            .unwrap(),
    );
    assert_eq!((healed.adopted, healed.created), (1, 0), "{healed:?}");
    assert_eq!(
        aws.ledger
            .requested_run(&request_key(&spec, day(&clock, 1), 0))
            .await
            .unwrap(),
        Some(orphan.id)
    );
}

#[tokio::test]
async fn a_retired_runs_interval_is_requested_again_until_that_succeeds() {
    let clock = Clock::read();
    let spec = ReportSpec::new(BALANCE);
    let test_mode = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    let before = scheduler(&aws, &test_mode, vec![spec.clone()], 1);
    scheduler::handle_at(&before, scheduled(), clock.now)
        .await
        .unwrap();
    let live_mode = emulator(vec![report_type(&clock, BALANCE)]).await;
    let after = scheduler(&aws, &live_mode, vec![spec.clone()], 1);
    // Creating the re-request fails this time (Stripe answers 500s).
    live_mode.set_faults(Faults {
        inject: vec![Injection {
            path_prefix: "/v1/reporting/report_runs".into(),
            method: Some("POST".into()),
            status: 500,
            should_retry: None,
            times: 1000,
            body: None,
            retry_after: None,
            account: None,
        }],
        ..Faults::default()
    });
    let failed = scheduler::handle_at(&after, scheduled(), clock.now + 60).await;
    let message = failed.unwrap_err().to_string();
    assert!(message.contains("\"retired\":1"), "{message}");
    assert_eq!(live_mode.stats().runs_created, 0);
    // The next invocation requests it again, though the run is retired
    // (final, out of the unfinished index) by now.
    live_mode.set_faults(Faults::default());
    let healed = summary(
        scheduler::handle_at(&after, scheduled(), clock.now + 120)
            .await
            .unwrap(),
    );
    assert_eq!((healed.retired, healed.created), (0, 1), "{healed:?}");
    assert_eq!(live_mode.stats().runs_created, 1);
    assert!(
        aws.ledger
            .requested_run(&request_key(&spec, day(&clock, 1), 1))
            .await
            .unwrap()
            .is_some(),
        "recorded as the second attempt"
    );
}

#[tokio::test]
async fn an_interval_due_longer_than_the_grace_and_not_stored_is_overdue_until_stored() {
    let clock = Clock::read();
    // Runs stay pending at Stripe.
    let emulator = stripe_emulator::Emulator::start(
        stripe_emulator::EmulatorConfig {
            api_key: API_KEY.into(),
            report_types: vec![report_type(&clock, BALANCE)],
            run_delay: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let aws = aws().await;
    let mut service = scheduler(&aws, &emulator, vec![ReportSpec::new(BALANCE)], 2);
    service.overdue_after = std::time::Duration::from_secs(30 * 60);
    // First sighting of the data: due from now, so nothing is overdue yet.
    let first = summary(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!((first.created, first.overdue), (2, 0), "{first:?}");
    let seen = aws.ledger.availability(&account(), BALANCE).await.unwrap();
    assert_eq!(seen.since(clock.today), Some(clock.now));
    // Still within the grace.
    let soon = summary(
        scheduler::handle_at(&service, scheduled(), clock.now + 29 * 60)
            .await
            .unwrap(),
    );
    assert_eq!(soon.overdue, 0, "{soon:?}");
    // Past it, both still pending: overdue.
    let late = summary(
        scheduler::handle_at(&service, scheduled(), clock.now + 31 * 60)
            .await
            .unwrap(),
    );
    assert_eq!(late.overdue, 2, "{late:?}");
    // A schedule-queue message covers one type only: it does not count.
    scheduler::handle_at(&service, schedule_message(BALANCE), clock.now + 32 * 60)
        .await
        .unwrap();
    // Stored: no longer overdue.
    for run in emulator.runs() {
        stored_through_the_webhook(&aws, &run, &clock).await;
    }
    let healed = summary(
        scheduler::handle_at(&service, scheduled(), clock.now + 33 * 60)
            .await
            .unwrap(),
    );
    assert_eq!(healed.overdue, 0, "{healed:?}");
}

#[tokio::test]
async fn an_interval_never_requested_is_overdue_too() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    let mut service = scheduler(&aws, &emulator, vec![ReportSpec::new(BALANCE)], 1);
    service.overdue_after = std::time::Duration::ZERO;
    // Nothing can be created (Stripe's list is unreadable): the data is
    // seen available, the interval never requested.
    emulator.set_faults(list_unreadable());
    assert!(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .is_err()
    );
    let failed = scheduler::handle_at(&service, scheduled(), clock.now + 60).await;
    let message = failed.unwrap_err().to_string();
    assert!(message.contains("\"overdue\":1"), "{message}");
    assert_eq!(emulator.stats().runs_created, 0);
}
