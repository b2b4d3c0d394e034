//! The DynamoDB ledger, SQS queues and Secrets Manager loader against moto's
//! server over HTTP (`make test` starts it and sets `AWS_ENDPOINT_URL`).

mod support;

use stripe_reports::aws::secrets::load_stripe_secrets;
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::config::SecretSource;
use stripe_reports::domain::ledger::{RunStatus, StoredObject};
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{
    ClaimEnd, ClaimToken, DownloadQueue, EventClaim, Ledger, LedgerError, Recorded, RunFacts,
    ScheduleQueue, Transition,
};
use support::*;

const NOW: i64 = 1_790_000_000;
const ACCOUNT_A: &str = "acct_1LedgerAlpha00";
const ACCOUNT_B: &str = "acct_1LedgerBravo00";

fn account_a() -> AccountId {
    AccountId::parse(ACCOUNT_A).unwrap()
}

fn account_b() -> AccountId {
    AccountId::parse(ACCOUNT_B).unwrap()
}

async fn ledger() -> DynamoLedger {
    test_support::ledger(&local_aws().await).await
}

/// A run of account A.
fn facts(run_id: &str) -> RunFacts {
    facts_of(&account_a(), run_id)
}

fn facts_of(account: &AccountId, run_id: &str) -> RunFacts {
    RunFacts {
        account: account.clone(),
        run_id: run_id.into(),
        report_type: "balance.summary.1".into(),
        interval_start: Some(1_789_000_000),
        interval_end: Some(1_789_086_400),
    }
}

/// A request of account A.
fn key(day: i64) -> RequestKey {
    key_of(&account_a(), day)
}

fn key_of(account: &AccountId, day: i64) -> RequestKey {
    RequestKey::new(
        account,
        &ReportSpec::new("balance.summary.1"),
        Interval {
            start: 1_789_000_000 + day * 86_400,
            end: 1_789_086_400 + day * 86_400,
        },
        0,
    )
}

fn stored(run_id: &str) -> StoredObject {
    StoredObject {
        s3_key: format!(
            "stripe/account={ACCOUNT_A}/report_type=balance.summary.1/date=2026-09-10/{run_id}.csv"
        ),
        bytes: 1234,
        sha256: "ab".repeat(32),
        file_id: "file_1".into(),
    }
}

#[tokio::test]
async fn conditional_put_refuses_a_duplicate_request() {
    let ledger = ledger().await;
    assert_eq!(ledger.requested_run(&key(0)).await.unwrap(), None);
    assert_eq!(
        ledger
            .record_requested(&key(0), &facts("frr_a"), NOW)
            .await
            .unwrap(),
        Recorded::New
    );
    // The same request again, even with another run id, keeps the first run.
    assert_eq!(
        ledger
            .record_requested(&key(0), &facts("frr_b"), NOW)
            .await
            .unwrap(),
        Recorded::AlreadyRequested {
            run_id: "frr_a".into()
        }
    );
    assert_eq!(
        ledger.requested_run(&key(0)).await.unwrap().as_deref(),
        Some("frr_a")
    );
    assert!(
        ledger.run("frr_b").await.unwrap().is_none(),
        "the loser wrote nothing"
    );
    let run = ledger.run("frr_a").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.facts, facts("frr_a"));
    assert_eq!(run.request_key.as_deref(), Some(key(0).as_str()));
}

#[tokio::test]
async fn concurrent_requests_for_one_key_record_one_run() {
    let ledger = ledger().await;
    let attempts = (0..8).map(|i| {
        let ledger = ledger.clone();
        async move {
            ledger
                .record_requested(&key(1), &facts(&format!("frr_{i}")), NOW)
                .await
                .unwrap()
        }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Recorded::New).count(),
        1,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn stored_never_goes_back() {
    let ledger = ledger().await;
    let run = facts("frr_stored");
    ledger.record_requested(&key(2), &run, NOW).await.unwrap();
    assert_eq!(
        ledger.mark_succeeded(&run, NOW + 1).await.unwrap(),
        Transition::Applied
    );
    assert_eq!(
        ledger
            .mark_stored(&run, &stored("frr_stored"), NOW + 2)
            .await
            .unwrap(),
        Transition::Applied
    );
    let refused = Transition::Refused {
        current: RunStatus::Stored,
    };
    assert_eq!(ledger.mark_succeeded(&run, NOW + 3).await.unwrap(), refused);
    assert_eq!(
        ledger
            .mark_failed(&run, "late failure", NOW + 3)
            .await
            .unwrap(),
        refused
    );
    let mut other = stored("frr_stored");
    other.sha256 = "cd".repeat(32);
    assert_eq!(
        ledger.mark_stored(&run, &other, NOW + 3).await.unwrap(),
        refused
    );
    let record = ledger.run("frr_stored").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Stored);
    assert_eq!(record.stored, Some(stored("frr_stored")));
    assert_eq!(record.updated, NOW + 2);
    assert_eq!(record.error, None);
}

#[tokio::test]
async fn two_downloaders_racing_store_once() {
    let ledger = ledger().await;
    let run = facts("frr_race");
    ledger.record_requested(&key(3), &run, NOW).await.unwrap();
    ledger.mark_succeeded(&run, NOW).await.unwrap();
    let racers = (0..6).map(|_| {
        let ledger = ledger.clone();
        let run = run.clone();
        async move {
            ledger
                .mark_stored(&run, &stored("frr_race"), NOW + 5)
                .await
                .unwrap()
        }
    });
    let outcomes = futures_util::future::join_all(racers).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Transition::Applied)
            .count(),
        1,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn failed_keeps_stripes_error_and_is_final() {
    let ledger = ledger().await;
    let run = facts("frr_failed");
    ledger.record_requested(&key(4), &run, NOW).await.unwrap();
    assert_eq!(
        ledger
            .mark_failed(&run, "Stripe could not build it", NOW)
            .await
            .unwrap(),
        Transition::Applied
    );
    assert_eq!(
        ledger.mark_succeeded(&run, NOW).await.unwrap(),
        Transition::Refused {
            current: RunStatus::Failed
        }
    );
    let record = ledger.run("frr_failed").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(record.error.as_deref(), Some("Stripe could not build it"));
}

#[tokio::test]
async fn a_run_seen_first_by_webhook_keeps_its_state_when_the_request_is_recorded() {
    let ledger = ledger().await;
    let run = facts("frr_webhook_first");
    // A Dashboard run, or the webhook racing the scheduler's ledger write.
    assert_eq!(
        ledger.mark_succeeded(&run, NOW).await.unwrap(),
        Transition::Applied
    );
    assert_eq!(
        ledger
            .record_requested(&key(5), &run, NOW + 1)
            .await
            .unwrap(),
        Recorded::New
    );
    let record = ledger.run("frr_webhook_first").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.request_key.as_deref(), Some(key(5).as_str()));
    assert_eq!(
        ledger.requested_run(&key(5)).await.unwrap().as_deref(),
        Some("frr_webhook_first")
    );
}

fn claimed(claim: EventClaim) -> ClaimToken {
    match claim {
        EventClaim::Claimed(token) => token,
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[tokio::test]
async fn events_are_deduplicated_and_can_be_released() {
    let ledger = ledger().await;
    let t = "reporting.report_run.succeeded";
    let first = claimed(ledger.claim_event("evt_1", t, NOW, 60).await.unwrap());
    // A second delivery while the first is being handled.
    assert_eq!(
        ledger.claim_event("evt_1", t, NOW + 1, 60).await.unwrap(),
        EventClaim::InProgress
    );
    // Routing failed: the claim is released and the next delivery is handled.
    assert_eq!(
        ledger.release_event("evt_1", &first).await.unwrap(),
        ClaimEnd::Owned
    );
    let second = claimed(ledger.claim_event("evt_1", t, NOW + 2, 60).await.unwrap());
    assert_ne!(first, second, "every claim has its own token");
    assert_eq!(
        ledger
            .finish_event("evt_1", &second, NOW + 3)
            .await
            .unwrap(),
        ClaimEnd::Owned
    );
    assert_eq!(
        ledger.claim_event("evt_1", t, NOW + 4, 60).await.unwrap(),
        EventClaim::Done
    );
    assert_eq!(
        ledger
            .claim_event("evt_1", t, NOW + 4000, 60)
            .await
            .unwrap(),
        EventClaim::Done
    );
    // An expired marker that TTL has not swept yet counts as absent.
    let after_ttl = NOW + 2 + stripe_reports::aws::ledger::EVENT_TTL_SECS + 1;
    claimed(ledger.claim_event("evt_1", t, after_ttl, 60).await.unwrap());
}

#[tokio::test]
async fn a_claim_whose_handler_died_is_taken_over_once_stale() {
    let ledger = ledger().await;
    let t = "reporting.report_run.succeeded";
    claimed(ledger.claim_event("evt_2", t, NOW, 60).await.unwrap());
    assert_eq!(
        ledger.claim_event("evt_2", t, NOW + 59, 60).await.unwrap(),
        EventClaim::InProgress
    );
    claimed(ledger.claim_event("evt_2", t, NOW + 61, 60).await.unwrap());
}

#[tokio::test]
async fn a_slow_handler_cannot_finish_or_release_the_claim_of_the_one_that_took_over() {
    let ledger = ledger().await;
    let t = "reporting.report_run.succeeded";
    let slow = claimed(ledger.claim_event("evt_3", t, NOW, 60).await.unwrap());
    let took_over = claimed(ledger.claim_event("evt_3", t, NOW + 61, 60).await.unwrap());
    // The slow handler's release would delete the new claim; its finish would
    // mark done an event whose routing is still under way.
    assert_eq!(
        ledger.release_event("evt_3", &slow).await.unwrap(),
        ClaimEnd::TakenOver
    );
    assert_eq!(
        ledger.finish_event("evt_3", &slow, NOW + 62).await.unwrap(),
        ClaimEnd::TakenOver
    );
    assert_eq!(
        ledger.claim_event("evt_3", t, NOW + 63, 60).await.unwrap(),
        EventClaim::InProgress,
        "the claim of the handler that took over is intact"
    );
    assert_eq!(
        ledger
            .finish_event("evt_3", &took_over, NOW + 64)
            .await
            .unwrap(),
        ClaimEnd::Owned
    );
    assert_eq!(
        ledger.claim_event("evt_3", t, NOW + 65, 60).await.unwrap(),
        EventClaim::Done
    );
    // Finishing an event nobody claimed (released or swept meanwhile)
    // creates no item, so no marker without `expires_at` can appear.
    assert_eq!(
        ledger
            .finish_event("evt_never", &took_over, NOW)
            .await
            .unwrap(),
        ClaimEnd::TakenOver
    );
    assert_eq!(
        ledger.release_event("evt_never", &took_over).await.unwrap(),
        ClaimEnd::TakenOver
    );
    claimed(
        ledger
            .claim_event("evt_never", t, NOW + 1, 60)
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn unfinished_runs_are_pending_and_succeeded_only() {
    let ledger = ledger().await;
    for (day, id) in ["frr_p", "frr_s", "frr_st", "frr_f"].iter().enumerate() {
        ledger
            .record_requested(&key(10 + day as i64), &facts(id), NOW)
            .await
            .unwrap();
    }
    ledger.mark_succeeded(&facts("frr_s"), NOW).await.unwrap();
    ledger
        .mark_stored(&facts("frr_st"), &stored("frr_st"), NOW)
        .await
        .unwrap();
    ledger
        .mark_failed(&facts("frr_f"), "no", NOW)
        .await
        .unwrap();
    // Retired: Stripe no longer has it.
    ledger
        .record_requested(&key(20), &facts("frr_r"), NOW)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .mark_retired(&facts("frr_r"), "404 at Stripe", NOW)
            .await
            .unwrap(),
        Transition::Applied
    );
    let retired = ledger.run("frr_r").await.unwrap().unwrap();
    assert_eq!(retired.status, RunStatus::Retired);
    assert_eq!(retired.error.as_deref(), Some("404 at Stripe"));
    // Seen first by a webhook (unfinished), and an orphan adopted after it
    // was stored (linking its request must not bring it back into the index).
    ledger.mark_succeeded(&facts("frr_w"), NOW).await.unwrap();
    ledger.mark_succeeded(&facts("frr_o"), NOW).await.unwrap();
    ledger
        .mark_stored(&facts("frr_o"), &stored("frr_o"), NOW)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .record_requested(&key(21), &facts("frr_o"), NOW + 1)
            .await
            .unwrap(),
        Recorded::New
    );
    let orphan = ledger.run("frr_o").await.unwrap().unwrap();
    assert_eq!(orphan.status, RunStatus::Stored);
    assert_eq!(orphan.request_key.as_deref(), Some(key(21).as_str()));
    let mut unfinished: Vec<(String, RunStatus)> = ledger
        .unfinished_runs(&account_a())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.facts.run_id, r.status))
        .collect();
    unfinished.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        unfinished,
        vec![
            ("frr_p".into(), RunStatus::Pending),
            ("frr_s".into(), RunStatus::Succeeded),
            ("frr_w".into(), RunStatus::Succeeded),
        ]
    );
    // Read through the sparse index: no finished run is visited at all.
    let indexed = ledger
        .client()
        .scan()
        .table_name(ledger.table())
        .index_name(stripe_reports::aws::ledger::UNFINISHED_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(indexed.count(), 3, "{:?}", indexed.items());
}

#[tokio::test]
async fn a_missing_table_is_an_unavailable_ledger() {
    let sdk = local_aws().await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), unique("no-such-table"));
    let err = ledger
        .mark_succeeded(&facts("frr_x"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable(_)), "{err}");
    assert!(ledger.claim_event("evt_x", "t", NOW, 60).await.is_err());
}

#[tokio::test]
async fn queues_carry_the_spec_message_bodies() {
    let sdk = local_aws().await;
    let (client, url) = test_support::queue(&sdk, "download").await;
    let queue = SqsQueue::new(client.clone(), &url);
    queue
        .enqueue_download(&account_a(), "frr_123")
        .await
        .unwrap();
    queue
        .enqueue_schedule(&account_b(), "balance.summary.1", 1_790_000_000)
        .await
        .unwrap();
    let received = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut bodies: Vec<serde_json::Value> = received
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    bodies.sort_by_key(|b| b.to_string());
    assert_eq!(
        bodies,
        vec![
            serde_json::json!({"run_id": "frr_123", "account": ACCOUNT_A}),
            serde_json::json!({
                "report_type": "balance.summary.1",
                "data_available_end": 1_790_000_000,
                "account": ACCOUNT_B,
            }),
        ]
    );
    let missing = SqsQueue::new(client, format!("{}-gone", url));
    assert!(
        missing
            .enqueue_download(&account_a(), "frr_1")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn secrets_manager_secret_is_read_and_bad_json_hides_the_value() {
    let sdk = local_aws().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let good = client
        .create_secret()
        .name(unique("stripe"))
        .secret_string(
            r#"{"api_key":"sk_test_from_secret","webhook_secret":"whsec_one,whsec_two"}"#,
        )
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let accounts = load_stripe_secrets(&sdk, &SecretSource::SecretsManager { arn: good })
        .await
        .unwrap();
    let [secrets] = accounts.entries() else {
        panic!("one account: {accounts:?}")
    };
    assert_eq!(
        secrets.require_api_key().unwrap().expose(),
        "sk_test_from_secret"
    );
    assert_eq!(secrets.webhook_secrets.len(), 2);
    // The one-account shape names no account: its id is learned from the key.
    assert_eq!(secrets.account, None);

    let bad = client
        .create_secret()
        .name(unique("stripe-bad"))
        .secret_string("api_key=sk_live_leaky")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let err = load_stripe_secrets(&sdk, &SecretSource::SecretsManager { arn: bad })
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("STRIPE_SECRET_ARN:"), "{err}");
    assert!(!err.to_string().contains("sk_live_leaky"), "{err}");

    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf".to_owned();
    let err = load_stripe_secrets(&sdk, &SecretSource::SecretsManager { arn: missing })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("STRIPE_SECRET_ARN: cannot read the secret"),
        "{err}"
    );
}

#[tokio::test]
async fn one_accounts_unfinished_runs_never_list_anothers() {
    let ledger = ledger().await;
    let (a, b) = (account_a(), account_b());
    // The same report over the same day for both accounts: two requests.
    assert_ne!(key_of(&a, 30), key_of(&b, 30));
    for (account, run_id) in [(&a, "frr_a_pending"), (&b, "frr_b_pending")] {
        assert_eq!(
            ledger
                .record_requested(&key_of(account, 30), &facts_of(account, run_id), NOW)
                .await
                .unwrap(),
            Recorded::New
        );
    }
    assert_eq!(
        ledger
            .requested_run(&key_of(&b, 30))
            .await
            .unwrap()
            .as_deref(),
        Some("frr_b_pending")
    );
    // B's run seen first by a webhook, and one B stored.
    ledger
        .mark_succeeded(&facts_of(&b, "frr_b_webhook"), NOW)
        .await
        .unwrap();
    ledger
        .record_requested(&key_of(&b, 31), &facts_of(&b, "frr_b_stored"), NOW)
        .await
        .unwrap();
    ledger
        .mark_stored(&facts_of(&b, "frr_b_stored"), &stored("frr_b_stored"), NOW)
        .await
        .unwrap();
    let listed = |runs: Vec<stripe_reports::ports::RunRecord>| {
        let mut ids: Vec<(String, AccountId)> = runs
            .into_iter()
            .map(|r| (r.facts.run_id, r.facts.account))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        listed(ledger.unfinished_runs(&a).await.unwrap()),
        [("frr_a_pending".to_owned(), a.clone())]
    );
    assert_eq!(
        listed(ledger.unfinished_runs(&b).await.unwrap()),
        [
            ("frr_b_pending".to_owned(), b.clone()),
            ("frr_b_webhook".to_owned(), b.clone()),
        ]
    );
    let other = AccountId::parse("acct_1LedgerCharlie0").unwrap();
    assert!(ledger.unfinished_runs(&other).await.unwrap().is_empty());
    // Each run item names its account.
    let record = ledger.run("frr_b_webhook").await.unwrap().unwrap();
    assert_eq!(record.facts.account, b);
}

#[tokio::test]
async fn availability_is_kept_per_account() {
    let ledger = ledger().await;
    let (a, b) = (account_a(), account_b());
    let t = "balance.summary.1";
    ledger
        .record_availability(&a, t, 1_789_086_400, NOW)
        .await
        .unwrap();
    // A later sighting of the same end keeps the first.
    ledger
        .record_availability(&a, t, 1_789_086_400, NOW + 50)
        .await
        .unwrap();
    ledger
        .record_availability(&b, t, 1_789_172_800, NOW + 100)
        .await
        .unwrap();
    let of_a = ledger.availability(&a, t).await.unwrap();
    let of_b = ledger.availability(&b, t).await.unwrap();
    assert_eq!(of_a.entries().collect::<Vec<_>>(), [(1_789_086_400, NOW)]);
    assert_eq!(
        of_b.entries().collect::<Vec<_>>(),
        [(1_789_172_800, NOW + 100)]
    );
    assert_eq!(of_a.latest_end(), Some(1_789_086_400));
    // Nothing seen for A's other report type, nor for a third account.
    assert_eq!(
        ledger
            .availability(&a, "payouts.itemized.3")
            .await
            .unwrap()
            .latest_end(),
        None
    );
    let other = AccountId::parse("acct_1LedgerCharlie0").unwrap();
    assert_eq!(
        ledger.availability(&other, t).await.unwrap().latest_end(),
        None
    );
}

#[tokio::test]
async fn a_run_held_for_another_account_is_not_changed() {
    let ledger = ledger().await;
    let (a, b) = (account_a(), account_b());
    let run = facts_of(&a, "frr_held_by_a");
    ledger.record_requested(&key(40), &run, NOW).await.unwrap();
    ledger.mark_succeeded(&run, NOW + 1).await.unwrap();
    let before = ledger.run("frr_held_by_a").await.unwrap().unwrap();
    // The same run id announced or downloaded with B's key.
    let as_b = facts_of(&b, "frr_held_by_a");
    let other = Transition::OtherAccount { owner: a.clone() };
    assert_eq!(ledger.mark_succeeded(&as_b, NOW + 5).await.unwrap(), other);
    assert_eq!(
        ledger
            .mark_failed(&as_b, "B says failed", NOW + 5)
            .await
            .unwrap(),
        other
    );
    assert_eq!(
        ledger
            .mark_retired(&as_b, "404 for B", NOW + 5)
            .await
            .unwrap(),
        other
    );
    assert_eq!(
        ledger
            .mark_stored(&as_b, &stored("frr_held_by_a"), NOW + 5)
            .await
            .unwrap(),
        other
    );
    // Linking B's request to A's run is refused too (see
    // `a_request_for_a_run_held_for_another_account_is_taken_back`).
    assert_eq!(
        ledger
            .record_requested(&key_of(&b, 40), &as_b, NOW + 5)
            .await
            .unwrap(),
        Recorded::OtherAccount { owner: a.clone() }
    );
    let after = ledger.run("frr_held_by_a").await.unwrap().unwrap();
    assert_eq!(after, before, "nothing changed");
    assert_eq!(after.facts.account, a);
    assert_eq!(after.status, RunStatus::Succeeded);
    assert_eq!(after.request_key.as_deref(), Some(key(40).as_str()));
    assert!(ledger.unfinished_runs(&b).await.unwrap().is_empty());
    assert_eq!(ledger.unfinished_runs(&a).await.unwrap().len(), 1);
    // A's own transition still applies.
    assert_eq!(
        ledger
            .mark_stored(&run, &stored("frr_held_by_a"), NOW + 6)
            .await
            .unwrap(),
        Transition::Applied
    );
    // And once stored, B still gets OtherAccount, not A's state.
    assert_eq!(ledger.mark_succeeded(&as_b, NOW + 7).await.unwrap(), other);
}

#[tokio::test]
async fn secrets_manager_secret_with_several_accounts_is_read() {
    let sdk = local_aws().await;
    let json = serde_json::json!({"accounts": [
        {"account": ACCOUNT_A, "api_key": "sk_test_alpha_secret", "webhook_secret": "whsec_alpha"},
        {"account": ACCOUNT_B, "api_key": "rk_test_bravo_secret", "webhook_secret": "whsec_b1,whsec_b2"},
    ]})
    .to_string();
    let arn = test_support::secret(&sdk, &json).await;
    let accounts = load_stripe_secrets(&sdk, &SecretSource::SecretsManager { arn })
        .await
        .unwrap();
    let entries = accounts.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].account, Some(account_a()));
    assert_eq!(
        entries[0].require_api_key().unwrap().expose(),
        "sk_test_alpha_secret"
    );
    assert_eq!(entries[0].webhook_secrets.len(), 1);
    assert_eq!(entries[1].account, Some(account_b()));
    assert_eq!(
        entries[1].require_api_key().unwrap().expose(),
        "rk_test_bravo_secret"
    );
    let secrets: Vec<&str> = entries[1]
        .require_webhook_secrets()
        .unwrap()
        .iter()
        .map(|s| s.expose())
        .collect();
    assert_eq!(secrets, ["whsec_b1", "whsec_b2"]);

    // An element without its account id, or one account twice, is refused
    // with one line that shows no key.
    for bad in [
        serde_json::json!({"accounts": [
            {"api_key": "sk_test_leaky_one", "webhook_secret": "whsec_x"},
        ]}),
        serde_json::json!({"accounts": [
            {"account": ACCOUNT_A, "api_key": "sk_test_leaky_one", "webhook_secret": "whsec_x"},
            {"account": ACCOUNT_A, "api_key": "sk_test_leaky_two", "webhook_secret": "whsec_y"},
        ]}),
        serde_json::json!({"accounts": []}),
    ] {
        let arn = test_support::secret(&sdk, &bad.to_string()).await;
        let err = load_stripe_secrets(&sdk, &SecretSource::SecretsManager { arn })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("STRIPE_SECRET_ARN:"), "{err}");
        assert!(!err.contains("sk_test_leaky"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn a_request_for_a_run_held_for_another_account_is_taken_back() {
    let ledger = ledger().await;
    let (a, b) = (account_a(), account_b());
    // A delivery attributed to A wrote the run item for A (no request).
    let as_a = facts_of(&a, "frr_misattributed");
    assert_eq!(
        ledger.mark_succeeded(&as_a, NOW).await.unwrap(),
        Transition::Applied
    );
    let before = ledger.run("frr_misattributed").await.unwrap().unwrap();
    assert_eq!(before.request_key, None);

    // B's scheduler, whose key lists the run, records it under B's request.
    let as_b = facts_of(&b, "frr_misattributed");
    let key = key_of(&b, 50);
    assert_eq!(
        ledger.record_requested(&key, &as_b, NOW + 5).await.unwrap(),
        Recorded::OtherAccount { owner: a.clone() }
    );
    // The request item written on the way is gone again: B's request is
    // free for a run of B's own.
    assert_eq!(ledger.requested_run(&key).await.unwrap(), None);
    // A's run item as it was: not linked to B's request, still A's.
    assert_eq!(
        ledger.run("frr_misattributed").await.unwrap(),
        Some(before.clone())
    );
    assert!(ledger.unfinished_runs(&b).await.unwrap().is_empty());

    // Asked again (the next invocation): the same answer, nothing left behind.
    assert_eq!(
        ledger
            .record_requested(&key, &as_b, NOW + 60)
            .await
            .unwrap(),
        Recorded::OtherAccount { owner: a.clone() }
    );
    assert_eq!(ledger.requested_run(&key).await.unwrap(), None);

    // The request is B's to give to its own run.
    let own = facts_of(&b, "frr_of_b_for_that_interval");
    assert_eq!(
        ledger.record_requested(&key, &own, NOW + 61).await.unwrap(),
        Recorded::New
    );
    assert_eq!(
        ledger.requested_run(&key).await.unwrap().as_deref(),
        Some("frr_of_b_for_that_interval")
    );
    let record = ledger
        .run("frr_of_b_for_that_interval")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.facts.account, b);
    assert_eq!(record.request_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        ledger.run("frr_misattributed").await.unwrap(),
        Some(before),
        "A's run is untouched by B's request"
    );

    // A request B already holds for another run stays that run's: the
    // answer names that run, and B's request is not taken back.
    assert_eq!(
        ledger
            .record_requested(&key, &as_b, NOW + 62)
            .await
            .unwrap(),
        Recorded::AlreadyRequested {
            run_id: "frr_of_b_for_that_interval".into()
        }
    );
    assert_eq!(
        ledger.requested_run(&key).await.unwrap().as_deref(),
        Some("frr_of_b_for_that_interval")
    );
}
