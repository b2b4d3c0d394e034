//! Helpers of the scheduler tests: the emulator, moto-backed ledger and queue.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stripe_emulator::{Emulator, EmulatorConfig, ReportTypeConfig};
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::config::FileHosts;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::rate::RateLimiter;
use stripe_reports::scheduler::Scheduler;
use stripe_reports::stripe::{RetryPolicy, StripeClient, StripeClientConfig};

pub const API_KEY: &str = "sk_test_scheduler_tests";
pub const DAY: i64 = 86_400;

/// One reading of the clock, taken once per test: the `now` a test hands the
/// scheduler and the `today` its expectations use always agree, even when
/// the test runs across midnight UTC.
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
                .unwrap()
                .as_secs() as i64,
        )
    }

    /// Reads the system clock for a test that invokes again up to `secs`
    /// later and expects the same day then: in the last `secs` before
    /// midnight UTC, `now` is moved back to leave that room.
    pub fn read_with_room(secs: i64) -> Self {
        let clock = Self::read();
        Self::at(clock.now.min(clock.today + DAY - 1 - secs))
    }

    pub fn at(now: i64) -> Self {
        Self {
            now,
            today: now - now.rem_euclid(DAY),
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A report type with data from a year ago up to the clock's UTC midnight.
pub fn report_type(clock: &Clock, id: &str) -> ReportTypeConfig {
    let mut kind = ReportTypeConfig::new(id);
    kind.data_available_start = Some(clock.today - 400 * DAY);
    kind.data_available_end = Some(clock.today);
    kind
}

pub async fn emulator(types: Vec<ReportTypeConfig>) -> Emulator {
    Emulator::start(
        EmulatorConfig {
            api_key: API_KEY.into(),
            report_types: types,
            run_delay: Duration::from_millis(20),
            ..EmulatorConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub ledger: DynamoLedger,
    pub download_url: String,
}

pub async fn aws() -> Aws {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the tests with `make test` (it starts moto's server)"
    );
    let sdk = stripe_reports::aws::load_sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("runs");
    let ledger = DynamoLedger::create_table(dynamodb, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let download_url = sqs
        .create_queue()
        .queue_name(unique("dl"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    Aws {
        sqs,
        ledger,
        download_url,
    }
}

impl Aws {
    pub async fn drain(&self) -> Vec<Value> {
        let mut bodies = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.download_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                return bodies;
            }
            for m in out.messages() {
                bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.download_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

pub fn stripe(emulator: &Emulator) -> StripeClient {
    let mut config = StripeClientConfig::new(
        emulator.base_url().parse().unwrap(),
        SecretString::new(API_KEY),
        FileHosts::parse("127.0.0.1").unwrap(),
    );
    config.retry = RetryPolicy {
        max_retries: 10,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };
    StripeClient::new(config).unwrap()
}

pub type Service = Scheduler<DynamoLedger, StripeClient, SqsQueue>;

pub fn scheduler(
    aws: &Aws,
    emulator: &Emulator,
    specs: Vec<ReportSpec>,
    lookback_days: u32,
) -> Service {
    let mut service = Scheduler::new(
        aws.ledger.clone(),
        stripe(emulator),
        SqsQueue::new(aws.sqs.clone(), &aws.download_url),
        specs,
        lookback_days,
    );
    // Tests run against the emulator: a faster rate keeps them short.
    service.limiter = Arc::new(RateLimiter::new(100));
    service
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

pub fn event_file(name: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
