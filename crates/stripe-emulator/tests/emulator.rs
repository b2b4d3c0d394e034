//! The emulator's own knobs: seeded random decisions, idempotency keys moved
//! past their window, absurd fault values, and the webhook delivery log; its
//! accounts: one key each, which sees only its own account's objects, with
//! its own rate limit, faults and webhook secrets; and its report files, as
//! Stripe documents them, read over HTTP with a strict CSV reader.

use std::time::Duration;

use serde_json::{Value, json};
use stripe_emulator::{
    AccountConfig, Emulator, EmulatorConfig, ErrorStorm, Faults, Injection, ReportTypeConfig,
    WebhookConfig,
};

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
        ..ErrorStorm::default()
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

// ---- Several accounts ----

const A: &str = "acct_1AlphaAccount00001";
const KEY_A: &str = "sk_test_alpha_0123456789abcdef";
const SECRET_A: &str = "whsec_alpha";
const B: &str = "acct_1BetaAccount000002";
const KEY_B: &str = "sk_test_beta_0123456789abcdef";
const SECRET_B: &str = "whsec_beta";

/// A with the shared report types, B with only `payouts.itemized.3`; each
/// with its own webhook secret.
fn two_accounts() -> EmulatorConfig {
    EmulatorConfig {
        accounts: vec![
            AccountConfig {
                webhook_secrets: vec![SECRET_A.into()],
                ..AccountConfig::new(A, KEY_A)
            },
            AccountConfig {
                webhook_secrets: vec![SECRET_B.into()],
                report_types: Some(vec![ReportTypeConfig::new("payouts.itemized.3")]),
                ..AccountConfig::new(B, KEY_B)
            },
        ],
        run_delay: Duration::from_millis(10),
        ..EmulatorConfig::default()
    }
}

/// `GET path` with `key`: the status and the JSON body.
async fn get(emulator: &Emulator, key: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", emulator.base_url()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a run of `report_type` with `key`, under `idempotency_key`.
async fn create_in(
    emulator: &Emulator,
    key: &str,
    report_type: &str,
    idempotency_key: &str,
) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/reporting/report_runs", emulator.base_url()))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency_key)
        .form(&[("report_type", report_type)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "create {report_type}");
    response.json().await.unwrap()
}

/// The run once it has succeeded, as `key` sees it.
async fn succeeded(emulator: &Emulator, key: &str, run_id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, run) = get(
            emulator,
            key,
            &format!("/v1/reporting/report_runs/{run_id}"),
        )
        .await;
        assert_eq!(status, 200);
        if run["status"] == "succeeded" {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{run_id} still {}",
            run["status"]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_resource_missing((status, body): (u16, Value), what: &str) {
    assert_eq!(status, 404, "{what}: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{what}");
    assert_eq!(body["error"]["code"], "resource_missing", "{what}");
}

#[tokio::test]
async fn one_account_by_default_with_a_stripe_shaped_id() {
    let emulator = start(EmulatorConfig::default()).await;
    assert_eq!(
        emulator.accounts(),
        [("acct_1EmulatorDefault00".to_owned(), KEY.to_owned())]
    );
    let (status, account) = get(&emulator, KEY, "/v1/account").await;
    assert_eq!(status, 200);
    assert_eq!(account["id"], "acct_1EmulatorDefault00");
    assert_eq!(account["object"], "account");
}

#[tokio::test]
async fn get_account_answers_each_keys_own_account() {
    let emulator = start(two_accounts()).await;
    for (id, key) in [(A, KEY_A), (B, KEY_B)] {
        let (status, account) = get(&emulator, key, "/v1/account").await;
        assert_eq!(status, 200);
        assert_eq!(account["id"], id);
        assert_eq!(account["object"], "account");
        assert_eq!(account["type"], "standard");
        assert!(account.get("business_profile").is_some());
        assert!(account["created"].is_i64());
    }
    let (status, _) = get(&emulator, "sk_test_nobody", "/v1/account").await;
    assert_eq!(status, 401);
    assert_eq!(
        emulator.api_key(),
        KEY_A,
        "the first account is the default"
    );
    assert_eq!(emulator.api_key_of(B), Some(KEY_B));
    assert_eq!(emulator.api_key_of("acct_1Nobody"), None);
}

#[tokio::test]
async fn each_key_lists_only_its_own_accounts_objects() {
    let emulator = start(two_accounts()).await;
    let run_a = create_in(&emulator, KEY_A, "balance.summary.1", "a").await;
    let run_b = create_in(&emulator, KEY_B, "payouts.itemized.3", "b").await;
    let run_a = run_a["id"].as_str().unwrap();
    let run_b = run_b["id"].as_str().unwrap();
    succeeded(&emulator, KEY_A, run_a).await;
    succeeded(&emulator, KEY_B, run_b).await;

    let (_, runs_a) = get(&emulator, KEY_A, "/v1/reporting/report_runs").await;
    let (_, runs_b) = get(&emulator, KEY_B, "/v1/reporting/report_runs").await;
    assert_eq!(ids(&runs_a), [run_a]);
    assert_eq!(ids(&runs_b), [run_b]);

    let (_, types_a) = get(&emulator, KEY_A, "/v1/reporting/report_types").await;
    let (_, types_b) = get(&emulator, KEY_B, "/v1/reporting/report_types").await;
    assert_eq!(ids(&types_a).len(), 3, "the shared report types");
    assert_eq!(
        ids(&types_b),
        ["payouts.itemized.3"],
        "B's own report types"
    );

    let (_, events_a) = get(&emulator, KEY_A, "/v1/events").await;
    let (_, events_b) = get(&emulator, KEY_B, "/v1/events").await;
    for (events, run) in [(&events_a, run_a), (&events_b, run_b)] {
        let data = events["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["data"]["object"]["id"], run);
        assert!(data[0].get("account").is_none(), "not a Connect event");
    }

    assert_eq!(emulator.runs_of(A)[0]["id"], run_a);
    assert_eq!(emulator.runs_of(B)[0]["id"], run_b);
    assert_eq!(
        emulator.runs(),
        emulator.runs_of(A),
        "the default account's"
    );
}

#[tokio::test]
async fn another_accounts_objects_are_missing_as_at_stripe() {
    let emulator = start(two_accounts()).await;
    let run_b = create_in(&emulator, KEY_B, "payouts.itemized.3", "b").await;
    let run_b = succeeded(&emulator, KEY_B, run_b["id"].as_str().unwrap()).await;
    let run_id = run_b["id"].as_str().unwrap();
    let file_id = run_b["result"]["id"].as_str().unwrap();
    let (_, events_b) = get(&emulator, KEY_B, "/v1/events").await;
    let event_id = ids(&events_b).remove(0);

    for (key, path, what) in [
        (
            KEY_A,
            format!("/v1/reporting/report_runs/{run_id}"),
            "B's run",
        ),
        (KEY_A, format!("/v1/files/{file_id}"), "B's file"),
        (
            KEY_A,
            format!("/v1/files/{file_id}/contents"),
            "B's file contents",
        ),
        (KEY_A, format!("/v1/events/{event_id}"), "B's event"),
        (
            KEY_B,
            "/v1/reporting/report_types/balance.summary.1".to_owned(),
            "a report type only A has",
        ),
    ] {
        assert_resource_missing(get(&emulator, key, &path).await, what);
    }
    // The same objects with their own account's key.
    let (status, _) = get(&emulator, KEY_B, &format!("/v1/files/{file_id}/contents")).await;
    assert_eq!(status, 200);
    assert!(
        emulator.file_digest(file_id).is_some(),
        "any account's file"
    );
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_account() {
    let emulator = start(two_accounts()).await;
    let first_a = create_in(&emulator, KEY_A, "balance.summary.1", "request#1").await;
    // Another account, other parameters, the same key: a run of its own,
    // neither a replay nor an idempotency error.
    let first_b = create_in(&emulator, KEY_B, "payouts.itemized.3", "request#1").await;
    let replayed_a = create_in(&emulator, KEY_A, "balance.summary.1", "request#1").await;
    assert_ne!(first_a["id"], first_b["id"]);
    assert_eq!(first_a["id"], replayed_a["id"]);
    assert_eq!(emulator.runs_of(A).len(), 1);
    assert_eq!(emulator.runs_of(B).len(), 1);
    let stats = emulator.stats();
    assert_eq!((stats.runs_created, stats.idempotent_replays), (2, 1));
}

#[tokio::test]
async fn each_account_has_its_own_rate_limit() {
    let emulator = start(two_accounts()).await;
    let limit = 3;
    emulator.set_faults(Faults {
        rate_limit_rps: Some(limit),
        ..Faults::default()
    });
    // A spends its budget until it is refused...
    let mut refused = false;
    for _ in 0..20 {
        if get(&emulator, KEY_A, "/v1/account").await.0 == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "A is rate limited");
    // ...and B, right after, still has its own whole budget.
    for _ in 0..limit {
        assert_eq!(get(&emulator, KEY_B, "/v1/account").await.0, 200);
    }
}

/// How many of `n` back-to-back `GET path` requests with `key` are admitted.
async fn admitted(
    client: &reqwest::Client,
    emulator: &Emulator,
    key: &str,
    path: &str,
    n: usize,
) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        let response = client
            .get(format!("{}{path}", emulator.base_url()))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        if response.status() != 429 {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test]
async fn live_keys_have_live_limits_and_each_endpoint_its_own() {
    const LIVE: &str = "sk_live_emulator_live_account";
    let client = reqwest::Client::new();
    // The bursts below must fall within one second: on a machine too busy
    // for that, the scenario is run again on a fresh emulator.
    for _ in 0..3 {
        let emulator = start(EmulatorConfig {
            accounts: vec![AccountConfig::new(A, KEY_A), AccountConfig::new(B, LIVE)],
            ..EmulatorConfig::default()
        })
        .await;
        // Stripe's shape at a tenth of its size: test mode 25/s, live
        // 100/s, each endpoint 25/s; here 3, 10 and 4.
        emulator.set_faults(Faults {
            rate_limit_rps: Some(3),
            live_rate_limit_rps: Some(10),
            endpoint_rate_limit_rps: Some(4),
            ..Faults::default()
        });
        let burst = std::time::Instant::now();
        let types = "/v1/reporting/report_types/balance.summary.1";
        let other_type = "/v1/reporting/report_types/payouts.itemized.3";
        let counts = [
            // The test key: the account's 3 bind before the endpoint's 4.
            admitted(&client, &emulator, KEY_A, "/v1/account", 5).await,
            // The live key: each endpoint's 4 bind before the account's
            // 10 (two report types are one endpoint, `…/report_types/{id}`),
            // another endpoint has its own 4, and the account's 10 still cap.
            admitted(&client, &emulator, LIVE, types, 3).await,
            admitted(&client, &emulator, LIVE, other_type, 2).await,
            admitted(&client, &emulator, LIVE, "/v1/account", 5).await,
            admitted(&client, &emulator, LIVE, "/v1/reporting/report_runs", 3).await,
        ];
        if burst.elapsed() > Duration::from_millis(800) {
            continue;
        }
        assert_eq!(counts, [3, 3, 1, 4, 2]);
        assert_eq!(emulator.stats().rate_limited, 2 + 1 + 1 + 1);
        // A second later every budget is whole again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            admitted(&client, &emulator, LIVE, "/v1/account", 1).await,
            1
        );
        return;
    }
    panic!("three bursts of 18 requests each took longer than 0.8 s");
}

#[tokio::test]
async fn a_revoked_account_is_refused_while_the_other_works() {
    let emulator = start(two_accounts()).await;
    let run_b = create_in(&emulator, KEY_B, "payouts.itemized.3", "b").await;
    let run_b = succeeded(&emulator, KEY_B, run_b["id"].as_str().unwrap()).await;
    emulator.set_faults(Faults {
        revoked_accounts: vec![B.into()],
        ..Faults::default()
    });
    let file_contents = format!(
        "/v1/files/{}/contents",
        run_b["result"]["id"].as_str().unwrap()
    );
    for path in ["/v1/account", "/v1/reporting/report_runs", &file_contents] {
        let (status, body) = get(&emulator, KEY_B, path).await;
        assert_eq!(status, 401, "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("Expired API Key provided: sk_test_"),
            "{message}"
        );
        assert!(
            !message.contains(KEY_B),
            "the key is never echoed: {message}"
        );
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    assert_eq!(emulator.stats().unauthorized, 3);
    assert_eq!(get(&emulator, KEY_A, "/v1/account").await.0, 200);
}

#[tokio::test]
async fn faults_scoped_to_an_account_spare_the_others() {
    let emulator = start(two_accounts()).await;
    emulator.set_faults(Faults {
        inject: vec![Injection {
            path_prefix: "/v1/reporting".into(),
            status: 500,
            times: 2,
            account: Some(B.into()),
            ..Injection::default()
        }],
        ..Faults::default()
    });
    let types = "/v1/reporting/report_types";
    assert_eq!(get(&emulator, KEY_A, types).await.0, 200);
    assert_eq!(get(&emulator, KEY_B, types).await.0, 500);
    assert_eq!(get(&emulator, KEY_A, types).await.0, 200);
    assert_eq!(get(&emulator, KEY_B, types).await.0, 500);
    assert_eq!(get(&emulator, KEY_B, types).await.0, 200, "used up");

    emulator.set_faults(Faults {
        storm: Some(ErrorStorm {
            account: Some(A.into()),
            ..storm(1.0, 60.0)
        }),
        ..Faults::default()
    });
    assert_eq!(get(&emulator, KEY_A, "/v1/account").await.0, 429);
    assert_eq!(get(&emulator, KEY_B, "/v1/account").await.0, 200);
}

/// Whether `header` (`t=..,v1=..[,v1=..]`) carries a valid `v1` of `body` under `secret`.
fn signed_with(header: &str, body: &[u8], secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = Some(t.to_owned()),
            Some(("v1", v1)) => signatures.push(v1.to_owned()),
            _ => {}
        }
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.", timestamp.unwrap()).as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    signatures.contains(&expected)
}

/// An endpoint keeping every delivery as (`Stripe-Signature`, body).
async fn webhook_endpoint() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let signature = headers["stripe-signature"].to_str().unwrap().to_owned();
                    kept.lock().unwrap().push((signature, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn each_accounts_webhooks_are_signed_with_its_own_secret() {
    let (url, received) = webhook_endpoint().await;
    let emulator = start(EmulatorConfig {
        webhook: Some(WebhookConfig {
            url,
            secrets: vec!["whsec_shared".into()],
            max_attempts: 1,
            retry_delay: Duration::from_millis(10),
        }),
        ..two_accounts()
    })
    .await;
    let run_a = create_in(&emulator, KEY_A, "balance.summary.1", "a").await;
    let run_b = create_in(&emulator, KEY_B, "payouts.itemized.3", "b").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = received.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2);
    for (signature, body) in &deliveries {
        let event: Value = serde_json::from_slice(body).unwrap();
        assert!(event.get("account").is_none(), "not a Connect event");
        let run = &event["data"]["object"]["id"];
        let (own, other) = if *run == run_a["id"] {
            (SECRET_A, SECRET_B)
        } else {
            assert_eq!(*run, run_b["id"]);
            (SECRET_B, SECRET_A)
        };
        assert!(
            signed_with(signature, body, own),
            "signed with its account's secret"
        );
        assert!(!signed_with(signature, body, other), "not with the other's");
        assert!(!signed_with(signature, body, "whsec_shared"));
    }
    let mut logged: Vec<String> = emulator
        .webhook_deliveries()
        .into_iter()
        .map(|delivery| delivery.account)
        .collect();
    logged.sort();
    assert_eq!(logged, [A, B]);

    // Rolling B's secret alone: B's next event is signed with the new one,
    // A's still with A's own.
    received.lock().unwrap().clear();
    let rolled = "whsec_beta_rolled".to_owned();
    emulator.set_faults(Faults {
        account_webhook_secrets: Some([(B.to_owned(), vec![rolled.clone()])].into()),
        ..Faults::default()
    });
    for account in [A, B] {
        assert!(emulator.set_data_available_end_in(account, "payouts.itemized.3", 1_700_006_400));
    }
    while received.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = received.lock().unwrap().clone();
    let signed_by = |secret: &str| {
        deliveries
            .iter()
            .filter(|(signature, body)| signed_with(signature, body, secret))
            .count()
    };
    assert_eq!(
        (signed_by(SECRET_A), signed_by(&rolled), signed_by(SECRET_B)),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn the_request_log_names_the_presenting_and_the_owning_account() {
    let emulator = start(two_accounts()).await;
    let run_a = create_in(&emulator, KEY_A, "balance.summary.1", "a").await;
    let run_b = create_in(&emulator, KEY_B, "payouts.itemized.3", "b").await;
    let (run_a, run_b) = (run_a["id"].as_str().unwrap(), run_b["id"].as_str().unwrap());
    get(
        &emulator,
        KEY_A,
        &format!("/v1/reporting/report_runs/{run_a}"),
    )
    .await;
    get(
        &emulator,
        KEY_A,
        &format!("/v1/reporting/report_runs/{run_b}"),
    )
    .await;
    get(
        &emulator,
        KEY_B,
        "/v1/reporting/report_types/payouts.itemized.3",
    )
    .await;
    get(
        &emulator,
        "sk_test_nobody",
        &format!("/v1/reporting/report_runs/{run_b}"),
    )
    .await;

    let seen: Vec<(String, Option<String>, Option<String>)> = emulator
        .requests()
        .into_iter()
        .map(|r| (r.path, r.account, r.object_account))
        .collect();
    let some = |id: &str| Some(id.to_owned());
    assert_eq!(
        seen,
        [
            ("/v1/reporting/report_runs".to_owned(), some(A), None),
            ("/v1/reporting/report_runs".to_owned(), some(B), None),
            (
                format!("/v1/reporting/report_runs/{run_a}"),
                some(A),
                some(A)
            ),
            (
                format!("/v1/reporting/report_runs/{run_b}"),
                some(A),
                some(B)
            ),
            (
                "/v1/reporting/report_types/payouts.itemized.3".to_owned(),
                some(B),
                some(B)
            ),
            (format!("/v1/reporting/report_runs/{run_b}"), None, some(B)),
        ]
    );
    // The check a multi-account test makes: which of A's requests touched
    // another account's object.
    let strays: Vec<String> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.account.as_deref() == Some(A))
        .filter(|r| r.object_account.as_deref().is_some_and(|owner| owner != A))
        .map(|r| r.path)
        .collect();
    assert_eq!(strays, [format!("/v1/reporting/report_runs/{run_b}")]);
}

#[tokio::test]
async fn admin_routes_act_on_the_named_account() {
    let emulator = start(two_accounts()).await;
    create_in(&emulator, KEY_B, "payouts.itemized.3", "b").await;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{}/_emulator/{path}", emulator.base_url());
    let runs: Value = http
        .get(admin(&format!("runs?account={B}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let runs: Value = http
        .get(admin("runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs, json!([]), "the default account, A, has none");

    let moved = http
        .post(admin(&format!(
            "report_types/payouts.itemized.3?account={B}"
        )))
        .json(&json!({"data_available_end": 1_700_006_400}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let type_path = "/v1/reporting/report_types/payouts.itemized.3";
    assert_eq!(
        get(&emulator, KEY_B, type_path).await.1["data_available_end"],
        1_700_006_400
    );
    assert_ne!(
        get(&emulator, KEY_A, type_path).await.1["data_available_end"],
        1_700_006_400
    );

    let unknown = http
        .get(admin("runs?account=acct_1Nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(!emulator.set_data_available_end_in("acct_1Nobody", "payouts.itemized.3", 0));
}

#[tokio::test]
async fn a_key_or_id_naming_two_accounts_is_refused() {
    for accounts in [
        vec![AccountConfig::new(A, KEY_A), AccountConfig::new(B, KEY_A)],
        vec![AccountConfig::new(A, KEY_A), AccountConfig::new(A, KEY_B)],
    ] {
        let refused = Emulator::start(
            EmulatorConfig {
                accounts,
                ..EmulatorConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        assert!(!refused.to_string().contains(KEY_A), "{refused}");
    }
}

// ---- Report files ----

use std::collections::BTreeMap;

use stripe_emulator::FileTotals;
use stripe_emulator::report_columns::{self, REPORT_TYPES};

/// Every report type whose columns the emulator knows, each with its own
/// file size.
fn every_report_type(size: u64) -> EmulatorConfig {
    EmulatorConfig {
        report_types: REPORT_TYPES
            .iter()
            .map(|known| ReportTypeConfig {
                file_size: Some(size),
                ..ReportTypeConfig::new(known.report_type)
            })
            .collect(),
        run_delay: Duration::from_millis(10),
        ..EmulatorConfig::default()
    }
}

/// Creates a run of `report_type` with the form `parameters` (names inside
/// `parameters[...]`), waits for it to succeed and answers it.
async fn run_with(emulator: &Emulator, report_type: &str, parameters: &[(&str, &str)]) -> Value {
    let mut form = vec![("report_type".to_owned(), report_type.to_owned())];
    for (name, value) in parameters {
        form.push((format!("parameters[{name}]"), (*value).to_owned()));
    }
    let response = reqwest::Client::new()
        .post(format!("{}/v1/reporting/report_runs", emulator.base_url()))
        .bearer_auth(KEY)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "create {report_type}");
    let run: Value = response.json().await.unwrap();
    succeeded(emulator, KEY, run["id"].as_str().unwrap()).await
}

/// The bytes of a run's file, downloaded from its `result.url`.
async fn download(run: &Value) -> Vec<u8> {
    let response = reqwest::Client::new()
        .get(run["result"]["url"].as_str().unwrap())
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv");
    response.bytes().await.unwrap().to_vec()
}

/// Every record, header first, read as RFC 4180 says: quoted fields, `""`
/// for a quote, line breaks inside quotes, and every record exactly as
/// long as the header (the reader refuses any other).
fn strict_records(bytes: &[u8]) -> Vec<Vec<String>> {
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(body)
        .records()
        .map(|record| {
            record
                .expect("a well-formed record as long as the header")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// Decimals Stripe gives a currency's major unit.
fn decimals(currency: &str) -> u32 {
    match currency {
        "jpy" | "krw" | "clp" | "vnd" => 0,
        "bhd" | "kwd" | "jod" | "omr" | "tnd" => 3,
        _ => 2,
    }
}

/// An amount's text in minor units, by exact integer arithmetic, checking
/// it has the currency's number of decimals.
fn minor_units(text: &str, currency: &str) -> i128 {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert_eq!(
        frac.len() as u32,
        decimals(currency),
        "{text} in {currency}"
    );
    assert!(
        !int.is_empty() && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()),
        "{text}"
    );
    sign * format!("{int}{frac}").parse::<i128>().unwrap()
}

fn as_decimal(minor: i128, currency: &str) -> String {
    let places = decimals(currency) as usize;
    let digits = format!("{:0>width$}", minor.unsigned_abs(), width = places + 1);
    let (int, frac) = digits.split_at(digits.len() - places);
    let sign = if minor < 0 { "-" } else { "" };
    if places == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The totals of a file, computed here from its text.
fn totals_of(records: &[Vec<String>]) -> FileTotals {
    let header = &records[0];
    let at = |name: &str| header.iter().position(|h| h == name);
    let mut sums: BTreeMap<(String, String), i128> = BTreeMap::new();
    for record in &records[1..] {
        for (amount, currency) in [
            ("gross", "currency"),
            ("fee", "currency"),
            ("net", "currency"),
            ("net_amount", "currency"),
            ("customer_facing_amount", "customer_facing_currency"),
        ] {
            if let (Some(amount), Some(currency)) = (at(amount), at(currency))
                && !record[amount].is_empty()
            {
                let key = (header[amount].clone(), record[currency].clone());
                *sums.entry(key).or_default() += minor_units(&record[amount], &record[currency]);
            }
        }
    }
    FileTotals {
        rows: records.len() as u64 - 1,
        sums: sums
            .into_iter()
            .map(|((column, currency), sum)| {
                let text = as_decimal(sum, &currency);
                ((column, currency), text)
            })
            .collect(),
    }
}

#[tokio::test]
async fn each_report_types_file_has_the_columns_stripe_documents() {
    let emulator = start(every_report_type(8192)).await;
    for known in REPORT_TYPES {
        let documented = known.default_columns();
        assert!(!documented.is_empty(), "{}", known.source);
        let (status, kind) = get(
            &emulator,
            KEY,
            &format!("/v1/reporting/report_types/{}", known.report_type),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            kind["default_columns"],
            json!(documented),
            "{}",
            known.report_type
        );

        let run = run_with(&emulator, known.report_type, &[]).await;
        let bytes = download(&run).await;
        assert_eq!(bytes.len() as u64, run["result"]["size"].as_u64().unwrap());
        let records = strict_records(&bytes);
        assert_eq!(
            records[0], documented,
            "{} ({})",
            known.report_type, known.source
        );
        assert!(records.len() > 3, "{} has rows", known.report_type);
    }
    // The two lists facts.md gives, as it gives them.
    assert_eq!(
        report_columns::documented("balance.summary.1")
            .unwrap()
            .columns,
        ["category", "description", "net_amount", "currency"]
    );
    let itemized = report_columns::documented("balance_change_from_activity.itemized.3").unwrap();
    assert_eq!(
        itemized.columns[..12],
        [
            "balance_transaction_id",
            "created_utc",
            "created",
            "available_on_utc",
            "available_on",
            "currency",
            "gross",
            "fee",
            "net",
            "reporting_category",
            "source_id",
            "description",
        ]
    );
    assert_eq!(itemized.columns.last(), Some(&"transfer_metadata[key]"));
}

#[tokio::test]
async fn a_runs_columns_are_the_files_columns_in_that_order() {
    let emulator = start(every_report_type(20_000)).await;
    let columns = [
        "net",
        "payment_metadata[order, \"ref\"]",
        "currency",
        "customer_name",
        "created",
        "balance_transaction_id",
        "gross",
    ];
    let mut parameters: Vec<(String, &str)> = columns
        .iter()
        .enumerate()
        .map(|(at, column)| (format!("columns][{at}"), *column))
        .collect();
    parameters.push(("interval_start".into(), "1789344000"));
    parameters.push(("interval_end".into(), "1789430400"));
    let parameters: Vec<(&str, &str)> = parameters.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let run = run_with(
        &emulator,
        "balance_change_from_activity.itemized.3",
        &parameters,
    )
    .await;
    assert_eq!(run["parameters"]["columns"], json!(columns));
    let records = strict_records(&download(&run).await);
    assert_eq!(records[0], columns);
    for record in &records[1..] {
        assert!(record[5].starts_with("txn_"), "{record:?}");
        assert!(record[4].starts_with("2026-09-14 "), "{record:?}");
        // Amounts with the decimals of the row's currency.
        minor_units(&record[6], &record[2]);
        minor_units(&record[0], &record[2]);
    }
    assert!(
        records[1..].iter().any(|r| !r[1].is_empty()),
        "metadata values"
    );
}

#[tokio::test]
async fn files_read_strictly_and_hold_what_readers_must_get_right() {
    let emulator = start(every_report_type(400_000)).await;
    let run = run_with(&emulator, "balance_change_from_activity.itemized.3", &[]).await;
    let bytes = download(&run).await;
    let records = strict_records(&bytes);
    let header = records[0].clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let fields: Vec<&String> = records[1..].iter().flatten().collect();
    // Raw bytes: some fields are quoted, with a doubled quote inside.
    assert!(bytes.windows(2).any(|w| w == b"\"\""), "an escaped quote");
    for (what, found) in [
        ("a comma", fields.iter().any(|f| f.contains(','))),
        ("a double quote", fields.iter().any(|f| f.contains('"'))),
        ("a line break", fields.iter().any(|f| f.contains('\n'))),
        (
            "non-ASCII letters",
            fields
                .iter()
                .any(|f| f.chars().any(|c| c.is_alphabetic() && !c.is_ascii())),
        ),
        ("an empty field", fields.iter().any(|f| f.is_empty())),
    ] {
        assert!(found, "no field holds {what}");
    }
    let mut by_currency: BTreeMap<String, usize> = BTreeMap::new();
    let mut negatives = 0;
    for record in &records[1..] {
        let currency = &record[at("currency")];
        for column in ["gross", "fee", "net"] {
            // Checks the currency's number of decimals.
            let minor = minor_units(&record[at(column)], currency);
            negatives += usize::from(minor < 0);
        }
        *by_currency.entry(currency.clone()).or_default() += 1;
        for column in ["created_utc", "created", "available_on_utc", "available_on"] {
            let value = &record[at(column)];
            assert!(
                jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", value).is_ok(),
                "{column}: {value:?}"
            );
        }
    }
    for currency in ["usd", "jpy", "bhd"] {
        assert!(
            by_currency.get(currency).is_some_and(|n| *n > 20),
            "{by_currency:?}"
        );
    }
    assert!(negatives > 20, "negative amounts");
    // The same run, the same bytes.
    assert_eq!(download(&run).await, bytes);
    let (sha256, size) = emulator
        .file_digest(run["result"]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(
        sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
}

#[tokio::test]
async fn a_runs_currency_and_timezone_shape_the_values() {
    let emulator = start(every_report_type(30_000)).await;
    for (currency, places) in [("jpy", 0), ("bhd", 3), ("USD", 2)] {
        let run = run_with(
            &emulator,
            "payout_reconciliation.itemized.5",
            &[
                ("interval_start", "1772928000"),
                ("interval_end", "1773014400"),
                ("timezone", "America/New_York"),
                ("currency", currency),
            ],
        )
        .await;
        let records = strict_records(&download(&run).await);
        let at = |name: &str| records[0].iter().position(|h| h == name).unwrap();
        for record in &records[1..] {
            assert_eq!(record[at("currency")], currency.to_ascii_lowercase());
            let gross = &record[at("gross")];
            assert_eq!(
                gross.split_once('.').map_or(0, |(_, f)| f.len()),
                places,
                "{gross}"
            );
            // New York: UTC-5 until 2026-03-08 07:00 UTC, then UTC-4.
            let utc =
                jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", &record[at("created_utc")])
                    .unwrap();
            let local =
                jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", &record[at("created")])
                    .unwrap();
            let behind = (utc - local).get_hours();
            let expected = if record[at("created_utc")].as_str() < "2026-03-08 07:00:00" {
                5
            } else {
                4
            };
            assert_eq!(behind, expected, "{record:?}");
        }
    }
    let response = reqwest::Client::new()
        .post(format!("{}/v1/reporting/report_runs", emulator.base_url()))
        .bearer_auth(KEY)
        .form(&[
            ("report_type", "balance.summary.1"),
            ("parameters[timezone]", "Nowhere/City"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "parameters[timezone]");
}

#[tokio::test]
async fn a_file_has_its_exact_size_even_when_tiny() {
    let itemized = "balance_change_from_activity.itemized.3";
    let header = report_columns::documented(itemized)
        .unwrap()
        .default_columns()
        .join(",")
        .len() as u64
        + 1;
    for size in [
        0,
        1,
        2,
        100,
        header - 1,
        header,
        header + 1,
        header + 7,
        header + 300,
        4096,
        70_001,
        1 << 20,
    ] {
        let emulator = start(every_report_type(size)).await;
        for report_type in [itemized, "balance.summary.1", "payouts.summary.1"] {
            let run = run_with(&emulator, report_type, &[]).await;
            assert_eq!(run["result"]["size"], size, "{report_type}");
            let bytes = download(&run).await;
            assert_eq!(bytes.len() as u64, size, "{report_type} of {size} bytes");
            let file_id = run["result"]["id"].as_str().unwrap();
            assert_eq!(emulator.file_digest(file_id).unwrap().1, size);
            if report_type == itemized && size >= header {
                // Whole files from the header on: the header and whole rows.
                let records = strict_records(&bytes);
                assert_eq!(records[0].len(), 64, "{size}");
                assert_eq!(
                    emulator.file_totals(file_id).unwrap().rows,
                    records.len() as u64 - 1
                );
            }
        }
    }
}

#[tokio::test]
async fn totals_match_the_sums_of_the_file_itself() {
    let emulator = start(every_report_type(300_000)).await;
    for report_type in [
        "balance_change_from_activity.itemized.3",
        "balance.summary.1",
        "payouts.itemized.3",
        "ending_balance_reconciliation.summary.1",
        "connected_account_payout_reconciliation.itemized.5",
    ] {
        let run = run_with(&emulator, report_type, &[]).await;
        let file_id = run["result"]["id"].as_str().unwrap();
        let expected = totals_of(&strict_records(&download(&run).await));
        assert!(
            expected.rows > 100 && !expected.sums.is_empty(),
            "{report_type}"
        );
        assert_eq!(
            emulator.file_totals(file_id).unwrap(),
            expected,
            "{report_type}"
        );
        let answer = reqwest::get(format!(
            "{}/_emulator/files/{file_id}/totals",
            emulator.base_url()
        ))
        .await
        .unwrap();
        assert_eq!(answer.status(), 200);
        let routed: Value = answer.json().await.unwrap();
        assert_eq!(routed["rows"], expected.rows);
        for ((column, currency), sum) in &expected.sums {
            assert_eq!(
                routed["sums"][column][currency],
                json!(sum),
                "{report_type} {column} {currency}"
            );
        }
        assert_eq!(
            serde_json::from_value::<FileTotals>(routed).unwrap(),
            expected
        );
    }
    let missing = reqwest::get(format!(
        "{}/_emulator/files/file_nope/totals",
        emulator.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(emulator.file_totals("file_nope"), None);
}

#[tokio::test]
async fn a_byte_order_mark_and_crlf_line_ends_on_request() {
    let emulator = start(every_report_type(50_000)).await;
    emulator.set_faults(Faults {
        files_byte_order_mark: true,
        files_crlf: true,
        ..Faults::default()
    });
    let marked = run_with(&emulator, "payouts.itemized.3", &[]).await;
    emulator.set_faults(Faults::default());
    let plain = run_with(&emulator, "payouts.itemized.3", &[]).await;

    let bytes = download(&marked).await;
    assert_eq!(bytes.len(), 50_000);
    assert!(bytes.starts_with(b"\xEF\xBB\xBFpayout_id,effective_at_utc,"));
    assert!(bytes.ends_with(b"\r\n"));
    let records = strict_records(&bytes);
    assert_eq!(
        records[0],
        report_columns::documented("payouts.itemized.3")
            .unwrap()
            .default_columns()
    );
    let totals = totals_of(&records);
    let file_id = marked["result"]["id"].as_str().unwrap();
    assert_eq!(emulator.file_totals(file_id).unwrap(), totals);

    // Runs created afterwards are plain again; the marked run stays marked.
    let bytes = download(&plain).await;
    assert!(bytes.starts_with(b"payout_id,"));
    assert!(!bytes.ends_with(b"\r\n"));
    assert!(download(&marked).await.starts_with(b"\xEF\xBB\xBF"));
}

/// `cargo test -p stripe-emulator --release --test emulator -- --ignored --nocapture one_gib`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "downloads 1 GiB; run on purpose to measure"]
async fn a_one_gib_file_streams_over_http() {
    let emulator = start(every_report_type(1 << 30)).await;
    let run = run_with(&emulator, "balance_change_from_activity.itemized.3", &[]).await;
    let started = std::time::Instant::now();
    let mut response = reqwest::Client::new()
        .get(run["result"]["url"].as_str().unwrap())
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let mut total = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(total, 1 << 30);
    eprintln!("1 GiB over HTTP at {:.0} MiB/s", 1024.0 / seconds);
}
