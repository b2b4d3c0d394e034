//! The `eventbridge` function's edge: Stripe's events from an Amazon
//! EventBridge partner event source, which the stack's rule puts on an SQS
//! queue, arrive here in SQS batches; `batchItemFailures` goes back (the
//! event source mapping has `ReportBatchItemFailures`). The use case is the
//! webhook's (`stripe_reports::webhook`), entered through
//! `stripe_reports::eventbridge`: the same decision, the same claim on the
//! Stripe event id, the same routing.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::env::Environment;
use stripe_reports::metrics::{self, Metric};
use stripe_reports::ports::{DownloadQueue, Ledger, ScheduleQueue};
use stripe_reports::webhook::{WebhookAnswer, WebhookService};
use tracing::warn;

/// The service with its real adapters.
pub type Service = WebhookService<DynamoLedger, SqsQueue, SqsQueue>;

/// Builds the service once per cold start.
pub async fn service_from_env() -> Result<Service, ConfigError> {
    service_from(Environment::load().await?).await
}

/// Builds the service from a loaded environment (tests pass their own
/// configuration and clock). No webhook secret is needed: nothing is
/// signed on this path.
pub async fn service_from(env: Environment) -> Result<Service, ConfigError> {
    env.accounts.require_event_destinations().await?;
    env.event_service()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The Lambda handler.
pub async fn handle<L: Ledger, D: DownloadQueue, S: ScheduleQueue>(
    service: &WebhookService<L, D, S>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    Ok(handle_batch(service, event.payload, unix_now()).await)
}

/// Handles the messages of a batch one after another (each is one
/// EventBridge event; ten events of a few milliseconds need no concurrency,
/// and two copies of one Stripe event in one batch then meet as a duplicate,
/// not as a claim in progress that fails and comes back) at Unix time `now`.
/// The answer lists the messages to deliver again: those that failed
/// (retried after the visibility timeout) and those refused (moved to the
/// dead-letter queue after `maxReceiveCount`, and alarmed at once through
/// `EventsRejected`).
pub async fn handle_batch<L: Ledger, D: DownloadQueue, S: ScheduleQueue>(
    service: &WebhookService<L, D, S>,
    batch: SqsEvent,
    now: i64,
) -> SqsBatchResponse {
    let mut answers = Vec::with_capacity(batch.records.len());
    for record in batch.records {
        let id = record.message_id.unwrap_or_default();
        let body = record.body.unwrap_or_default();
        let answer = service.handle_eventbridge(body.as_bytes(), now).await;
        // Each message's metrics as soon as it is done.
        metrics::emit("eventbridge", &answer_metrics(&answer));
        answers.push((id, answer));
    }
    let mut response = SqsBatchResponse::default();
    for (id, answer) in answers {
        match answer {
            WebhookAnswer::Received(_) => {}
            WebhookAnswer::Rejected(reason) => {
                warn!(message_id = %id, reason = %reason, "event refused: it goes to the dead-letter queue");
                response.add_failure(id);
            }
            WebhookAnswer::Failed(reason) => {
                warn!(message_id = %id, reason = %reason, "event not handled; SQS will deliver it again");
                response.add_failure(id);
            }
        }
    }
    response
}

/// The metrics of one event (namespace `StripeReports`, dimension
/// `Function=eventbridge`): `EventsAccepted` (handled, ignored or a
/// duplicate), `EventsRejected` (refused: not Stripe's, or not an event)
/// and `EventsFailed` (to be delivered again) are each 1 or 0 on every
/// event; `FailedRuns` is 1 when this event recorded a failed run (each
/// failure is counted once, by whichever function recorded it).
pub fn answer_metrics(answer: &WebhookAnswer) -> Vec<Metric<'static>> {
    answer.metrics([
        "EventsAccepted",
        "EventsRejected",
        "EventsFailed",
        "FailedRuns",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_reports::webhook::Outcome;

    #[test]
    fn every_event_counts_one_answer_and_zero_for_the_others() {
        let values = |answer: WebhookAnswer| -> Vec<(&'static str, f64)> {
            answer_metrics(&answer)
                .iter()
                .map(|m| (m.name, m.value))
                .collect()
        };
        assert_eq!(
            values(WebhookAnswer::Received(Outcome::Duplicate)),
            [
                ("EventsAccepted", 1.0),
                ("EventsRejected", 0.0),
                ("EventsFailed", 0.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Rejected("foreign source".into())),
            [
                ("EventsAccepted", 0.0),
                ("EventsRejected", 1.0),
                ("EventsFailed", 0.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Failed("ledger unavailable".into())),
            [
                ("EventsAccepted", 0.0),
                ("EventsRejected", 0.0),
                ("EventsFailed", 1.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Received(Outcome::RecordedFailure)),
            [
                ("EventsAccepted", 1.0),
                ("EventsRejected", 0.0),
                ("EventsFailed", 0.0),
                ("FailedRuns", 1.0)
            ]
        );
    }
}
