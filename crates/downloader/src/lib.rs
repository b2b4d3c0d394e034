//! The downloader function's edge: an SQS batch in, `batchItemFailures` out
//! (the event source mapping has `ReportBatchItemFailures`). The use case
//! itself is `stripe_reports::downloader`.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::SqsQueue;
use stripe_reports::aws::{self, DynamoLedger};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::downloader::{
    ANSWER_RESERVE, DownloadError, Downloader, Stored, work_deadline,
};
use stripe_reports::env::Environment;
use stripe_reports::metrics::{self, Metric};
use stripe_reports::ports::{ConversionQueue, Ledger, NoConversions, StripeByAccount};
use tokio::time::Instant;
use tracing::warn;

pub type Service = Downloader<DynamoLedger, AccountClients, Option<SqsQueue>>;

/// The service and how many messages of a batch it handles at once.
pub struct Deps<L, S, Q = NoConversions> {
    pub downloader: Downloader<L, S, Q>,
    pub concurrency: usize,
}

/// Builds the downloader once per cold start.
pub async fn deps_from_env()
-> Result<Deps<DynamoLedger, AccountClients, Option<SqsQueue>>, ConfigError> {
    deps_from(Environment::load().await?).await
}

/// Builds the downloader from a loaded environment (tests pass their own
/// configuration and clock). Each account's client reads its key from the
/// secrets cache at each request.
pub async fn deps_from(
    env: Environment,
) -> Result<Deps<DynamoLedger, AccountClients, Option<SqsQueue>>, ConfigError> {
    let config = &env.config;
    let stripe = env.account_clients();
    let ledger = DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(&env.sdk),
        config.require_runs_table()?,
    );
    let sink = aws::S3Sink::new(
        aws::s3_client(&env.sdk, config.aws_endpoint_url.is_some()),
        config.require_reports_bucket()?,
    )
    .with_parts(
        config.download_part_size_mib as usize * 1024 * 1024,
        config.download_parts_in_flight as usize,
    );
    Ok(Deps {
        downloader: Downloader {
            ledger,
            stripe,
            sink,
            prefix: config.reports_prefix.clone(),
            conversions: config
                .conversion_queue_url
                .as_ref()
                .map(|url| SqsQueue::new(aws_sdk_sqs::Client::new(&env.sdk), url.clone())),
        },
        concurrency: config.download_concurrency as usize,
    })
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The Lambda handler: every budget comes from the time the invocation has
/// left (`Context.deadline`), so the batch answer is always sent in time.
pub async fn handle<L: Ledger, S: StripeByAccount, Q: ConversionQueue>(
    deps: &Deps<L, S, Q>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let now_ms = unix_now_ms();
    let deadline = work_deadline(event.context.deadline, now_ms);
    Ok(handle_batch(deps, event.payload, (now_ms / 1000) as i64, deadline).await)
}

/// Handles every record (a bounded number at once), each with its own
/// outcome; the answer lists exactly the failed message ids. Stripe reads
/// and uploads end by `deadline`; a message still busy shortly after it
/// (a ledger write that hangs) is reported failed rather than losing the
/// whole answer.
pub async fn handle_batch<L: Ledger, S: StripeByAccount, Q: ConversionQueue>(
    deps: &Deps<L, S, Q>,
    batch: SqsEvent,
    now: i64,
    deadline: Instant,
) -> SqsBatchResponse {
    let answer_by = deadline + ANSWER_RESERVE / 2;
    let outcomes: Vec<(String, Result<Stored, DownloadError>)> =
        futures_util::stream::iter(batch.records)
            .map(|record| async move {
                let id = record.message_id.clone().unwrap_or_default();
                let body = record.body.as_deref().unwrap_or_default();
                let outcome = tokio::time::timeout_at(
                    answer_by,
                    deps.downloader.handle_message(body, now, deadline),
                )
                .await
                .unwrap_or(Err(DownloadError::Deadline("writing the ledger")));
                // Each message's metrics as soon as it is done: a batch cut
                // short (timeout, out of memory) still reported what it did.
                metrics::emit("downloader", &message_metrics(&outcome));
                (id, outcome)
            })
            .buffer_unordered(deps.concurrency.max(1))
            .collect()
            .await;
    let mut response = SqsBatchResponse::default();
    for (id, outcome) in outcomes {
        if let Err(err) = outcome {
            // A pending run is normal (redelivered later); the rest is logged
            // as a failure, and after maxReceiveCount lands in the DLQ.
            warn!(message_id = %id, error = %err, "message not handled; SQS will deliver it again");
            response.add_failure(id);
        }
    }
    response
}

/// The metrics of one message (EMF, dimension `Function=downloader`):
/// `ReportsStored`, `BytesStored`, `DownloadFailures` and `FailedRuns`
/// every time, and `FreshnessSeconds` — from when the interval's data was
/// first seen available to stored — for a report stored now.
pub fn message_metrics(outcome: &Result<Stored, DownloadError>) -> Vec<Metric<'static>> {
    let count = |name, value: bool| Metric {
        name,
        value: f64::from(u8::from(value)),
        unit: "Count",
    };
    let stored = match outcome {
        Ok(Stored::Now(report)) => Some(report),
        _ => None,
    };
    let mut metrics = vec![
        count("ReportsStored", stored.is_some()),
        Metric {
            name: "BytesStored",
            value: stored.map_or(0.0, |report| report.object.bytes as f64),
            unit: "Bytes",
        },
        count("DownloadFailures", outcome.is_err()),
        count(
            "FailedRuns",
            matches!(outcome, Ok(Stored::RunFailed { recorded_now: true })),
        ),
    ];
    if let Some(freshness) = stored.and_then(|report| report.freshness_secs) {
        metrics.push(Metric {
            name: "FreshnessSeconds",
            value: freshness as f64,
            unit: "Seconds",
        });
    }
    metrics
}
