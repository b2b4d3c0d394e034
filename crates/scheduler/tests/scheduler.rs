//! The scheduler through its handler, against the Stripe emulator and moto's server.

mod common;

use common::*;
use jiff::civil::{Weekday, date};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use stripe_emulator::{ErrorStorm, Faults};
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::spec::{Frequency, ReportSpec};

use stripe_reports::ports::Ledger;
use stripe_reports::scheduler::Summary;

fn summary(value: Value) -> Summary {
    serde_json::from_value(value).unwrap()
}

fn scheduled() -> Value {
    event_file("scheduler-scheduled.json")
}

#[tokio::test]
async fn rerunning_five_times_creates_each_run_once() {
    // Invoked again up to 180 s later, still planning the same 7 days.
    let clock = Clock::read_with_room(180);
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        7,
    );
    let now = clock.now;
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
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        5,
    );
    let now = clock.now;
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
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    // data_available_end one second before today's midnight: yesterday is not available.
    emulator.set_data_available_end("balance.summary.1", clock.today - 1);
    let short = summary(
        scheduler::handle_at(&service, scheduled(), clock.now)
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
    emulator.set_data_available_end("balance.summary.1", clock.today);
    let exact = summary(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!((exact.planned, exact.unavailable, exact.created), (1, 0, 1));
    let run = &emulator.runs()[0];
    assert_eq!(run["parameters"]["interval_end"], clock.today);
    assert_eq!(run["parameters"]["interval_start"], clock.today - DAY);
}

#[tokio::test]
async fn weekly_and_monthly_specs_in_new_york_follow_dst() {
    let clock = Clock::read();
    // A fixed spring in the past, so that nothing depends on today's date:
    // New York moved to daylight saving time on the second Sunday of March
    // 2025. The report type has data from the start of 2025 on.
    let (from, to) = (date(2025, 2, 23), date(2025, 4, 1));
    let mut kind = report_type(&clock, "balance.summary.1");
    kind.data_available_start = Some(1_735_689_600); // 2025-01-01T00:00:00Z
    let emulator = emulator(vec![kind]).await;
    let aws = aws().await;
    let mut weekly = ReportSpec::new("balance.summary.1");
    weekly.frequency = Frequency::Weekly;
    weekly.timezone = "America/New_York".into();
    let mut monthly = weekly.clone();
    monthly.frequency = Frequency::Monthly;
    let service = scheduler(&aws, &emulator, vec![weekly, monthly], 7);

    // What to expect, from the dates alone (not the product's calendar code):
    // every Monday in [from, to) whose week ends by `to` starts a week of
    // 168 h, except the week holding the DST Sunday (167 h); and March,
    // the only whole month, is 31 × 24 − 1 h.
    let week = jiff::Span::new().days(7);
    let mut dst_sunday = date(2025, 3, 1);
    while dst_sunday.weekday() != Weekday::Sunday {
        dst_sunday = dst_sunday.tomorrow().unwrap();
    }
    let dst_sunday = dst_sunday.checked_add(week).unwrap();
    assert_eq!(dst_sunday, date(2025, 3, 9));
    let mut expected: Vec<(String, i64)> = Vec::new();
    let mut day = from;
    while day < to {
        let next_week = day.checked_add(week).unwrap();
        if day.weekday() == Weekday::Monday && next_week <= to {
            let hours = if day < dst_sunday && dst_sunday < next_week {
                167
            } else {
                168
            };
            expected.push((format!("{day} 00:00"), hours));
        }
        day = day.tomorrow().unwrap();
    }
    expected.push(("2025-03-01 00:00".into(), 31 * 24 - 1));
    expected.sort();

    let backfill = json!({"backfill": {"from": from.to_string(), "to": to.to_string()}});
    let result = summary(
        scheduler::handle_at(&service, backfill, clock.now)
            .await
            .unwrap(),
    );
    let new_york = jiff::tz::TimeZone::get("America/New_York").unwrap();
    let mut lengths: Vec<(String, i64)> = emulator
        .runs()
        .iter()
        .map(|r| {
            let p = &r["parameters"];
            assert_eq!(p["timezone"], "America/New_York");
            (
                jiff::Timestamp::from_second(p["interval_start"].as_i64().unwrap())
                    .unwrap()
                    .to_zoned_datetime(new_york.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string(),
                (p["interval_end"].as_i64().unwrap() - p["interval_start"].as_i64().unwrap())
                    / 3600,
            )
        })
        .collect();
    lengths.sort();
    // Every interval starts at local midnight and lasts what the dates say:
    // Feb 24, Mar 10, 17, 24 are 168 h, the week of Mar 3 is 167 h, March 743 h.
    assert_eq!(lengths, expected, "{result:?}");
    assert_eq!(result.created, expected.len() as u64, "{result:?}");
    assert_eq!(
        expected.iter().filter(|(_, hours)| *hours == 167).count(),
        1,
        "{expected:?}"
    );
}

#[tokio::test]
async fn backfill_event_over_a_month_creates_each_day_once() {
    let clock = Clock::read();
    let event = event_file("scheduler-backfill.json");
    // The sample event names fixed dates: the report types have data from
    // its first day on, so the test does not depend on today's date.
    let midnight = |field: &str| {
        let day: jiff::civil::Date = event["backfill"][field].as_str().unwrap().parse().unwrap();
        day.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
    };
    let (from, to) = (midnight("from"), midnight("to"));
    let days = ((to - from) / DAY) as u64;
    let kinds = ["balance.summary.1", "payouts.itemized.3"].map(|id| {
        let mut kind = report_type(&clock, id);
        kind.data_available_start = Some(from);
        kind
    });
    let emulator = emulator(kinds.to_vec()).await;
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
    assert_eq!(
        event["backfill"]["report_types"],
        json!(["balance.summary.1"])
    );
    let result = summary(
        scheduler::handle_at(&service, event.clone(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!((result.planned, result.created), (days, days));
    let again = summary(
        scheduler::handle_at(&service, event, clock.now)
            .await
            .unwrap(),
    );
    assert_eq!((again.created, again.already_requested), (0, days));
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
        assert!(
            scheduler::handle_at(&service, bad, clock.now)
                .await
                .is_err()
        );
    }
    assert_eq!(emulator.stats().runs_created, days);
}

#[tokio::test]
async fn a_schedule_queue_message_plans_only_its_type_and_poison_fails_alone() {
    let clock = Clock::read();
    let emulator = emulator(vec![
        report_type(&clock, "balance.summary.1"),
        report_type(&clock, "payouts.itemized.3"),
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
    let mut batch = schedule_message("balance.summary.1");
    let mut poison = batch["Records"][0].clone();
    poison["messageId"] = json!("poison-1");
    poison["body"] = json!("{not json");
    let mut unknown = batch["Records"][0].clone();
    unknown["messageId"] = json!("unknown-type-1");
    unknown["body"] = json!(
        json!({"report_type": "tax.transactions.1", "data_available_end": 1, "account": ACCOUNT})
            .to_string()
    );
    // A message of an account this deployment does not serve.
    let mut stranger = batch["Records"][0].clone();
    stranger["messageId"] = json!("other-account-1");
    stranger["body"] = json!(
        json!({"report_type": "balance.summary.1", "data_available_end": 1, "account": "acct_1NotConfigured000"})
            .to_string()
    );
    batch["Records"]
        .as_array_mut()
        .unwrap()
        .extend([poison, unknown, stranger]);
    let response = scheduler::handle_at(&service, batch, clock.now)
        .await
        .unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [
            {"itemIdentifier": "poison-1"},
            {"itemIdentifier": "unknown-type-1"},
            {"itemIdentifier": "other-account-1"}
        ]})
    );
    let runs = emulator.runs();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["report_type"] == "balance.summary.1"));
}

#[tokio::test]
async fn reconcile_enqueues_a_succeeded_run_whose_webhook_never_came() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        2,
    );
    let now = clock.now;
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
    let drained = aws.drain().await;
    assert!(
        drained.iter().all(|m| m["account"] == ACCOUNT),
        "each message names the run's account: {drained:?}"
    );
    let mut messages: Vec<String> = drained
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
async fn reconcile_enqueues_a_dashboard_run_whose_parameters_no_spec_has_without_adopting_it() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
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
        start: clock.today - 3 * DAY,
        end: clock.today - 2 * DAY,
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
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!((result.created, result.enqueued), (1, 1), "{result:?}");
    let messages = aws.drain().await;
    assert!(
        messages.contains(&json!({"run_id": run.id, "account": ACCOUNT})),
        "{messages:?}"
    );
    // Recorded as a run to download, but under no request key: it answers
    // none of the configured requests (adoption is the orphan test below).
    let record = aws.ledger.run(&run.id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.request_key, None);
    let planned = stripe_reports::domain::calendar::Interval {
        start: clock.today - DAY,
        end: clock.today,
    };
    let created = aws
        .ledger
        .requested_run(&request_key(
            &ReportSpec::new("balance.summary.1"),
            planned,
            0,
        ))
        .await
        .unwrap();
    assert!(
        created.is_some() && created.as_deref() != Some(run.id.as_str()),
        "{created:?}"
    );
}

#[tokio::test]
async fn a_failed_run_is_recorded_and_requested_again_once_not_twice() {
    let clock = Clock::read();
    let mut failing = report_type(&clock, "balance.summary.1");
    failing.fail = true;
    let emulator = emulator(vec![failing]).await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    let now = clock.now;
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

#[tokio::test]
async fn a_crash_between_stripe_and_the_ledger_never_makes_a_second_run() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    let service = faulty_scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    // The crash window: Stripe created the run, the ledger write failed.
    service.ledger.writes_fail.store(true, Ordering::SeqCst);
    let crashed = scheduler::handle_at(&service, scheduled(), clock.now).await;
    service.ledger.writes_fail.store(false, Ordering::SeqCst);
    assert!(
        crashed.is_err(),
        "an invocation with errors fails so Lambda retries it"
    );
    assert_eq!(emulator.stats().runs_created, 1);
    // The retry (here from the schedule queue) first reads Stripe's runs of
    // the window and adopts the one whose request the ledger lost, so it
    // neither creates a second run nor needs the Idempotency-Key's replay.
    let response = scheduler::handle_at(&service, schedule_message("balance.summary.1"), clock.now)
        .await
        .unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(emulator.stats().runs_created, 1);
    assert_eq!(emulator.stats().idempotent_replays, 0);
    let run_id = emulator.runs()[0]["id"].as_str().unwrap().to_owned();
    let record = aws.ledger.run(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Pending);
    assert!(record.request_key.is_some(), "recorded under its request");
}

#[tokio::test]
async fn an_orphaned_run_older_than_stripes_idempotency_window_is_adopted_not_recreated() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
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
        start: clock.today - DAY,
        end: clock.today,
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
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!(
        (result.created, result.already_requested),
        (0, 1),
        "{result:?}"
    );
    assert_eq!(emulator.stats().runs_created, 1);
    // Adopted: recorded under the spec's request key, not created again.
    let key = request_key(&spec, interval, 0);
    assert_eq!(
        aws.ledger.requested_run(&key).await.unwrap(),
        Some(orphan.id.clone())
    );
    let record = aws.ledger.run(&orphan.id).await.unwrap().unwrap();
    assert_eq!(record.request_key.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn a_429_storm_is_ridden_out() {
    let clock = Clock::read();
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
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
            account: None,
        }),
        // A fixed seed: the same draws on every run. With seed 7 the first
        // draw (0.03) is under the fraction, so the very first request is a
        // 429, whichever request comes first.
        seed: Some(7),
        ..Faults::default()
    });
    let result = summary(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .unwrap(),
    );
    assert_eq!((result.created, result.errors), (7, 0), "{result:?}");
    assert!(emulator.stats().injected_errors > 0, "the storm happened");
    assert_eq!(emulator.stats().runs_created, 7);
}

#[tokio::test]
async fn a_stuck_pending_run_is_counted() {
    let clock = Clock::read();
    let emulator = test_support::emulator(
        API_KEY,
        vec![report_type(&clock, "balance.summary.1")],
        std::time::Duration::from_secs(3600),
    )
    .await;
    let aws = aws().await;
    let service = scheduler(
        &aws,
        &emulator,
        vec![ReportSpec::new("balance.summary.1")],
        1,
    );
    let now = clock.now;
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
