//! The downloader serving several Stripe accounts (SPEC "Accounts"): each
//! message's run is read with its own account's key only, lands under its
//! own `account=` segment, and a message naming another account (or one not
//! configured) fetches and writes nothing. Through the Lambda handler,
//! against an emulator serving several accounts and moto's S3 and DynamoDB.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stripe_emulator::{AccountConfig, Emulator, EmulatorConfig, ReportTypeConfig};
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::{DynamoLedger, S3Sink};
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::downloader::{DownloadError, Downloader, Stored, work_deadline};
use stripe_reports::ports::Ledger;
use stripe_reports::ports::NoConversions;
use stripe_reports::stripe::{StripeClient, StripeError};
use test_support::*;

const BALANCE: &str = "balance.summary.1";
const A: &str = "acct_1DownloadAlpha0";
const B: &str = "acct_1DownloadBravo0";
/// Served by the emulator, but not configured in the downloader.
const C: &str = "acct_1DownloadCharl0";
const KEY_A: &str = "sk_test_downloader_alpha";
const KEY_B: &str = "sk_test_downloader_bravo";
const KEY_C: &str = "sk_test_downloader_charlie";

fn id(account: &str) -> AccountId {
    AccountId::parse(account).unwrap()
}

fn key_of(account: &str) -> &'static str {
    match account {
        A => KEY_A,
        B => KEY_B,
        C => KEY_C,
        other => panic!("no key for {other}"),
    }
}

struct Stack {
    emulator: Emulator,
    s3: aws_sdk_s3::Client,
    bucket: String,
    ledger: DynamoLedger,
    deps: downloader::Deps<DynamoLedger, AccountClients>,
}

/// The emulator serves A, B and C; the downloader is configured with A and B.
async fn stack() -> Stack {
    let mut kind = ReportTypeConfig::new(BALANCE);
    kind.file_size = Some(64 * 1024);
    kind.data_available_start = Some(1_700_000_000);
    kind.data_available_end = Some(1_800_000_000);
    let emulator = emulator_with(EmulatorConfig {
        accounts: vec![
            AccountConfig::new(A, KEY_A),
            AccountConfig::new(B, KEY_B),
            AccountConfig::new(C, KEY_C),
        ],
        report_types: vec![kind],
        run_delay: Duration::from_millis(20),
        ..EmulatorConfig::default()
    })
    .await;
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let (s3, bucket) = bucket(&sdk).await;
    let deps = downloader::Deps {
        downloader: Downloader {
            ledger: ledger.clone(),
            stripe: account_clients(
                &emulator,
                &[(A, KEY_A), (B, KEY_B)],
                "127.0.0.1",
                quick_retries(2),
            ),
            sink: S3Sink::new(s3.clone(), &bucket).with_parts(5 * MIB as usize, 2),
            prefix: "stripe/".into(),
            conversions: NoConversions,
        },
        concurrency: 4,
    };
    Stack {
        emulator,
        s3,
        bucket,
        ledger,
        deps,
    }
}

fn interval(day: i64) -> Interval {
    let base = 1_790_000_000 - 1_790_000_000 % DAY;
    Interval {
        start: base + day * DAY,
        end: base + (day + 1) * DAY,
    }
}

fn message(run_id: &str, account: &str) -> String {
    json!({"run_id": run_id, "account": account}).to_string()
}

fn batch(messages: &[(&str, String)]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

impl Stack {
    /// A client sending `account`'s key (the test's own, to set things up).
    fn client(&self, account: &str) -> StripeClient {
        stripe_client(
            &self.emulator,
            key_of(account),
            "127.0.0.1",
            quick_retries(2),
        )
    }

    /// A run of `account` Stripe finished, recorded pending in the ledger
    /// for `account`, as its scheduler leaves it.
    async fn recorded_run(&self, account: &str, day: i64) -> String {
        let client = self.client(account);
        let run_id = requested_run(
            &client,
            &id(account),
            &self.ledger,
            BALANCE,
            interval(day),
            1_790_000_000,
        )
        .await;
        wait_finished(&client, &run_id).await;
        run_id
    }

    /// A run of `account` Stripe finished that the ledger does not know.
    async fn unrecorded_run(&self, account: &str, day: i64) -> String {
        let client = self.client(account);
        let spec = stripe_reports::domain::spec::ReportSpec::new(BALANCE);
        let run = client
            .create_report_run(
                &stripe_reports::stripe::CreateReportRun::for_spec(&spec, interval(day)),
                &unique("key"),
            )
            .await
            .unwrap();
        wait_finished(&client, &run.id).await;
        run.id
    }

    /// The id of the file of `account`'s run.
    async fn file_id(&self, account: &str, run_id: &str) -> String {
        self.client(account)
            .report_run(run_id)
            .await
            .unwrap()
            .result
            .unwrap()
            .id
    }

    async fn handle(&self, messages: &[(&str, String)]) -> Vec<String> {
        let response = downloader::handle(
            &self.deps,
            LambdaEvent::new(batch(messages), Context::default()),
        )
        .await
        .unwrap();
        failed_ids(&response)
    }

    async fn keys(&self) -> Vec<String> {
        test_support::object_keys(&self.s3, &self.bucket).await
    }

    async fn open_uploads(&self) -> usize {
        test_support::open_upload_keys(&self.s3, &self.bucket)
            .await
            .len()
    }

    /// Requests the emulator received since `since` (an earlier count).
    fn requests_since(&self, since: usize) -> Vec<stripe_emulator::RequestRecord> {
        self.emulator.requests().split_off(since)
    }
}

/// GETs of a file's contents the emulator received, with any key.
fn file_requests(emulator: &Emulator, file_id: &str) -> usize {
    let path = format!("/v1/files/{file_id}/contents");
    emulator
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_runs_of_two_accounts_each_land_under_their_own_account() {
    let stack = stack().await;
    // The same report over the same days for both accounts: only the
    // account tells their objects apart.
    let mut runs: Vec<(&str, &str, String)> = Vec::new();
    for (day, date) in ["2026-09-21", "2026-09-22", "2026-09-23"]
        .into_iter()
        .enumerate()
    {
        for account in [A, B] {
            runs.push((account, date, stack.recorded_run(account, day as i64).await));
        }
    }
    let messages: Vec<(String, String)> = runs
        .iter()
        .enumerate()
        .map(|(n, (account, _, run_id))| (format!("m{n}"), message(run_id, account)))
        .collect();
    let messages: Vec<(&str, String)> = messages
        .iter()
        .map(|(n, body)| (n.as_str(), body.clone()))
        .collect();
    assert_eq!(stack.handle(&messages).await, Vec::<String>::new());

    let keys = stack.keys().await;
    assert_eq!(keys.len(), runs.len(), "{keys:?}");
    for (account, date, run_id) in &runs {
        let record = stack.ledger.run(run_id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Stored);
        assert_eq!(record.facts.account, id(account));
        let stored = record.stored.unwrap();
        assert_eq!(
            stored.s3_key,
            format!("stripe/account={account}/report_type={BALANCE}/date={date}/{run_id}.csv")
        );
        assert!(keys.contains(&stored.s3_key));
        let object = stack
            .s3
            .get_object()
            .bucket(&stack.bucket)
            .key(&stored.s3_key)
            .send()
            .await
            .unwrap();
        let meta = object.metadata().cloned().unwrap_or_default();
        assert_eq!(meta.get("account").map(String::as_str), Some(*account));
        assert_eq!(meta.get("report-run"), Some(run_id));
        let bytes = object.body.collect().await.unwrap().into_bytes();
        // The bytes of the account's own file.
        let file_id = stack.file_id(account, run_id).await;
        let (sha256, size) = stack.emulator.file_digest(&file_id).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256);
        assert_eq!(stored.sha256, sha256);
    }

    // Every request carried a configured key, and each key touched only
    // its own account's objects: runs read, files downloaded.
    let requests = stack.emulator.requests();
    for request in &requests {
        assert!(
            request.account.is_some(),
            "a request without a key: {request:?}"
        );
        if let Some(owner) = &request.object_account {
            assert_eq!(
                request.account.as_ref(),
                Some(owner),
                "one account's key on another's object: {request:?}"
            );
        }
    }
    for account in [A, B] {
        let downloads = requests
            .iter()
            .filter(|r| r.path.ends_with("/contents") && r.account.as_deref() == Some(account))
            .count();
        assert_eq!(downloads, 3, "{account}'s three files, once each");
    }
    assert!(
        requests.iter().all(|r| r.account.as_deref() != Some(C)),
        "the unconfigured account was never used"
    );
    assert_eq!(stack.open_uploads().await, 0);
}

#[tokio::test]
async fn a_run_of_another_account_named_with_a_keys_account_is_stripes_404_and_nothing_is_fetched()
{
    let stack = stack().await;
    // B's run, which the ledger does not hold, in a message naming A.
    let run_b = stack.unrecorded_run(B, 0).await;
    let file_b = stack.file_id(B, &run_b).await;
    let body = message(&run_b, A);
    let before = stack.emulator.requests().len();
    let err = stack
        .deps
        .downloader
        .handle_message(&body, 1_790_000_100, work_deadline(0, 0))
        .await
        .unwrap_err();
    let DownloadError::Stripe(stripe) = &err else {
        panic!("not Stripe's answer: {err:?}")
    };
    assert!(stripe.is_resource_missing(), "Stripe's 404: {stripe:?}");
    // Read once, with A's key only (a 404 is not retried).
    let asked = stack.requests_since(before);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].account.as_deref(), Some(A));
    assert_eq!(asked[0].path, format!("/v1/reporting/report_runs/{run_b}"));
    // Through the handler: a failed message, and still nothing downloaded.
    assert_eq!(stack.handle(&[("m1", body)]).await, ["m1"]);
    assert!(
        stack
            .requests_since(before)
            .iter()
            .all(|r| r.account.as_deref() == Some(A) && r.path.starts_with("/v1/reporting/")),
        "{:?}",
        stack.requests_since(before)
    );
    assert_eq!(file_requests(&stack.emulator, &file_b), 0);
    assert_eq!(stack.emulator.stats().file_downloads, 0);
    assert!(stack.keys().await.is_empty());
    assert_eq!(stack.open_uploads().await, 0);
    assert!(
        stack.ledger.run(&run_b).await.unwrap().is_none(),
        "nothing recorded"
    );
}

#[tokio::test]
async fn a_run_the_ledger_holds_for_another_account_is_refused_before_any_request() {
    let stack = stack().await;
    let run_b = stack.recorded_run(B, 1).await;
    let file_b = stack.file_id(B, &run_b).await;
    let held = stack.ledger.run(&run_b).await.unwrap().unwrap();
    let before = stack.emulator.requests().len();
    let outcome = stack
        .deps
        .downloader
        .store_run(&id(A), &run_b, 1_790_000_100, work_deadline(0, 0))
        .await;
    match &outcome {
        Err(DownloadError::OtherAccount { account, owner }) => {
            assert_eq!((account, owner), (&id(A), &id(B)));
        }
        other => panic!("expected OtherAccount: {other:?}"),
    }
    let text = outcome.unwrap_err().to_string();
    assert!(text.contains(A) && text.contains(B), "{text}");
    // Through the handler: a batch item failure.
    assert_eq!(stack.handle(&[("m1", message(&run_b, A))]).await, ["m1"]);
    assert!(
        stack.requests_since(before).is_empty(),
        "nothing fetched with any key: {:?}",
        stack.requests_since(before)
    );
    assert!(stack.keys().await.is_empty());
    assert_eq!(stack.ledger.run(&run_b).await.unwrap().unwrap(), held);

    // The message naming B, B's own, stores it under B.
    assert!(stack.handle(&[("m2", message(&run_b, B))]).await.is_empty());
    let stored = stack.ledger.run(&run_b).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Stored);
    assert!(
        stored
            .stored
            .as_ref()
            .unwrap()
            .s3_key
            .starts_with(&format!("stripe/account={B}/")),
        "{stored:?}"
    );
    assert_eq!(file_requests(&stack.emulator, &file_b), 1);
    // And once stored, A's message is still another account's, not "already stored".
    let again = stack
        .deps
        .downloader
        .store_run(&id(A), &run_b, 1_790_000_200, work_deadline(0, 0))
        .await;
    assert!(
        matches!(again, Err(DownloadError::OtherAccount { .. })),
        "{again:?}"
    );
    assert_eq!(file_requests(&stack.emulator, &file_b), 1);
}

#[tokio::test]
async fn a_message_of_an_account_not_configured_fails_without_a_request() {
    let stack = stack().await;
    // C is served by the emulator (its run exists) but not configured here.
    let run_c = stack.unrecorded_run(C, 2).await;
    let file_c = stack.file_id(C, &run_c).await;
    let body = message(&run_c, C);
    let before = stack.emulator.requests().len();
    let err = stack
        .deps
        .downloader
        .handle_message(&body, 1_790_000_100, work_deadline(0, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Stripe(StripeError::NoApiKey(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("account {C} is not configured"));
    // Through the handler: a failed message, beside a good one of A.
    let run_a = stack.recorded_run(A, 2).await;
    let before_batch = stack.emulator.requests().len();
    assert_eq!(
        stack
            .handle(&[("of-c", body.clone()), ("of-a", message(&run_a, A))])
            .await,
        ["of-c"]
    );
    assert!(
        stack
            .requests_since(before_batch)
            .iter()
            .all(|r| r.account.as_deref() == Some(A)),
        "{:?}",
        stack.requests_since(before_batch)
    );
    assert!(
        stack.emulator.requests()[before..before_batch]
            .iter()
            .all(|r| r.account.as_deref() == Some(A)),
        "no request about C's message"
    );
    assert_eq!(file_requests(&stack.emulator, &file_c), 0);
    assert!(stack.ledger.run(&run_c).await.unwrap().is_none());
    let keys = stack.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("stripe/account={A}/")),
        "{keys:?}"
    );
    // The outcome the function reports: a failure, nothing stored.
    let metrics = downloader::message_metrics(&Err::<Stored, _>(err));
    let value = |name: &str| metrics.iter().find(|m| m.name == name).map(|m| m.value);
    assert_eq!(value("DownloadFailures"), Some(1.0));
    assert_eq!(value("ReportsStored"), Some(0.0));
}
