//! Every sample event in `events/` parses into the `aws_lambda_events` type
//! its function's handler takes (they are also used by `sam local invoke -e`
//! and `cargo lambda invoke --data-file`).

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

fn read(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn each_sample_event_is_its_sources_type() {
    let scheduled: EventBridgeEvent<Value> =
        serde_json::from_str(&read("scheduler-scheduled.json")).unwrap();
    assert_eq!(scheduled.detail_type, "Scheduled Event");
    assert!(matches!(
        scheduler::classify(serde_json::from_str(&read("scheduler-scheduled.json")).unwrap()),
        Ok(scheduler::Input::Scheduled)
    ));
    assert!(matches!(
        scheduler::classify(serde_json::from_str(&read("scheduler-backfill.json")).unwrap()),
        Ok(scheduler::Input::Backfill(_))
    ));
    for name in ["scheduler-sqs.json", "downloader-sqs.json"] {
        let batch: SqsEvent = serde_json::from_str(&read(name)).unwrap();
        assert_eq!(batch.records.len(), 1, "{name}");
        let body: Value = serde_json::from_str(batch.records[0].body.as_deref().unwrap()).unwrap();
        assert!(body.is_object(), "{name}");
    }
    let webhook: ApiGatewayV2httpRequest =
        serde_json::from_str(&read("webhook-report-run-succeeded.json")).unwrap();
    assert_eq!(webhook.raw_path.as_deref(), Some("/webhooks/stripe"));
    assert!(webhook.headers.get("stripe-signature").is_some());
}
