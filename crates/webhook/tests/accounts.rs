//! Several Stripe accounts behind one endpoint, through the handler on moto:
//! a delivery belongs to the account whose signing secret verifies it (each
//! signed here by Stripe's official Python library), its run, its download
//! and its schedule message carry that account, and nothing one account's
//! secret signs changes another account's runs.
//!
//! Its own test binary: its logs go to one global subscriber (scoped
//! subscribers race other tests), which every test here installs first.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use stripe_reports::accounts::Accounts;
use stripe_reports::aws::SqsQueue;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::config::{PLACEHOLDER_WEBHOOK_SECRET, StripeAccounts};
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{Ledger, RunFacts};
use stripe_reports::webhook::{Outcome, WebhookAnswer, WebhookService};
use test_support::CapturedLogs;

const A: &str = "acct_1AccountAlpha00";
const B: &str = "acct_1AccountBravo00";
const SECRET_A: &str = "whsec_account_a_5e1d";
const SECRET_B: &str = "whsec_account_b_8c2f";
/// Neither account's secret.
const NEITHER: &str = "whsec_neither_account_0b7a";
const DATA_END: i64 = 1_795_996_800;

/// The accounts as `STRIPE_ACCOUNTS` (or the secret's `accounts`) gives
/// them, taken as configured: `(account, webhook secret)`.
fn accounts(entries: &[(&str, &str)]) -> Arc<Accounts> {
    let list: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, (account, webhook_secret))| {
            json!({"account": account, "api_key": format!("sk_test_key_{i}"), "webhook_secret": webhook_secret})
        })
        .collect();
    let accounts = StripeAccounts::from_accounts_json(&Value::Array(list).to_string()).unwrap();
    Arc::new(Accounts::trusted(accounts))
}

/// `balance.summary.1` for every account, `payouts.itemized.3` for B only.
fn specs() -> Vec<ReportSpec> {
    let mut payouts_of_b = ReportSpec::new("payouts.itemized.3");
    payouts_of_b.account = Some(id(B));
    vec![ReportSpec::new("balance.summary.1"), payouts_of_b]
}

fn service_of(stack: &Stack, accounts: Arc<Accounts>) -> Service {
    WebhookService::with_accounts(
        stack.ledger.clone(),
        SqsQueue::new(stack.sqs.clone(), &stack.download_url),
        SqsQueue::new(stack.sqs.clone(), &stack.schedule_url),
        accounts,
        specs(),
    )
}

/// A and B, each with its own signing secret.
fn both(stack: &Stack) -> Service {
    service_of(stack, accounts(&[(A, SECRET_A), (B, SECRET_B)]))
}

/// The API Gateway request of `body` as Stripe delivers it signed with `secret`.
fn signed(body: &str, secret: &str) -> lambda_http::Request {
    v2(
        body,
        Some(&sign_with_stripe_python(body, secret, NOW)),
        false,
    )
}

fn type_updated(event_id: &str, report_type: &str) -> String {
    event(
        event_id,
        "reporting.report_type.updated",
        json!({"id": report_type, "object": "reporting.report_type", "name": report_type,
               "data_available_start": 1_700_000_000, "data_available_end": DATA_END,
               "default_columns": null, "livemode": false, "updated": NOW, "version": 1}),
    )
}

/// Records `run_id` as requested by `account` (pending), as its scheduler leaves it.
async fn requested(stack: &Stack, account: &str, run_id: &str) {
    let interval = Interval {
        start: 1_795_910_400,
        end: DATA_END,
    };
    let facts = RunFacts {
        account: id(account),
        run_id: run_id.into(),
        report_type: "balance.summary.1".into(),
        interval_start: Some(interval.start),
        interval_end: Some(interval.end),
    };
    let key = RequestKey::new(
        &id(account),
        &ReportSpec::new("balance.summary.1"),
        interval,
        0,
    );
    stack
        .ledger
        .record_requested(&key, &facts, NOW - 600)
        .await
        .unwrap();
}

/// The messages on a queue, sorted by their JSON text.
async fn sorted(stack: &Stack, url: &str) -> Vec<Value> {
    sort(stack.drain(url).await)
}

fn sort(mut messages: Vec<Value>) -> Vec<Value> {
    messages.sort_by_key(|m| m.to_string());
    messages
}

#[tokio::test]
async fn each_delivery_is_attributed_to_the_account_whose_secret_signed_it() {
    let _ = CapturedLogs::global();
    let stack = stack().await;
    let service = both(&stack);
    requested(&stack, B, "frr_b_requested").await;

    let deliveries = [
        // Dashboard runs, new to the ledger: the signer's account is the owner.
        (succeeded("evt_b_dash", "frr_b_dash"), SECRET_B),
        (succeeded("evt_a_dash", "frr_a_dash"), SECRET_A),
        // B's scheduler's run.
        (succeeded("evt_b_req", "frr_b_requested"), SECRET_B),
        // A run of a type configured for B only, announced by A: ignored.
        (
            event(
                "evt_a_payouts",
                "reporting.report_run.succeeded",
                run_object("frr_a_payouts", "payouts.itemized.3", "succeeded"),
            ),
            SECRET_A,
        ),
        (
            type_updated("evt_a_type_balance", "balance.summary.1"),
            SECRET_A,
        ),
        // payouts.itemized.3 is B's only: A's update of it is ignored…
        (
            type_updated("evt_a_type_payouts", "payouts.itemized.3"),
            SECRET_A,
        ),
        // …and B's is planned.
        (
            type_updated("evt_b_type_payouts", "payouts.itemized.3"),
            SECRET_B,
        ),
    ];
    for (body, secret) in &deliveries {
        let (status, answer) = status_of(&service, signed(body, secret), NOW).await;
        assert_eq!((status, answer), (200, json!({"received": true})), "{body}");
    }

    for (run_id, account) in [("frr_b_dash", B), ("frr_a_dash", A), ("frr_b_requested", B)] {
        let record = stack.ledger.run(run_id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.facts.account),
            (RunStatus::Succeeded, id(account)),
            "{run_id}"
        );
    }
    assert_eq!(stack.status("frr_a_payouts").await, None);
    assert_eq!(
        sorted(&stack, &stack.download_url).await,
        sort(vec![
            json!({"run_id": "frr_a_dash", "account": A}),
            json!({"run_id": "frr_b_dash", "account": B}),
            json!({"run_id": "frr_b_requested", "account": B}),
        ])
    );
    assert_eq!(
        sorted(&stack, &stack.schedule_url).await,
        sort(vec![
            json!({"report_type": "balance.summary.1", "data_available_end": DATA_END, "account": A}),
            json!({"report_type": "payouts.itemized.3", "data_available_end": DATA_END, "account": B}),
        ])
    );
}

#[tokio::test]
async fn a_delivery_signed_by_one_account_never_changes_another_accounts_run() {
    let _ = CapturedLogs::global();
    let stack = stack().await;
    let service = both(&stack);
    requested(&stack, B, "frr_of_b").await;
    let before = stack.ledger.run("frr_of_b").await.unwrap().unwrap();

    // Through the handler: answered 200 (Stripe must not retry it forever).
    let body = succeeded("evt_cross_ok", "frr_of_b");
    let (status, answer) = status_of(&service, signed(&body, SECRET_A), NOW).await;
    assert_eq!((status, answer), (200, json!({"received": true})));
    // What the handler decided, for a success and a failure signed with A's secret.
    let failed = event(
        "evt_cross_failed",
        "reporting.report_run.failed",
        run_object("frr_of_b", "balance.summary.1", "failed"),
    );
    for body in [succeeded("evt_cross_ok_2", "frr_of_b"), failed] {
        let header = sign_with_stripe_python(&body, SECRET_A, NOW);
        assert_eq!(
            service.handle(body.as_bytes(), Some(&header), NOW).await,
            WebhookAnswer::Received(Outcome::OtherAccount),
            "{body}"
        );
    }
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert!(stack.drain(&stack.schedule_url).await.is_empty());
    assert_eq!(
        stack.ledger.run("frr_of_b").await.unwrap(),
        Some(before),
        "B's run is as B's scheduler left it"
    );

    // B's own delivery of its run is still handled.
    let body = succeeded("evt_b_own", "frr_of_b");
    let (status, _) = status_of(&service, signed(&body, SECRET_B), NOW).await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_of_b", "account": B})]
    );
    assert_eq!(stack.status("frr_of_b").await, Some(RunStatus::Succeeded));
}

#[tokio::test]
async fn a_delivery_no_account_signed_is_refused_and_an_unusable_secret_answers_500() {
    let _ = CapturedLogs::global();
    let stack = stack().await;
    let service = both(&stack);
    let body = succeeded("evt_unsigned", "frr_unsigned");
    let (status, answer) = status_of(&service, signed(&body, NEITHER), NOW).await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "no signatures found matching the expected signature for payload"})
        )
    );
    assert_eq!(stack.status("frr_unsigned").await, None);
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert!(stack.drain(&stack.schedule_url).await.is_empty());
    // Nothing was claimed either: the genuine delivery of the event is handled.
    let (status, _) = status_of(&service, signed(&body, SECRET_A), NOW).await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_unsigned", "account": A})]
    );

    // B's secret is still the template's placeholder: a delivery no usable
    // secret verifies may be B's, so Stripe is asked to deliver it again.
    let half = service_of(
        &stack,
        accounts(&[(A, SECRET_A), (B, PLACEHOLDER_WEBHOOK_SECRET)]),
    );
    let body = succeeded("evt_for_b", "frr_for_b");
    for secret in [NEITHER, SECRET_B, PLACEHOLDER_WEBHOOK_SECRET] {
        let (status, answer) = status_of(&half, signed(&body, secret), NOW).await;
        assert_eq!(
            (status, answer),
            (500, json!({"error": "no webhook secret configured"})),
            "signed with {secret}"
        );
    }
    assert_eq!(stack.status("frr_for_b").await, None);
    assert!(stack.drain(&stack.download_url).await.is_empty());
    // A's deliveries go on.
    let body = succeeded("evt_for_a", "frr_for_a");
    let (status, _) = status_of(&half, signed(&body, SECRET_A), NOW).await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_for_a", "account": A})]
    );
}

/// The spans of a log line (the JSON formatter's `spans` list).
fn spans(line: &Value) -> Vec<Value> {
    line["spans"].as_array().cloned().unwrap_or_default()
}

/// Every log line written while handling `event_id`.
fn lines_of(logs: &CapturedLogs, event_id: &str) -> Vec<Value> {
    logs.json_lines()
        .into_iter()
        .filter(|line| spans(line).iter().any(|s| s["event_id"] == event_id))
        .collect()
}

#[tokio::test]
async fn logs_of_a_delivery_name_the_account_it_is_attributed_to() {
    let logs = CapturedLogs::global();
    let stack = stack().await;
    let service = both(&stack);
    requested(&stack, B, "frr_log_of_b").await;
    let handled = succeeded("evt_log_b", "frr_log_b");
    let cross = succeeded("evt_log_cross", "frr_log_of_b");
    let (status, _) = status_of(&service, signed(&handled, SECRET_B), NOW).await;
    assert_eq!(status, 200);
    let (status, _) = status_of(&service, signed(&cross, SECRET_A), NOW).await;
    assert_eq!(status, 200);

    let account_of = |line: &Value| -> Vec<Value> {
        spans(line)
            .iter()
            .filter(|s| s["name"] == "event")
            .map(|s| s["account"].clone())
            .collect()
    };
    let handled_lines = lines_of(logs, "evt_log_b");
    assert!(
        handled_lines
            .iter()
            .any(|line| line["fields"]["message"] == "event handled"),
        "{handled_lines:#?}"
    );
    for line in &handled_lines {
        assert_eq!(account_of(line), [json!(B)], "{line}");
    }
    // The delivery signed with A's secret for B's run: A's, naming B as the owner.
    let cross_lines = lines_of(logs, "evt_log_cross");
    assert!(!cross_lines.is_empty());
    for line in &cross_lines {
        assert_eq!(account_of(line), [json!(A)], "{line}");
    }
    assert!(
        cross_lines
            .iter()
            .any(|line| line["level"] == "WARN" && line["fields"]["owner"] == B),
        "{cross_lines:#?}"
    );
    let text = logs.text();
    for secret in [SECRET_A, SECRET_B] {
        assert!(!text.contains(secret), "{secret} leaked into the logs");
    }
}

/// `body` (an event) as Stripe sends it to a Connect platform's endpoint:
/// with `account` naming the connected account it is about.
fn with_account(body: &str, account: &str) -> String {
    let mut event: Value = serde_json::from_str(body).unwrap();
    event["account"] = json!(account);
    event.to_string()
}

/// Whether the ledger holds an item for `event_id` (a claim, or the mark
/// of a handled event), read consistently.
async fn event_item_exists(stack: &Stack, event_id: &str) -> bool {
    stack
        .ledger
        .client()
        .get_item()
        .table_name(stack.ledger.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(stripe_reports::aws::ledger::event_pk(
                event_id,
            )),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .is_some()
}

/// What the handler decides for `body` signed with `secret`.
async fn outcome_of(service: &Service, body: &str, secret: &str) -> WebhookAnswer {
    let header = sign_with_stripe_python(body, secret, NOW);
    service.handle(body.as_bytes(), Some(&header), NOW).await
}

#[tokio::test]
async fn an_event_of_a_connected_account_is_ignored_and_leaves_its_id_to_that_account() {
    let _ = CapturedLogs::global();
    let stack = stack().await;
    let service = both(&stack);
    // A is a Connect platform: its endpoint also receives the events of its
    // connected account B, signed with A's secret, `account` naming B.
    let run_of_b = with_account(&succeeded("evt_connect_run", "frr_connect_run"), B);
    let type_of_b = with_account(&type_updated("evt_connect_type", "balance.summary.1"), B);
    let retry_of_b = with_account(&succeeded("evt_connect_plain", "frr_connect_plain"), B);
    for body in [&run_of_b, &type_of_b, &retry_of_b] {
        let (status, answer) = status_of(&service, signed(body, SECRET_A), NOW).await;
        assert_eq!((status, answer), (200, json!({"received": true})), "{body}");
        // Delivered again (Stripe retries, or a second platform endpoint):
        // still ignored, never a duplicate of an earlier delivery.
        assert_eq!(
            outcome_of(&service, body, SECRET_A).await,
            WebhookAnswer::Received(Outcome::Ignored),
            "{body}"
        );
    }
    // Nothing written, nothing enqueued, and no event id taken.
    for run_id in ["frr_connect_run", "frr_connect_plain"] {
        assert_eq!(stack.status(run_id).await, None, "{run_id}");
    }
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert!(stack.drain(&stack.schedule_url).await.is_empty());
    for event_id in ["evt_connect_run", "evt_connect_type", "evt_connect_plain"] {
        assert!(
            !event_item_exists(&stack, event_id).await,
            "{event_id} was claimed"
        );
    }

    // The same events reach B's own endpoint, signed with B's secret (with
    // `account` = B, or without it): handled as B's.
    assert_eq!(
        outcome_of(&service, &run_of_b, SECRET_B).await,
        WebhookAnswer::Received(Outcome::Enqueued)
    );
    assert_eq!(
        outcome_of(&service, &type_of_b, SECRET_B).await,
        WebhookAnswer::Received(Outcome::Scheduled)
    );
    let plain = succeeded("evt_connect_plain", "frr_connect_plain");
    assert_eq!(
        outcome_of(&service, &plain, SECRET_B).await,
        WebhookAnswer::Received(Outcome::Enqueued)
    );
    for run_id in ["frr_connect_run", "frr_connect_plain"] {
        let record = stack.ledger.run(run_id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.facts.account),
            (RunStatus::Succeeded, id(B)),
            "{run_id}"
        );
    }
    assert_eq!(
        sorted(&stack, &stack.download_url).await,
        sort(vec![
            json!({"run_id": "frr_connect_run", "account": B}),
            json!({"run_id": "frr_connect_plain", "account": B}),
        ])
    );
    assert_eq!(
        stack.drain(&stack.schedule_url).await,
        vec![
            json!({"report_type": "balance.summary.1", "data_available_end": DATA_END, "account": B})
        ]
    );
    // B handled them: a further delivery to B is the duplicate it is.
    assert_eq!(
        outcome_of(&service, &run_of_b, SECRET_B).await,
        WebhookAnswer::Received(Outcome::Duplicate)
    );

    // An event naming the very account whose secret signed it is that
    // account's own, handled as usual.
    let own = with_account(&succeeded("evt_connect_own", "frr_connect_own"), A);
    assert_eq!(
        outcome_of(&service, &own, SECRET_A).await,
        WebhookAnswer::Received(Outcome::Enqueued)
    );
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_connect_own", "account": A})]
    );
}

#[tokio::test]
async fn a_delivery_for_another_accounts_run_gives_its_event_id_back() {
    let _ = CapturedLogs::global();
    let stack = stack().await;
    let service = both(&stack);
    requested(&stack, B, "frr_released_of_b").await;
    let before = stack
        .ledger
        .run("frr_released_of_b")
        .await
        .unwrap()
        .unwrap();
    let body = succeeded("evt_released", "frr_released_of_b");

    // Signed with A's secret, naming B's run: 200, nothing of B's changed…
    let (status, answer) = status_of(&service, signed(&body, SECRET_A), NOW).await;
    assert_eq!((status, answer), (200, json!({"received": true})));
    assert_eq!(
        outcome_of(&service, &body, SECRET_A).await,
        WebhookAnswer::Received(Outcome::OtherAccount),
        "a second delivery signed by A is not a duplicate either"
    );
    assert_eq!(
        stack.ledger.run("frr_released_of_b").await.unwrap(),
        Some(before)
    );
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert!(stack.drain(&stack.schedule_url).await.is_empty());
    // …and its claim on the event id given back.
    assert!(
        !event_item_exists(&stack, "evt_released").await,
        "the claim of the delivery signed by A was kept"
    );

    // The same event signed by B, the run's own account: handled, not a duplicate.
    assert_eq!(
        outcome_of(&service, &body, SECRET_B).await,
        WebhookAnswer::Received(Outcome::Enqueued)
    );
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_released_of_b", "account": B})]
    );
    assert_eq!(
        stack.status("frr_released_of_b").await,
        Some(RunStatus::Succeeded)
    );
    assert!(event_item_exists(&stack, "evt_released").await);
    // Now handled by B, its id is taken: B's next delivery is a duplicate.
    assert_eq!(
        outcome_of(&service, &body, SECRET_B).await,
        WebhookAnswer::Received(Outcome::Duplicate)
    );
}
