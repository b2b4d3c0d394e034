//! The downloader within the invocation's time, and a run Stripe no longer
//! has: through the Lambda handler, against the Stripe emulator and moto.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use stripe_emulator::{Emulator, Faults, ReportTypeConfig};
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::{DynamoLedger, S3Sink};
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::downloader::{ANSWER_RESERVE, Downloader, Stored, work_deadline};
use stripe_reports::ports::NoConversions;
use stripe_reports::ports::{Ledger, RunFacts};
use test_support::*;

const API_KEY: &str = "sk_test_downloader_deadline";
const BALANCE: &str = "balance.summary.1";

struct Stack {
    emulator: Emulator,
    s3: aws_sdk_s3::Client,
    bucket: String,
    ledger: DynamoLedger,
    deps: downloader::Deps<DynamoLedger, AccountClients>,
}

async fn stack(file_size: u64) -> Stack {
    let mut kind = ReportTypeConfig::new(BALANCE);
    kind.file_size = Some(file_size);
    kind.data_available_start = Some(1_700_000_000);
    kind.data_available_end = Some(1_800_000_000);
    let emulator = emulator(API_KEY, vec![kind], Duration::from_millis(20)).await;
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let (s3, bucket) = bucket(&sdk).await;
    let deps = downloader::Deps {
        downloader: Downloader {
            ledger: ledger.clone(),
            stripe: account_clients(
                &emulator,
                &[(ACCOUNT, API_KEY)],
                "127.0.0.1",
                quick_retries(2),
            ),
            sink: S3Sink::new(s3.clone(), &bucket).with_parts(5 * MIB as usize, 2),
            prefix: "stripe/".into(),
            conversions: NoConversions,
        },
        concurrency: 2,
    };
    Stack {
        emulator,
        s3,
        bucket,
        ledger,
        deps,
    }
}

impl Stack {
    /// A run Stripe finished, recorded pending as the scheduler leaves it.
    async fn finished_run(&self, day: i64) -> String {
        let client = stripe_client(&self.emulator, API_KEY, "127.0.0.1", quick_retries(2));
        let base = 1_790_000_000 - 1_790_000_000 % DAY;
        let interval = Interval {
            start: base + day * DAY,
            end: base + (day + 1) * DAY,
        };
        let run_id = requested_run(
            &client,
            &account(),
            &self.ledger,
            BALANCE,
            interval,
            1_790_000_000,
        )
        .await;
        wait_finished(&client, &run_id).await;
        run_id
    }

    async fn open_uploads(&self) -> usize {
        test_support::open_upload_keys(&self.s3, &self.bucket)
            .await
            .len()
    }

    async fn objects(&self) -> usize {
        test_support::object_keys(&self.s3, &self.bucket)
            .await
            .len()
    }
}

fn batch(messages: &[(&str, &str)]) -> SqsEvent {
    let records: Vec<_> = messages
        .iter()
        .map(|(id, run_id)| json!({"messageId": id, "body": json!({"run_id": run_id, "account": ACCOUNT}).to_string(), "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn an_upload_that_outlives_the_invocation_is_aborted_and_the_answer_comes_in_time() {
    // 12 MiB at 3 MiB/s: the multipart upload is under way (first 5 MiB part
    // sent) when the invocation's time runs out, 3 s after the reserve.
    let stack = stack(12 * MIB).await;
    let run_id = stack.finished_run(1).await;
    stack.emulator.set_faults(Faults {
        file_bytes_per_sec: Some(3 * MIB),
        ..Faults::default()
    });
    let mut context = Context::default();
    let left = Duration::from_secs(3) + ANSWER_RESERVE;
    context.deadline = unix_ms() + left.as_millis() as u64;
    let started = std::time::Instant::now();
    let response = downloader::handle(
        &stack.deps,
        LambdaEvent::new(batch(&[("m1", &run_id)]), context),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(failed_ids(&response), vec!["m1"]);
    // Answered before Lambda's own deadline, with time to spare.
    assert!(took < left - ANSWER_RESERVE / 4, "answered after {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "gave up too early: {took:?}"
    );
    assert_eq!(
        stack.open_uploads().await,
        0,
        "the upload was aborted, not left open"
    );
    assert_eq!(stack.objects().await, 0);
    assert_eq!(
        stack.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Pending
    );
    // The redelivery, with the time it needs, stores the run.
    stack.emulator.set_faults(Faults::default());
    let response = downloader::handle(
        &stack.deps,
        LambdaEvent::new(batch(&[("m1", &run_id)]), Context::default()),
    )
    .await
    .unwrap();
    assert!(failed_ids(&response).is_empty());
    assert_eq!(
        stack.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Stored
    );
    assert_eq!((stack.objects().await, stack.open_uploads().await), (1, 0));
}

#[tokio::test]
async fn the_budget_follows_the_invocations_deadline() {
    let now_ms = unix_ms();
    let at = tokio::time::Instant::now();
    // 60 s left: 60 s less the reserve for the ledger and the answer.
    let budget = work_deadline(now_ms + 60_000, now_ms) - at;
    let expected = Duration::from_secs(60) - ANSWER_RESERVE;
    assert!(
        budget.abs_diff(expected) < Duration::from_secs(1),
        "{budget:?}"
    );
    // Less left than the reserve: no time for Stripe or S3 at all.
    assert!(work_deadline(now_ms + 1_000, now_ms) <= tokio::time::Instant::now());
    // No deadline (Context::default()): the default budget.
    assert!(work_deadline(0, now_ms) - at >= Duration::from_secs(13 * 60));
}

#[tokio::test]
async fn a_run_stripe_no_longer_has_is_left_to_reconcile_not_retried_forever() {
    let stack = stack(64 * 1024).await;
    // The ledger waits for a run this Stripe account does not have (the key
    // was switched from test to live mode).
    let spec = ReportSpec::new(BALANCE);
    let interval = Interval {
        start: 1_790_000_000,
        end: 1_790_086_400,
    };
    let gone = RunFacts {
        account: account(),
        run_id: "frr_gone_after_a_key_switch".into(),
        report_type: BALANCE.into(),
        interval_start: Some(interval.start),
        interval_end: Some(interval.end),
    };
    stack
        .ledger
        .record_requested(
            &RequestKey::new(&account(), &spec, interval, 0),
            &gone,
            1_790_000_000,
        )
        .await
        .unwrap();
    let deadline = work_deadline(0, 0);
    let outcome = stack
        .deps
        .downloader
        .store_run(&account(), &gone.run_id, 1_790_000_100, deadline)
        .await
        .unwrap();
    assert_eq!(outcome, Stored::Gone);
    // Through the handler: done (no redelivery, no DLQ); a run id nobody
    // recorded is a failed message.
    let response = downloader::handle(
        &stack.deps,
        LambdaEvent::new(
            batch(&[("known", &gone.run_id), ("unknown", "frr_never_recorded")]),
            Context::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(failed_ids(&response), vec!["unknown"]);
    // The ledger is left to the scheduler's reconcile, which retires it once.
    assert_eq!(
        stack
            .ledger
            .run(&gone.run_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Pending
    );
    assert_eq!(stack.objects().await, 0);
}

#[tokio::test]
async fn a_stored_report_says_how_fresh_it_is_in_its_metrics() {
    let stack = stack(64 * 1024).await;
    let run_id = stack.finished_run(2).await;
    let run = stripe_client(&stack.emulator, API_KEY, "127.0.0.1", quick_retries(2))
        .report_run(&run_id)
        .await
        .unwrap();
    let end = run.parameters.interval_end.unwrap();
    // The scheduler saw the data reaching this interval at `seen`.
    let seen = 1_790_000_000;
    stack
        .ledger
        .record_availability(&account(), BALANCE, end + DAY, seen)
        .await
        .unwrap();
    let stored_at = seen + 3 * 3600 + 17;
    let outcome = stack
        .deps
        .downloader
        .handle_message(
            &json!({"run_id": run_id, "account": ACCOUNT}).to_string(),
            stored_at,
            work_deadline(0, 0),
        )
        .await;
    let Ok(Stored::Now(report)) = &outcome else {
        panic!("not stored: {outcome:?}")
    };
    // The clock moves on by the seconds the download took.
    let freshness = report.freshness_secs.unwrap();
    assert!(
        (3 * 3600 + 17..3 * 3600 + 27).contains(&freshness),
        "{freshness}"
    );
    let metrics = downloader::message_metrics(&outcome);
    let value = |name: &str| metrics.iter().find(|m| m.name == name).map(|m| m.value);
    assert_eq!(value("ReportsStored"), Some(1.0));
    assert_eq!(value("BytesStored"), Some(64.0 * 1024.0));
    assert_eq!(value("FreshnessSeconds"), Some(freshness as f64));
    assert_eq!(value("DownloadFailures"), Some(0.0));
    // A failed message: a failure, and no freshness (no zero that would
    // pull the average down).
    let failed: Result<Stored, _> = Err(stripe_reports::downloader::DownloadError::NoFile);
    let metrics = downloader::message_metrics(&failed);
    let value = |name: &str| metrics.iter().find(|m| m.name == name).map(|m| m.value);
    assert_eq!(value("DownloadFailures"), Some(1.0));
    assert_eq!(value("ReportsStored"), Some(0.0));
    assert_eq!(value("FreshnessSeconds"), None);
}
