//! The set-up the integration test suites share, written once: local AWS on
//! moto's server (a uniquely named ledger table, bucket or queue per test,
//! and draining a queue), Secrets Manager secrets with a count of their
//! reads and a clock moved by hand (for the secrets cache), the Stripe
//! emulator with a client for it, one reading of the clock per test, and a
//! log writer a test can read back.
//! Dev-only: no production crate depends on it.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stripe_emulator::{Emulator, EmulatorConfig, ReportTypeConfig};
use stripe_reports::accounts::{AccountClients, Accounts};
use stripe_reports::aws::DynamoLedger;
use stripe_reports::aws::secrets::SecretsManagerReader;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::config::{ConfigError, FileHosts, StripeAccounts};
use stripe_reports::domain::secret::SecretString;
use stripe_reports::secrets::{Clock as SecretsClock, SecretReader};
use stripe_reports::stripe::{ApiKey, RetryPolicy, StripeClient, StripeClientConfig};

pub const DAY: i64 = 86_400;
pub const MIB: u64 = 1024 * 1024;

/// A name no other test uses (tests share one moto server).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// One reading of the clock, taken once per test: the `now` a test hands a
/// handler and the `today` its expectations use always agree, even when the
/// test runs across midnight UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds.
    pub now: i64,
    /// The UTC midnight that starts the day of `now`.
    pub today: i64,
}

impl Clock {
    /// Reads the system clock.
    pub fn read() -> Self {
        Self::at(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs() as i64,
        )
    }

    pub fn at(now: i64) -> Self {
        Self {
            now,
            today: now - now.rem_euclid(DAY),
        }
    }
}

/// The SDK configuration of moto's server (`make test` sets `AWS_ENDPOINT_URL`).
pub async fn local_aws() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the tests with `make test` (it starts moto's server)"
    );
    stripe_reports::aws::load_sdk_config().await
}

/// A new ledger table (the SPEC's key schema and the unfinished-runs index).
pub async fn ledger(sdk: &aws_config::SdkConfig) -> DynamoLedger {
    DynamoLedger::create_table(aws_sdk_dynamodb::Client::new(sdk), unique("runs"))
        .await
        .expect("create ledger table")
}

/// A new bucket and an S3 client for it (path-style, as against any local S3).
pub async fn bucket(sdk: &aws_config::SdkConfig) -> (aws_sdk_s3::Client, String) {
    let s3 = stripe_reports::aws::s3_client(sdk, true);
    let bucket = unique("reports");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    (s3, bucket)
}

/// Every object key in a bucket, sorted.
pub async fn object_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list objects");
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// The keys of the multipart uploads still open in a bucket.
pub async fn open_upload_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let uploads = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list multipart uploads");
    uploads
        .uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_owned))
        .collect()
}

/// A new queue: its client and URL.
pub async fn queue(sdk: &aws_config::SdkConfig, prefix: &str) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(unique(prefix))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    (sqs, url)
}

/// A new Glue database (tests share one moto server): its name.
pub async fn glue_database(glue: &aws_sdk_glue::Client) -> String {
    let database = unique("reports").replace('-', "_").to_lowercase();
    glue.create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(&database)
                .build()
                .expect("database input"),
        )
        .send()
        .await
        .expect("create database");
    database
}

/// A report type whose data reaches from 2023 to 2027, with files of `size` bytes.
pub fn report_type(id: &str, size: u64) -> ReportTypeConfig {
    let mut kind = ReportTypeConfig::new(id);
    kind.file_size = Some(size);
    kind.data_available_start = Some(1_700_000_000);
    kind.data_available_end = Some(1_800_000_000);
    kind
}

/// Receives and deletes every message on the queue; their JSON bodies.
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            return bodies;
        }
        for message in out.messages() {
            bodies.push(serde_json::from_str(message.body().unwrap_or("null")).expect("JSON body"));
            sqs.delete_message()
                .queue_url(url)
                .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                .send()
                .await
                .expect("delete");
        }
    }
}

/// A new Secrets Manager secret holding `json`; its ARN.
pub async fn secret(sdk: &aws_config::SdkConfig, json: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(unique("stripe"))
        .secret_string(json)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("secret ARN")
}

/// Puts a new value into the secret (filling it, or rolling a key).
pub async fn put_secret(sdk: &aws_config::SdkConfig, arn: &str, json: &str) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(arn)
        .secret_string(json)
        .send()
        .await
        .expect("put secret value");
}

/// The secret's JSON for one API key and webhook secret(s).
pub fn secret_json(api_key: &str, webhook_secret: &str) -> String {
    serde_json::json!({"api_key": api_key, "webhook_secret": webhook_secret}).to_string()
}

/// The real Secrets Manager reader, counting its `GetSecretValue` calls.
pub struct CountingReader {
    inner: SecretsManagerReader,
    reads: AtomicUsize,
}

impl CountingReader {
    pub fn new(sdk: &aws_config::SdkConfig, arn: &str) -> Arc<Self> {
        Arc::new(Self {
            inner: SecretsManagerReader::new(sdk, arn),
            reads: AtomicUsize::new(0),
        })
    }

    /// `GetSecretValue` calls so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl SecretReader for CountingReader {
    fn read(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<StripeAccounts, ConfigError>> + Send + '_>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read()
    }
}

/// A clock for the secrets cache that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(Mutex<Duration>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl SecretsClock for ManualClock {
    fn now(&self) -> Duration {
        self.0.lock().map(|now| *now).unwrap_or_default()
    }
}

/// The Stripe emulator on a free loopback port.
pub async fn emulator(
    api_key: &str,
    report_types: Vec<ReportTypeConfig>,
    run_delay: Duration,
) -> Emulator {
    emulator_with(EmulatorConfig {
        api_key: api_key.into(),
        report_types,
        run_delay,
        ..EmulatorConfig::default()
    })
    .await
}

/// The Stripe emulator with any configuration (webhooks, seed, live mode…)
/// on a free loopback port.
pub async fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("start emulator")
}

/// Retries in milliseconds, so fault tests stay short.
pub fn quick_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

/// A Stripe client for the emulator, sending the key to `file_hosts` only.
pub fn stripe_client(
    emulator: &Emulator,
    api_key: &str,
    file_hosts: &str,
    retry: RetryPolicy,
) -> StripeClient {
    let mut config = StripeClientConfig::new(
        emulator.base_url().parse().expect("emulator URL"),
        SecretString::new(api_key),
        FileHosts::parse(file_hosts).expect("file hosts"),
    );
    config.retry = retry;
    StripeClient::new(config).expect("client")
}

/// The id of the emulator's account when it serves one (its default).
pub const ACCOUNT: &str = "acct_1EmulatorDefault00";

/// [`ACCOUNT`] as an id.
pub fn account() -> AccountId {
    AccountId::parse(ACCOUNT).expect("account id")
}

/// Accounts taken as configured, without asking Stripe whose keys they are:
/// each `(account, api key)` pair.
pub fn trusted_accounts(pairs: &[(&str, &str)]) -> Arc<Accounts> {
    let list: Vec<Value> = pairs
        .iter()
        .map(|(account, key)| serde_json::json!({"account": account, "api_key": key}))
        .collect();
    let accounts =
        StripeAccounts::from_accounts_json(&Value::Array(list).to_string()).expect("accounts");
    Arc::new(Accounts::trusted(accounts))
}

/// Each account's client for the emulator (see [`stripe_client`]), the
/// accounts taken as configured.
pub fn account_clients(
    emulator: &Emulator,
    pairs: &[(&str, &str)],
    file_hosts: &str,
    retry: RetryPolicy,
) -> AccountClients {
    let mut config = StripeClientConfig::new(
        emulator.base_url().parse().expect("emulator URL"),
        ApiKey::None,
        FileHosts::parse(file_hosts).expect("file hosts"),
    );
    config.retry = retry;
    AccountClients::new(
        StripeClient::new(config).expect("client"),
        trusted_accounts(pairs),
    )
}

/// The Unix time the Stripe event builders below are written for.
pub const EVENT_NOW: i64 = 1_796_000_000;

/// A `reporting.report_run` object as Stripe's events carry it.
pub fn run_object(run_id: &str, report_type: &str, status: &str) -> Value {
    json!({
        "created": EVENT_NOW - 600, "error": if status == "failed" { json!("Stripe could not compute this report") } else { Value::Null },
        "id": run_id, "livemode": false, "object": "reporting.report_run",
        "parameters": {"interval_start": 1_795_910_400, "interval_end": 1_795_996_800},
        "report_type": report_type, "result": null, "status": status,
        "succeeded_at": if status == "succeeded" { json!(EVENT_NOW - 60) } else { Value::Null },
    })
}

/// A Stripe v1 Event (a webhook body, or EventBridge's `detail`).
pub fn stripe_event(event_id: &str, event_type: &str, object: Value) -> String {
    json!({
        "id": event_id, "object": "event", "api_version": "2026-07-29.dahlia", "created": EVENT_NOW - 30,
        "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": event_type,
    })
    .to_string()
}

/// A `reporting.report_run.succeeded` event for a `balance.summary.1` run.
pub fn run_succeeded_event(event_id: &str, run_id: &str) -> String {
    stripe_event(
        event_id,
        "reporting.report_run.succeeded",
        run_object(run_id, "balance.summary.1", "succeeded"),
    )
}

/// The Python of the project's venv (Stripe's official `stripe` library,
/// moto, jsonschema installed), or `$STRIPE_REPORTS_PYTHON`.
pub fn python() -> PathBuf {
    if let Ok(path) = std::env::var("STRIPE_REPORTS_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv: run `make venv` (or set STRIPE_REPORTS_PYTHON) before these tests"
    );
    venv
}

/// An SQS event (what the event source mapping hands a function) of
/// `(message id, body)` pairs, as `T` (`aws_lambda_events`' `SqsEvent`).
pub fn sqs_batch<T: serde::de::DeserializeOwned>(messages: &[(&str, &str)]) -> T {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
                   "messageAttributes": {}, "eventSource": "aws:sqs"})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("SQS event")
}

/// A sample event from `events/`.
pub fn event_file(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("event file")).expect("event JSON")
}

/// A log writer the test can read back (for a `tracing_subscriber` JSON layer).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// The logs of this test binary: a JSON subscriber (every level, with
    /// each line's span and span list) installed as the global default the
    /// first time, for every test of the binary to read.
    pub fn global() -> &'static CapturedLogs {
        static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let captured = CapturedLogs::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::TRACE)
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            captured
        })
    }

    /// Every line written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
    }

    /// Every line, parsed as JSON (lines that are not JSON are skipped).
    pub fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Creates the run of `report_type` over `interval` at Stripe (the type's
/// default parameters, a fresh idempotency key) and records it pending in
/// the ledger at `now`, as the scheduler leaves it. Returns the run id.
pub async fn requested_run(
    stripe: &StripeClient,
    account: &AccountId,
    ledger: &DynamoLedger,
    report_type: &str,
    interval: stripe_reports::domain::calendar::Interval,
    now: i64,
) -> String {
    use stripe_reports::ports::Ledger;
    let spec = stripe_reports::domain::spec::ReportSpec::new(report_type);
    let run = stripe
        .create_report_run(
            &stripe_reports::stripe::CreateReportRun::for_spec(&spec, interval),
            &unique("key"),
        )
        .await
        .expect("create run");
    let facts = stripe_reports::ports::RunFacts {
        account: account.clone(),
        run_id: run.id.clone(),
        report_type: report_type.into(),
        interval_start: Some(interval.start),
        interval_end: Some(interval.end),
    };
    let key = stripe_reports::domain::request_key::RequestKey::new(account, &spec, interval, 0);
    ledger
        .record_requested(&key, &facts, now)
        .await
        .expect("record the request");
    run.id
}

/// Waits (at most about 2 s) until Stripe has finished the run.
pub async fn wait_finished(stripe: &StripeClient, run_id: &str) {
    for _ in 0..200 {
        let run = stripe.report_run(run_id).await.expect("read run");
        if run.status != stripe_reports::stripe::StripeRunStatus::Pending {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never finished");
}
