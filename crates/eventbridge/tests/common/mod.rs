//! Helpers of the eventbridge tests: a moto-backed stack, two accounts each
//! with its own event destination, EventBridge events and SQS batches.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use stripe_reports::accounts::Accounts;
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::config::StripeAccounts;
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::signature_header;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{Ledger, RunFacts};
use stripe_reports::webhook::WebhookService;
pub use test_support::{EVENT_NOW as NOW, run_object, run_succeeded_event, stripe_event};

pub const ACCOUNT_A: &str = "acct_1EventBridgeA000";
pub const ACCOUNT_B: &str = "acct_1EventBridgeB000";
pub const DESTINATION_A: &str = "ed_test_61EventBridgeDestinationA";
pub const DESTINATION_B: &str = "ed_test_61EventBridgeDestinationB";
pub const WEBHOOK_SECRET_A: &str = "whsec_eventbridge_tests_a";

pub type Service = WebhookService<DynamoLedger, SqsQueue, SqsQueue>;

pub struct Stack {
    pub sqs: aws_sdk_sqs::Client,
    pub ledger: DynamoLedger,
    pub download_url: String,
    pub schedule_url: String,
}

pub async fn stack() -> Stack {
    let sdk = test_support::local_aws().await;
    let ledger = test_support::ledger(&sdk).await;
    let (sqs, download_url) = test_support::queue(&sdk, "eb-dl").await;
    let (_, schedule_url) = test_support::queue(&sdk, "eb-sched").await;
    Stack {
        sqs,
        ledger,
        download_url,
        schedule_url,
    }
}

pub fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

impl Stack {
    /// A service over `accounts` (the `accounts` JSON shape), taken as
    /// configured, with two configured report types.
    pub fn service(&self, accounts: Value) -> Service {
        let accounts = StripeAccounts::from_accounts_json(&accounts.to_string()).unwrap();
        WebhookService::with_accounts(
            self.ledger.clone(),
            SqsQueue::new(self.sqs.clone(), &self.download_url),
            SqsQueue::new(self.sqs.clone(), &self.schedule_url),
            Arc::new(Accounts::trusted(accounts)),
            vec![
                ReportSpec::new("balance.summary.1"),
                ReportSpec::new("payouts.itemized.3"),
            ],
        )
    }

    /// Accounts A and B, each with its own destination (and A with a
    /// webhook secret, for the deliveries that come both ways).
    pub fn two_accounts(&self) -> Service {
        self.service(json!([
            {"account": ACCOUNT_A, "api_key": "sk_test_eb_a", "webhook_secret": WEBHOOK_SECRET_A,
             "event_destination": DESTINATION_A},
            {"account": ACCOUNT_B, "api_key": "sk_test_eb_b", "event_destination": DESTINATION_B},
        ]))
    }

    pub async fn drain(&self, url: &str) -> Vec<Value> {
        test_support::drain(&self.sqs, url).await
    }

    pub async fn status(&self, run_id: &str) -> Option<RunStatus> {
        self.ledger.run(run_id).await.unwrap().map(|r| r.status)
    }

    /// Whether the ledger holds a claim (or a done mark) for the event.
    pub async fn event_claimed(&self, event_id: &str) -> bool {
        let pk = format!("event#{event_id}");
        let sdk = test_support::local_aws().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        dynamo
            .get_item()
            .table_name(self.ledger.table())
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .is_some()
    }
}

/// An EventBridge event from `destination` carrying the Stripe event `detail`
/// (a JSON text), with EventBridge's id `eventbridge_id`.
pub fn bridged(eventbridge_id: &str, destination: &str, detail: &str) -> String {
    bridged_from(
        eventbridge_id,
        &format!("aws.partner/stripe.com/{destination}"),
        detail,
    )
}

pub fn bridged_from(eventbridge_id: &str, source: &str, detail: &str) -> String {
    let detail: Value = serde_json::from_str(detail).unwrap();
    json!({
        "version": "0", "id": eventbridge_id, "detail-type": detail["type"], "source": source,
        "account": "123456789012", "time": "2026-11-29T12:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1::event-source/{source}")],
        "detail": detail,
    })
    .to_string()
}

/// An SQS batch whose messages are `bodies`, with ids `m0`, `m1`, …
pub fn batch(bodies: &[&str]) -> SqsEvent {
    let ids: Vec<String> = (0..bodies.len()).map(|index| format!("m{index}")).collect();
    let pairs: Vec<(&str, &str)> = ids
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().copied())
        .collect();
    test_support::sqs_batch(&pairs)
}

/// The ids of the messages the batch answer asks SQS to deliver again.
pub async fn failed_ids(service: &Service, bodies: &[&str]) -> Vec<String> {
    let response = eventbridge::handle_batch(service, batch(bodies), NOW).await;
    response
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect()
}

pub fn type_updated(event_id: &str, report_type: &str) -> String {
    stripe_event(
        event_id,
        "reporting.report_type.updated",
        json!({"id": report_type, "object": "reporting.report_type", "name": "Balance summary",
               "data_available_start": 1_700_000_000, "data_available_end": 1_795_996_800,
               "default_columns": null, "livemode": false, "updated": NOW, "version": 1}),
    )
}
