//! What webhook and EventBridge deliveries share: each event goes out in
//! `1 + webhook_duplicates` copies, each after a random delay of up to
//! `webhook_shuffle_ms` (so that copies and events arrive out of order), each
//! retried with a doubling wait while the target answers non-2xx (or does
//! not answer), every attempt counted and logged.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use crate::Shared;
use crate::config::{EventBridgeDelivery, WebhookDelivery};
use crate::state::{MAX_REQUEST_RECORDS, State};
use crate::{eventbridge, webhooks};

/// The longest wait between two attempts of one copy.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Sends `account`'s `event` to every configured target: the webhook
/// endpoint and the EventBridge target, independently of each other.
pub fn publish(shared: &Arc<Shared>, account: usize, event: &Value) {
    webhooks::deliver(shared.clone(), account, event);
    eventbridge::deliver(shared.clone(), account, event);
}

/// The delay of each copy of an event (`1 + webhook_duplicates` of them),
/// in milliseconds, drawn in order from the state's (possibly seeded)
/// generator.
pub fn copy_delays(state: &mut State) -> Vec<u64> {
    let copies = 1 + state.faults.webhook_duplicates;
    let shuffle_ms = state.faults.webhook_shuffle_ms;
    (0..copies)
        .map(|_| {
            if shuffle_ms > 0 {
                state.rng.random_range(0..=shuffle_ms)
            } else {
                0
            }
        })
        .collect()
}

/// The event a copy carries, as the logs name it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The account whose event it is (`acct_...`).
    pub account: String,
    pub event: String,
    pub event_type: String,
}

impl Logged {
    pub fn of(shared: &Shared, account: usize, event: &Value) -> Self {
        Self {
            account: shared.accounts[account].id.clone(),
            event: event["id"].as_str().unwrap_or_default().to_owned(),
            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

/// Where a copy goes, which decides its counters and its log.
#[derive(Debug, Clone)]
pub enum Channel {
    Webhook,
    /// With the copy's EventBridge envelope `id`.
    EventBridge(String),
}

/// How often and how patiently a copy is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (at least one).
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubled after each (up to 30 s).
    pub retry_delay: Duration,
}

/// One copy of an event on its way.
pub struct Copy {
    pub event: Arc<Logged>,
    /// 0 for the original, then the duplicates.
    pub copy: u32,
    /// Milliseconds to wait before the first attempt.
    pub delay_ms: u64,
    pub channel: Channel,
    pub retry: Retry,
}

/// Sends `copy` in the background: after its delay, `request` (built anew
/// for each attempt, so that a webhook is signed when it is sent) until a
/// 2xx answer or the last attempt, each attempt counted and logged.
pub fn spawn<F>(shared: Arc<Shared>, copy: Copy, request: F)
where
    F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + 'static,
{
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(copy.delay_ms)).await;
        let mut wait = copy.retry.retry_delay;
        for attempt in 1..=copy.retry.max_attempts.max(1) {
            let sent = request(&shared.http).send().await;
            let status = sent.as_ref().ok().map(|r| r.status().as_u16());
            let ok = matches!(&sent, Ok(response) if response.status().is_success());
            let error = sent.as_ref().err().map(|e| e.to_string());
            record(&mut shared.lock(), &copy, attempt, ok, status, error);
            if ok {
                return;
            }
            let target = match copy.channel {
                Channel::Webhook => "webhook",
                Channel::EventBridge(_) => "eventbridge",
            };
            tracing::warn!(target, attempt, ?status, "delivery failed");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
    });
}

/// Keeps at most [`MAX_REQUEST_RECORDS`] entries, dropping the older half when full.
fn push_bounded<T>(log: &mut Vec<T>, entry: T) {
    if log.len() >= MAX_REQUEST_RECORDS {
        log.drain(..MAX_REQUEST_RECORDS / 2);
    }
    log.push(entry);
}

/// Counts one attempt and logs it with its channel's fields.
fn record(
    state: &mut State,
    copy: &Copy,
    attempt: u32,
    ok: bool,
    status: Option<u16>,
    error: Option<String>,
) {
    let event = &copy.event;
    let delivery = WebhookDelivery {
        account: event.account.clone(),
        event: event.event.clone(),
        event_type: event.event_type.clone(),
        copy: copy.copy,
        attempt,
        status,
        error,
    };
    match &copy.channel {
        Channel::Webhook => {
            state.stats.webhook_deliveries += 1;
            state.stats.webhook_failures += u64::from(!ok);
            push_bounded(&mut state.webhook_log, delivery);
        }
        Channel::EventBridge(id) => {
            state.stats.eventbridge_deliveries += 1;
            state.stats.eventbridge_failures += u64::from(!ok);
            push_bounded(
                &mut state.eventbridge_log,
                EventBridgeDelivery {
                    delivery,
                    eventbridge_id: id.clone(),
                },
            );
        }
    }
}
