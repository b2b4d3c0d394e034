//! The webhook's secret read from Secrets Manager (moto over HTTP) while the
//! function stays warm: a rolled secret is read again when a signature fails
//! (at most once a minute), and a placeholder filled after deploying is used
//! without a cold start.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use stripe_reports::accounts::Accounts;
use stripe_reports::aws::SqsQueue;
use stripe_reports::domain::config::{Config, PLACEHOLDER_API_KEY, PLACEHOLDER_WEBHOOK_SECRET};
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::env::Environment;
use stripe_reports::ports::Ledger;
use stripe_reports::secrets::SecretsCache;
use stripe_reports::webhook::WebhookService;
use test_support::{CountingReader, ManualClock, put_secret, secret, secret_json};

const OLD: &str = "whsec_before_the_roll_1a2b";
const NEW: &str = "whsec_after_the_roll_3c4d";

#[tokio::test]
async fn a_rolled_secret_is_read_again_once_when_a_signature_fails() {
    let sdk = test_support::local_aws().await;
    let stack = stack().await;
    // The secret's several-accounts shape names the account: the accounts
    // are taken as configured (no Stripe to ask whose key it is).
    let accounts_json = |webhook_secret: &str| {
        json!({"accounts": [{"account": ACCOUNT, "api_key": "sk_test_unused", "webhook_secret": webhook_secret}]})
            .to_string()
    };
    let arn = secret(&sdk, &accounts_json(OLD)).await;
    let reader = CountingReader::new(&sdk, &arn);
    let clock = ManualClock::new();
    let cache = SecretsCache::load(reader.clone(), clock.clone())
        .await
        .unwrap();
    let service: Service = WebhookService::with_accounts(
        stack.ledger.clone(),
        SqsQueue::new(stack.sqs.clone(), &stack.download_url),
        SqsQueue::new(stack.sqs.clone(), &stack.schedule_url),
        Arc::new(Accounts::trusted(cache)),
        vec![ReportSpec::new("balance.summary.1")],
    );
    let deliver = |event_id: &str, run_id: &str, secret: &str| {
        let body = succeeded(event_id, run_id);
        let signature = sign(&body, &[secret], NOW);
        v2(&body, Some(&signature), false)
    };

    let (status, _) = status_of(&service, deliver("evt_r1", "frr_r1", OLD), NOW).await;
    assert_eq!(
        (status, reader.reads()),
        (200, 1),
        "warm, on the cold start's read"
    );

    // The endpoint's secret is rolled and only the new one is kept.
    put_secret(&sdk, &arn, &accounts_json(NEW)).await;
    let (status, body) = status_of(&service, deliver("evt_r2", "frr_r2", NEW), NOW).await;
    assert_eq!((status, reader.reads()), (200, 2), "{body}");
    let record = stack.ledger.run("frr_r2").await.unwrap().unwrap();
    assert_eq!(
        (record.status.to_string(), record.facts.account),
        ("succeeded".to_owned(), account())
    );

    // A forged delivery within the minute: refused without another read.
    let clock_moved = Duration::from_secs(59);
    clock.advance(clock_moved);
    let (status, body) =
        status_of(&service, deliver("evt_r3", "frr_r3", "whsec_forged"), NOW).await;
    assert_eq!((status, reader.reads()), (400, 2), "{body}");
    assert_eq!(
        body["error"],
        "no signatures found matching the expected signature for payload"
    );
    // The new secret is cached now: no read for it either.
    let (status, _) = status_of(&service, deliver("evt_r4", "frr_r4", NEW), NOW).await;
    assert_eq!((status, reader.reads()), (200, 2));

    // A minute after the last re-read, a failed signature may read again.
    clock.advance(Duration::from_secs(1));
    let (status, _) = status_of(&service, deliver("evt_r5", "frr_r5", "whsec_forged"), NOW).await;
    assert_eq!((status, reader.reads()), (400, 3));
    assert_eq!(
        stack.status("frr_r3").await,
        None,
        "a refused delivery wrote nothing"
    );
}

#[tokio::test]
async fn a_placeholder_filled_after_deploying_is_used_without_a_cold_start() {
    let sdk = test_support::local_aws().await;
    let stack = stack().await;
    // Stripe, as far as whose key the filled one is (GET /v1/account).
    let emulator = test_support::emulator("sk_test_filled", Vec::new(), Duration::ZERO).await;
    let arn = secret(
        &sdk,
        &secret_json(PLACEHOLDER_API_KEY, PLACEHOLDER_WEBHOOK_SECRET),
    )
    .await;
    let vars: HashMap<&str, String> = HashMap::from([
        ("STRIPE_SECRET_ARN", arn.clone()),
        ("STRIPE_API_BASE", emulator.base_url()),
        ("RUNS_TABLE", stack.ledger.table().to_owned()),
        ("DOWNLOAD_QUEUE_URL", stack.download_url.clone()),
        ("SCHEDULE_QUEUE_URL", stack.schedule_url.clone()),
    ]);
    let config = Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let clock = ManualClock::new();
    let env = Environment::with(config, sdk.clone(), clock.clone())
        .await
        .unwrap();
    // The cold start goes through: the function waits for the secret.
    let service = webhook::service_from(env).await.unwrap();

    let body = succeeded("evt_p1", "frr_p1");
    let signature = sign(&body, &[SECRET], NOW);
    let (status, answer) = status_of(&service, v2(&body, Some(&signature), false), NOW).await;
    assert_eq!(
        status, 500,
        "not configured yet: Stripe delivers again ({answer})"
    );
    assert_eq!(answer["error"], "no webhook secret configured");
    // Signed with the public placeholder: refused all the same.
    let forged = sign(&body, &[PLACEHOLDER_WEBHOOK_SECRET], NOW);
    let (status, _) = status_of(&service, v2(&body, Some(&forged), false), NOW).await;
    assert_eq!(status, 500);
    assert_eq!(stack.status("frr_p1").await, None);

    put_secret(&sdk, &arn, &secret_json("sk_test_filled", SECRET)).await;
    clock.advance(Duration::from_secs(60));
    // Stripe's retry of the same delivery.
    let (status, answer) = status_of(&service, v2(&body, Some(&signature), false), NOW).await;
    assert_eq!(status, 200, "{answer}");
    // Attributed to the account Stripe says the filled key is.
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_p1", "account": ACCOUNT})]
    );
}
