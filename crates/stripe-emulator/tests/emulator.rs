//! The emulator's own knobs: seeded random decisions, idempotency keys moved
//! past their window, absurd fault values, and the webhook delivery log.

use std::time::Duration;

use serde_json::{Value, json};
use stripe_emulator::{Emulator, EmulatorConfig, ErrorStorm, Faults, WebhookConfig};

const KEY: &str = "sk_test_emulator";

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn storm(fraction: f64, seconds: f64) -> ErrorStorm {
    ErrorStorm {
        status: 429,
        fraction,
        should_retry: None,
        seconds,
    }
}

/// The statuses of `n` API requests made one after another.
async fn statuses(emulator: &Emulator, n: usize) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let response = http
            .get(format!("{}/v1/reporting/report_types", emulator.base_url()))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        out.push(response.status().as_u16());
    }
    out
}

async fn create(emulator: &Emulator, key: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/v1/reporting/report_runs", emulator.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", key)
        .form(&[("report_type", "balance.summary.1")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_seed_makes_the_same_storm_decisions() {
    let faults = |seed| Faults {
        storm: Some(storm(0.5, 60.0)),
        seed,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for seed in [Some(7), Some(7), Some(8)] {
        let emulator = start(EmulatorConfig::default()).await;
        emulator.set_faults(faults(seed));
        runs.push(statuses(&emulator, 40).await);
    }
    // Seeded by the configuration instead, with no draw before the storm.
    let emulator = start(EmulatorConfig {
        seed: Some(7),
        ..EmulatorConfig::default()
    })
    .await;
    emulator.set_faults(faults(None));
    runs.push(statuses(&emulator, 40).await);

    assert!(
        runs[0].contains(&429) && runs[0].contains(&200),
        "a storm of half the requests: {:?}",
        runs[0]
    );
    assert_eq!(runs[0], runs[1], "the same seed, the same decisions");
    assert_ne!(runs[0], runs[2], "another seed, other decisions");
    assert_eq!(
        runs[0], runs[3],
        "the configured seed is the same generator"
    );
}

#[tokio::test]
async fn expired_idempotency_keys_make_a_new_run() {
    let emulator = start(EmulatorConfig::default()).await;
    let first = create(&emulator, "request#k").await;
    let replayed = create(&emulator, "request#k").await;
    assert_eq!(first["id"], replayed["id"], "replayed within the window");

    assert_eq!(emulator.expire_idempotency_keys(), 1);
    let after = create(&emulator, "request#k").await;
    assert_ne!(first["id"], after["id"], "a new run once the key expired");

    // The admin route does the same.
    let expired: Value = reqwest::Client::new()
        .post(format!(
            "{}/_emulator/idempotency/expire",
            emulator.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(expired, json!({"expired": 1}));
    let again = create(&emulator, "request#k").await;
    assert_ne!(after["id"], again["id"]);
    let stats = emulator.stats();
    assert_eq!((stats.runs_created, stats.idempotent_replays), (3, 1));
}

#[tokio::test]
async fn absurd_storm_lengths_do_not_panic() {
    let emulator = start(EmulatorConfig::default()).await;
    for seconds in [f64::INFINITY, f64::MAX, 1e300, f64::NAN, -5.0] {
        emulator.set_faults(Faults {
            storm: Some(storm(1.0, seconds)),
            ..Faults::default()
        });
    }
    // The same through the admin route (JSON has no infinity; 1e308 overflows a Duration).
    let answer = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emulator.base_url()))
        .json(&json!({"storm": {"status": 429, "fraction": 1.0, "seconds": 1e308}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(statuses(&emulator, 2).await, [429, 429], "a storm (capped)");
}

#[tokio::test]
async fn webhook_deliveries_are_logged_with_their_answer() {
    // An endpoint answering 400 to the first request, 200 to the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::BAD_REQUEST
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let emulator = start(EmulatorConfig {
        run_delay: Duration::from_millis(10),
        webhook: Some(WebhookConfig {
            url,
            secrets: vec!["whsec_test".into()],
            max_attempts: 3,
            retry_delay: Duration::from_millis(10),
        }),
        ..EmulatorConfig::default()
    })
    .await;
    create(&emulator, "k").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while emulator.webhook_deliveries().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = emulator.webhook_deliveries();
    let answers: Vec<(u32, u32, Option<u16>)> =
        log.iter().map(|d| (d.copy, d.attempt, d.status)).collect();
    assert_eq!(answers, [(0, 1, Some(400)), (0, 2, Some(200))]);
    assert!(
        log.iter()
            .all(|d| d.event_type == "reporting.report_run.succeeded")
    );
    let routed: Value = reqwest::get(format!("{}/_emulator/webhooks", emulator.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(routed.as_array().map(Vec::len), Some(2));
    assert_eq!(routed[1]["status"], 200);
}
