//! The scheduler function's edge: which event started it (an EventBridge
//! schedule, a schedule-queue batch, or a backfill by hand) and what it
//! answers. The use case itself is `stripe_reports::scheduler`.

pub mod pace;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::domain::messages::ScheduleMessage;
use stripe_reports::env::Environment;
use stripe_reports::metrics::{self, Metric};
use stripe_reports::ports::{DownloadQueue, Ledger, StripeByAccount};
use stripe_reports::scheduler::{AccountSchedulers, Backfill, Outcome, Summary};
use tracing::{info, warn};

/// The `input` of a scheduled invocation in the summary log line.
const SCHEDULED: &str = "scheduled";

pub type Service = AccountSchedulers<DynamoLedger, AccountClients, SqsQueue>;

/// Builds the scheduler once per cold start.
pub async fn service_from_env() -> Result<Service, ConfigError> {
    service_from(Environment::load().await?).await
}

/// Builds the scheduler from a loaded environment (tests pass their own
/// configuration and clock). Each account's client reads its key from the
/// secrets cache at each request; each account's requests are paced at its
/// key's mode's rates, in slots from the sequence in the ledger table that
/// every invocation working the account at once takes from.
pub async fn service_from(env: Environment) -> Result<Service, ConfigError> {
    let stripe = env.account_clients();
    let dynamodb = aws_sdk_dynamodb::Client::new(&env.sdk);
    let table = env.config.require_runs_table()?;
    let ledger = DynamoLedger::new(dynamodb.clone(), table);
    let pace = pace::DynamoPace::new(dynamodb, table);
    let downloads = SqsQueue::new(
        aws_sdk_sqs::Client::new(&env.sdk),
        env.config.require_download_queue_url()?,
    );
    let mut service = AccountSchedulers::new(
        env.accounts.clone(),
        ledger,
        stripe,
        downloads,
        env.config.reports.clone(),
        env.config.lookback_days,
    );
    service.stuck_after = Duration::from_secs(u64::from(env.config.stuck_after_hours) * 3600);
    service.overdue_after = Duration::from_secs(u64::from(env.config.overdue_after_minutes) * 60);
    service.rates = env.config.stripe_rates;
    service.shared_pace = Some(Arc::new(pace));
    Ok(service)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The Lambda handler.
pub async fn handle<L, S, D>(
    service: &AccountSchedulers<L, S, D>,
    event: LambdaEvent<Value>,
) -> Result<Value, Error>
where
    L: Ledger + Clone,
    S: StripeByAccount,
    D: DownloadQueue + Clone,
{
    handle_at(service, event.payload, unix_now()).await
}

/// What started the function.
#[derive(Debug)]
pub enum Input {
    /// The EventBridge schedule (or any other event): plan everything, reconcile.
    Scheduled,
    /// A batch from the schedule queue.
    Queue(SqsEvent),
    /// `{"backfill": {...}}`.
    Backfill(Backfill),
}

/// Tells the three inputs apart: SQS batches carry `Records`, a backfill
/// carries `backfill`; anything else is the schedule.
pub fn classify(payload: Value) -> Result<Input, String> {
    if payload.get("Records").is_some() {
        return serde_json::from_value(payload)
            .map(Input::Queue)
            .map_err(|err| format!("not an SQS event: {err}"));
    }
    if let Some(backfill) = payload.get("backfill") {
        return serde_json::from_value(backfill.clone())
            .map(Input::Backfill)
            .map_err(|err| {
                format!(
                    "backfill must be {{\"from\": \"YYYY-MM-DD\", \"to\": \"YYYY-MM-DD\", \"report_types\": [..]}}: {err}"
                )
            });
    }
    Ok(Input::Scheduled)
}

/// The handler with the clock given.
pub async fn handle_at<L, S, D>(
    service: &AccountSchedulers<L, S, D>,
    payload: Value,
    now: i64,
) -> Result<Value, Error>
where
    L: Ledger + Clone,
    S: StripeByAccount,
    D: DownloadQueue + Clone,
{
    match classify(payload)? {
        Input::Scheduled => finish(SCHEDULED, service.run_scheduled(now).await),
        Input::Backfill(backfill) => {
            let summary = service.run_backfill(&backfill, now).await?;
            finish("backfill", summary)
        }
        Input::Queue(batch) => {
            let mut response = SqsBatchResponse::default();
            let mut total = Summary::default();
            for record in batch.records {
                let id = record.message_id.clone().unwrap_or_default();
                let message: Result<ScheduleMessage, _> =
                    serde_json::from_str(record.body.as_deref().unwrap_or_default());
                let outcome = match message {
                    Ok(message) => service
                        .run_for_type(&message.account, &message.report_type, now)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(err) => Err(format!(
                        "schedule message is not {{\"report_type\", \"data_available_end\", \"account\"}}: {err}"
                    )),
                };
                match outcome {
                    Ok(summary) if summary.errors == 0 => total.add(&summary),
                    Ok(summary) => {
                        total.add(&summary);
                        response.add_failure(id);
                    }
                    Err(err) => {
                        warn!(message_id = %id, error = %err, "schedule message failed");
                        total.errors += 1;
                        response.add_failure(id);
                    }
                }
            }
            log_summary("queue", None, &total);
            metrics::emit("scheduler", &summary_metrics("queue", &total, None));
            Ok(serde_json::to_value(response)?)
        }
    }
}

/// One summary line: an account's (`account` set) or the invocation's total.
fn log_summary(input: &str, account: Option<&str>, summary: &Summary) {
    info!(
        input,
        account,
        planned = summary.planned,
        created = summary.created,
        already_requested = summary.already_requested,
        unavailable = summary.unavailable,
        adopted = summary.adopted,
        deferred = summary.deferred,
        enqueued = summary.enqueued,
        failed = summary.failed,
        retired = summary.retired,
        stuck = summary.stuck,
        overdue = summary.overdue,
        errors = summary.errors,
        "scheduler summary"
    );
}

/// The invocation's metrics (EMF, dimension `Function=scheduler`), over
/// every account. `OverdueIntervals` comes from scheduled invocations only:
/// they alone count every spec, and its absence is what the "scheduler
/// stopped" alarm watches for (a schedule-queue message must not hide it).
/// `FailingAccounts` (invocations over every account) counts the accounts
/// that could not be worked or had requests fail.
pub fn summary_metrics(
    input: &str,
    summary: &Summary,
    failing_accounts: Option<u64>,
) -> Vec<Metric<'static>> {
    let count = |name, value: u64| Metric {
        name,
        value: value as f64,
        unit: "Count",
    };
    let mut metrics = vec![
        count("RunsCreated", summary.created),
        count("RunsEnqueuedByReconcile", summary.enqueued),
        count("FailedRuns", summary.failed),
        count("RetiredRuns", summary.retired),
        count("StuckRuns", summary.stuck),
        count("SchedulerErrors", summary.errors),
    ];
    if input == SCHEDULED {
        metrics.push(count("OverdueIntervals", summary.overdue));
    }
    if let Some(failing) = failing_accounts {
        metrics.push(count("FailingAccounts", failing));
    }
    metrics
}

/// Logs each account's summary and the total, and answers the total with
/// the accounts' parts; an invocation with errors fails (Lambda retries
/// it, and the Errors metric alarms), which is safe since every step is
/// idempotent. The failing accounts are named in the error.
fn finish(input: &str, outcome: Outcome) -> Result<Value, Error> {
    for part in &outcome.accounts {
        log_summary(input, Some(&part.account), &part.summary);
    }
    let total = outcome.total();
    log_summary(input, None, &total);
    metrics::emit(
        "scheduler",
        &summary_metrics(input, &total, Some(outcome.failing_accounts())),
    );
    let mut answer = serde_json::to_value(&total)?;
    answer["accounts"] = serde_json::to_value(&outcome.accounts)?;
    if total.errors > 0 {
        let failing: Vec<String> = outcome
            .accounts
            .iter()
            .filter(|part| part.is_failing())
            .map(|part| match &part.failing {
                Some(reason) => format!("{}: {reason}", part.account),
                None => format!(
                    "{}: {} request(s) failed",
                    part.account, part.summary.errors
                ),
            })
            .collect();
        return Err(format!(
            "{} request(s) failed; they are retried by the next invocation ({}): {answer}",
            total.errors,
            failing.join("; ")
        )
        .into());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_schedule_reports_overdue_intervals() {
        let summary = Summary {
            overdue: 3,
            ..Summary::default()
        };
        let names = |input| -> Vec<&str> {
            summary_metrics(input, &summary, None)
                .iter()
                .map(|m| m.name)
                .collect()
        };
        let scheduled = summary_metrics(SCHEDULED, &summary, Some(1));
        assert!(
            scheduled
                .iter()
                .any(|m| m.name == "FailingAccounts" && m.value == 1.0)
        );
        let overdue = scheduled.iter().find(|m| m.name == "OverdueIntervals");
        assert_eq!(overdue.map(|m| m.value), Some(3.0));
        for input in ["queue", "backfill"] {
            assert!(!names(input).contains(&"OverdueIntervals"), "{input}");
            assert!(names(input).contains(&"RunsCreated"), "{input}");
        }
    }
}
