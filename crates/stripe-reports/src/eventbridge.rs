//! Stripe events through Amazon EventBridge (SPEC "Stripe events through
//! Amazon EventBridge"): the same use case as the webhook, entered from an
//! EventBridge event instead of a signed HTTP delivery.
//!
//! There is no signature: only Stripe can put events on its partner event
//! source, and the downloader re-reads every run from Stripe with the key of
//! the account the event is attributed to, so a forged event can at most
//! cause a re-read. What is checked instead: the `source` is Stripe's
//! (`aws.partner/stripe.com/<event destination id>`), the destination
//! belongs to exactly one configured account, and `detail` is a Stripe v1
//! Event whose type is the `detail-type`. Then the event is decided, claimed
//! (`event#<id>`, shared with webhook deliveries, so an event delivered both
//! ways is handled once) and routed exactly as a webhook delivery is.

use serde::Deserialize;
use tracing::{Instrument, warn};

use crate::webhook::{
    MAX_BODY_BYTES, StripeEvent, WebhookAnswer, WebhookService, event_from_value,
};

/// Every Stripe partner event source is named `aws.partner/stripe.com/<ed_…>`.
pub const STRIPE_SOURCE_PREFIX: &str = "aws.partner/stripe.com/";

/// An EventBridge event from Stripe's partner source, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgedEvent {
    /// EventBridge's own id of this delivery (each retry gets a new one).
    pub eventbridge_id: String,
    /// The event destination (`ed_…`) the source names.
    pub destination: String,
    /// The Stripe v1 Event in `detail`, as the webhook reads it.
    pub event: StripeEvent<'static>,
}

/// Why an EventBridge event is refused; nothing is written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// EventBridge's id, when the envelope had one (for the log line).
    pub eventbridge_id: Option<String>,
    pub reason: String,
}

/// The fields of EventBridge's envelope this system reads.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    detail: serde_json::Value,
}

/// Parses and checks one EventBridge event (the body of a message its SQS
/// target wrote). Reasons never quote the payload.
pub fn parse_bridged(body: &[u8]) -> Result<BridgedEvent, Refusal> {
    // Ids are logged: only as far as they are printable and short.
    let refuse = |eventbridge_id: Option<&str>, reason: String| Refusal {
        eventbridge_id: eventbridge_id.map(printable),
        reason,
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(refuse(
            None,
            format!("event exceeds {MAX_BODY_BYTES} bytes"),
        ));
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(|err| {
        // The id, if it can be read at all, names the event in the log.
        #[derive(Deserialize)]
        struct IdProbe {
            id: Option<String>,
        }
        let id = serde_json::from_slice::<IdProbe>(body)
            .ok()
            .and_then(|probe| probe.id);
        let what = if err.is_data() && err.to_string().starts_with("missing field") {
            err.to_string()
                .split(" at line")
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            format!("{:?} error", err.classify())
        };
        refuse(
            id.as_deref(),
            format!("not an EventBridge event (id, detail-type, source and detail): {what}"),
        )
    })?;
    let id = Some(envelope.id.as_str());
    let Some(destination) = envelope.source.strip_prefix(STRIPE_SOURCE_PREFIX) else {
        return Err(refuse(
            id,
            format!(
                "source {:?} is not a Stripe partner event source ({STRIPE_SOURCE_PREFIX}…)",
                printable(&envelope.source)
            ),
        ));
    };
    let valid_destination = destination.starts_with("ed_")
        && destination.len() <= 255
        && destination
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid_destination {
        return Err(refuse(
            id,
            "source does not name a Stripe event destination (ed_…)".to_owned(),
        ));
    }
    // Read from the `Value` (EventBridge's path is not the hot one), then
    // owned, so the envelope can go.
    let event = event_from_value(&envelope.detail)
        .map_err(|reason| refuse(id, format!("detail: {reason}")))?
        .into_owned();
    if event.event_type != envelope.detail_type {
        return Err(refuse(
            id,
            "detail-type is not the type of the Stripe event in detail".to_owned(),
        ));
    }
    Ok(BridgedEvent {
        eventbridge_id: printable(&envelope.id),
        destination: destination.to_owned(),
        event,
    })
}

/// A source or an id is not secret, but is shown only as far as it is
/// printable and short (anyone allowed to put events on the bus chooses them).
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

impl<L, D, S> WebhookService<L, D, S>
where
    L: crate::ports::Ledger,
    D: crate::ports::DownloadQueue,
    S: crate::ports::ScheduleQueue,
{
    /// Handles one EventBridge event at Unix time `now`. The answers mean
    /// what they mean for a webhook: `Received` (handled, ignored or a
    /// duplicate), `Rejected` (refused, nothing written: the message goes
    /// to the dead-letter queue), `Failed` (the ledger or a queue could not
    /// be written, or the event's account is not known or not usable now:
    /// delivered again).
    pub async fn handle_eventbridge(&self, body: &[u8], now: i64) -> WebhookAnswer {
        let bridged = match parse_bridged(body) {
            Ok(bridged) => bridged,
            Err(refusal) => {
                warn!(
                    eventbridge_id = refusal.eventbridge_id.as_deref().unwrap_or("unknown"),
                    reason = %refusal.reason,
                    "EventBridge event refused: nothing written"
                );
                return WebhookAnswer::Rejected(refusal.reason);
            }
        };
        let account = match self
            .accounts
            .account_of_destination(&bridged.destination)
            .await
        {
            Ok(account) => account,
            Err(err) => {
                warn!(
                    eventbridge_id = %bridged.eventbridge_id,
                    event_id = %bridged.event.id,
                    destination = %bridged.destination,
                    error = %err,
                    "EventBridge event not attributed to an account: delivered again later"
                );
                return WebhookAnswer::Failed(err.to_string());
            }
        };
        let span = tracing::info_span!(
            "event",
            eventbridge_id = %bridged.eventbridge_id,
            event_id = %bridged.event.id,
            event_type = %bridged.event.event_type,
            account = %account
        );
        self.handle_event(&bridged.event, &account, now)
            .instrument(span)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(source: &str, detail_type: &str, detail: serde_json::Value) -> Vec<u8> {
        json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type, "source": source, "account": "123456789012",
            "time": "2026-11-29T12:00:00Z", "region": "us-east-1",
            "resources": [format!("arn:aws:events:us-east-1:123456789012:event-source/{source}")],
            "detail": detail
        })
        .to_string()
        .into_bytes()
    }

    fn run_succeeded() -> serde_json::Value {
        json!({"id": "evt_1", "object": "event", "created": 1_796_000_000, "livemode": false,
               "type": "reporting.report_run.succeeded",
               "data": {"object": {"id": "frr_1", "object": "reporting.report_run", "report_type": "balance.summary.1"}}})
    }

    const SOURCE: &str = "aws.partner/stripe.com/ed_test_61RM8ltyhp1";

    #[test]
    fn the_sample_event_is_read_as_stripe_shapes_it() {
        let sample = include_bytes!("../../../events/eventbridge-report-run-succeeded.json");
        let bridged = parse_bridged(sample).unwrap();
        assert_eq!(bridged.event.event_type, "reporting.report_run.succeeded");
        assert!(bridged.destination.starts_with("ed_"));
        let run = bridged.event.object.report_run().unwrap();
        assert_eq!(
            (
                run.id,
                run.report_type,
                run.interval_start,
                run.interval_end
            ),
            (
                "frr_1SampleRunForLocalTests0",
                "balance.summary.1",
                Some(1_795_910_400),
                Some(1_795_996_800)
            )
        );
    }

    #[test]
    fn a_stripe_event_is_unwrapped_with_its_destination() {
        let bridged = parse_bridged(&envelope(
            SOURCE,
            "reporting.report_run.succeeded",
            run_succeeded(),
        ))
        .unwrap();
        assert_eq!(
            (
                bridged.eventbridge_id.as_str(),
                bridged.destination.as_str(),
                &*bridged.event.id
            ),
            (
                "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
                "ed_test_61RM8ltyhp1",
                "evt_1"
            )
        );
    }

    #[test]
    fn refusals_name_the_eventbridge_id_and_never_quote_the_detail() {
        let cases = [
            (
                envelope(
                    "aws.partner/other.com/ed_1",
                    "reporting.report_run.succeeded",
                    run_succeeded(),
                ),
                "is not a Stripe partner event source",
            ),
            (
                envelope(
                    "stripe.com",
                    "reporting.report_run.succeeded",
                    run_succeeded(),
                ),
                "is not a Stripe partner event source",
            ),
            (
                envelope(
                    "aws.partner/stripe.com/",
                    "reporting.report_run.succeeded",
                    run_succeeded(),
                ),
                "does not name a Stripe event destination",
            ),
            (
                envelope(
                    "aws.partner/stripe.com/ed_1/../x",
                    "reporting.report_run.succeeded",
                    run_succeeded(),
                ),
                "does not name a Stripe event destination",
            ),
            (
                envelope(SOURCE, "reporting.report_run.failed", run_succeeded()),
                "detail-type is not the type",
            ),
            (
                envelope(
                    SOURCE,
                    "reporting.report_run.succeeded",
                    json!({"object": "event", "id": "evt_1", "type": "x", "secret": "sk_live_1"}),
                ),
                "detail: body is not a Stripe event",
            ),
            (
                envelope(
                    SOURCE,
                    "reporting.report_run.succeeded",
                    json!("sk_live_not_an_object"),
                ),
                "detail: body is not a JSON object",
            ),
        ];
        for (body, expected) in cases {
            let refusal = parse_bridged(&body).unwrap_err();
            assert!(
                refusal.reason.contains(expected),
                "{} does not say {expected}",
                refusal.reason
            );
            assert!(!refusal.reason.contains("sk_live"), "{}", refusal.reason);
            assert_eq!(
                refusal.eventbridge_id.as_deref(),
                Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718")
            );
        }
        let not_json = parse_bridged(b"sk_live_123 not json").unwrap_err();
        assert_eq!(not_json.eventbridge_id, None);
        assert!(!not_json.reason.contains("sk_live"), "{}", not_json.reason);
        let no_detail =
            parse_bridged(br#"{"id":"e1","detail-type":"x","source":"y"}"#).unwrap_err();
        assert_eq!(no_detail.eventbridge_id.as_deref(), Some("e1"));
        assert!(
            no_detail.reason.ends_with("missing field `detail`"),
            "{}",
            no_detail.reason
        );
    }
}
