//! Helpers of the webhook tests: moto-backed stack, signed events, API Gateway requests.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use serde_json::{Value, json};
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::signature_header;
use stripe_reports::ports::Ledger;
use stripe_reports::webhook::WebhookService;
use webhook::handle_at;

pub const SECRET: &str = "whsec_webhook_tests_7f3a";
pub const NOW: i64 = test_support::EVENT_NOW;
/// The secret the README's local configuration uses (events/ are signed with it).
pub const README_SECRET: &str = "whsec_stripe_reports_local";
/// The account of the one-account services (the emulator's default id).
pub const ACCOUNT: &str = test_support::ACCOUNT;

pub fn account() -> AccountId {
    test_support::account()
}

pub fn id(text: &str) -> AccountId {
    AccountId::parse(text).expect("account id")
}

pub struct Stack {
    pub sqs: aws_sdk_sqs::Client,
    pub ledger: DynamoLedger,
    pub download_url: String,
    pub schedule_url: String,
}

pub async fn stack() -> Stack {
    let sdk = test_support::local_aws().await;
    let ledger = test_support::ledger(&sdk).await;
    let (sqs, download_url) = test_support::queue(&sdk, "dl").await;
    let (_, schedule_url) = test_support::queue(&sdk, "sched").await;
    Stack {
        sqs,
        ledger,
        download_url,
        schedule_url,
    }
}

pub type Service = WebhookService<DynamoLedger, SqsQueue, SqsQueue>;

impl Stack {
    pub fn service_with(&self, secrets: &[&str], download_url: &str) -> Service {
        WebhookService::new(
            self.ledger.clone(),
            SqsQueue::new(self.sqs.clone(), download_url),
            SqsQueue::new(self.sqs.clone(), &self.schedule_url),
            account(),
            secrets.iter().map(|s| SecretString::new(*s)).collect(),
            [
                "balance.summary.1".to_owned(),
                "payouts.itemized.3".to_owned(),
            ],
        )
    }

    pub fn service(&self) -> Service {
        self.service_with(&[SECRET], &self.download_url)
    }

    /// Every message on the queue at `url`, received and deleted.
    pub async fn drain(&self, url: &str) -> Vec<Value> {
        test_support::drain(&self.sqs, url).await
    }

    pub async fn status(&self, run_id: &str) -> Option<RunStatus> {
        self.ledger.run(run_id).await.unwrap().map(|r| r.status)
    }
}

pub use test_support::{run_object, run_succeeded_event as succeeded, stripe_event as event};

pub use test_support::python;

/// Stripe's official Python library, kept running for the tests of one
/// binary: it reads one JSON line `{"payload", "secret", "t"}` at a time and
/// answers the `Stripe-Signature` header
/// `stripe.WebhookSignature.generate_signature_header` makes.
struct StripePython {
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    _child: std::process::Child,
}

const SIGNER: &str = "import json, sys, stripe\n\
    for line in sys.stdin:\n\
    \x20   case = json.loads(line)\n\
    \x20   header = stripe.WebhookSignature.generate_signature_header(case['payload'], case['secret'], timestamp=case['t'])\n\
    \x20   sys.stdout.write(header + '\\n')\n\
    \x20   sys.stdout.flush()\n";

/// The `Stripe-Signature` header Stripe's official Python library makes for
/// `body` with `secret` at `t`: these tests do not sign with the code they test.
pub fn sign_with_stripe_python(body: &str, secret: &str, t: i64) -> String {
    static SIGNER_PROCESS: OnceLock<Mutex<StripePython>> = OnceLock::new();
    let signer = SIGNER_PROCESS.get_or_init(|| {
        let mut child = Command::new(python())
            .args(["-c", SIGNER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python (the repository's .venv, or $STRIPE_REPORTS_PYTHON)");
        Mutex::new(StripePython {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            _child: child,
        })
    });
    let mut signer = signer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let case = json!({"payload": body, "secret": secret, "t": t});
    writeln!(signer.stdin, "{case}").expect("write to stripe-python");
    signer.stdin.flush().expect("flush");
    let mut header = String::new();
    signer
        .stdout
        .read_line(&mut header)
        .expect("read stripe-python's header");
    let header = header.trim_end().to_owned();
    assert!(
        header.starts_with(&format!("t={t},v1=")),
        "stripe-python could not sign (is the stripe library installed?): {header:?}"
    );
    header
}

pub fn sign(body: &str, secrets: &[&str], t: i64) -> String {
    let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::new(*s)).collect();
    signature_header(&secrets, t, body.as_bytes())
}

/// An API Gateway HTTP API (payload v2) event, parsed by lambda_http.
pub fn v2(body: &str, signature: Option<&str>, base64: bool) -> lambda_http::Request {
    let mut headers = json!({"content-type": "application/json"});
    if let Some(sig) = signature {
        headers["Stripe-Signature"] = json!(sig);
    }
    let body_field = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        body.to_owned()
    };
    let event = json!({
        "version": "2.0", "routeKey": "POST /webhooks/stripe", "rawPath": "/webhooks/stripe", "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": {"method": "POST", "path": "/webhooks/stripe", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "Stripe/1.0"},
            "requestId": "r", "routeKey": "POST /webhooks/stripe", "stage": "$default", "time": "29/Nov/2026:12:00:00 +0000", "timeEpoch": 0},
        "body": body_field, "isBase64Encoded": base64,
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// An API Gateway REST API (v1 proxy) event.
pub fn v1(body: &str, signature: &str) -> lambda_http::Request {
    let event = json!({
        "resource": "/webhooks/stripe", "path": "/webhooks/stripe", "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "Stripe-Signature": signature},
        "multiValueHeaders": {"Content-Type": ["application/json"], "Stripe-Signature": [signature]},
        "queryStringParameters": null, "multiValueQueryStringParameters": null, "pathParameters": null,
        "stageVariables": null,
        "requestContext": {"accountId": "123456789012", "resourceId": "x", "stage": "prod", "requestId": "r",
            "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/webhooks/stripe", "httpMethod": "POST", "apiId": "api"},
        "body": body, "isBase64Encoded": false,
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

pub async fn status_of(service: &Service, request: lambda_http::Request, now: i64) -> (u16, Value) {
    let response = handle_at(service, request, now).await;
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (response.status().as_u16(), body)
}
