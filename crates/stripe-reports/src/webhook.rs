//! The webhook use case: verify → parse → dedupe → route (SPEC "Webhook endpoint").
//!
//! Nothing is written or enqueued before the signature is verified on the raw
//! bytes. A verified event is claimed in the ledger (`event#<id>`), routed,
//! then marked done; if routing fails the claim is released and the answer is
//! 500, so Stripe's next delivery is processed. Every effect is idempotent
//! (ledger transitions are conditional, a repeated download message is a
//! no-op for the downloader), so a delivery replayed after a crash is safe.

mod event;

use std::sync::Arc;

use tracing::{Instrument, info, warn};

pub use event::{
    EventObject, ObjectError, ReportRunObject, ReportTypeObject, StripeEvent, event_from_value,
    parse_event,
};

use crate::accounts::{Accounts, SigningSecrets};
use crate::domain::account::AccountId;
use crate::domain::config::{StripeAccounts, StripeSecrets};
use crate::domain::ledger::RunStatus;
use crate::domain::secret::SecretString;
use crate::domain::signature::{self, DEFAULT_TOLERANCE_SECS, SignatureError};
use crate::domain::spec::ReportSpec;
use crate::ports::{
    ClaimEnd, DownloadQueue, EventClaim, Ledger, LedgerError, QueueError, RunFacts, ScheduleQueue,
    Transition,
};

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
    /// The ledger holds the run for another account than the one whose
    /// secret signed the delivery: nothing of one account changes another's.
    OtherAccount,
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

    /// The metrics of one answer, under the caller's names for
    /// `[accepted, rejected, failed, failed runs]`: the first three are each
    /// 1 or 0 on every answer (an alarm can take the share refused or
    /// failed); the fourth is 1 when a failed run was recorded, absent
    /// otherwise (each failure counted once, by whichever function recorded it).
    pub fn metrics(
        &self,
        [accepted, rejected, failed, failed_runs]: [&'static str; 4],
    ) -> Vec<crate::metrics::Metric<'static>> {
        let count = |name: &'static str, value: bool| crate::metrics::Metric {
            name,
            value: if value { 1.0 } else { 0.0 },
            unit: "Count",
        };
        let mut metrics = vec![
            count(accepted, matches!(self, WebhookAnswer::Received(_))),
            count(rejected, matches!(self, WebhookAnswer::Rejected(_))),
            count(failed, matches!(self, WebhookAnswer::Failed(_))),
        ];
        if *self == WebhookAnswer::Received(Outcome::RecordedFailure) {
            metrics.push(count(failed_runs, true));
        }
        metrics
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

/// What a verified, parsed event asks for, decided without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An event type this system does not act on, or a report type update
    /// for a type that is not configured: answer 200, write nothing.
    Ignore,
    /// A configured report type has new data: plan it.
    Schedule {
        report_type: String,
        data_available_end: i64,
    },
    /// A run finished. `configured` is false for a report type this system
    /// does not request; such a run is still handled if the ledger knows it.
    Run {
        facts: RunFacts,
        outcome: RunOutcome,
        configured: bool,
    },
}

/// How a run finished at Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed { error: String },
}

/// The route decision for a parsed event of `account` (whose signing secret
/// verified it): which effect it asks for, or why its `data.object` is not
/// what its type says (a 400, nothing written). `is_configured` says whether
/// a report type is configured for that account. Only the fields of
/// `data.object` the event's type needs are read, so a field it does not
/// need never refuses a verified (genuine) event.
pub fn decide(
    event: &StripeEvent<'_>,
    account: &AccountId,
    is_configured: impl Fn(&str) -> bool,
) -> Result<Decision, String> {
    let unreadable = |err: ObjectError| {
        format!(
            "data.object of {} is not what the type says: {err}",
            event.event_type
        )
    };
    match &*event.event_type {
        TYPE_UPDATED => {
            let kind = event.object.report_type().map_err(unreadable)?;
            if !is_configured(kind.id) {
                return Ok(Decision::Ignore);
            }
            Ok(Decision::Schedule {
                report_type: kind.id.to_owned(),
                data_available_end: kind.data_available_end,
            })
        }
        kind @ (RUN_SUCCEEDED | RUN_FAILED) => {
            let run = event.object.report_run().map_err(unreadable)?;
            let outcome = if kind == RUN_SUCCEEDED {
                RunOutcome::Succeeded
            } else {
                RunOutcome::Failed {
                    error: run
                        .error
                        .unwrap_or("Stripe reported the run failed without an error message")
                        .to_owned(),
                }
            };
            Ok(Decision::Run {
                facts: RunFacts {
                    account: account.clone(),
                    interval_start: run.interval_start,
                    interval_end: run.interval_end,
                    run_id: run.id.to_owned(),
                    report_type: run.report_type.to_owned(),
                },
                outcome,
                configured: is_configured(run.report_type),
            })
        }
        _ => Ok(Decision::Ignore),
    }
}

/// Why routing a verified event failed.
#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The webhook function's dependencies: the ledger, both queues, the
/// accounts (with their signing secrets) and the configured report specs.
pub struct WebhookService<L, D, S> {
    pub ledger: L,
    pub downloads: D,
    pub schedules: S,
    /// Every account's endpoint secrets: cached at most 5 minutes, re-read
    /// (at most once a minute) when a signature matches none of them.
    pub accounts: Arc<Accounts>,
    pub specs: Vec<ReportSpec>,
    pub tolerance_secs: i64,
}

impl<L: Ledger, D: DownloadQueue, S: ScheduleQueue> WebhookService<L, D, S> {
    /// A service for one account with fixed endpoint secrets (never re-read).
    pub fn new(
        ledger: L,
        downloads: D,
        schedules: S,
        account: AccountId,
        secrets: Vec<SecretString>,
        report_types: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut values = StripeSecrets::given(None, secrets);
        values.account = Some(account);
        Self::with_accounts(
            ledger,
            downloads,
            schedules,
            Arc::new(Accounts::trusted(StripeAccounts::one(values))),
            report_types.into_iter().map(ReportSpec::new).collect(),
        )
    }

    /// A service over the configured accounts (Secrets Manager, `STRIPE_ACCOUNTS`).
    pub fn with_accounts(
        ledger: L,
        downloads: D,
        schedules: S,
        accounts: Arc<Accounts>,
        specs: Vec<ReportSpec>,
    ) -> Self {
        Self {
            ledger,
            downloads,
            schedules,
            accounts,
            specs,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    /// Whether `report_type` is configured for `account` (looked up in the
    /// few specs, nothing built per event).
    fn is_configured(&self, account: &AccountId, report_type: &str) -> bool {
        self.specs
            .iter()
            .any(|spec| spec.report_type == report_type && spec.applies_to(account))
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
        let account = match self.verify(body, signature_header, now).await {
            Ok(account) => account,
            Err(answer) => return answer,
        };
        let event = match parse_event(body) {
            Ok(event) => event,
            Err(reason) => {
                warn!(reason = %reason, "verified body is not a Stripe event");
                return WebhookAnswer::Rejected(reason);
            }
        };
        // A span attached with `instrument`, never entered across an await:
        // deliveries handled concurrently on one task keep their own ids.
        let span = tracing::info_span!("event", event_id = %event.id, event_type = %event.event_type, account = %account);
        self.handle_event(&event, &account, now)
            .instrument(span)
            .await
    }

    /// Checks the signature against every account's cached secrets, each in
    /// constant time, and answers the account whose secret verified it; when
    /// it matches none, re-reads the secret (at most once a minute, across
    /// deliveries) and checks again, so a secret filled or rolled in Secrets
    /// Manager is used without a cold start. No secret, or the template's
    /// placeholder, is a 500: the fault is ours, and Stripe delivers again.
    async fn verify(
        &self,
        body: &[u8],
        signature_header: Option<&str>,
        now: i64,
    ) -> Result<AccountId, WebhookAnswer> {
        let (signing, some_unusable) = self.accounts.signing_secrets().await;
        let mut outcome = self.attribute(body, signature_header, now, &signing);
        let mut some_unusable = some_unusable;
        if matches!(
            outcome,
            Err(SignatureError::NoMatchingSignature | SignatureError::NoSecret)
        ) && signature_header.is_some()
            && let Some((fresh, unusable)) = self.accounts.signing_secrets_reread().await
        {
            info!("signature matched no cached secret: secret read again");
            outcome = self.attribute(body, signature_header, now, &fresh);
            some_unusable = unusable;
        }
        match outcome {
            Ok(Some(account)) => Ok(account),
            Ok(None) => {
                warn!(
                    "delivery signed by the configured account, whose id is not known yet (its key cannot be checked): answering 500 so Stripe retries"
                );
                Err(WebhookAnswer::Failed(
                    "the account of this endpoint is not known yet".into(),
                ))
            }
            Err(SignatureError::NoSecret) => {
                Err(WebhookAnswer::Failed("no webhook secret configured".into()))
            }
            Err(SignatureError::NoMatchingSignature) if some_unusable => {
                // The line is for the log; the caller (anyone on the internet)
                // learns only that a secret is not configured.
                warn!(
                    "signature matched no secret while an account has no usable webhook secret: answering 500 so Stripe retries"
                );
                Err(WebhookAnswer::Failed("no webhook secret configured".into()))
            }
            Err(other) => {
                let reason = other.to_string();
                warn!(reason = %reason, "webhook refused");
                Err(WebhookAnswer::Rejected(reason))
            }
        }
    }

    /// The account whose secrets verify the delivery (`None` inside: a
    /// one-account configuration whose id is not known yet), trying every
    /// account's secrets until one matches.
    fn attribute(
        &self,
        body: &[u8],
        signature_header: Option<&str>,
        now: i64,
        signing: &[SigningSecrets],
    ) -> Result<Option<AccountId>, SignatureError> {
        let mut outcome = Err(SignatureError::NoSecret);
        for account in signing {
            outcome = signature::verify(
                body,
                signature_header,
                &account.secrets,
                now,
                Some(self.tolerance_secs),
            )
            .map(|_| account.account.clone());
            // Only "no match" depends on the secret: a malformed header
            // or a stale match is the answer whichever account it is for.
            if outcome != Err(SignatureError::NoMatchingSignature) {
                return outcome;
            }
        }
        if signing.is_empty() {
            // Still refuse a missing or malformed header as such.
            signature::verify(body, signature_header, &[], now, None)?;
        }
        outcome
    }

    /// Decides, claims, routes and finishes one verified event (a webhook
    /// delivery, or an event from Stripe's EventBridge partner source).
    pub(crate) async fn handle_event(
        &self,
        event: &StripeEvent<'_>,
        account: &AccountId,
        now: i64,
    ) -> WebhookAnswer {
        // A Connect platform's endpoint also receives its connected accounts'
        // events (`account` names the connected account): they are that
        // account's, handled by its own endpoint if it is configured, and must
        // not take the event id from it.
        if let Some(other) = event.account.as_deref()
            && other != account.as_str()
        {
            info!(
                event_account = other,
                "event of another (connected) account: ignored"
            );
            return WebhookAnswer::Received(Outcome::Ignored);
        }
        // An event of the other mode than the account's key (a sandbox or
        // test destination, or endpoint secret, beside a live key) is not
        // this account's: its runs would only be retried with the wrong key.
        if let Some(live) = self.accounts.key_livemode(account).await
            && live != event.livemode
        {
            warn!(
                event_livemode = event.livemode,
                "event of the other mode than its account's key (test or sandbox beside live, or the reverse): ignored"
            );
            return WebhookAnswer::Received(Outcome::Ignored);
        }
        // Decided before anything is written: an unreadable object is refused
        // with the ledger untouched, an ignored event costs no write.
        let decision = match decide(event, account, |report_type| {
            self.is_configured(account, report_type)
        }) {
            Ok(Decision::Ignore) => {
                info!("event type, or report type, not handled: ignored");
                return WebhookAnswer::Received(Outcome::Ignored);
            }
            Ok(decision) => decision,
            Err(reason) => {
                warn!(reason = %reason, "event object unreadable");
                return WebhookAnswer::Rejected(reason);
            }
        };
        let token = match self
            .ledger
            .claim_event(&event.id, &event.event_type, now, CLAIM_STALE_AFTER_SECS)
            .await
        {
            Ok(EventClaim::Claimed(token)) => token,
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
        };
        match self.route(decision, account, now).await {
            // Nothing was done for this account: the claim is given back, so
            // the run's own account may handle an event of the same id.
            Ok(Outcome::OtherAccount) => {
                if let Err(err) = self.ledger.release_event(&event.id, &token).await {
                    warn!(error = %err, "claim not released; it expires on its own");
                }
                WebhookAnswer::Received(Outcome::OtherAccount)
            }
            Ok(outcome) => {
                match self.ledger.finish_event(&event.id, &token, now).await {
                    Ok(ClaimEnd::Owned) => {}
                    // Routing is idempotent: the delivery that took over does the same.
                    Ok(ClaimEnd::TakenOver) => {
                        info!("claim was taken over by a later delivery: left to it")
                    }
                    // The effects are in place; an unfinished claim only means a
                    // later duplicate is routed again, which is idempotent.
                    Err(err) => warn!(error = %err, "event routed but not marked done"),
                }
                info!(outcome = ?outcome, "event handled");
                WebhookAnswer::Received(outcome)
            }
            Err(err) => {
                match self.ledger.release_event(&event.id, &token).await {
                    Ok(ClaimEnd::Owned) => {}
                    Ok(ClaimEnd::TakenOver) => {
                        info!("claim was taken over by a later delivery: not released")
                    }
                    // The claim goes stale after CLAIM_STALE_AFTER_SECS and is then taken over.
                    Err(release) => {
                        warn!(error = %release, "claim not released; it expires on its own")
                    }
                }
                warn!(error = %err, "event not routed: answering 500 so Stripe retries");
                WebhookAnswer::Failed(match err {
                    RouteError::Ledger(_) => "ledger unavailable".into(),
                    _ => "queue unavailable".into(),
                })
            }
        }
    }

    async fn route(
        &self,
        decision: Decision,
        account: &AccountId,
        now: i64,
    ) -> Result<Outcome, RouteError> {
        match decision {
            Decision::Ignore => Ok(Outcome::Ignored),
            Decision::Schedule {
                report_type,
                data_available_end,
            } => {
                self.schedules
                    .enqueue_schedule(account, &report_type, data_available_end)
                    .await?;
                Ok(Outcome::Scheduled)
            }
            Decision::Run {
                facts,
                outcome,
                configured,
            } => {
                let span = tracing::info_span!("run", run_id = %facts.run_id, report_type = %facts.report_type);
                self.route_run(facts, outcome, configured, now)
                    .instrument(span)
                    .await
            }
        }
    }

    async fn route_run(
        &self,
        facts: RunFacts,
        outcome: RunOutcome,
        configured: bool,
        now: i64,
    ) -> Result<Outcome, RouteError> {
        if !configured && self.ledger.run(&facts.run_id).await?.is_none() {
            info!("run of a report type that is not configured: ignored");
            return Ok(Outcome::Ignored);
        }
        match outcome {
            RunOutcome::Succeeded => match self.ledger.mark_succeeded(&facts, now).await? {
                Transition::Applied => {
                    self.downloads
                        .enqueue_download(&facts.account, &facts.run_id)
                        .await?;
                    Ok(Outcome::Enqueued)
                }
                Transition::Refused { current } => {
                    info!(status = %current, "run already final");
                    Ok(Outcome::AlreadyFinal)
                }
                Transition::OtherAccount { owner } => Ok(other_account(&owner)),
            },
            RunOutcome::Failed { error } => {
                match self.ledger.mark_failed(&facts, &error, now).await? {
                    Transition::Applied => Ok(Outcome::RecordedFailure),
                    Transition::Refused { current } => {
                        debug_assert!(current != RunStatus::Pending);
                        info!(status = %current, "run already final: failure not recorded");
                        Ok(Outcome::AlreadyFinal)
                    }
                    Transition::OtherAccount { owner } => Ok(other_account(&owner)),
                }
            }
        }
    }
}

/// A verified delivery names a run the ledger holds for another account:
/// nothing is written and nothing is fetched with this account's key.
fn other_account(owner: &AccountId) -> Outcome {
    warn!(owner = %owner, "the run belongs to another account than the one whose secret signed the delivery: ignored");
    Outcome::OtherAccount
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, object: serde_json::Value) -> StripeEvent<'static> {
        parse_event(
            json!({
                "id": "evt_1", "object": "event", "created": 1_796_000_000, "livemode": false,
                "type": event_type, "data": {"object": object}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
        .into_owned()
    }

    fn acct() -> AccountId {
        AccountId::parse("acct_A").unwrap()
    }

    fn configured(report_type: &str) -> bool {
        report_type == "balance.summary.1"
    }

    #[test]
    fn decisions_follow_the_event_and_report_type() {
        let updated = |id: &str| {
            event(
                TYPE_UPDATED,
                json!({"id": id, "object": "reporting.report_type", "data_available_end": 1_795_910_400}),
            )
        };
        assert_eq!(
            decide(&updated("balance.summary.1"), &acct(), configured),
            Ok(Decision::Schedule {
                report_type: "balance.summary.1".into(),
                data_available_end: 1_795_910_400
            })
        );
        assert_eq!(
            decide(&updated("payouts.itemized.3"), &acct(), configured),
            Ok(Decision::Ignore)
        );
        let run = json!({"id": "frr_1", "object": "reporting.report_run", "report_type": "payouts.itemized.3",
                         "parameters": {"interval_start": 1, "interval_end": 2}});
        let Ok(Decision::Run {
            facts,
            outcome,
            configured: false,
        }) = decide(&event(RUN_FAILED, run), &acct(), configured)
        else {
            panic!("a failed run of an unconfigured type is still a run decision");
        };
        assert_eq!(
            (
                facts.run_id.as_str(),
                facts.interval_start,
                facts.interval_end
            ),
            ("frr_1", Some(1), Some(2))
        );
        assert_eq!(
            outcome,
            RunOutcome::Failed {
                error: "Stripe reported the run failed without an error message".into()
            }
        );
        assert_eq!(
            decide(
                &event("charge.succeeded", json!({"id": "ch_1"})),
                &acct(),
                configured
            ),
            Ok(Decision::Ignore)
        );
    }

    #[test]
    fn an_object_of_the_wrong_shape_is_refused_without_echoing_it() {
        let wrong = event(
            RUN_SUCCEEDED,
            json!({"id": 42, "report_type": "sk_live_not_to_be_echoed"}),
        );
        let reason = decide(&wrong, &acct(), configured).unwrap_err();
        assert!(
            reason.starts_with(
                "data.object of reporting.report_run.succeeded is not what the type says"
            ),
            "{reason}"
        );
        assert!(
            !reason.contains("42") && !reason.contains("sk_live"),
            "{reason}"
        );
        let missing = event(RUN_SUCCEEDED, json!({"id": "frr_1"}));
        assert!(
            decide(&missing, &acct(), configured)
                .unwrap_err()
                .ends_with("missing field `report_type`")
        );
    }
}
