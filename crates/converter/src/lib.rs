//! The converter function's edge: a conversion-queue batch in,
//! `batchItemFailures` out (the event source mapping has
//! `ReportBatchItemFailures`), or a backfill invocation
//! (`{"backfill": {"from", "to", "accounts", "report_types"}}`) that queues
//! stored CSVs for conversion again. The use case is `tables::conversion`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use stripe_reports::Config;
use stripe_reports::aws::{self, DynamoLedger, SqsQueue};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::metrics::{self, Metric};
use stripe_reports::ports::{ConversionQueue, Ledger};
use tables::ConvertOptions;
use tables::catalog::Catalog;
use tables::conversion::{ConversionError, Converter, DEFAULT_TIMEOUT, TableBackfill, Tabled};
use tables::files::{ReportFiles, S3ReportFiles};
use tables::glue::GlueCatalog;
use tokio::time::Instant;
use tracing::{error, warn};

/// Kept back from the invocation's deadline for the ledger write and the answer.
pub const ANSWER_RESERVE: Duration = Duration::from_secs(10);
/// The table file's upload: 8 MiB parts, one in flight besides the one being
/// filled — with the conversion's own ~60 MiB, inside a 128 MB function.
const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 1;

pub type Service = Converter<DynamoLedger, S3ReportFiles, GlueCatalog, SqsQueue>;

/// Builds the converter once per cold start. It needs no Stripe key: the
/// CSV is read from the bucket, so the secret is not even loaded.
pub async fn deps_from_env() -> Result<Service, ConfigError> {
    let config = Config::from_env()?;
    let sdk = aws::load_sdk_config().await;
    deps_from(&config, &sdk)
}

/// Builds the converter from a configuration (tests pass their own).
pub fn deps_from(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Service, ConfigError> {
    let bucket = config.require_reports_bucket()?.to_owned();
    Ok(Converter {
        ledger: DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.require_runs_table()?,
        ),
        files: S3ReportFiles::new(
            aws::s3_client(sdk, config.aws_endpoint_url.is_some()),
            bucket.clone(),
            PART_SIZE,
            PARTS_IN_FLIGHT,
        ),
        catalog: GlueCatalog::new(
            aws_sdk_glue::Client::new(sdk),
            config.require_glue_database()?,
        ),
        queue: SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            config.require_conversion_queue_url()?,
        ),
        bucket,
        prefix: config.reports_prefix.clone(),
        options: ConvertOptions::default(),
    })
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The time by which a message's work must be done: the invocation's
/// deadline less [`ANSWER_RESERVE`], or the default budget without one
/// (`deadline_ms` 0, as in `Context::default()` and the local runner).
pub fn work_deadline(deadline_ms: u64, now_ms: u64) -> Instant {
    if deadline_ms == 0 {
        return Instant::now() + DEFAULT_TIMEOUT;
    }
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(ANSWER_RESERVE)
}

/// The Lambda handler.
pub async fn handle<L, F, C, Q>(
    service: &Converter<L, F, C, Q>,
    event: LambdaEvent<Value>,
) -> Result<Value, Error>
where
    L: Ledger,
    F: ReportFiles,
    C: Catalog,
    Q: ConversionQueue,
{
    let now_ms = unix_now_ms();
    let deadline = work_deadline(event.context.deadline, now_ms);
    handle_at(service, event.payload, (now_ms / 1000) as i64, deadline).await
}

/// The handler with the clock and deadline given.
pub async fn handle_at<L, F, C, Q>(
    service: &Converter<L, F, C, Q>,
    payload: Value,
    now: i64,
    deadline: Instant,
) -> Result<Value, Error>
where
    L: Ledger,
    F: ReportFiles,
    C: Catalog,
    Q: ConversionQueue,
{
    if let Some(backfill) = payload.get("backfill") {
        let backfill: TableBackfill = serde_json::from_value(backfill.clone()).map_err(|err| {
            format!(
                "backfill must be {{\"from\": \"YYYY-MM-DD\", \"to\": \"YYYY-MM-DD\", \"accounts\": [..], \"report_types\": [..]}}: {err}"
            )
        })?;
        let summary = service.queue_backfill(&backfill).await?;
        return Ok(json!({ "backfill": summary }));
    }
    let batch: SqsEvent = serde_json::from_value(payload).map_err(|err| {
        format!("expected an SQS batch of conversion messages or {{\"backfill\": {{..}}}}: {err}")
    })?;
    let response = handle_batch(service, batch, now, deadline).await;
    Ok(serde_json::to_value(response)?)
}

/// Converts each message of a batch, one at a time (each conversion already
/// uses a core and most of a small function's memory); the answer lists
/// exactly the failed message ids, so one file that cannot be converted
/// never holds up the others.
pub async fn handle_batch<L, F, C, Q>(
    service: &Converter<L, F, C, Q>,
    batch: SqsEvent,
    now: i64,
    deadline: Instant,
) -> SqsBatchResponse
where
    L: Ledger,
    F: ReportFiles,
    C: Catalog,
    Q: ConversionQueue,
{
    let mut response = SqsBatchResponse::default();
    for record in batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let outcome = tokio::time::timeout_at(
            deadline + ANSWER_RESERVE / 2,
            service.handle_message(body, now, deadline),
        )
        .await
        .unwrap_or(Err(ConversionError::Deadline("writing the ledger")));
        metrics::emit("converter", &message_metrics(&outcome));
        if let Err(err) = outcome {
            if err.is_bad_file() {
                // The run id is in the span fields of `handle_message`'s log
                // lines; here it is named again beside the line and column.
                error!(message_id = %id, body, error = %err, "report CSV cannot be converted; it stays stored, SQS delivers it again");
            } else {
                warn!(message_id = %id, body, error = %err, "conversion not done; SQS delivers it again");
            }
            response.add_failure(id);
        }
    }
    response
}

/// The metrics of one message (EMF, dimension `Function=converter`), every
/// time: `TablesWritten`, `TableRows`, `ConversionFailures` (a CSV that
/// cannot be converted: the same bytes will fail again, alarmed at once) and
/// `ConversionErrors` (anything else: S3, Glue, the ledger, the time running
/// out; retried, alarmed when it keeps happening).
pub fn message_metrics(outcome: &Result<Tabled, ConversionError>) -> Vec<Metric<'static>> {
    let (written, rows) = match outcome {
        Ok(Tabled::Now { rows, .. }) => (1.0, *rows as f64),
        _ => (0.0, 0.0),
    };
    let count = |name, value: bool| Metric {
        name,
        value: f64::from(u8::from(value)),
        unit: "Count",
    };
    let bad_file = outcome.as_ref().is_err_and(ConversionError::is_bad_file);
    vec![
        Metric {
            name: "TablesWritten",
            value: written,
            unit: "Count",
        },
        Metric {
            name: "TableRows",
            value: rows,
            unit: "Count",
        },
        count("ConversionFailures", bad_file),
        count("ConversionErrors", outcome.is_err() && !bad_file),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tables::ConvertError;

    fn value(metrics: &[Metric<'_>], name: &str) -> f64 {
        metrics
            .iter()
            .find(|m| m.name == name)
            .map_or(f64::NAN, |m| m.value)
    }

    #[test]
    fn a_bad_file_and_an_outage_are_counted_apart() {
        let bad = Err(ConversionError::Csv(ConvertError::NoHeader));
        let metrics = message_metrics(&bad);
        assert_eq!(value(&metrics, "ConversionFailures"), 1.0);
        assert_eq!(value(&metrics, "ConversionErrors"), 0.0);
        let outage = Err(ConversionError::Deadline("writing the table file"));
        let metrics = message_metrics(&outage);
        assert_eq!(value(&metrics, "ConversionFailures"), 0.0);
        assert_eq!(value(&metrics, "ConversionErrors"), 1.0);
        let metrics = message_metrics(&Ok(Tabled::Already));
        assert_eq!(
            value(&metrics, "ConversionFailures") + value(&metrics, "ConversionErrors"),
            0.0
        );
        assert_eq!(value(&metrics, "TablesWritten"), 0.0);
    }
}
