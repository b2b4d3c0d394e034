//! The downloader through its batch handler, against the Stripe emulator and
//! moto's S3 and DynamoDB over HTTP.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stripe_emulator::{Emulator, Faults, ReportTypeConfig};
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::{DynamoLedger, S3Sink};
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::downloader::{DownloadError, Downloader, Stored};
use stripe_reports::ports::Ledger;
use stripe_reports::ports::NoConversions;
use stripe_reports::stripe::{CreateReportRun, StripeClient};
use test_support::{
    ACCOUNT, Clock, DAY, MIB, account, account_clients, bucket, ledger, local_aws, quick_retries,
    requested_run, stripe_client, wait_finished,
};

const API_KEY: &str = "sk_test_downloader_tests";

fn now() -> i64 {
    Clock::read().now
}

/// The time a message may take: two minutes from now.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(120)
}

fn kind(id: &str, size: u64) -> ReportTypeConfig {
    test_support::report_type(id, size)
}

async fn emulator(types: Vec<ReportTypeConfig>, run_delay: Duration) -> Emulator {
    test_support::emulator(API_KEY, types, run_delay).await
}

struct Env {
    emulator: Emulator,
    s3: aws_sdk_s3::Client,
    bucket: String,
    ledger: DynamoLedger,
    deps: downloader::Deps<DynamoLedger, AccountClients>,
}

fn stripe(emulator: &Emulator, hosts: &str) -> StripeClient {
    stripe_client(emulator, API_KEY, hosts, quick_retries(2))
}

async fn env_with(emulator: Emulator, hosts: &str) -> Env {
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let (s3, bucket) = bucket(&sdk).await;
    let deps = downloader::Deps {
        downloader: Downloader {
            ledger: ledger.clone(),
            stripe: account_clients(&emulator, &[(ACCOUNT, API_KEY)], hosts, quick_retries(2)),
            sink: S3Sink::new(s3.clone(), &bucket).with_parts(5 * MIB as usize, 2),
            prefix: "stripe/".into(),
            conversions: NoConversions,
        },
        concurrency: 4,
    };
    Env {
        emulator,
        s3,
        bucket,
        ledger,
        deps,
    }
}

async fn env(types: Vec<ReportTypeConfig>) -> Env {
    env_with(
        emulator(types, Duration::from_millis(20)).await,
        "127.0.0.1",
    )
    .await
}

impl Env {
    /// Creates a run for `day` and waits until the emulator finished it.
    async fn finished_run(&self, report_type: &str, day: i64) -> String {
        let client = stripe(&self.emulator, "127.0.0.1");
        let interval = Interval {
            start: 1_790_000_000 - 1_790_000_000 % DAY + day * DAY,
            end: 1_790_000_000 - 1_790_000_000 % DAY + (day + 1) * DAY,
        };
        // Recorded pending, as the scheduler leaves it.
        let run_id = requested_run(
            &client,
            &account(),
            &self.ledger,
            report_type,
            interval,
            now(),
        )
        .await;
        wait_finished(&client, &run_id).await;
        run_id
    }

    async fn batch(&self, bodies: &[(&str, String)]) -> Vec<String> {
        let pairs: Vec<(&str, &str)> = bodies
            .iter()
            .map(|(id, body)| (*id, body.as_str()))
            .collect();
        let event: SqsEvent = test_support::sqs_batch(&pairs);
        let response = downloader::handle_batch(&self.deps, event, now(), deadline()).await;
        let mut failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        failed.sort();
        failed
    }

    async fn object(
        &self,
        key: &str,
    ) -> Option<(Vec<u8>, aws_sdk_s3::operation::get_object::GetObjectOutput)> {
        let mut output = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        let body = std::mem::replace(
            &mut output.body,
            aws_sdk_s3::primitives::ByteStream::from_static(b""),
        );
        Some((body.collect().await.unwrap().into_bytes().to_vec(), output))
    }

    async fn keys(&self) -> Vec<String> {
        test_support::object_keys(&self.s3, &self.bucket).await
    }

    async fn open_uploads(&self) -> usize {
        self.open_upload_keys().await.len()
    }

    async fn open_upload_keys(&self) -> Vec<String> {
        test_support::open_upload_keys(&self.s3, &self.bucket).await
    }

    async fn file_of(&self, run_id: &str) -> (String, u64) {
        let run = stripe(&self.emulator, "127.0.0.1")
            .report_run(run_id)
            .await
            .unwrap();
        self.emulator.file_digest(&run.result.unwrap().id).unwrap()
    }
}

/// A download message for a run of the emulator's (default) account.
fn message(run_id: &str) -> String {
    json!({"run_id": run_id, "account": ACCOUNT}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_report_is_stored_whole_with_its_sha256() {
    let env = env(vec![kind("balance.summary.1", 100 * MIB)]).await;
    let run_id = env.finished_run("balance.summary.1", 0).await;
    assert!(env.batch(&[("m1", message(&run_id))]).await.is_empty());
    let (sha256, size) = env.file_of(&run_id).await;
    let record = env.ledger.run(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Stored);
    let stored = record.stored.unwrap();
    assert_eq!(
        (stored.bytes, stored.sha256.as_str()),
        (size, sha256.as_str())
    );
    let (bytes, output) = env.object(&stored.s3_key).await.expect("object");
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256);
    assert!(
        output.e_tag().unwrap().contains("-20"),
        "20 parts of 5 MiB: {:?}",
        output.e_tag()
    );
    assert_eq!(output.content_type(), Some("text/csv"));
    let meta = output.metadata().unwrap();
    assert_eq!(meta.get("report-run"), Some(&run_id));
    assert_eq!(meta.get("account").map(String::as_str), Some(ACCOUNT));
    assert_eq!(
        meta.get("report-type").map(String::as_str),
        Some("balance.summary.1")
    );
    assert_eq!(
        meta.get("interval-start"),
        Some(&record.facts.interval_start.unwrap().to_string())
    );
    assert!(
        stored.s3_key.starts_with(&format!(
            "stripe/account={ACCOUNT}/report_type=balance.summary.1/date="
        )),
        "{}",
        stored.s3_key
    );
    assert_eq!(env.open_uploads().await, 0);
}

#[tokio::test]
async fn a_small_report_is_one_put_object() {
    let env = env(vec![kind("balance.summary.1", 4096)]).await;
    let run_id = env.finished_run("balance.summary.1", 1).await;
    assert!(env.batch(&[("m1", message(&run_id))]).await.is_empty());
    let stored = env
        .ledger
        .run(&run_id)
        .await
        .unwrap()
        .unwrap()
        .stored
        .unwrap();
    let (bytes, output) = env.object(&stored.s3_key).await.unwrap();
    assert_eq!(bytes.len(), 4096);
    assert!(
        !output.e_tag().unwrap().contains('-'),
        "a single PutObject has a plain ETag"
    );
    assert_eq!(env.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_download_leaves_no_object_no_upload_and_the_ledger_as_it_was() {
    let env = env(vec![kind("balance.summary.1", 20 * MIB)]).await;
    let run_id = env.finished_run("balance.summary.1", 2).await;
    env.emulator.set_faults(Faults {
        truncate_files: 1,
        ..Faults::default()
    });
    let before = env.ledger.run(&run_id).await.unwrap().unwrap();
    assert_eq!(env.batch(&[("m1", message(&run_id))]).await, ["m1"]);
    assert!(env.keys().await.is_empty());
    assert_eq!(
        env.open_uploads().await,
        0,
        "the multipart upload was aborted"
    );
    assert_eq!(env.ledger.run(&run_id).await.unwrap().unwrap(), before);
    // SQS delivers it again: whole this time, stored.
    assert!(env.batch(&[("m1", message(&run_id))]).await.is_empty());
    let (sha256, _) = env.file_of(&run_id).await;
    assert_eq!(
        env.ledger
            .run(&run_id)
            .await
            .unwrap()
            .unwrap()
            .stored
            .unwrap()
            .sha256,
        sha256
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_left_open_by_a_dead_attempt_are_aborted_once_the_run_is_stored() {
    let env = env(vec![kind("balance.summary.1", 12 * MIB)]).await;
    let run_id = env.finished_run("balance.summary.1", 3).await;
    let run = stripe(&env.emulator, "127.0.0.1")
        .report_run(&run_id)
        .await
        .unwrap();
    let key = stripe_reports::downloader::object_key("stripe/", &account(), &run);
    // What a process killed mid-stream (or cut off from S3) leaves behind: an
    // open upload with a part, under the run's key; and one under another key.
    for other in [key.as_str(), "stripe/unrelated.csv"] {
        let upload = env
            .s3
            .create_multipart_upload()
            .bucket(&env.bucket)
            .key(other)
            .send()
            .await
            .unwrap();
        env.s3
            .upload_part()
            .bucket(&env.bucket)
            .key(other)
            .upload_id(upload.upload_id().unwrap())
            .part_number(1)
            .body(vec![b'x'; 5 * MIB as usize].into())
            .send()
            .await
            .unwrap();
    }
    assert_eq!(env.open_uploads().await, 2);
    assert!(env.batch(&[("m1", message(&run_id))]).await.is_empty());
    let record = env.ledger.run(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Stored);
    assert_eq!(
        env.open_upload_keys().await,
        ["stripe/unrelated.csv"],
        "only the run's own leftovers are aborted"
    );
}

#[tokio::test]
async fn a_file_host_off_the_allow_list_gets_no_request_at_all() {
    let env = env_with(
        emulator(
            vec![kind("balance.summary.1", 4096)],
            Duration::from_millis(20),
        )
        .await,
        "files.stripe.com",
    )
    .await;
    let run_id = env.finished_run("balance.summary.1", 3).await;
    let before = env.emulator.stats();
    assert_eq!(env.batch(&[("m1", message(&run_id))]).await, ["m1"]);
    let after = env.emulator.stats();
    assert_eq!(after.file_downloads, before.file_downloads);
    assert_eq!(after.unauthorized, before.unauthorized);
    assert!(env.keys().await.is_empty());
    assert_eq!(
        env.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Pending
    );
}

#[tokio::test]
async fn redirects_are_followed_only_to_allow_listed_hosts() {
    let emulator = emulator(
        vec![kind("balance.summary.1", 4096)],
        Duration::from_millis(20),
    )
    .await;
    // result.url is on 127.0.0.1 and redirects to 127.0.0.2, the same
    // emulator on a second address that is not on the allow-list.
    let off_list = emulator
        .also_listen("127.0.0.2:0".parse().unwrap())
        .await
        .unwrap();
    emulator.set_faults(Faults {
        file_redirect_base: Some(format!("http://{off_list}")),
        ..Faults::default()
    });
    let refused = env_with(emulator, "127.0.0.1").await;
    let run_id = refused.finished_run("balance.summary.1", 4).await;
    assert_eq!(refused.batch(&[("m1", message(&run_id))]).await, ["m1"]);
    assert_eq!(
        refused.emulator.stats().file_downloads,
        0,
        "the redirect target was never asked"
    );
    let requests = refused.emulator.requests();
    assert!(
        requests.iter().any(|r| r.path.ends_with("/contents")),
        "the allow-listed file URL was asked (and answered with the redirect)"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.listener == refused.emulator.addr().to_string()),
        "no request at all reached the off-list host: {requests:?}"
    );
    assert!(refused.keys().await.is_empty());

    let emulator = self::emulator(
        vec![kind("balance.summary.1", 4096)],
        Duration::from_millis(20),
    )
    .await;
    let port = emulator.addr().port();
    emulator.set_faults(Faults {
        file_redirect_base: Some(format!("http://localhost:{port}")),
        ..Faults::default()
    });
    let allowed = env_with(emulator, "127.0.0.1,localhost").await;
    let run_id = allowed.finished_run("balance.summary.1", 5).await;
    assert!(allowed.batch(&[("m1", message(&run_id))]).await.is_empty());
    assert_eq!(allowed.emulator.stats().file_downloads, 1);
    assert_eq!(
        allowed.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Stored
    );
}

/// GETs of a file's contents the emulator received: each is one download.
fn downloads_of(emulator: &Emulator, file_id: &str) -> usize {
    let path = format!("/v1/files/{file_id}/contents");
    emulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_twice_at_once_stores_once() {
    let env = env(vec![kind("balance.summary.1", 12 * MIB)]).await;
    // With versioning, every write of the object leaves a version behind.
    env.s3
        .put_bucket_versioning()
        .bucket(&env.bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let run_id = env.finished_run("balance.summary.1", 6).await;
    let file_id = stripe(&env.emulator, "127.0.0.1")
        .report_run(&run_id)
        .await
        .unwrap()
        .result
        .unwrap()
        .id;
    // Two deliveries of one message handled at once (as a batch handles its
    // messages): one stores the file, the other finds it stored; the file
    // is downloaded once. Object keys are deterministic, so one object in
    // S3 alone would not tell one store from two.
    let body = message(&run_id);
    let (now, deadline) = (now(), deadline());
    let (a, b) = tokio::join!(
        env.deps.downloader.handle_message(&body, now, deadline),
        env.deps.downloader.handle_message(&body, now, deadline)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Stored::Now(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&Stored::Already), "{outcomes:?}");
    assert_eq!(
        downloads_of(&env.emulator, &file_id),
        1,
        "the file was downloaded once"
    );
    assert_eq!(env.emulator.stats().file_downloads, 1);
    let versions = env
        .s3
        .list_object_versions()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.versions().len(),
        1,
        "the object was written once: {:?}",
        versions.versions()
    );
    let record = env.ledger.run(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Stored);
    let keys = env.keys().await;
    assert_eq!(keys.len(), 1);
    let (bytes, _) = env.object(&keys[0]).await.unwrap();
    let (sha256, _) = env.file_of(&run_id).await;
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256);
    assert_eq!(record.stored.unwrap().sha256, sha256);
    // A third delivery later, through the batch handler, is acknowledged
    // without a download.
    assert!(env.batch(&[("m3", message(&run_id))]).await.is_empty());
    assert_eq!(downloads_of(&env.emulator, &file_id), 1);
    assert_eq!(env.emulator.stats().file_downloads, 1);
}

#[tokio::test]
async fn a_pending_run_is_reported_failed_for_redelivery() {
    let env = env_with(
        emulator(
            vec![kind("balance.summary.1", 4096)],
            Duration::from_secs(3600),
        )
        .await,
        "127.0.0.1",
    )
    .await;
    let client = stripe(&env.emulator, "127.0.0.1");
    let run = client
        .create_report_run(
            &CreateReportRun::for_spec(
                &ReportSpec::new("balance.summary.1"),
                Interval {
                    start: 1_790_000_000,
                    end: 1_790_086_400,
                },
            ),
            "k",
        )
        .await
        .unwrap();
    // Not finished yet, and said so: not "no file", which would be a run
    // that succeeded without one.
    let err = env
        .deps
        .downloader
        .handle_message(&message(&run.id), now(), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DownloadError::NotFinished(status) if status == "pending"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "report run is not finished yet (status pending)"
    );
    // Through the batch handler: reported failed, so SQS delivers it again.
    assert_eq!(env.batch(&[("m1", message(&run.id))]).await, ["m1"]);
    assert!(env.keys().await.is_empty());
    assert_eq!(env.emulator.stats().file_downloads, 0);
}

#[tokio::test]
async fn poison_messages_fail_alone() {
    let env = env(vec![kind("balance.summary.1", 4096)]).await;
    let run_id = env.finished_run("balance.summary.1", 7).await;
    let failed = env
        .batch(&[
            ("good", message(&run_id)),
            ("not-json", "{run_id".to_owned()),
            ("unknown-run", message("frr_does_not_exist")),
            ("wrong-shape", json!({"run": run_id}).to_string()),
            // The account is part of the message: without it, no key to read with.
            ("no-account", json!({"run_id": run_id}).to_string()),
            (
                "bad-account",
                json!({"run_id": run_id, "account": "acct_not-an-id!"}).to_string(),
            ),
        ])
        .await;
    assert_eq!(
        failed,
        [
            "bad-account",
            "no-account",
            "not-json",
            "unknown-run",
            "wrong-shape"
        ]
    );
    assert_eq!(
        env.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Stored
    );
}

#[tokio::test]
async fn a_run_failed_at_stripe_is_recorded_and_acknowledged() {
    let mut failing = kind("balance.summary.1", 4096);
    failing.fail = true;
    let env = env(vec![failing]).await;
    let run_id = env.finished_run("balance.summary.1", 8).await;
    assert!(env.batch(&[("m1", message(&run_id))]).await.is_empty());
    assert_eq!(
        env.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    assert!(env.keys().await.is_empty());
}

#[tokio::test]
async fn the_sample_event_parses_and_its_run_is_handled() {
    let env = env(vec![kind("balance.summary.1", 4096)]).await;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/downloader-sqs.json");
    let mut sample: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let id = sample["Records"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Its body is a download message as SPEC writes it (run and account)...
    let body = sample["Records"][0]["body"].as_str().unwrap();
    let parsed: Result<stripe_reports::domain::messages::DownloadMessage, _> =
        serde_json::from_str(body);
    assert!(
        parsed.is_ok(),
        "events/downloader-sqs.json body is not a download message: {body}: {parsed:?}"
    );
    // ...but as written, its run does not exist at the emulator: that message fails.
    let event: SqsEvent = serde_json::from_value(sample.clone()).unwrap();
    let response = downloader::handle_batch(&env.deps, event, now(), deadline()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, id);
    // Pointing it at a real finished run stores the file.
    let run_id = env.finished_run("balance.summary.1", 9).await;
    sample["Records"][0]["body"] = json!(message(&run_id));
    let event: SqsEvent = serde_json::from_value(sample).unwrap();
    assert!(
        downloader::handle_batch(&env.deps, event, now(), deadline())
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        env.ledger.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Stored
    );
}

/// The sink's part buffers outlive each file: a single-part file, a file
/// of whole parts and a file with a short last part each give back every
/// buffer they took, and a later file needs no new one.
#[tokio::test]
async fn the_sinks_part_buffers_outlive_each_file() {
    use stripe_reports::aws::s3::ObjectSpec;
    let sdk = local_aws().await;
    let (s3, bucket) = bucket(&sdk).await;
    let part = 5 * MIB as usize;
    let sink = S3Sink::new(s3.clone(), &bucket).with_parts(part, 2);
    let store = |key: &'static str, size: usize| {
        let sink = sink.clone();
        async move {
            let object = ObjectSpec {
                key: key.into(),
                content_type: "text/csv".into(),
                metadata: Default::default(),
                expected_size: Some(size as u64),
            };
            // Chunks of 64 KiB, as a download arrives.
            let chunks: Vec<Result<bytes::Bytes, String>> = (0..size)
                .step_by(64 * 1024)
                .map(|at| Ok(bytes::Bytes::from(vec![7u8; (size - at).min(64 * 1024)])))
                .collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let written = sink
                .store(&object, futures_util::stream::iter(chunks), deadline)
                .await
                .unwrap();
            assert_eq!(written.bytes, size as u64, "{key}");
        }
    };
    store("single.csv", 1024).await;
    assert_eq!(sink.pooled_part_buffers(), 1, "a single PutObject's buffer");
    store("whole-parts.csv", 2 * part).await;
    let after_whole = sink.pooled_part_buffers();
    assert!(
        after_whole >= 2,
        "two parts, and the buffer of the part that never came: {after_whole}"
    );
    store("short-last.csv", 2 * part + 1024).await;
    store("again.csv", 2 * part).await;
    assert_eq!(
        sink.pooled_part_buffers(),
        after_whole,
        "later files took every buffer from the pool and gave each back"
    );
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(listed.contents().len(), 4);
}
