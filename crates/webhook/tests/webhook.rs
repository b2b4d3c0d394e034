//! The webhook handler end to end: API Gateway events in, ledger items and
//! queue messages in moto's server out, verdicts compared with stripe-python.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::{RunStatus, StoredObject};
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{Ledger, RunFacts};
use stripe_reports::webhook::WebhookService;

#[tokio::test]
async fn succeeded_event_marks_the_run_and_enqueues_one_download() {
    let stack = stack().await;
    let service = stack.service();
    let key = RequestKey::new(
        &account(),
        &ReportSpec::new("balance.summary.1"),
        Interval {
            start: 1_795_910_400,
            end: 1_795_996_800,
        },
        0,
    );
    let facts = RunFacts {
        account: account(),
        run_id: "frr_a".into(),
        report_type: "balance.summary.1".into(),
        interval_start: Some(1_795_910_400),
        interval_end: Some(1_795_996_800),
    };
    stack
        .ledger
        .record_requested(&key, &facts, NOW - 600)
        .await
        .unwrap();
    let body = succeeded("evt_a", "frr_a");
    let (status, answer) = status_of(
        &service,
        v2(&body, Some(&sign(&body, &[SECRET], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!((status, answer), (200, json!({"received": true})));
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_a", "account": ACCOUNT})]
    );
    assert_eq!(stack.status("frr_a").await, Some(RunStatus::Succeeded));
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_enqueue_once_and_keep_the_ledger_consistent() {
    let stack = stack().await;
    let service = stack.service();
    let ok = succeeded("evt_ok", "frr_ok");
    let failed = event(
        "evt_failed",
        "reporting.report_run.failed",
        run_object("frr_bad", "payouts.itemized.3", "failed"),
    );
    let updated = event(
        "evt_type",
        "reporting.report_type.updated",
        json!({"id": "balance.summary.1", "object": "reporting.report_type", "name": "Balance summary",
               "data_available_start": 1_700_000_000, "data_available_end": 1_795_996_800,
               "default_columns": null, "livemode": false, "updated": NOW, "version": 1}),
    );
    let other_type = event(
        "evt_other_type",
        "reporting.report_type.updated",
        json!({"id": "tax.transactions.1", "object": "reporting.report_type", "name": "Tax",
               "data_available_start": 1, "data_available_end": 2, "livemode": false, "updated": NOW, "version": 1}),
    );
    let mut deliveries: Vec<&String> = Vec::new();
    for _ in 0..5 {
        deliveries.extend([&ok, &failed, &updated, &other_type]);
    }
    // A fixed shuffle: failed and type-updated events interleave with the successes.
    let mut order: Vec<usize> = (0..deliveries.len()).collect();
    order.sort_by_key(|i| (i * 7919) % 23);
    for i in order {
        let body = deliveries[i];
        let (status, _) = status_of(
            &service,
            v2(body, Some(&sign(body, &[SECRET], NOW)), false),
            NOW,
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_ok", "account": ACCOUNT})]
    );
    assert_eq!(
        stack.drain(&stack.schedule_url).await,
        vec![
            json!({"report_type": "balance.summary.1", "data_available_end": 1_795_996_800, "account": ACCOUNT})
        ]
    );
    assert_eq!(stack.status("frr_ok").await, Some(RunStatus::Succeeded));
    assert_eq!(stack.status("frr_bad").await, Some(RunStatus::Failed));
    let bad = stack.ledger.run("frr_bad").await.unwrap().unwrap();
    assert_eq!(
        bad.error.as_deref(),
        Some("Stripe could not compute this report")
    );
}

#[tokio::test]
async fn a_succeeded_or_failed_event_after_stored_changes_nothing() {
    let stack = stack().await;
    let service = stack.service();
    let facts = RunFacts {
        account: account(),
        run_id: "frr_done".into(),
        report_type: "balance.summary.1".into(),
        interval_start: None,
        interval_end: None,
    };
    let stored = StoredObject {
        s3_key: "k".into(),
        bytes: 1,
        sha256: "00".repeat(32),
        file_id: "file_1".into(),
    };
    stack
        .ledger
        .mark_stored(&facts, &stored, NOW - 10)
        .await
        .unwrap();
    let late = succeeded("evt_late", "frr_done");
    let failed = event(
        "evt_late_fail",
        "reporting.report_run.failed",
        run_object("frr_done", "balance.summary.1", "failed"),
    );
    for body in [&late, &failed] {
        let (status, _) = status_of(
            &service,
            v2(body, Some(&sign(body, &[SECRET], NOW)), false),
            NOW,
        )
        .await;
        assert_eq!(status, 200);
    }
    assert!(stack.drain(&stack.download_url).await.is_empty());
    let record = stack.ledger.run("frr_done").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Stored);
    assert_eq!(record.stored, Some(stored));
}

#[tokio::test]
async fn dashboard_runs_of_configured_types_are_recorded_others_ignored() {
    let stack = stack().await;
    let service = stack.service();
    let dashboard = succeeded("evt_dash", "frr_dashboard");
    let foreign = event(
        "evt_foreign",
        "reporting.report_run.succeeded",
        run_object("frr_foreign", "tax.transactions.1", "succeeded"),
    );
    let unknown = event(
        "evt_charge",
        "charge.succeeded",
        json!({"id": "ch_1", "object": "charge"}),
    );
    for body in [&dashboard, &foreign, &unknown] {
        let (status, _) = status_of(
            &service,
            v2(body, Some(&sign(body, &[SECRET], NOW)), false),
            NOW,
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_dashboard", "account": ACCOUNT})]
    );
    let record = stack.ledger.run("frr_dashboard").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.facts.account, account());
    assert_eq!(record.facts.interval_start, Some(1_795_910_400));
    assert_eq!(stack.status("frr_foreign").await, None);
}

#[tokio::test]
async fn base64_bodies_and_rest_v1_events_verify() {
    let stack = stack().await;
    let service = stack.service();
    let body = succeeded("evt_b64", "frr_b64");
    let (status, _) = status_of(
        &service,
        v2(&body, Some(&sign(&body, &[SECRET], NOW)), true),
        NOW,
    )
    .await;
    assert_eq!(status, 200);
    let body = succeeded("evt_rest", "frr_rest");
    let (status, _) = status_of(&service, v1(&body, &sign(&body, &[SECRET], NOW)), NOW).await;
    assert_eq!(status, 200);
    let mut runs: Vec<String> = stack
        .drain(&stack.download_url)
        .await
        .iter()
        .map(|m| m["run_id"].as_str().unwrap().to_owned())
        .collect();
    runs.sort();
    assert_eq!(runs, ["frr_b64", "frr_rest"]);
}

#[tokio::test]
async fn refused_deliveries_write_nothing() {
    let stack = stack().await;
    let service = stack.service();
    let body = succeeded("evt_refused", "frr_refused");
    let mut huge = body.clone();
    huge.push_str(&" ".repeat(1024 * 1024));
    let not_event = json!({"object": "list", "data": []}).to_string();
    let not_json = "this is not json".to_owned();
    let cases: Vec<(lambda_http::Request, &str)> = vec![
        (
            v2(&huge, Some(&sign(&huge, &[SECRET], NOW)), false),
            "body exceeds",
        ),
        (v2(&body, None, false), "no Stripe-Signature header"),
        (v2(&body, Some("garbage"), false), "unable to extract"),
        (
            v2(&body, Some(&sign(&body, &["whsec_wrong"], NOW)), false),
            "no signatures found matching",
        ),
        (
            v2(&body, Some(&sign(&body, &[SECRET], NOW - 301)), false),
            "tolerance",
        ),
        (
            v2(&not_event, Some(&sign(&not_event, &[SECRET], NOW)), false),
            "not a Stripe event",
        ),
        (
            v2(&not_json, Some(&sign(&not_json, &[SECRET], NOW)), false),
            "not a JSON object",
        ),
    ];
    for (request, reason) in cases {
        let (status, answer) = status_of(&service, request, NOW).await;
        assert_eq!(status, 400, "{reason}");
        assert!(
            answer["error"].as_str().unwrap().contains(reason),
            "{answer} should say {reason}"
        );
    }
    assert!(stack.drain(&stack.download_url).await.is_empty());
    assert_eq!(stack.status("frr_refused").await, None);
    // The event was never claimed: a genuine delivery afterwards is processed.
    let (status, _) = status_of(
        &service,
        v2(&body, Some(&sign(&body, &[SECRET], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(stack.drain(&stack.download_url).await.len(), 1);
}

#[tokio::test]
async fn an_unavailable_queue_answers_500_and_stripes_retry_is_processed() {
    let stack = stack().await;
    let broken = stack.service_with(&[SECRET], &format!("{}-missing", stack.download_url));
    let body = succeeded("evt_retry", "frr_retry");
    let (status, answer) = status_of(
        &broken,
        v2(&body, Some(&sign(&body, &[SECRET], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!(
        (status, answer),
        (500, json!({"error": "queue unavailable"}))
    );
    // Stripe delivers again once the queue is back: processed, not a "duplicate".
    let healthy = stack.service();
    let (status, _) = status_of(
        &healthy,
        v2(&body, Some(&sign(&body, &[SECRET], NOW + 60)), false),
        NOW + 60,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_retry", "account": ACCOUNT})]
    );
}

#[tokio::test]
async fn an_unavailable_ledger_answers_500() {
    let stack = stack().await;
    let sdk = test_support::local_aws().await;
    let service = WebhookService::new(
        DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            test_support::unique("missing-table"),
        ),
        SqsQueue::new(stack.sqs.clone(), &stack.download_url),
        SqsQueue::new(stack.sqs.clone(), &stack.schedule_url),
        account(),
        vec![SecretString::new(SECRET)],
        ["balance.summary.1".to_owned()],
    );
    let body = succeeded("evt_noledger", "frr_noledger");
    let (status, answer) = status_of(
        &service,
        v2(&body, Some(&sign(&body, &[SECRET], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!(
        (status, answer),
        (500, json!({"error": "ledger unavailable"}))
    );
    assert!(stack.drain(&stack.download_url).await.is_empty());
}

#[tokio::test]
async fn rolling_secrets_accept_old_and_new() {
    let stack = stack().await;
    let old = "whsec_old_secret_1";
    let new = "whsec_new_secret_2";
    let both_configured = stack.service_with(&[new, old], &stack.download_url);
    let new_only = stack.service_with(&[new], &stack.download_url);
    let body = succeeded("evt_roll1", "frr_roll1");
    // Stripe signs with both secrets while rolling.
    let (status, _) = status_of(
        &new_only,
        v2(&body, Some(&sign(&body, &[old, new], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!(status, 200);
    let body = succeeded("evt_roll2", "frr_roll2");
    let (status, _) = status_of(
        &both_configured,
        v2(&body, Some(&sign(&body, &[old], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!(status, 200);
    let body = succeeded("evt_roll3", "frr_roll3");
    let (status, _) = status_of(
        &new_only,
        v2(&body, Some(&sign(&body, &[old], NOW)), false),
        NOW,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(stack.drain(&stack.download_url).await.len(), 2);
}

#[tokio::test]
async fn the_sample_event_verifies_at_its_timestamp_with_the_readme_secret() {
    let stack = stack().await;
    let service = stack.service_with(&[README_SECRET], &stack.download_url);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/webhook-report-run-succeeded.json");
    let text = std::fs::read_to_string(path).unwrap();
    let sample: Value = serde_json::from_str(&text).unwrap();
    let signed_at: i64 = sample["headers"]["stripe-signature"].as_str().unwrap()[2..12]
        .parse()
        .unwrap();
    let request = lambda_http::request::from_str(&text).unwrap();
    let (status, _) = status_of(&service, request, signed_at).await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.drain(&stack.download_url).await,
        vec![json!({"run_id": "frr_1SampleRunForLocalTests0", "account": ACCOUNT})]
    );
    // Replayed six minutes later it is stale.
    let request = lambda_http::request::from_str(&text).unwrap();
    let (status, _) = status_of(&service, request, signed_at + 301).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn verdicts_match_stripe_python_construct_event_on_240_cases() {
    let stack = stack().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../stripe-reports/tests/python/signature_corpus.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .arg("240")
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let corpus: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(corpus.len() >= 240);
    let mut services: std::collections::HashMap<String, Service> = Default::default();
    let mut disagreements = Vec::new();
    for case in &corpus {
        let secrets: Vec<&str> = case["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let service = services
            .entry(secrets.join(","))
            .or_insert_with(|| stack.service_with(&secrets, &stack.download_url));
        let request = v2(
            case["payload"].as_str().unwrap(),
            case["header"].as_str(),
            false,
        );
        let (status, answer) = status_of(service, request, case["now"].as_i64().unwrap()).await;
        let expected = if case["valid"].as_bool().unwrap() {
            200
        } else {
            400
        };
        if status != expected {
            disagreements.push(format!(
                "{}: python {} ({}), handler {status} {answer}",
                case["name"], expected, case["reason"]
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
