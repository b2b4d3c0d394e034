//! The webhook's logs, captured: they name events and runs and never show the
//! secret, the signature or the body. Its own test binary, so the global
//! subscriber sees every callsite (scoped subscribers race other tests).

mod common;

use common::*;
use serde_json::json;
use test_support::CapturedLogs;

#[tokio::test]
async fn logs_never_show_the_secret_the_signature_or_the_body() {
    let captured = CapturedLogs::global();

    let stack = stack().await;
    let service = stack.service();
    let broken = stack.service_with(&[SECRET], &format!("{}-missing", stack.download_url));
    let marker = "BODY-MARKER-do-not-log-9c1e";
    let mut object = run_object("frr_logs", "balance.summary.1", "succeeded");
    object["note"] = json!(marker);
    let body = event("evt_logs", "reporting.report_run.succeeded", object);
    let good = sign(&body, &[SECRET], NOW);
    let signature_hex = good.split("v1=").nth(1).unwrap().to_owned();
    let tampered = body.replace(marker, "BODY-MARKER-do-not-log-9c1f");
    let _ = status_of(&broken, v2(&body, Some(&good), false), NOW).await; // 500 path
    let _ = status_of(&service, v2(&body, Some(&good), false), NOW).await; // 200 path
    let _ = status_of(&service, v2(&body, Some(&good), false), NOW).await; // duplicate
    let _ = status_of(&service, v2(&tampered, Some(&good), false), NOW).await; // 400 path
    let _ = status_of(
        &service,
        v2(&body, Some(&format!("t={NOW},v1=zz{signature_hex}")), false),
        NOW,
    )
    .await;
    let _ = status_of(
        &service,
        v2(&format!("{{\"note\":\"{marker}\"}}"), Some(&good), false),
        NOW,
    )
    .await;

    let logs = captured.text();
    assert!(logs.contains("evt_logs"), "the logs name the event: {logs}");
    assert!(logs.contains("frr_logs"), "the logs name the run: {logs}");
    assert!(logs.contains(ACCOUNT), "the logs name the account: {logs}");
    for secret_thing in [SECRET, &signature_hex, "do-not-log", &good] {
        assert!(
            !logs.contains(secret_thing),
            "{secret_thing} leaked into logs:\n{logs}"
        );
    }
}
