//! The scheduler's API key read from Secrets Manager (moto over HTTP) while
//! the function stays warm, through `service_from` and the handler (whose
//! cold start asks the emulator's `GET /v1/account` whose key it is): the
//! template's placeholder is refused with one line and never sent to Stripe;
//! a filled or rotated key is used without a cold start. Its own test binary:
//! the global log subscriber sees every callsite.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::json;
use stripe_reports::domain::config::{Config, PLACEHOLDER_API_KEY, PLACEHOLDER_WEBHOOK_SECRET};
use stripe_reports::env::Environment;
use test_support::{CapturedLogs, ManualClock, put_secret, secret, secret_json};

/// A warm scheduler built the way the function builds it, from a secret
/// holding `json`, with a clock the test moves.
async fn warm_scheduler(
    emulator: &stripe_emulator::Emulator,
    aws: &Aws,
    json: &str,
) -> (scheduler::Service, String, std::sync::Arc<ManualClock>) {
    let sdk = test_support::local_aws().await;
    let arn = secret(&sdk, json).await;
    let vars: HashMap<&str, String> = HashMap::from([
        ("STRIPE_SECRET_ARN", arn.clone()),
        ("STRIPE_API_BASE", emulator.base_url()),
        ("STRIPE_FILE_HOSTS", "127.0.0.1".to_owned()),
        ("STRIPE_MAX_RPS", "100".to_owned()),
        (
            "REPORTS",
            r#"[{"report_type":"balance.summary.1"}]"#.to_owned(),
        ),
        ("LOOKBACK_DAYS", "2".to_owned()),
        ("RUNS_TABLE", aws.ledger.table().to_owned()),
        ("DOWNLOAD_QUEUE_URL", aws.download_url.clone()),
    ]);
    let config = Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let clock = ManualClock::new();
    let env = Environment::with(config, sdk, clock.clone()).await.unwrap();
    let service = scheduler::service_from(env).await.unwrap();
    (service, arn, clock)
}

fn scheduled() -> serde_json::Value {
    json!({"source": "aws.events", "detail-type": "Scheduled Event"})
}

#[tokio::test]
async fn the_placeholder_is_refused_with_one_line_and_a_filled_key_used_without_a_cold_start() {
    let logs = CapturedLogs::global();
    let clock = Clock::read_with_room(600);
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    let (service, arn, secrets_clock) = warm_scheduler(
        &emulator,
        &aws,
        &secret_json(PLACEHOLDER_API_KEY, PLACEHOLDER_WEBHOOK_SECRET),
    )
    .await;

    let err = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap_err();
    let line = "api_key in the secret is still the placeholder the template wrote: put your Stripe keys in the secret";
    assert!(err.to_string().contains("request(s) failed"), "{err}");
    assert!(err.to_string().contains(line), "{err}");
    assert!(!err.to_string().contains(PLACEHOLDER_API_KEY), "{err}");
    assert!(
        emulator.requests().is_empty(),
        "the placeholder reached Stripe: {:?}",
        emulator.requests()
    );
    // The account is reported failing, saying why in one line (at the cold
    // start and by the invocation), never with the value.
    let refusals: Vec<String> = logs
        .json_lines()
        .iter()
        .flat_map(|l| {
            ["reason", "error"]
                .into_iter()
                .filter_map(|field| l["fields"][field].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter(|e| e.contains(line))
        .collect();
    assert!(!refusals.is_empty(), "no refusal line in {}", logs.text());
    assert!(
        !logs.text().contains(PLACEHOLDER_API_KEY),
        "{}",
        logs.text()
    );

    // Filled after deploying: the next invocation (a minute on) uses it.
    put_secret(
        &test_support::local_aws().await,
        &arn,
        &secret_json(API_KEY, "whsec_x"),
    )
    .await;
    secrets_clock.advance(Duration::from_secs(60));
    let summary = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap();
    assert!(summary["created"].as_u64() >= Some(1), "{summary}");
    // The key's account is the one Stripe named for it.
    assert_eq!(summary["accounts"][0]["account"], ACCOUNT, "{summary}");
    assert_eq!(
        emulator.runs_of(ACCOUNT).len() as u64,
        emulator.stats().runs_created
    );
    assert_eq!(emulator.stats().unauthorized, 0);
}

#[tokio::test]
async fn a_rotated_key_is_used_within_five_minutes_without_a_cold_start() {
    CapturedLogs::global();
    let clock = Clock::read_with_room(600);
    let emulator = emulator(vec![report_type(&clock, "balance.summary.1")]).await;
    let aws = aws().await;
    // The key in the secret was revoked at Stripe; the new one is rolled in.
    let (service, arn, secrets_clock) = warm_scheduler(
        &emulator,
        &aws,
        &secret_json("sk_test_revoked_9f8e", "whsec_x"),
    )
    .await;
    assert!(
        scheduler::handle_at(&service, scheduled(), clock.now)
            .await
            .is_err()
    );
    // Stripe refused it (asked whose key it is, at the cold start).
    let refused = emulator.stats().unauthorized;
    assert!(refused > 0);
    put_secret(
        &test_support::local_aws().await,
        &arn,
        &secret_json(API_KEY, "whsec_x"),
    )
    .await;

    // Still within 5 minutes of the last read: the cached (revoked) key,
    // whose account still cannot be worked; the new key is not used yet.
    // (A key Stripe refused is asked about again at most once a minute, so
    // this invocation does not send it again.)
    secrets_clock.advance(Duration::from_secs(299));
    let err = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("GET /v1/account"), "{err}");
    assert!(emulator.stats().unauthorized >= refused);
    assert!(
        emulator
            .requests()
            .iter()
            .all(|request| request.account.is_none()),
        "the new key was used before the secret was read again: {:?}",
        emulator.requests()
    );
    assert_eq!(emulator.stats().runs_created, 0);

    // Five minutes on: read again, and the new key is accepted.
    secrets_clock.advance(Duration::from_secs(1));
    let unauthorized = emulator.stats().unauthorized;
    let summary = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap();
    assert!(summary["created"].as_u64() >= Some(1), "{summary}");
    assert_eq!(emulator.stats().unauthorized, unauthorized);
}
