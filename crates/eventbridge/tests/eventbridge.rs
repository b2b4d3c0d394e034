//! The `eventbridge` function end to end: SQS batches of EventBridge events
//! in (as the stack's rule writes them), ledger items and queue messages in
//! moto's server out; the same Stripe events also through the webhook
//! handler, which shares the claim on the event id.

mod common;

use aws_lambda_events::event::sqs::SqsEvent;
use common::*;
use serde_json::{Value, json};
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::signature_header;
use stripe_reports::ports::{Ledger, RunFacts};

#[tokio::test]
async fn each_event_type_is_routed_for_the_account_of_its_destination() {
    let stack = stack().await;
    let service = stack.two_accounts();
    let succeeded = bridged(
        "eb-1",
        DESTINATION_B,
        &run_succeeded_event("evt_s", "frr_s"),
    );
    let failed = bridged(
        "eb-2",
        DESTINATION_B,
        &stripe_event(
            "evt_f",
            "reporting.report_run.failed",
            run_object("frr_f", "payouts.itemized.3", "failed"),
        ),
    );
    let updated = bridged(
        "eb-3",
        DESTINATION_A,
        &type_updated("evt_u", "balance.summary.1"),
    );
    let ignored = bridged(
        "eb-4",
        DESTINATION_A,
        &stripe_event(
            "evt_c",
            "charge.succeeded",
            json!({"id": "ch_1", "object": "charge"}),
        ),
    );
    assert!(
        failed_ids(&service, &[&succeeded, &failed, &updated, &ignored])
            .await
            .is_empty()
    );
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_s", "account": ACCOUNT_B})]
    );
    assert_eq!(
        stack.drain(&stack.schedule_url).await,
        vec![
            json!({"report_type": "balance.summary.1", "data_available_end": 1_795_996_800, "account": ACCOUNT_A})
        ]
    );
    assert_eq!(stack.status("frr_s").await, Some(RunStatus::Succeeded));
    let failed_run = stack.ledger.run("frr_f").await.unwrap().unwrap();
    assert_eq!(
        (
            failed_run.status,
            failed_run.facts.account,
            failed_run.error.as_deref()
        ),
        (
            RunStatus::Failed,
            id(ACCOUNT_B),
            Some("Stripe could not compute this report")
        )
    );
}

#[tokio::test]
async fn an_event_delivered_by_webhook_and_by_eventbridge_is_handled_once() {
    let stack = stack().await;
    let service = stack.two_accounts();
    let secrets = [SecretString::new(WEBHOOK_SECRET_A)];
    // Webhook first, then EventBridge three times (each retry a new EventBridge id).
    let first = run_succeeded_event("evt_both_1", "frr_both_1");
    let answer = service
        .handle(
            first.as_bytes(),
            Some(&signature_header(&secrets, NOW, first.as_bytes())),
            NOW,
        )
        .await;
    assert_eq!(answer.status_code(), 200);
    let copies: Vec<String> = (0..3)
        .map(|n| bridged(&format!("eb-first-{n}"), DESTINATION_A, &first))
        .collect();
    let copies: Vec<&str> = copies.iter().map(String::as_str).collect();
    assert!(failed_ids(&service, &copies[..1]).await.is_empty());
    assert!(failed_ids(&service, &copies[1..]).await.is_empty());
    // EventBridge first, then the webhook.
    let second = run_succeeded_event("evt_both_2", "frr_both_2");
    assert!(
        failed_ids(&service, &[&bridged("eb-second", DESTINATION_A, &second)])
            .await
            .is_empty()
    );
    let answer = service
        .handle(
            second.as_bytes(),
            Some(&signature_header(&secrets, NOW, second.as_bytes())),
            NOW,
        )
        .await;
    assert_eq!(
        answer,
        stripe_reports::webhook::WebhookAnswer::Received(
            stripe_reports::webhook::Outcome::Duplicate
        )
    );
    let mut downloads = stack.drain(&stack.download_url).await;
    downloads.sort_by_key(|m| m["run_id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        downloads,
        vec![
            json!({"run_id": "frr_both_1", "account": ACCOUNT_A}),
            json!({"run_id": "frr_both_2", "account": ACCOUNT_A}),
        ]
    );
}

#[tokio::test]
async fn two_copies_in_one_batch_enqueue_once_and_neither_fails() {
    let stack = stack().await;
    let service = stack.two_accounts();
    let event = run_succeeded_event("evt_pair", "frr_pair");
    let one = bridged("eb-pair-1", DESTINATION_A, &event);
    let two = bridged("eb-pair-2", DESTINATION_A, &event);
    // One after the other: the second is a duplicate, not a failure.
    assert!(failed_ids(&service, &[&one, &two]).await.is_empty());
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_pair", "account": ACCOUNT_A})]
    );
}

#[tokio::test]
async fn a_foreign_source_or_a_malformed_detail_is_refused_with_nothing_written() {
    let stack = stack().await;
    let service = stack.two_accounts();
    let event = run_succeeded_event("evt_refused", "frr_refused");
    let foreign = bridged_from("eb-foreign", "aws.partner/example.com/ed_1", &event);
    let own_account = bridged_from("eb-custom", "stripe-reports.forged", &event);
    let mut malformed: Value =
        serde_json::from_str(&bridged("eb-malformed", DESTINATION_A, &event)).unwrap();
    malformed["detail"]["data"]["object"] = json!({"id": 42});
    let malformed = malformed.to_string();
    let mut not_an_event: Value =
        serde_json::from_str(&bridged("eb-not-event", DESTINATION_A, &event)).unwrap();
    not_an_event["detail"] = json!({"object": "charge", "id": "ch_1"});
    let not_an_event = not_an_event.to_string();
    let mismatched = bridged("eb-mismatch", DESTINATION_A, &event).replace(
        "\"detail-type\":\"reporting.report_run.succeeded\"",
        "\"detail-type\":\"reporting.report_run.failed\"",
    );
    let bodies = [
        foreign.as_str(),
        own_account.as_str(),
        malformed.as_str(),
        not_an_event.as_str(),
        mismatched.as_str(),
        "not json",
    ];
    let failed = failed_ids(&service, &bodies).await;
    assert_eq!(failed, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert!(stack.drain(&stack.schedule_url).await.is_empty());
    assert_eq!(stack.status("frr_refused").await, None);
    assert!(!stack.event_claimed("evt_refused").await);
    // Refusing them did not claim the event: the genuine one still goes through.
    let genuine = bridged("eb-genuine", DESTINATION_A, &event);
    assert!(failed_ids(&service, &[&genuine]).await.is_empty());
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_refused", "account": ACCOUNT_A})]
    );
}

#[tokio::test]
async fn an_event_naming_another_accounts_run_changes_nothing_of_it() {
    let stack = stack().await;
    let service = stack.two_accounts();
    // The ledger holds frr_of_b for B.
    stack
        .ledger
        .mark_failed(
            &RunFacts {
                account: id(ACCOUNT_B),
                run_id: "frr_of_b".into(),
                report_type: "balance.summary.1".into(),
                interval_start: Some(1_795_910_400),
                interval_end: Some(1_795_996_800),
            },
            "placeholder",
            NOW - 100,
        )
        .await
        .unwrap();
    let before = stack.ledger.run("frr_of_b").await.unwrap().unwrap();
    // A's destination names B's run.
    let body = bridged(
        "eb-cross",
        DESTINATION_A,
        &run_succeeded_event("evt_cross", "frr_of_b"),
    );
    assert!(failed_ids(&service, &[&body]).await.is_empty());
    assert!(stack.drain(&stack.download_url).await.is_empty());
    let after = stack.ledger.run("frr_of_b").await.unwrap().unwrap();
    assert_eq!(
        (after.facts.account, after.status),
        (before.facts.account, before.status)
    );
    // The claim was given back: B's own delivery of that event id is handled.
    assert!(!stack.event_claimed("evt_cross").await);
}

#[tokio::test]
async fn an_unknown_destination_is_a_clear_failure_and_one_account_takes_every_destination() {
    let stack = stack().await;
    let two = stack.two_accounts();
    let event = run_succeeded_event("evt_unknown", "frr_unknown");
    let unknown = bridged("eb-unknown", "ed_test_61NotConfigured", &event);
    let answer = two.handle_eventbridge(unknown.as_bytes(), NOW).await;
    assert_eq!(
        answer,
        stripe_reports::webhook::WebhookAnswer::Failed(
            "no configured account has event destination ed_test_61NotConfigured: add \"event_destination\": \"ed_test_61NotConfigured\" to the account it belongs to".into()
        )
    );
    assert_eq!(failed_ids(&two, &[&unknown]).await, ["m0"]);
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert!(!stack.event_claimed("evt_unknown").await);

    // One account listing no destination: every Stripe destination is its own.
    let one = stack.service(json!([{"account": ACCOUNT_A, "api_key": "sk_test_eb_a"}]));
    assert!(failed_ids(&one, &[&unknown]).await.is_empty());
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_unknown", "account": ACCOUNT_A})]
    );
    // One account listing its destinations: only those.
    let listed = stack.service(json!([
        {"account": ACCOUNT_A, "api_key": "sk_test_eb_a", "event_destination": DESTINATION_A}
    ]));
    let elsewhere = bridged(
        "eb-elsewhere",
        "ed_test_61NotConfigured",
        &run_succeeded_event("evt_elsewhere", "frr_elsewhere"),
    );
    assert_eq!(failed_ids(&listed, &[&elsewhere]).await, ["m0"]);
}

#[tokio::test]
async fn the_sample_event_is_stripes_shape_and_is_handled() {
    // Stripe's official Python library unwraps the sample as we do.
    let sample = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../events/eventbridge-report-run-succeeded.json"),
    )
    .unwrap();
    let output = std::process::Command::new(test_support::python())
        .args([
            "-c",
            "import sys, stripe\n\
             event = stripe.Webhook.construct_event_without_verification(sys.stdin.read())\n\
             print(event.id, event.type, event.data.object.id)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(sample.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run stripe-python");
    assert!(output.status.success(), "{output:?}");
    let ours = stripe_reports::eventbridge::parse_bridged(sample.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!(
            "{} {} {}",
            ours.event.id,
            ours.event.event_type,
            ours.event.object.report_run().unwrap().id
        )
    );

    // The SQS sample (what the rule's target delivers) through the handler.
    let stack = stack().await;
    let service = stack.service(json!([{"account": ACCOUNT_A, "api_key": "sk_test_eb_a"}]));
    let sqs_sample: SqsEvent =
        serde_json::from_value(test_support::event_file("eventbridge-sqs.json")).unwrap();
    let response = eventbridge::handle_batch(&service, sqs_sample, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": ours.event.object.report_run().unwrap().id, "account": ACCOUNT_A})]
    );
}

#[tokio::test]
async fn an_event_of_the_other_mode_than_its_accounts_key_is_ignored() {
    let stack = stack().await;
    // One live account: a sandbox destination added beside it sends test-mode events.
    let live = stack.service(json!([{"account": ACCOUNT_A, "api_key": "sk_live_eb_a"}]));
    let test_event = bridged(
        "eb-test-mode",
        "ed_test_61SandboxDestination",
        &run_succeeded_event("evt_test_mode", "frr_test_mode"),
    );
    assert_eq!(
        live.handle_eventbridge(test_event.as_bytes(), NOW).await,
        stripe_reports::webhook::WebhookAnswer::Received(stripe_reports::webhook::Outcome::Ignored)
    );
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert_eq!(stack.status("frr_test_mode").await, None);
    assert!(!stack.event_claimed("evt_test_mode").await);
    // The same event for a test-mode key is that account's.
    let test = stack.service(json!([{"account": ACCOUNT_A, "api_key": "sk_test_eb_a"}]));
    assert!(failed_ids(&test, &[&test_event]).await.is_empty());
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_test_mode", "account": ACCOUNT_A})]
    );
}
