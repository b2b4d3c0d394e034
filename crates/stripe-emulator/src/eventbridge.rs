//! Stripe events as Amazon EventBridge delivers them from a Stripe event
//! destination (type `amazon_eventbridge`, payload `snapshot`): the v1 Event
//! a webhook would carry, wrapped in an EventBridge event whose `source` is
//! the partner event source of the account's destination. They are POSTed
//! to a local target ([`crate::EventBridgeConfig::url`]) standing for what
//! an EventBridge rule would hand its target, one event per request.
//!
//! Copies (`webhook_duplicates`), delays (`webhook_shuffle_ms`) and retries
//! of non-2xx answers are the webhook's (the `delivery` module); each copy is
//! a new EventBridge event (a new envelope `id`) around the same Stripe
//! event, as when Stripe sends an event again.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use crate::Shared;
use crate::delivery::{self, Channel, Copy, Logged, Retry, copy_delays};
use crate::state::now;

/// The AWS account the emulated partner event source belongs to.
pub const AWS_ACCOUNT: &str = "123456789012";
/// The region of the emulated partner event source.
pub const AWS_REGION: &str = "us-east-1";
/// What every Stripe partner event source name starts with; the
/// destination id (`ed_...`) follows.
pub const SOURCE_PREFIX: &str = "aws.partner/stripe.com/";

/// The partner event source name of Stripe event destination `destination`:
/// `aws.partner/stripe.com/ed_...`.
pub fn source(destination: &str) -> String {
    format!("{SOURCE_PREFIX}{destination}")
}

/// Unix seconds as RFC 3339 in UTC with whole seconds, as EventBridge's
/// `time` (`2026-08-01T12:00:00Z`).
pub fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random UUID (version 4) from `rng`, in its usual lowercase 8-4-4-4-12
/// form, as EventBridge event ids are.
pub fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut bytes: [u8; 16] = rng.random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The EventBridge event carrying Stripe `event` from event destination
/// `destination` (`ed_...`), with envelope id `id`, put at `time` (Unix
/// seconds): `detail` is the event itself and `detail-type` its type.
pub fn envelope(id: &str, destination: &str, time: i64, event: &Value) -> Value {
    let source = source(destination);
    json!({
        "version": "0",
        "id": id,
        "detail-type": event["type"],
        "source": source,
        "account": AWS_ACCOUNT,
        "time": rfc3339(time),
        "region": AWS_REGION,
        "resources": [format!("arn:aws:events:{AWS_REGION}:{AWS_ACCOUNT}:event-source/{source}")],
        "detail": event,
    })
}

/// Sends `account`'s `event` to the EventBridge target (if one is
/// configured and `eventbridge_enabled`), from the account's event
/// destination, each copy a new envelope.
pub(crate) fn deliver(shared: Arc<Shared>, account: usize, event: &Value) {
    let Some(config) = shared.config.eventbridge.clone() else {
        return;
    };
    let (enabled, copies) = {
        let mut state = shared.lock();
        // Drawn whether or not the target is on, so that turning it off does
        // not shift the other random decisions.
        let delays = copy_delays(&mut state);
        let ids: Vec<String> = delays.iter().map(|_| uuid_v4(&mut state.rng)).collect();
        (
            state.faults.eventbridge_enabled,
            delays.into_iter().zip(ids).collect::<Vec<_>>(),
        )
    };
    if !enabled {
        return;
    }
    let destination = shared.accounts[account].event_destination_id(shared.config.livemode);
    let url = Arc::new(config.url);
    let logged = Arc::new(Logged::of(&shared, account, event));
    let retry = Retry {
        max_attempts: config.max_attempts,
        retry_delay: config.retry_delay,
    };
    let time = now();
    for (copy, (delay_ms, id)) in (0u32..).zip(copies) {
        let body =
            serde_json::to_vec(&envelope(&id, &destination, time, event)).unwrap_or_default();
        let url = url.clone();
        let copy = Copy {
            event: logged.clone(),
            copy,
            delay_ms,
            channel: Channel::EventBridge(id),
            retry,
        };
        delivery::spawn(shared.clone(), copy, move |http| {
            http.post(url.as_str())
                .header("Content-Type", "application/json; charset=utf-8")
                .body(body.clone())
        });
    }
}
