//! Signed webhook deliveries, retried on non-2xx answers, optionally
//! duplicated and delayed at random (so they arrive out of order): the
//! copies, delays, retries and log are [`crate::delivery`]'s.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::Shared;
use crate::config::Faults;
use crate::delivery::{self, Channel, Copy, Logged, Retry, copy_delays};
use crate::state::now;

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
/// webhooks are on), signed with the account's secrets at each attempt.
pub fn deliver(shared: Arc<Shared>, account: usize, event: &Value) {
    let Some(config) = shared.config.webhook.clone() else {
        return;
    };
    let (enabled, delays, secrets) = {
        let mut state = shared.lock();
        // Drawn whether or not webhooks are on, so that turning them off
        // does not shift the other random decisions.
        let delays = copy_delays(&mut state);
        (
            state.faults.webhooks_enabled,
            delays,
            signing_secrets(&shared, &state.faults, account),
        )
    };
    if !enabled {
        return;
    }
    let payload = Arc::new(serde_json::to_vec_pretty(event).unwrap_or_default());
    let secrets = Arc::new(secrets);
    let url = Arc::new(config.url);
    let logged = Arc::new(Logged::of(&shared, account, event));
    let retry = Retry {
        max_attempts: config.max_attempts,
        retry_delay: config.retry_delay,
    };
    for (copy, delay_ms) in (0u32..).zip(delays) {
        let (payload, secrets, url) = (payload.clone(), secrets.clone(), url.clone());
        let copy = Copy {
            event: logged.clone(),
            copy,
            delay_ms,
            channel: Channel::Webhook,
            retry,
        };
        delivery::spawn(shared.clone(), copy, move |http| {
            http.post(url.as_str())
                .header("Content-Type", "application/json; charset=utf-8")
                .header(
                    "Stripe-Signature",
                    signature_header(&secrets, now(), &payload),
                )
                .body(payload.to_vec())
        });
    }
}
