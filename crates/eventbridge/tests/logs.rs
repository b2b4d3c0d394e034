//! The eventbridge function's logs, captured: a refused event is logged
//! with EventBridge's id and never with its payload; a handled one names
//! the event, the run and the account. Its own test binary, so the global
//! subscriber sees every callsite.

mod common;

use common::*;
use serde_json::{Value, json};
use test_support::CapturedLogs;

#[tokio::test]
async fn refusals_are_logged_with_the_eventbridge_id_and_never_the_payload() {
    let captured = CapturedLogs::global();
    let stack = stack().await;
    let service = stack.two_accounts();
    let marker = "PAYLOAD-MARKER-do-not-log-4b7e";
    let mut object = run_object("frr_logs", "balance.summary.1", "succeeded");
    object["note"] = json!(marker);
    let event = stripe_event("evt_logs", "reporting.report_run.succeeded", object);
    let good = bridged("eb-logs-good", DESTINATION_A, &event);
    let mut malformed: Value =
        serde_json::from_str(&bridged("eb-logs-malformed", DESTINATION_A, &event)).unwrap();
    malformed["detail"]["data"]["object"] = json!({"id": 7, "report_type": marker});
    let malformed = malformed.to_string();
    // A source is not payload: it is named in the line (printable, cut at 120 characters).
    let foreign = bridged_from("eb-logs-foreign", "aws.partner/example.com/x", &event);
    assert_eq!(
        failed_ids(&service, &[&malformed, &foreign]).await,
        ["m0", "m1"]
    );
    assert!(failed_ids(&service, &[&good]).await.is_empty());

    let lines = captured.json_lines();
    // Refused before it is attributed (a foreign source): the line names the id.
    assert!(
        lines.iter().any(|line| line["fields"]["message"]
            == "EventBridge event refused: nothing written"
            && line["fields"]["eventbridge_id"] == "eb-logs-foreign"),
        "no refusal line names eb-logs-foreign"
    );
    // Refused after (an unreadable object): the line is in the event's span.
    assert!(
        lines.iter().any(
            |line| line["fields"]["message"] == "event object unreadable"
                && line["span"]["eventbridge_id"] == "eb-logs-malformed"
        ),
        "no line in eb-logs-malformed's span says its object is unreadable"
    );
    let logs = captured.text();
    assert!(
        logs.contains("evt_logs") && logs.contains("frr_logs") && logs.contains(ACCOUNT_A),
        "the logs name the event, the run and the account"
    );
    assert!(
        !logs.contains("do-not-log"),
        "the payload leaked into logs:\n{logs}"
    );
}
