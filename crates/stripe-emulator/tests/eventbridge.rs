//! Events delivered in Amazon EventBridge's shape: the envelope as Stripe's
//! event destination and EventBridge make it (checked against a webhook of
//! the same event, against the API's copy of the event and against Stripe's
//! official Python library, which unwraps it), each account's events from
//! its own destination, duplicates as new EventBridge events around the
//! same Stripe event, the switch, retries, the log and the counters.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stripe_emulator::{
    AccountConfig, Emulator, EmulatorConfig, EventBridgeConfig, Faults, WebhookConfig,
};

const A: &str = "acct_1AlphaAccount00001";
const KEY_A: &str = "sk_test_alpha_0123456789abcdef";
const DESTINATION_A: &str = "ed_test_61AlphaDestination0001";
const B: &str = "acct_1BetaAccount000002";
const KEY_B: &str = "sk_test_beta_0123456789abcdef";

/// An endpoint answering each POST with the next of `answers` (then 200),
/// keeping every body it received.
struct Target {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Target {
    async fn start(answers: Vec<u16>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/eventbridge/events",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let seen = Arc::new(AtomicU32::new(0));
        let app = axum::Router::new().route(
            "/eventbridge/events",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                let seen = seen.clone();
                let answers = answers.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    let n = seen.fetch_add(1, Ordering::SeqCst) as usize;
                    let status = answers.get(n).copied().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    /// The bodies received, once there are at least `n`.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bodies = self.bodies.lock().unwrap().clone();
            if bodies.len() >= n {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} deliveries",
                bodies.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn received(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

fn eventbridge(url: &str) -> Option<EventBridgeConfig> {
    Some(EventBridgeConfig {
        url: url.to_owned(),
        max_attempts: 3,
        retry_delay: Duration::from_millis(10),
    })
}

/// A with its own event destination, B with the default one.
fn two_accounts(target: &Target) -> EmulatorConfig {
    EmulatorConfig {
        accounts: vec![
            AccountConfig {
                event_destination: Some(DESTINATION_A.to_owned()),
                ..AccountConfig::new(A, KEY_A)
            },
            AccountConfig::new(B, KEY_B),
        ],
        run_delay: Duration::from_millis(10),
        eventbridge: eventbridge(&target.url),
        ..EmulatorConfig::default()
    }
}

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Creates a run of `report_type` with `key`: the run.
async fn create(emulator: &Emulator, key: &str, report_type: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/reporting/report_runs", emulator.base_url()))
        .bearer_auth(key)
        .form(&[("report_type", report_type)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn get(emulator: &Emulator, key: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", emulator.base_url()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `8-4-4-4-12` lowercase hex, version 4, RFC 4122 variant.
fn is_uuid_v4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

/// The envelope's fields, checked against `destination` (the source) and
/// the time window it was made in; its `detail`.
fn check_envelope(envelope: &Value, destination: &str, after: i64, before: i64) -> Value {
    let keys: Vec<&str> = envelope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "account",
            "detail",
            "detail-type",
            "id",
            "region",
            "resources",
            "source",
            "time",
            "version"
        ]
    );
    assert_eq!(envelope["version"], "0");
    assert!(
        is_uuid_v4(envelope["id"].as_str().unwrap()),
        "{}",
        envelope["id"]
    );
    let source = format!("aws.partner/stripe.com/{destination}");
    assert_eq!(envelope["source"], source.as_str());
    assert_eq!(envelope["account"], "123456789012");
    assert_eq!(envelope["region"], "us-east-1");
    assert_eq!(
        envelope["resources"],
        json!([format!(
            "arn:aws:events:us-east-1:123456789012:event-source/{source}"
        )])
    );
    let time = envelope["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-08-01T12:00:00Z".len(), "{time}");
    let at: jiff::Timestamp = time.parse().unwrap();
    assert!(time.ends_with('Z') && at.subsec_nanosecond() == 0, "{time}");
    assert!((after..=before).contains(&at.as_second()), "{time}");
    let detail = envelope["detail"].clone();
    assert_eq!(detail["object"], "event");
    assert_eq!(envelope["detail-type"], detail["type"]);
    detail
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn each_accounts_events_arrive_in_eventbridges_shape_from_its_destination() {
    let target = Target::start(Vec::new()).await;
    let hooks = Target::start(Vec::new()).await;
    let emulator = start(EmulatorConfig {
        webhook: Some(WebhookConfig {
            url: hooks.url.clone(),
            secrets: vec!["whsec_test".into()],
            max_attempts: 1,
            retry_delay: Duration::from_millis(10),
        }),
        ..two_accounts(&target)
    })
    .await;
    assert_eq!(
        emulator.event_destination_of(A).as_deref(),
        Some(DESTINATION_A)
    );
    assert_eq!(
        emulator.event_destination_of(B).as_deref(),
        Some("ed_test_1BetaAccount000002")
    );
    let after = unix_now();
    let run_a = create(&emulator, KEY_A, "balance.summary.1").await;
    let run_b = create(&emulator, KEY_B, "payouts.itemized.3").await;
    let envelopes = target.wait_for(2).await;
    let before = unix_now();
    assert_eq!(envelopes.len(), 2);
    let webhooks = hooks.wait_for(2).await;
    for envelope in &envelopes {
        let run = &envelope["detail"]["data"]["object"];
        let (destination, key) = if run["id"] == run_a["id"] {
            (DESTINATION_A, KEY_A)
        } else {
            assert_eq!(run["id"], run_b["id"]);
            ("ed_test_1BetaAccount000002", KEY_B)
        };
        let detail = check_envelope(envelope, destination, after, before);
        assert_eq!(detail["type"], "reporting.report_run.succeeded");
        assert_eq!(detail["data"]["object"]["status"], "succeeded");
        // The same v1 Event the webhook carries and the API serves.
        assert!(
            webhooks.contains(&detail),
            "the webhook body of {}",
            detail["id"]
        );
        let path = format!("/v1/events/{}", detail["id"].as_str().unwrap());
        assert_eq!(get(&emulator, key, &path).await, detail);
    }
    assert_ne!(envelopes[0]["id"], envelopes[1]["id"]);

    // An update of a report type is sent too, from the account it happened in.
    assert!(emulator.set_data_available_end_in(B, "payouts.itemized.3", 1_700_006_400));
    let envelopes = target.wait_for(3).await;
    let detail = check_envelope(
        &envelopes[2],
        "ed_test_1BetaAccount000002",
        after,
        unix_now(),
    );
    assert_eq!(detail["type"], "reporting.report_type.updated");
    assert_eq!(
        detail["data"]["object"]["data_available_end"],
        1_700_006_400
    );

    let stats = emulator.stats();
    assert_eq!(
        (stats.eventbridge_deliveries, stats.eventbridge_failures),
        (3, 0)
    );
}

#[tokio::test]
async fn duplicates_are_new_eventbridge_events_around_the_same_stripe_event() {
    let target = Target::start(Vec::new()).await;
    let emulator = start(two_accounts(&target)).await;
    emulator.set_faults(Faults {
        webhook_duplicates: 2,
        webhook_shuffle_ms: 50,
        ..Faults::default()
    });
    let run = create(&emulator, KEY_A, "balance.summary.1").await;
    let envelopes = target.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(target.received().len(), 3, "three copies, no more");
    let mut ids: Vec<&str> = envelopes
        .iter()
        .map(|envelope| envelope["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "a new envelope id for each copy");
    let event_id = &envelopes[0]["detail"]["id"];
    for envelope in &envelopes {
        assert_eq!(
            envelope["source"],
            format!("aws.partner/stripe.com/{DESTINATION_A}")
        );
        assert_eq!(&envelope["detail"]["id"], event_id);
        assert_eq!(envelope["detail"]["data"]["object"]["id"], run["id"]);
    }
    let log = emulator.eventbridge_deliveries();
    let mut copies: Vec<u32> = log.iter().map(|d| d.delivery.copy).collect();
    copies.sort();
    assert_eq!(copies, [0, 1, 2]);
    let mut logged_ids: Vec<&str> = log.iter().map(|d| d.eventbridge_id.as_str()).collect();
    logged_ids.sort();
    assert_eq!(logged_ids, ids);
    assert!(
        log.iter()
            .all(|d| d.delivery.event == *event_id && d.delivery.account == A)
    );
}

#[tokio::test]
async fn eventbridge_enabled_false_stops_it_and_not_the_webhook() {
    let target = Target::start(Vec::new()).await;
    let hooks = Target::start(Vec::new()).await;
    let emulator = start(EmulatorConfig {
        webhook: Some(WebhookConfig {
            url: hooks.url.clone(),
            secrets: vec!["whsec_test".into()],
            max_attempts: 1,
            retry_delay: Duration::from_millis(10),
        }),
        ..two_accounts(&target)
    })
    .await;
    emulator.set_faults(Faults {
        eventbridge_enabled: false,
        ..Faults::default()
    });
    create(&emulator, KEY_A, "balance.summary.1").await;
    hooks.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(target.received().is_empty(), "nothing sent to EventBridge");
    assert!(emulator.eventbridge_deliveries().is_empty());
    assert_eq!(emulator.stats().eventbridge_deliveries, 0);

    // And the other way round: webhooks off, EventBridge on (through the
    // admin route, as JSON).
    let answer = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emulator.base_url()))
        .json(&json!({"webhooks_enabled": false, "eventbridge_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    create(&emulator, KEY_B, "balance.summary.1").await;
    target.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hooks.received().len(), 1, "no second webhook");
    assert_eq!(target.received().len(), 1);
}

#[tokio::test]
async fn a_non_2xx_answer_is_retried_logged_and_counted() {
    // 500, then 429, then 200.
    let target = Target::start(vec![500, 429]).await;
    let emulator = start(two_accounts(&target)).await;
    create(&emulator, KEY_B, "balance.summary.1").await;
    let envelopes = target.wait_for(3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while emulator.eventbridge_deliveries().len() < 3 {
        assert!(Instant::now() < deadline, "attempts not logged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Each attempt of the one copy is the same EventBridge event.
    assert!(envelopes.iter().all(|envelope| *envelope == envelopes[0]));
    let log = emulator.eventbridge_deliveries();
    let attempts: Vec<(u32, u32, Option<u16>)> = log
        .iter()
        .map(|d| (d.delivery.copy, d.delivery.attempt, d.delivery.status))
        .collect();
    assert_eq!(
        attempts,
        [(0, 1, Some(500)), (0, 2, Some(429)), (0, 3, Some(200))]
    );
    assert!(log.iter().all(|d| d.eventbridge_id == envelopes[0]["id"]
        && d.delivery.event == envelopes[0]["detail"]["id"]
        && d.delivery.event_type == "reporting.report_run.succeeded"
        && d.delivery.account == B
        && d.delivery.error.is_none()));
    let stats = emulator.stats();
    assert_eq!(
        (stats.eventbridge_deliveries, stats.eventbridge_failures),
        (3, 2)
    );
    assert_eq!(stats.webhook_deliveries, 0, "no webhook configured");

    let base = emulator.base_url();
    let routed: Value = reqwest::get(format!("{base}/_emulator/eventbridge"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(routed, json!(log));
    assert_eq!(routed[0]["status"], 500);
    assert_eq!(routed[2]["eventbridge_id"], envelopes[0]["id"]);
    for field in ["account", "event", "event_type", "copy", "attempt", "error"] {
        assert!(routed[0].get(field).is_some(), "{field}");
    }
    let stats: Value = reqwest::get(format!("{base}/_emulator/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["eventbridge_deliveries"], 3);
    assert_eq!(stats["eventbridge_failures"], 2);
}

#[tokio::test]
async fn an_unreachable_target_is_retried_with_the_error_logged() {
    // A port nobody listens on (bound, then released).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/eventbridge/events",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let emulator = start(EmulatorConfig {
        eventbridge: Some(EventBridgeConfig {
            url,
            max_attempts: 2,
            retry_delay: Duration::from_millis(10),
        }),
        run_delay: Duration::from_millis(10),
        ..EmulatorConfig::default()
    })
    .await;
    create(&emulator, "sk_test_emulator", "balance.summary.1").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while emulator.eventbridge_deliveries().len() < 2 {
        assert!(Instant::now() < deadline, "attempts not logged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = emulator.eventbridge_deliveries();
    assert_eq!(log.len(), 2, "max_attempts");
    assert!(
        log.iter()
            .all(|d| d.delivery.status.is_none() && d.delivery.error.is_some())
    );
    assert_eq!(emulator.stats().eventbridge_failures, 2);
}

#[tokio::test]
async fn the_same_seed_makes_the_same_envelope_ids() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let target = Target::start(Vec::new()).await;
        let emulator = start(EmulatorConfig {
            seed: Some(17),
            ..two_accounts(&target)
        })
        .await;
        emulator.set_faults(Faults {
            webhook_duplicates: 1,
            ..Faults::default()
        });
        create(&emulator, KEY_A, "balance.summary.1").await;
        target.wait_for(2).await;
        let mut ids: Vec<(u32, String)> = emulator
            .eventbridge_deliveries()
            .into_iter()
            .map(|d| (d.delivery.copy, d.eventbridge_id))
            .collect();
        ids.sort();
        runs.push(ids);
    }
    assert_eq!(runs[0].len(), 2);
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn an_accounts_event_destination_is_configured_or_derived() {
    let account: AccountConfig = serde_json::from_value(json!({
        "id": A, "api_key": KEY_A, "event_destination": DESTINATION_A
    }))
    .unwrap();
    assert_eq!(account.event_destination_id(false), DESTINATION_A);
    let account: AccountConfig =
        serde_json::from_value(json!({"id": "acct_1EmulatorDefault00", "api_key": "k"})).unwrap();
    assert_eq!(account.event_destination, None);
    assert_eq!(
        account.event_destination_id(false),
        "ed_test_1EmulatorDefault00"
    );
    assert_eq!(account.event_destination_id(true), "ed_1EmulatorDefault00");
    let unknown = serde_json::from_value::<AccountConfig>(json!({
        "id": A, "api_key": KEY_A, "event_destinations": DESTINATION_A
    }));
    assert!(unknown.is_err(), "unknown fields are still refused");
    let faults: Faults = serde_json::from_value(json!({})).unwrap();
    assert!(faults.eventbridge_enabled, "on by default");
}

// ---- Stripe's official Python library ----

/// The Python of the repository's virtualenv (it has Stripe's official
/// `stripe` library), or `$STRIPE_REPORTS_PYTHON`.
fn python() -> PathBuf {
    std::env::var("STRIPE_REPORTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        })
}

/// Reads one EventBridge event on stdin, unwraps it as Stripe's libraries do
/// (`construct_event_without_verification` takes the envelope's `detail`)
/// and prints what the library made of it.
const UNWRAP: &str = "import json, sys, stripe\n\
    payload = sys.stdin.read()\n\
    event = stripe.Webhook.construct_event_without_verification(payload)\n\
    print(json.dumps({'class': type(event).__name__, 'id': event.id, 'type': event.type,\n\
    \x20   'object': event.data.object.id, 'status': event.data.object.status,\n\
    \x20   'version': stripe.VERSION}))\n";

#[tokio::test]
async fn stripes_python_library_unwraps_the_envelope_to_the_event() {
    let target = Target::start(Vec::new()).await;
    let emulator = start(two_accounts(&target)).await;
    let run = create(&emulator, KEY_A, "balance.summary.1").await;
    let envelope = target.wait_for(1).await.remove(0);
    let mut child = Command::new(python())
        .args(["-c", UNWRAP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python (the repository's .venv, or $STRIPE_REPORTS_PYTHON)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(envelope.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "stripe-python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let made: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(made["class"], "Event", "{made}");
    assert_eq!(made["id"], envelope["detail"]["id"]);
    assert_eq!(made["type"], "reporting.report_run.succeeded");
    assert_eq!(made["type"], envelope["detail-type"]);
    assert_eq!(made["object"], run["id"]);
    assert_eq!(made["status"], "succeeded");
}
