//! The webhook's answer metrics end to end: `stripe-reports invoke webhook`
//! runs the handler as Lambda does and prints its EMF lines on stdout before
//! the answer; each delivery carries `WebhookAccepted`, `WebhookRejected` and
//! `WebhookFailed`, exactly one of them 1, in namespace `StripeReports` with
//! `Function=webhook` (what the alarms and the dashboard read).

use std::process::Command;

use serde_json::Value;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::signature_header;
use test_support::{Clock, emulator, event_file, ledger, local_aws, queue, unique};

const SECRET: &str = "whsec_cli_metrics_tests";
const KEY: &str = "sk_test_cli_metrics_tests";

/// Runs `invoke webhook` on `event`; the parsed stdout lines.
fn invoke(event: &Value, env: &[(&str, String)]) -> Vec<Value> {
    let path = std::env::temp_dir().join(format!("{}.json", unique("webhook-event")));
    std::fs::write(&path, event.to_string()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_stripe-reports"));
    command.env_clear().env("RUST_LOG", "off");
    for name in [
        "PATH",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    let output = command
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .args(["invoke", "webhook", "--event"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect()
}

/// The one EMF document among `lines`, and the answer (the last line).
fn metrics_and_status(lines: &[Value]) -> (Value, u64) {
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 1, "{lines:?}");
    let answer = lines.last().unwrap();
    (emf[0].clone(), answer["statusCode"].as_u64().unwrap())
}

// Several threads: the emulator answers the invoked process while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_emits_accepted_rejected_and_failed() {
    let sdk = local_aws().await;
    let table = ledger(&sdk).await;
    let (_, download_url) = queue(&sdk, "dl").await;
    let (_, schedule_url) = queue(&sdk, "sched").await;
    // The account a delivery is for is the one whose secret verifies it; the
    // one-account configuration learns its id from its key at cold start.
    let stripe = emulator(
        KEY,
        stripe_emulator::config::default_report_types(),
        std::time::Duration::from_millis(100),
    )
    .await;
    let env = |download: &str| {
        vec![
            ("STRIPE_API_KEY", KEY.to_owned()),
            ("STRIPE_API_BASE", stripe.base_url()),
            ("STRIPE_WEBHOOK_SECRET", SECRET.to_owned()),
            ("RUNS_TABLE", table.table().to_owned()),
            ("DOWNLOAD_QUEUE_URL", download.to_owned()),
            ("SCHEDULE_QUEUE_URL", schedule_url.clone()),
        ]
    };
    // The sample event, signed now with the test's secret.
    let sample = event_file("webhook-report-run-succeeded.json");
    let mut fresh = sample.clone();
    let body = sample["body"].as_str().unwrap();
    fresh["headers"]["stripe-signature"] = Value::String(signature_header(
        &[SecretString::new(SECRET)],
        Clock::read().now,
        body.as_bytes(),
    ));

    let cases = [
        // The download queue is missing: 500, and Stripe delivers again.
        (
            &fresh,
            env(&format!("{download_url}-missing")),
            500,
            "WebhookFailed",
        ),
        (&fresh, env(&download_url), 200, "WebhookAccepted"),
        // Signed with another secret, long ago: 400.
        (&sample, env(&download_url), 400, "WebhookRejected"),
    ];
    for (event, env, status, counted) in cases {
        let (emf, answered) = metrics_and_status(&invoke(event, &env));
        assert_eq!(answered, status);
        let definition = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(definition["Namespace"], "StripeReports");
        assert_eq!(definition["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(emf["Function"], "webhook");
        for name in ["WebhookAccepted", "WebhookRejected", "WebhookFailed"] {
            let expected = if name == counted { 1.0 } else { 0.0 };
            assert_eq!(
                emf[name].as_f64(),
                Some(expected),
                "{name} for a {status}: {emf}"
            );
            assert!(
                definition["Metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["Name"] == name && m["Unit"] == "Count"),
                "{definition}"
            );
        }
    }
}
