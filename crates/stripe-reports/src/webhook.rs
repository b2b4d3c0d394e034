//! The webhook use case: verify → parse → dedupe → route (SPEC "Webhook endpoint").
//!
//! Nothing is written or enqueued before the signature is verified on the raw
//! bytes. A verified event is claimed in the ledger (`event#<id>`), routed,
//! then marked done; if routing fails the claim is released and the answer is
//! 500, so Stripe's next delivery is processed. Every effect is idempotent
//! (ledger transitions are conditional, a repeated download message is a
//! no-op for the downloader), so a delivery replayed after a crash is safe.

use std::collections::HashSet;

use serde::Deserialize;
use tracing::{info, warn};

use crate::domain::ledger::RunStatus;
use crate::domain::secret::SecretString;
use crate::domain::signature::{self, DEFAULT_TOLERANCE_SECS, SignatureError};
use crate::ports::{
    DownloadQueue, EventClaim, Ledger, LedgerError, QueueError, RunFacts, ScheduleQueue, Transition,
};
use crate::stripe::types::{Event, RunParameters};

/// The part of a `reporting.report_run` the webhook reads. Lenient on purpose:
/// a verified event is genuine, so a field it does not need must not refuse it.
#[derive(Debug, Deserialize)]
struct RunInEvent {
    id: String,
    report_type: String,
    #[serde(default)]
    parameters: Option<RunParameters>,
    #[serde(default)]
    error: Option<String>,
}

/// The part of a `reporting.report_type` the webhook reads.
#[derive(Debug, Deserialize)]
struct TypeInEvent {
    id: String,
    data_available_end: i64,
}

/// Bodies larger than this are refused before hashing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A claim older than this belongs to a handler that died (the function's
/// timeout is far shorter), so another delivery may take it over.
pub const CLAIM_STALE_AFTER_SECS: i64 = 120;

pub const RUN_SUCCEEDED: &str = "reporting.report_run.succeeded";
pub const RUN_FAILED: &str = "reporting.report_run.failed";
pub const TYPE_UPDATED: &str = "reporting.report_type.updated";

/// What the webhook answers, before it is turned into an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    /// 200 `{"received": true}`: verified, and handled, ignored or a duplicate.
    Received(Outcome),
    /// 400 `{"error": reason}`: nothing was written or enqueued.
    Rejected(String),
    /// 500 `{"error": reason}`: the ledger or a queue could not be written; Stripe retries.
    Failed(String),
}

/// What a verified event led to (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A finished run went on the download queue.
    Enqueued,
    /// A failed run was recorded.
    RecordedFailure,
    /// New data for a configured type went on the schedule queue.
    Scheduled,
    /// The run was already final (`stored`/`failed`): nothing changed.
    AlreadyFinal,
    /// The same event was handled before.
    Duplicate,
    /// An event type, or a report type, this system does not act on.
    Ignored,
}

impl WebhookAnswer {
    pub fn status_code(&self) -> u16 {
        match self {
            WebhookAnswer::Received(_) => 200,
            WebhookAnswer::Rejected(_) => 400,
            WebhookAnswer::Failed(_) => 500,
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> String {
        match self {
            WebhookAnswer::Received(_) => r#"{"received":true}"#.to_owned(),
            WebhookAnswer::Rejected(reason) | WebhookAnswer::Failed(reason) => {
                serde_json::json!({ "error": reason }).to_string()
            }
        }
    }
}

/// Why routing a verified event failed.
#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    BadObject(String),
}

/// The webhook function's dependencies: the ledger, both queues, the secrets
/// and the configured report types.
pub struct WebhookService<L, D, S> {
    pub ledger: L,
    pub downloads: D,
    pub schedules: S,
    pub secrets: Vec<SecretString>,
    pub report_types: HashSet<String>,
    pub tolerance_secs: i64,
}

impl<L: Ledger, D: DownloadQueue, S: ScheduleQueue> WebhookService<L, D, S> {
    pub fn new(
        ledger: L,
        downloads: D,
        schedules: S,
        secrets: Vec<SecretString>,
        report_types: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            ledger,
            downloads,
            schedules,
            secrets,
            report_types: report_types.into_iter().collect(),
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    /// Handles one delivery: the raw body as received and the
    /// `Stripe-Signature` header, at Unix time `now`.
    pub async fn handle(
        &self,
        body: &[u8],
        signature_header: Option<&str>,
        now: i64,
    ) -> WebhookAnswer {
        if body.len() > MAX_BODY_BYTES {
            return WebhookAnswer::Rejected(format!("body exceeds {MAX_BODY_BYTES} bytes"));
        }
        if let Err(err) = signature::verify(
            body,
            signature_header,
            &self.secrets,
            now,
            Some(self.tolerance_secs),
        ) {
            let reason = match err {
                SignatureError::NoSecret => {
                    return WebhookAnswer::Failed("no webhook secret configured".into());
                }
                other => other.to_string(),
            };
            warn!(reason = %reason, "webhook refused");
            return WebhookAnswer::Rejected(reason);
        }
        let event = match parse_event(body) {
            Ok(event) => event,
            Err(reason) => {
                warn!(reason = %reason, "verified body is not a Stripe event");
                return WebhookAnswer::Rejected(reason);
            }
        };
        let span =
            tracing::info_span!("event", event_id = %event.id, event_type = %event.event_type);
        let _entered = span.enter();
        if !matches!(
            event.event_type.as_str(),
            RUN_SUCCEEDED | RUN_FAILED | TYPE_UPDATED
        ) {
            info!("event type not handled: ignored");
            return WebhookAnswer::Received(Outcome::Ignored);
        }
        match self
            .ledger
            .claim_event(&event.id, &event.event_type, now, CLAIM_STALE_AFTER_SECS)
            .await
        {
            Ok(EventClaim::Claimed) => {}
            Ok(EventClaim::Done) => {
                info!("duplicate delivery: already handled");
                return WebhookAnswer::Received(Outcome::Duplicate);
            }
            Ok(EventClaim::InProgress) => {
                // Another delivery owns it; if that one fails, this retry is needed.
                warn!("event is being handled by another delivery: asking Stripe to retry");
                return WebhookAnswer::Failed("event is being handled by another delivery".into());
            }
            Err(err) => {
                warn!(error = %err, "cannot claim event");
                return WebhookAnswer::Failed("ledger unavailable".into());
            }
        }
        match self.route(&event, now).await {
            Ok(outcome) => {
                if let Err(err) = self.ledger.finish_event(&event.id, now).await {
                    // The effects are in place; an unfinished claim only means a
                    // later duplicate is routed again, which is idempotent.
                    warn!(error = %err, "event routed but not marked done");
                }
                info!(outcome = ?outcome, "event handled");
                WebhookAnswer::Received(outcome)
            }
            Err(RouteError::BadObject(reason)) => {
                // A verified event with an object we cannot read: keep the claim
                // released so a fixed deployment can process the redelivery.
                let _ = self.ledger.release_event(&event.id).await;
                warn!(reason = %reason, "event object unreadable");
                WebhookAnswer::Rejected(reason)
            }
            Err(err) => {
                if let Err(release) = self.ledger.release_event(&event.id).await {
                    // The claim goes stale after CLAIM_STALE_AFTER_SECS and is then taken over.
                    warn!(error = %release, "claim not released; it expires on its own");
                }
                warn!(error = %err, "event not routed: answering 500 so Stripe retries");
                WebhookAnswer::Failed(match err {
                    RouteError::Ledger(_) => "ledger unavailable".into(),
                    _ => "queue unavailable".into(),
                })
            }
        }
    }

    async fn route(&self, event: &Event, now: i64) -> Result<Outcome, RouteError> {
        match event.event_type.as_str() {
            TYPE_UPDATED => {
                let kind: TypeInEvent = read_object(event)?;
                if !self.report_types.contains(&kind.id) {
                    return Ok(Outcome::Ignored);
                }
                self.schedules
                    .enqueue_schedule(&kind.id, kind.data_available_end)
                    .await?;
                Ok(Outcome::Scheduled)
            }
            event_type => {
                let run: RunInEvent = read_object(event)?;
                let span =
                    tracing::info_span!("run", run_id = %run.id, report_type = %run.report_type);
                let _entered = span.enter();
                let known = self.ledger.run(&run.id).await?.is_some();
                if !known && !self.report_types.contains(&run.report_type) {
                    info!("run of a report type that is not configured: ignored");
                    return Ok(Outcome::Ignored);
                }
                let facts = RunFacts {
                    run_id: run.id.clone(),
                    report_type: run.report_type.clone(),
                    interval_start: run.parameters.as_ref().and_then(|p| p.interval_start),
                    interval_end: run.parameters.as_ref().and_then(|p| p.interval_end),
                };
                if event_type == RUN_SUCCEEDED {
                    match self.ledger.mark_succeeded(&facts, now).await? {
                        Transition::Applied => {
                            self.downloads.enqueue_download(&run.id).await?;
                            Ok(Outcome::Enqueued)
                        }
                        Transition::Refused { current } => {
                            info!(status = %current, "run already final");
                            Ok(Outcome::AlreadyFinal)
                        }
                    }
                } else {
                    let error = run
                        .error
                        .as_deref()
                        .unwrap_or("Stripe reported the run failed without an error message");
                    match self.ledger.mark_failed(&facts, error, now).await? {
                        Transition::Applied => Ok(Outcome::RecordedFailure),
                        Transition::Refused { current } => {
                            debug_assert!(current != RunStatus::Pending);
                            info!(status = %current, "run already final: failure not recorded");
                            Ok(Outcome::AlreadyFinal)
                        }
                    }
                }
            }
        }
    }
}

/// A Stripe event: `object` is `"event"`, with `id`, `type`, `created`,
/// `livemode` and `data.object`.
pub fn parse_event(body: &[u8]) -> Result<Event, String> {
    // One pass on the happy path; the error path works out what went wrong.
    let event: Event = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(err) => {
            #[derive(Deserialize)]
            struct Probe {
                object: Option<String>,
            }
            return Err(match serde_json::from_slice::<Probe>(body) {
                Err(_) => "body is not a JSON object".to_owned(),
                Ok(probe) if probe.object.as_deref() != Some("event") => {
                    "body is not a Stripe event (object is not \"event\")".to_owned()
                }
                Ok(_) => format!("body is not a Stripe event: {}", err_without_input(&err)),
            });
        }
    };
    if event.object != "event" {
        return Err("body is not a Stripe event (object is not \"event\")".into());
    }
    if event.id.is_empty() || event.event_type.is_empty() || !event.data.object.is_object() {
        return Err("body is not a Stripe event (id, type or data.object missing)".into());
    }
    Ok(event)
}

fn read_object<T: serde::de::DeserializeOwned>(event: &Event) -> Result<T, RouteError> {
    serde_json::from_value(event.data.object.clone()).map_err(|err| {
        RouteError::BadObject(format!(
            "data.object of {} is not what the type says: {}",
            event.event_type,
            err_without_input(&err)
        ))
    })
}

/// serde_json's messages can quote input values ("invalid type: string
/// \"…\""); only "missing field `name`" is kept as is, anything else is reduced
/// to its category and position, so nothing of the body is ever echoed.
fn err_without_input(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if text.starts_with("missing field") {
        text.split(" at line").next().unwrap_or_default().to_owned()
    } else if err.line() == 0 {
        // From a `Value` (data.object), where there is no position to give.
        format!("{:?} error (a field has the wrong type)", err.classify())
    } else {
        format!(
            "{:?} error at line {} column {}",
            err.classify(),
            err.line(),
            err.column()
        )
    }
}
