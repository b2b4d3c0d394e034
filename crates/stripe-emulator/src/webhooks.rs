//! Signed webhook deliveries, retried on non-2xx answers, optionally
//! duplicated and delayed at random (so they arrive out of order).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::Value;
use sha2::Sha256;

use crate::Shared;
use crate::config::{Faults, WebhookDelivery};
use crate::state::{MAX_REQUEST_RECORDS, now};

/// `t=<now>,v1=<hmac>` with one `v1` per secret: Stripe's scheme, written here
/// independently of the library under test.
pub fn signature_header(secrets: &[String], timestamp: i64, payload: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(payload);
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// The secrets `account`'s webhooks are signed with now: those the faults
/// set for it (`webhook_secrets` is the default account's), else its own.
fn signing_secrets(shared: &Shared, faults: &Faults, account: usize) -> Vec<String> {
    let configured = &shared.accounts[account];
    faults
        .account_webhook_secrets
        .as_ref()
        .and_then(|by_account| by_account.get(&configured.id))
        .or(faults.webhook_secrets.as_ref().filter(|_| account == 0))
        .unwrap_or(&configured.webhook_secrets)
        .clone()
}

/// Sends `account`'s `event` to the configured endpoint (if any, and if
/// webhooks are on), signed with the account's secrets.
pub fn deliver(shared: Arc<Shared>, account: usize, event: Value) {
    let Some(config) = shared.config.webhook.clone() else {
        return;
    };
    let (enabled, delays, secrets) = {
        let mut state = shared.lock();
        let copies = 1 + state.faults.webhook_duplicates;
        let shuffle_ms = state.faults.webhook_shuffle_ms;
        // Drawn here, in order, from the state's (possibly seeded) generator.
        let delays: Vec<u64> = (0..copies)
            .map(|_| {
                if shuffle_ms > 0 {
                    state.rng.random_range(0..=shuffle_ms)
                } else {
                    0
                }
            })
            .collect();
        (
            state.faults.webhooks_enabled,
            delays,
            signing_secrets(&shared, &state.faults, account),
        )
    };
    if !enabled {
        return;
    }
    let payload = serde_json::to_vec_pretty(&event).unwrap_or_default();
    let event_id = event["id"].as_str().unwrap_or_default().to_owned();
    let event_type = event["type"].as_str().unwrap_or_default().to_owned();
    let account_id = shared.accounts[account].id.clone();
    for (copy, delay) in (0u32..).zip(delays) {
        let shared = shared.clone();
        let config = config.clone();
        let payload = payload.clone();
        let secrets = secrets.clone();
        let event_id = event_id.clone();
        let event_type = event_type.clone();
        let account_id = account_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut wait = config.retry_delay;
            for attempt in 1..=config.max_attempts.max(1) {
                let header = signature_header(&secrets, now(), &payload);
                let sent = shared
                    .http
                    .post(&config.url)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .header("Stripe-Signature", header)
                    .body(payload.clone())
                    .send()
                    .await;
                let ok = matches!(&sent, Ok(response) if response.status().is_success());
                {
                    let mut state = shared.lock();
                    state.stats.webhook_deliveries += 1;
                    if !ok {
                        state.stats.webhook_failures += 1;
                    }
                    if state.webhook_log.len() >= MAX_REQUEST_RECORDS {
                        state.webhook_log.drain(..MAX_REQUEST_RECORDS / 2);
                    }
                    state.webhook_log.push(WebhookDelivery {
                        account: account_id.clone(),
                        event: event_id.clone(),
                        event_type: event_type.clone(),
                        copy,
                        attempt,
                        status: sent.as_ref().ok().map(|r| r.status().as_u16()),
                        error: sent.as_ref().err().map(|e| e.to_string()),
                    });
                }
                if ok {
                    return;
                }
                tracing::warn!(attempt, status = ?sent.as_ref().map(|r| r.status().as_u16()).ok(), "webhook delivery failed");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        });
    }
}
