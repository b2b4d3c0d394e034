//! The Stripe client against the emulator over HTTP.

mod support;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use stripe_emulator::{AccountConfig, EmulatorConfig, Faults, Injection, ReportTypeConfig};
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::stripe::ApiKey;
use stripe_reports::stripe::{CreateReportRun, StripeError, StripeRunStatus};
use support::*;

const DAY: i64 = 86_400;

fn day_request(report_type: &str, day: i64) -> CreateReportRun {
    CreateReportRun::for_spec(
        &ReportSpec::new(report_type),
        Interval {
            start: 1_767_225_600 + day * DAY,
            end: 1_767_225_600 + (day + 1) * DAY,
        },
    )
}

fn available_from_2026() -> Vec<ReportTypeConfig> {
    let mut kind = ReportTypeConfig::new("balance.summary.1");
    kind.data_available_start = Some(1_767_225_600 - 400 * DAY);
    kind.data_available_end = Some(1_767_225_600 + 400 * DAY);
    kind.file_size = Some(300_000);
    vec![kind]
}

fn config() -> EmulatorConfig {
    EmulatorConfig {
        report_types: available_from_2026(),
        run_delay: std::time::Duration::from_millis(20),
        ..EmulatorConfig::default()
    }
}

fn inject(path_prefix: &str, status: u16, should_retry: Option<bool>, times: u32) -> Faults {
    Faults {
        inject: vec![Injection {
            path_prefix: path_prefix.into(),
            method: None,
            status,
            should_retry,
            times,
            body: None,
            retry_after: None,
            account: None,
        }],
        ..Faults::default()
    }
}

#[tokio::test]
async fn pagination_returns_every_run_across_pages() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(0));
    let mut created = Vec::new();
    for day in 0..130 {
        let run = client
            .create_report_run(
                &day_request("balance.summary.1", day),
                &format!("key-{day}"),
            )
            .await
            .unwrap();
        created.push(run.id);
    }
    let listed = client.report_runs_created_since(0).await.unwrap();
    let mut listed_ids: Vec<String> = listed.into_iter().map(|r| r.id).collect();
    assert_eq!(listed_ids.len(), 130);
    // Newest first, each once.
    listed_ids.reverse();
    assert_eq!(listed_ids, created);
    let first_page = client.report_runs_page(Some(0), 100, None).await.unwrap();
    assert_eq!(first_page.data.len(), 100);
    assert!(first_page.has_more);
    // created[gte] in the future lists nothing.
    assert!(
        client
            .report_runs_created_since(i64::MAX / 2)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn retries_429_and_500_then_succeeds() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(3));
    emulator.set_faults(Faults {
        inject: vec![
            Injection {
                path_prefix: "/v1/reporting".into(),
                method: None,
                status: 429,
                should_retry: None,
                times: 1,
                body: None,
                retry_after: None,
                account: None,
            },
            Injection {
                path_prefix: "/v1/reporting".into(),
                method: None,
                status: 500,
                should_retry: None,
                times: 1,
                body: None,
                retry_after: None,
                account: None,
            },
        ],
        ..Faults::default()
    });
    let kind = client.report_type("balance.summary.1").await.unwrap();
    assert_eq!(kind.id, "balance.summary.1");
    let stats = emulator.stats();
    assert_eq!(stats.injected_errors, 2);
    assert_eq!(stats.api_requests, 3);
}

#[tokio::test]
async fn an_absurd_retry_after_is_neither_a_panic_nor_a_wait() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(3));
    // Past u64 seconds (Duration::from_secs_f64 panics there, and release
    // builds abort on a panic), then past a day, then not a number at all.
    let absurd = ["1e300", "18446744073709551616", "86401", "soon"];
    emulator.set_faults(Faults {
        inject: absurd
            .iter()
            .map(|value| Injection {
                path_prefix: "/v1/reporting".into(),
                method: None,
                status: 429,
                should_retry: None,
                times: 1,
                body: None,
                retry_after: Some((*value).into()),
                account: None,
            })
            .collect(),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let outcome = client.report_type("balance.summary.1").await;
    // Every 429 retried with the client's own short backoff: the fourth
    // retry gets an answer, and nothing waited for the header's value.
    let error = outcome.expect_err("four 429s exhaust three retries");
    assert_eq!(error.status(), Some(429));
    assert_eq!(emulator.stats().injected_errors, 4);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // And a sane one is honoured.
    emulator.set_faults(Faults {
        inject: vec![Injection {
            path_prefix: "/v1/reporting".into(),
            method: None,
            status: 429,
            should_retry: None,
            times: 1,
            body: None,
            retry_after: Some("1".into()),
            account: None,
        }],
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    client.report_type("balance.summary.1").await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn answers_with_missing_fields_wrong_types_or_no_json_are_one_clear_error() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(3));
    for (status, body, expected) in [
        (
            200,
            r#"{"id": "frr_1", "object": "reporting.report_run"}"#,
            "missing field",
        ),
        (
            200,
            r#"{"id": 5, "object": "reporting.report_run", "created": "yesterday"}"#,
            "invalid type",
        ),
        (200, "<html>maintenance</html>", "expected value"),
        (
            200,
            r#"{"object": "list", "data": [{"id": "frr_1"}], "has_more": false}"#,
            "missing field",
        ),
    ] {
        let mut faults = inject("/v1/reporting/report_runs", status, None, 1);
        faults.inject[0].body = Some(body.to_owned());
        emulator.set_faults(faults);
        let err = if body.contains("list") {
            client
                .report_runs_created_since(0)
                .await
                .map(|_| ())
                .unwrap_err()
        } else {
            client.report_run("frr_1").await.map(|_| ()).unwrap_err()
        };
        assert!(
            matches!(err, StripeError::Decode { status: 200, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("unexpected answer from Stripe (HTTP 200): "),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        // A 200 that does not parse is not retried: the same answer would come again.
        assert!(!err.is_transient());
    }
    assert_eq!(emulator.stats().runs_created, 0, "nothing was created");
}

#[tokio::test]
async fn a_retried_create_makes_one_run() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(3));
    // Stripe answers 500 with Should-Retry after creating nothing; the retry
    // reuses the same Idempotency-Key.
    emulator.set_faults(inject("/v1/reporting/report_runs", 500, Some(true), 2));
    let run = client
        .create_report_run(&day_request("balance.summary.1", 1), "request#same")
        .await
        .unwrap();
    let again = client
        .create_report_run(&day_request("balance.summary.1", 1), "request#same")
        .await
        .unwrap();
    assert_eq!(run.id, again.id);
    let stats = emulator.stats();
    assert_eq!(stats.runs_created, 1);
    assert_eq!(stats.idempotent_replays, 1);
}

#[tokio::test]
async fn same_key_other_parameters_is_an_idempotency_error() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(3));
    client
        .create_report_run(&day_request("balance.summary.1", 1), "k")
        .await
        .unwrap();
    let err = client
        .create_report_run(&day_request("balance.summary.1", 2), "k")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.api_error().unwrap().error_type, "idempotency_error");
    assert_eq!(emulator.stats().runs_created, 1);
}

#[tokio::test]
async fn a_400_is_not_retried_and_carries_stripes_error() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(5));
    // An interval past data_available_end is refused with param.
    let err = client
        .create_report_run(&day_request("balance.summary.1", 500), "late")
        .await
        .unwrap_err();
    let api = err.api_error().expect("Stripe error object");
    assert_eq!(err.status(), Some(400));
    assert_eq!(api.error_type, "invalid_request_error");
    assert_eq!(api.param.as_deref(), Some("parameters[interval_end]"));
    assert_eq!(emulator.stats().api_requests, 1, "400 must not be retried");
    assert_eq!(emulator.stats().runs_created, 0);
}

#[tokio::test]
async fn stripe_should_retry_false_is_respected() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(5));
    emulator.set_faults(inject("/v1/reporting", 500, Some(false), 3));
    let err = client.report_types().await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(emulator.stats().api_requests, 1);
    // And Should-Retry: true makes an otherwise final status retried.
    emulator.set_faults(inject("/v1/reporting", 400, Some(true), 1));
    assert_eq!(client.report_types().await.unwrap().len(), 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(2));
    emulator.set_faults(inject("/v1/reporting", 503, None, 100));
    let err = client.report_types().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.is_transient());
    assert_eq!(emulator.stats().api_requests, 3);
}

#[tokio::test]
async fn a_wrong_key_is_401_and_the_error_never_shows_a_key() {
    let emulator = emulator(config()).await;
    let base = emulator.base_url().parse().unwrap();
    let wrong = "sk_test_wrong_key_0123456789";
    let config = stripe_reports::stripe::StripeClientConfig::new(
        base,
        stripe_reports::domain::secret::SecretString::new(wrong),
        stripe_reports::domain::config::FileHosts::parse("127.0.0.1").unwrap(),
    );
    let client = stripe_reports::stripe::StripeClient::new(config).unwrap();
    let err = client.report_types().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains(wrong), "{shown}");
    assert!(!shown.contains(API_KEY), "{shown}");
}

#[tokio::test]
async fn connection_refused_is_a_transient_transport_error() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(1));
    emulator.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let err = client.report_types().await.unwrap_err();
    assert!(matches!(err, StripeError::Transport(_)), "{err}");
    assert!(err.is_transient());
}

async fn succeeded_run(
    client: &stripe_reports::stripe::StripeClient,
    day: i64,
) -> stripe_reports::stripe::ReportRun {
    let run = client
        .create_report_run(&day_request("balance.summary.1", day), &format!("dl-{day}"))
        .await
        .unwrap();
    for _ in 0..100 {
        let current = client.report_run(&run.id).await.unwrap();
        if current.status == StripeRunStatus::Succeeded {
            return current;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("run never succeeded");
}

#[tokio::test]
async fn files_stream_with_the_key_and_match_the_emulators_digest() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(2));
    let run = succeeded_run(&client, 3).await;
    let file = run.result.expect("result file");
    let download = client
        .download_file(file.url.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(download.content_length, Some(file.size));
    let mut body = download.body;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut chunks = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len() as u64;
        chunks += 1;
        hasher.update(&chunk);
    }
    assert!(chunks > 1, "the body arrives as a stream of chunks");
    let (sha256, size) = emulator.file_digest(&file.id).unwrap();
    assert_eq!(bytes, size);
    assert_eq!(hex::encode(hasher.finalize()), sha256);
}

#[tokio::test]
async fn a_truncated_file_ends_the_stream_with_an_error() {
    // Large enough that the cut comes after the headers are on the wire (a
    // cut before them is a connection error, which the client retries).
    let mut config = config();
    config.report_types[0].file_size = Some(8 * 1024 * 1024);
    let emulator = emulator(config).await;
    let client = client_for(&emulator, quick_retries(0));
    let run = succeeded_run(&client, 4).await;
    let file = run.result.unwrap();
    emulator.set_faults(Faults {
        truncate_files: 1,
        ..Faults::default()
    });
    let mut body = client
        .download_file(file.url.as_deref().unwrap())
        .await
        .unwrap()
        .body;
    let mut bytes = 0u64;
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes += chunk.len() as u64,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a cut body must not look like a complete file");
    assert!(bytes < file.size);
    assert_eq!(emulator.stats().file_downloads, 1);
}

#[tokio::test]
async fn file_hosts_off_the_allow_list_get_nothing() {
    let emulator = emulator(config()).await;
    let client = client_for(&emulator, quick_retries(0));
    let before = emulator.stats();
    for url in [
        "https://evil.example/v1/files/file_1/contents",
        // The emulator's own port but as "localhost", which is not listed.
        &format!(
            "http://localhost:{}/v1/files/file_1/contents",
            emulator.addr().port()
        ),
        "http://files.stripe.com/v1/files/file_1/contents",
        "not a url",
    ] {
        let err = client.download_file(url).await.err().expect("refused");
        assert!(matches!(err, StripeError::FileUrl(_)), "{url}: {err}");
    }
    assert_eq!(emulator.stats().file_downloads, before.file_downloads);
    assert_eq!(emulator.stats().unauthorized, before.unauthorized);
}

#[tokio::test]
async fn account_of_names_each_keys_account_and_a_revoked_key_is_401() {
    const KEY_A: &str = "sk_test_account_a_7d1e";
    const KEY_B: &str = "sk_test_account_b_93fa";
    let emulator = emulator(EmulatorConfig {
        accounts: vec![
            AccountConfig::new("acct_1AccountAlpha000", KEY_A),
            AccountConfig::new("acct_1AccountBravo000", KEY_B),
        ],
        ..config()
    })
    .await;
    // A client without a key of its own: the key is given per call.
    let mut client_config = stripe_reports::stripe::StripeClientConfig::new(
        emulator.base_url().parse().unwrap(),
        ApiKey::None,
        stripe_reports::domain::config::FileHosts::parse("127.0.0.1").unwrap(),
    );
    client_config.retry = quick_retries(2);
    let client = stripe_reports::stripe::StripeClient::new(client_config).unwrap();
    let a = client.account_of(&SecretString::new(KEY_A)).await.unwrap();
    let b = client.account_of(&SecretString::new(KEY_B)).await.unwrap();
    assert_eq!(a.as_str(), "acct_1AccountAlpha000");
    assert_eq!(b.as_str(), "acct_1AccountBravo000");
    // Each asked with its own key, of its own account.
    let asked: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/account")
        .map(|request| request.account)
        .collect();
    assert_eq!(
        asked,
        [
            Some("acct_1AccountAlpha000".to_owned()),
            Some("acct_1AccountBravo000".to_owned())
        ]
    );
    // The client's own (absent) key is never used for API calls.
    let err = client.report_types().await.unwrap_err();
    assert!(matches!(err, StripeError::NoApiKey(_)), "{err:?}");
    // B's key revoked: Stripe's 401, not retried, and the error shows no key.
    emulator.set_faults(Faults {
        revoked_accounts: vec!["acct_1AccountBravo000".into()],
        ..Faults::default()
    });
    let requests = emulator.requests().len();
    let err = client
        .account_of(&SecretString::new(KEY_B))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(
        emulator.requests().len(),
        requests + 1,
        "a 401 is not retried"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(KEY_B), "{shown}");
    // A's key still names A.
    assert_eq!(
        client.account_of(&SecretString::new(KEY_A)).await.unwrap(),
        a
    );
    // An unknown key is a 401 too.
    let err = client
        .account_of(&SecretString::new("sk_test_nobody_0000"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
}

#[tokio::test]
async fn account_of_is_bounded_by_its_deadline_retries_included() {
    use stripe_reports::stripe::client::ACCOUNT_CHECK_TIMEOUT;
    const KEY: &str = "sk_test_account_check_0c4b";
    const ID: &str = "acct_1AccountCheck0000";
    let emulator = emulator(EmulatorConfig {
        accounts: vec![AccountConfig::new(ID, KEY)],
        ..config()
    })
    .await;
    // The client's own retries (RetryPolicy::default(), seconds apart) are
    // far longer than the check may take: they must not apply to it.
    let client =
        stripe_reports::stripe::StripeClient::new(stripe_reports::stripe::StripeClientConfig::new(
            emulator.base_url().parse().unwrap(),
            ApiKey::None,
            stripe_reports::domain::config::FileHosts::parse("127.0.0.1").unwrap(),
        ))
        .unwrap();
    let checks = || {
        emulator
            .requests()
            .iter()
            .filter(|request| request.path == "/v1/account")
            .count()
    };
    // One check, timed, failing the test (rather than waiting) past the
    // deadline and a margin.
    let check = || async {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            ACCOUNT_CHECK_TIMEOUT + std::time::Duration::from_secs(2),
            client.account_of(&SecretString::new(KEY)),
        )
        .await
        .expect("the check outlived its deadline");
        (outcome, started.elapsed())
    };
    let allowed = ACCOUNT_CHECK_TIMEOUT + std::time::Duration::from_millis(500);

    // Stripe answering 429, or 500, to every check: tried again within the
    // deadline, a few times, then its error.
    for status in [429, 500] {
        emulator.set_faults(inject("/v1/account", status, None, 100));
        let before = checks();
        let (outcome, took) = check().await;
        let err = outcome.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err:?}");
        assert!(err.is_transient(), "{err:?}");
        assert!(took <= allowed, "{status}: the check took {took:?}");
        let asked = checks() - before;
        assert!((2..=8).contains(&asked), "{status}: {asked} requests");
    }
    // One 429: the check goes on to the answer (one refused request does
    // not take the account out).
    emulator.set_faults(inject("/v1/account", 429, None, 1));
    let before = checks();
    let (outcome, took) = check().await;
    assert_eq!(outcome.unwrap().as_str(), ID);
    assert_eq!(checks() - before, 2);
    assert!(took <= allowed, "{took:?}");
    // A Retry-After past the deadline is not waited for: one request.
    let mut faults = inject("/v1/account", 429, None, 100);
    faults.inject[0].retry_after = Some("30".into());
    emulator.set_faults(faults);
    let before = checks();
    let (outcome, took) = check().await;
    assert_eq!(outcome.unwrap_err().status(), Some(429));
    assert_eq!(checks() - before, 1);
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    // Stripe-Should-Retry: false on a 500 is respected: one request.
    emulator.set_faults(inject("/v1/account", 500, Some(false), 100));
    let before = checks();
    let (outcome, _) = check().await;
    assert_eq!(outcome.unwrap_err().status(), Some(500));
    assert_eq!(checks() - before, 1);
    // Stripe answering again, the next check names the account.
    emulator.set_faults(Faults::default());
    assert_eq!(check().await.0.unwrap().as_str(), ID);
}

#[tokio::test]
async fn a_revoked_keys_error_shows_no_part_of_the_key() {
    // Long enough for Stripe's message to show its last four characters.
    const KEY: &str = "sk_test_revoked_account_key_7q9z";
    const ID: &str = "acct_1AccountRevoked000";
    let emulator = emulator(EmulatorConfig {
        accounts: vec![AccountConfig::new(ID, KEY)],
        ..config()
    })
    .await;
    emulator.set_faults(Faults {
        revoked_accounts: vec![ID.into()],
        ..Faults::default()
    });
    let mut client_config = stripe_reports::stripe::StripeClientConfig::new(
        emulator.base_url().parse().unwrap(),
        ApiKey::None,
        stripe_reports::domain::config::FileHosts::parse("127.0.0.1").unwrap(),
    );
    client_config.retry = quick_retries(0);
    let client = stripe_reports::stripe::StripeClient::new(client_config).unwrap();
    let err = client
        .account_of(&SecretString::new(KEY))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    // Stripe's own message quotes the key masked but for its last four
    // characters (what the emulator does too)…
    let message = err.api_error().and_then(|e| e.message.clone()).unwrap();
    assert!(
        message.starts_with("Expired API Key provided: sk_test_") && message.ends_with("7q9z"),
        "{message}"
    );
    // …and what is shown of the error (logs, the scheduler's answer, an
    // account's failing reason) has none of it: the message is still read.
    let shown = err.to_string();
    assert!(shown.contains("Expired API Key provided"), "{shown}");
    let after_prefix = &KEY["sk_test_".len()..];
    for part in after_prefix
        .as_bytes()
        .windows(4)
        .map(|w| std::str::from_utf8(w).unwrap())
    {
        assert!(!shown.contains(part), "{part:?} of the key in {shown:?}");
    }
    assert!(!shown.contains("****"), "{shown}");
    // The same for a key shown in a request through a key-holding client.
    let keyed = test_support::stripe_client(&emulator, KEY, "127.0.0.1", quick_retries(0));
    let shown = keyed.report_types().await.unwrap_err().to_string();
    assert!(shown.contains("Expired API Key provided"), "{shown}");
    assert!(!shown.contains("7q9z"), "{shown}");
}
