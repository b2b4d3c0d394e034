//! The scheduler of several Stripe accounts, through its handler, against
//! an emulator serving two accounts (each selected by its own key, with its
//! own runs and rate limit) and moto's server: each account's runs are made
//! with its key only and recorded under its account; a spec for one account
//! is requested for that one only; an account whose key is revoked does not
//! stop the other; the accounts are worked at the same time.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use stripe_emulator::{
    AccountConfig, Emulator, EmulatorConfig, Faults, Injection, ReportTypeConfig,
};
use stripe_reports::accounts::{AccountClients, Accounts};
use stripe_reports::aws::SqsQueue;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::config::{FileHosts, RateSettings, StripeAccounts};
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::{ReportSpec, read_specs};
use stripe_reports::ports::{Ledger, RunFacts, Transition};
use stripe_reports::scheduler::{AccountSchedulers, Outcome, Summary};
use stripe_reports::stripe::{ApiKey, CreateReportRun, StripeClient, StripeClientConfig};

const A: &str = "acct_1SchedulerTestsA00";
const KEY_A: &str = "sk_test_scheduler_account_a";
const B: &str = "acct_1SchedulerTestsB00";
const KEY_B: &str = "sk_test_scheduler_account_b";
const BOTH: [(&str, &str); 2] = [(A, KEY_A), (B, KEY_B)];

const BALANCE: &str = "balance.summary.1";
const PAYOUTS: &str = "payouts.itemized.3";

fn id(account: &str) -> AccountId {
    AccountId::parse(account).unwrap()
}

fn scheduled() -> Value {
    event_file("scheduler-scheduled.json")
}

/// The emulator serving `accounts` (each with every report type).
async fn emulator_of(accounts: &[(&str, &str)], types: Vec<ReportTypeConfig>) -> Emulator {
    test_support::emulator_with(EmulatorConfig {
        accounts: accounts
            .iter()
            .map(|(account, key)| AccountConfig::new(*account, *key))
            .collect(),
        report_types: types,
        run_delay: Duration::from_millis(20),
        ..EmulatorConfig::default()
    })
    .await
}

/// Waits until the emulator has finished every run of every account.
async fn settle_all(emulator: &Emulator, accounts: &[&str]) {
    for _ in 0..200 {
        if accounts
            .iter()
            .flat_map(|account| emulator.runs_of(account))
            .all(|run| run["status"] != "pending")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("runs never finished");
}

fn ids(runs: &[Value]) -> BTreeSet<String> {
    runs.iter()
        .map(|run| run["id"].as_str().unwrap().to_owned())
        .collect()
}

/// One account's part of an answer.
fn part<'a>(answer: &'a Value, account: &str) -> &'a Value {
    answer["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|part| part["account"] == account)
        .unwrap_or_else(|| panic!("no part for {account} in {answer}"))
}

/// The specs most tests here schedule: balance and payouts.
fn balance_and_payouts() -> Vec<ReportSpec> {
    vec![ReportSpec::new(BALANCE), ReportSpec::new(PAYOUTS)]
}

/// Both accounts with balance and payouts data at the emulator, the test's
/// AWS resources, and the scheduler of both for those types over 3 days.
async fn both_accounts_with_balance_and_payouts(clock: &Clock) -> (Emulator, Aws, Service) {
    let emulator = emulator_of(
        &BOTH,
        vec![report_type(clock, BALANCE), report_type(clock, PAYOUTS)],
    )
    .await;
    let aws = aws().await;
    let service = schedulers(
        aws.ledger.clone(),
        &aws,
        &emulator,
        &BOTH,
        balance_and_payouts(),
        3,
    );
    (emulator, aws, service)
}

#[tokio::test]
async fn each_accounts_runs_are_made_with_its_own_key_and_recorded_under_it() {
    let clock = Clock::read_with_room(600);
    let (emulator, aws, service) = both_accounts_with_balance_and_payouts(&clock).await;
    let specs = balance_and_payouts();
    let answer = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap();
    let total: Summary = serde_json::from_value(answer.clone()).unwrap();
    assert_eq!((total.created, total.errors), (12, 0), "{answer}");
    assert_eq!(answer["accounts"].as_array().unwrap().len(), 2, "{answer}");
    for account in [A, B] {
        assert_eq!(part(&answer, account)["created"], 6, "{answer}");
    }

    // Every request carried one of the two keys, and only ever touched
    // objects of the account whose key it carried.
    let requests = emulator.requests();
    for account in [A, B] {
        assert!(
            requests
                .iter()
                .any(|r| r.account.as_deref() == Some(account)),
            "no request with {account}'s key"
        );
    }
    for request in &requests {
        let presented = request
            .account
            .as_deref()
            .unwrap_or_else(|| panic!("a request without a known key: {request:?}"));
        assert!(
            request
                .object_account
                .as_deref()
                .is_none_or(|owner| owner == presented),
            "{presented}'s key was sent for another account's object: {request:?}"
        );
    }

    // Each account's runs exist at Stripe under that account, and the
    // ledger holds them under that account's request keys.
    for account in [A, B] {
        let runs = emulator.runs_of(account);
        assert_eq!(runs.len(), 6, "{account}");
        for run in &runs {
            let run_id = run["id"].as_str().unwrap();
            let record = aws.ledger.run(run_id).await.unwrap().unwrap();
            assert_eq!(record.facts.account, id(account));
            let key = record.request_key.unwrap();
            assert!(key.starts_with(&format!("request#{account}#")), "{key}");
            let spec = specs
                .iter()
                .find(|spec| run["report_type"] == spec.report_type.as_str())
                .unwrap();
            let interval = Interval {
                start: run["parameters"]["interval_start"].as_i64().unwrap(),
                end: run["parameters"]["interval_end"].as_i64().unwrap(),
            };
            assert_eq!(
                aws.ledger
                    .requested_run(&RequestKey::new(&id(account), spec, interval, 0))
                    .await
                    .unwrap()
                    .as_deref(),
                Some(run_id)
            );
        }
    }
    assert!(ids(&emulator.runs_of(A)).is_disjoint(&ids(&emulator.runs_of(B))));

    // Once the runs finish, reconcile puts each on the download queue with
    // the account whose key reads it.
    settle_all(&emulator, &[A, B]).await;
    let reconciled: Summary = serde_json::from_value(
        scheduler::handle_at(&service, scheduled(), clock.now + 600)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (reconciled.enqueued, reconciled.created),
        (12, 0),
        "{reconciled:?}"
    );
    let messages = aws.drain().await;
    assert_eq!(messages.len(), 12, "{messages:?}");
    for account in [A, B] {
        let enqueued: BTreeSet<String> = messages
            .iter()
            .filter(|message| message["account"] == account)
            .map(|message| message["run_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(enqueued, ids(&emulator.runs_of(account)), "{account}");
    }
    // Nothing but the two accounts' keys reached Stripe, then either.
    assert_eq!(emulator.stats().unauthorized, 0);
}

#[tokio::test]
async fn a_spec_for_one_account_is_requested_for_that_account_only() {
    let clock = Clock::read();
    let emulator = emulator_of(
        &BOTH,
        vec![report_type(&clock, BALANCE), report_type(&clock, PAYOUTS)],
    )
    .await;
    let aws = aws().await;
    // As REPORTS reads them: balance for A only, payouts for every account.
    let specs = read_specs(
        serde_json::from_value(json!([
            {"report_type": BALANCE, "account": A},
            {"report_type": PAYOUTS},
        ]))
        .unwrap(),
    )
    .unwrap();
    let service = schedulers(aws.ledger.clone(), &aws, &emulator, &BOTH, specs, 2);
    let answer = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap();
    assert_eq!(part(&answer, A)["created"], 4, "{answer}");
    assert_eq!(part(&answer, B)["created"], 2, "{answer}");
    let types = |account: &str| -> BTreeSet<String> {
        emulator
            .runs_of(account)
            .iter()
            .map(|run| run["report_type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(types(A), BTreeSet::from([BALANCE.into(), PAYOUTS.into()]));
    assert_eq!(types(B), BTreeSet::from([PAYOUTS.into()]));
    assert_eq!(emulator.runs_of(B).len(), 2);
    // B's key never asked anything about the balance report.
    let asked_for_balance = |account: &str| {
        emulator
            .requests()
            .iter()
            .any(|r| r.account.as_deref() == Some(account) && r.path.contains(BALANCE))
    };
    assert!(asked_for_balance(A));
    assert!(!asked_for_balance(B));

    // New balance data announced for B (the schedule queue) is not a type
    // B has: the message fails alone and nothing is created; A's is planned.
    let mut batch = schedule_message_of(A, BALANCE);
    let mut for_b = batch["Records"][0].clone();
    for_b["messageId"] = json!("balance-of-b");
    for_b["body"] =
        json!(json!({"report_type": BALANCE, "data_available_end": 0, "account": B}).to_string());
    batch["Records"].as_array_mut().unwrap().push(for_b);
    let response = scheduler::handle_at(&service, batch, clock.now + 60)
        .await
        .unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "balance-of-b"}]})
    );
    assert_eq!(types(B), BTreeSet::from([PAYOUTS.into()]));
    assert!(!asked_for_balance(B));
    assert_eq!(emulator.stats().runs_created, 6);
}

#[tokio::test]
async fn an_account_whose_key_is_revoked_does_not_stop_the_other() {
    let clock = Clock::read_with_room(120);
    let (emulator, _aws, service) = both_accounts_with_balance_and_payouts(&clock).await;
    emulator.set_faults(Faults {
        revoked_accounts: vec![A.into()],
        ..Faults::default()
    });
    let err = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap_err()
        .to_string();
    // "<n> request(s) failed; … (<the failing accounts>): <answer>"
    let at = err.find("): {").unwrap_or_else(|| panic!("{err}"));
    let (reason, answer) = (&err[..at], &err[at + 3..]);
    assert!(reason.contains(A), "A is named: {err}");
    assert!(!reason.contains(B), "B is not failing: {err}");
    let answer: Value = serde_json::from_str(answer).unwrap();
    // B's runs were all created; A's wait.
    assert_eq!(part(&answer, B)["created"], 6, "{answer}");
    assert_eq!(part(&answer, B)["errors"], 0, "{answer}");
    assert!(part(&answer, A)["errors"].as_u64() > Some(0), "{answer}");
    assert_eq!(emulator.runs_of(B).len(), 6);
    assert!(emulator.runs_of(A).is_empty());
    assert!(emulator.stats().unauthorized > 0);
    // The metrics of the invocation count one failing account.
    let outcome: Outcome = serde_json::from_value(answer.clone()).unwrap();
    assert_eq!(outcome.failing_accounts(), 1, "{answer}");
    let metrics = scheduler::summary_metrics(
        "scheduled",
        &outcome.total(),
        Some(outcome.failing_accounts()),
    );
    let failing = metrics.iter().find(|m| m.name == "FailingAccounts");
    assert_eq!(failing.map(|m| m.value), Some(1.0));
    let created = metrics.iter().find(|m| m.name == "RunsCreated");
    assert_eq!(created.map(|m| m.value), Some(6.0));

    // A new key is in place: the next invocation catches A up, and leaves B be.
    emulator.set_faults(Faults::default());
    let healed = scheduler::handle_at(&service, scheduled(), clock.now + 60)
        .await
        .unwrap();
    assert_eq!(part(&healed, A)["created"], 6, "{healed}");
    assert_eq!(part(&healed, B)["created"], 0, "{healed}");
    let outcome: Outcome = serde_json::from_value(healed).unwrap();
    assert_eq!(outcome.failing_accounts(), 0);
    assert_eq!(emulator.stats().runs_created, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_stripe_tells_to_wait_does_not_hold_up_the_other() {
    // Stripe answers A's first request with a 429 and `Retry-After: 5`: A
    // waits five seconds. B, worked at the same time with its own key and
    // its own pace, has all its runs long before A's retry.
    const WAIT: Duration = Duration::from_secs(5);
    let clock = Clock::read_with_room(120);
    let (emulator, _aws, service) = both_accounts_with_balance_and_payouts(&clock).await;
    emulator.set_faults(Faults {
        inject: vec![Injection {
            path_prefix: "/v1/".into(),
            status: 429,
            retry_after: Some(WAIT.as_secs().to_string()),
            times: 1,
            account: Some(A.into()),
            ..Injection::default()
        }],
        ..Faults::default()
    });
    let started = Instant::now();
    let answer = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took >= WAIT, "A waited out Stripe's Retry-After: {took:?}");
    // In the emulator's log, in arrival order: every one of B's runs was
    // created before A's retry, while A waited (A's first request, answered
    // 429, and B's are sent at the same time: either may arrive first).
    let requests = emulator.requests();
    let of_a: Vec<usize> = (0..requests.len())
        .filter(|&at| requests[at].account.as_deref() == Some(A))
        .collect();
    let (first_of_a, retry_of_a) = (of_a[0], of_a[1]);
    assert!(requests[first_of_a].path.starts_with("/v1/reporting/"));
    let creates_of_b: Vec<usize> = (0..requests.len())
        .filter(|&at| {
            requests[at].account.as_deref() == Some(B)
                && requests[at].method == "POST"
                && requests[at].path == "/v1/reporting/report_runs"
        })
        .collect();
    assert_eq!(creates_of_b.len(), 6);
    assert!(
        creates_of_b.iter().all(|&at| at < retry_of_a),
        "B's creates at {creates_of_b:?}, A's first request at {first_of_a}, its retry at {retry_of_a}"
    );
    // Then A caught up in the same invocation: nothing lost, nothing failing.
    for account in [A, B] {
        assert_eq!(part(&answer, account)["created"], 6, "{answer}");
        assert_eq!(part(&answer, account)["errors"], 0, "{answer}");
        assert_eq!(emulator.runs_of(account).len(), 6, "{account}");
    }
    assert_eq!(emulator.stats().injected_errors, 1, "one 429, to A");
}

/// One scheduled invocation over `accounts`, each with the same work (20
/// report types × 2 days), at `MAX_RPS` per account against an emulator
/// that rate-limits each account's key: the time it took and the answer.
async fn timed_invocation(accounts: &[(&str, &str)], clock: &Clock) -> (Duration, Value) {
    const MAX_RPS: u32 = 10;
    let types: Vec<ReportTypeConfig> = (0..20)
        .map(|i| report_type(clock, &format!("concurrency.type_{i:02}.1")))
        .collect();
    let specs: Vec<ReportSpec> = types
        .iter()
        .map(|t| ReportSpec::new(t.id.clone()))
        .collect();
    let emulator = emulator_of(accounts, types).await;
    emulator.set_faults(Faults {
        rate_limit_rps: Some(MAX_RPS + 2),
        ..Faults::default()
    });
    let aws = aws().await;
    let mut service = schedulers(aws.ledger.clone(), &aws, &emulator, accounts, specs, 2);
    service.rates = RateSettings::fixed(f64::from(MAX_RPS));
    let started = Instant::now();
    let answer = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap();
    let took = started.elapsed();
    for (account, _) in accounts {
        assert_eq!(part(&answer, account)["created"], 40, "{answer}");
        assert_eq!(emulator.runs_of(account).len(), 40, "{account}");
    }
    (took, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_take_about_the_time_of_one() {
    let clock = Clock::read();
    let (one, _) = timed_invocation(&[(A, KEY_A)], &clock).await;
    let (two, answer) = timed_invocation(&BOTH, &clock).await;
    println!(
        "accounts: one={one:?} two={two:?} ratio={:.2}",
        two.as_secs_f64() / one.as_secs_f64()
    );
    // Each account's 61 requests (the run list, 20 report types, 40
    // creates) at 10/s: the rate limit, not the machine, sets the time.
    assert!(one >= Duration::from_secs(5), "{one:?}");
    assert_eq!(answer["created"], 80, "{answer}");
    // Each account has its own budget, and both are worked at once.
    assert!(
        two.as_secs_f64() < 1.6 * one.as_secs_f64(),
        "two accounts took {two:?}, one took {one:?}"
    );
}

/// A client of the emulator without a key of its own (each account's key
/// is given per request), retrying quickly.
fn keyless_client(emulator: &Emulator) -> StripeClient {
    let mut config = StripeClientConfig::new(
        emulator.base_url().parse().unwrap(),
        ApiKey::None,
        FileHosts::parse("127.0.0.1").unwrap(),
    );
    config.retry = test_support::quick_retries(3);
    StripeClient::new(config).unwrap()
}

/// The scheduler of `pairs` as a cold start builds it: each key checked
/// with the emulator (`GET /v1/account`), not taken as configured.
async fn checked_schedulers(
    aws: &Aws,
    emulator: &Emulator,
    pairs: &[(&str, &str)],
    specs: Vec<ReportSpec>,
    lookback_days: u32,
) -> Service {
    let list: Vec<Value> = pairs
        .iter()
        .map(|(account, key)| json!({"account": account, "api_key": key}))
        .collect();
    let configured = StripeAccounts::from_accounts_json(&Value::Array(list).to_string()).unwrap();
    let accounts = Arc::new(
        Accounts::load(configured.into(), Arc::new(keyless_client(emulator)))
            .await
            .unwrap(),
    );
    let mut service = AccountSchedulers::new(
        accounts.clone(),
        aws.ledger.clone(),
        AccountClients::new(keyless_client(emulator), accounts),
        SqsQueue::new(aws.sqs.clone(), &aws.download_url),
        specs,
        lookback_days,
    );
    service.rates = RateSettings::fixed(100.0);
    service
}

/// The UTC date of `unix`, as a backfill names it.
fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

#[tokio::test]
async fn a_backfill_naming_one_account_is_not_stopped_by_another_accounts_revoked_key() {
    let clock = Clock::read();
    let emulator = emulator_of(&BOTH, vec![report_type(&clock, BALANCE)]).await;
    // A's key is revoked from before the cold start: its check fails there.
    emulator.set_faults(Faults {
        revoked_accounts: vec![A.into()],
        ..Faults::default()
    });
    let aws = aws().await;
    let service =
        checked_schedulers(&aws, &emulator, &BOTH, vec![ReportSpec::new(BALANCE)], 3).await;
    let checks_of_a = || {
        emulator
            .requests()
            .iter()
            .filter(|r| r.account.as_deref() == Some(A))
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(checks_of_a(), ["/v1/account"], "A's key was checked once");

    let backfill = |accounts: &[&str]| {
        json!({"backfill": {"from": date(clock.today - 2 * DAY), "to": date(clock.today),
                            "accounts": accounts}})
    };
    let answer = scheduler::handle_at(&service, backfill(&[B]), clock.now)
        .await
        .unwrap_or_else(|err| panic!("a backfill of B alone failed: {err}"));
    // B's part alone: A was not asked for, so it is neither worked nor failing.
    let parts = answer["accounts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{answer}");
    assert_eq!(parts[0]["account"], B, "{answer}");
    assert_eq!(part(&answer, B)["errors"], 0, "{answer}");
    assert_eq!(part(&answer, B)["created"], 2, "{answer}");
    assert_eq!(answer["created"], 2, "{answer}");
    // B's runs only, made with B's key; nothing more sent with A's.
    assert_eq!(emulator.runs_of(B).len(), 2);
    assert!(emulator.runs_of(A).is_empty());
    assert_eq!(checks_of_a(), ["/v1/account"]);
    let outcome: Outcome = serde_json::from_value(answer.clone()).unwrap();
    assert_eq!(outcome.failing_accounts(), 0, "{answer}");

    // A backfill naming A is where A's failure shows.
    let err = scheduler::handle_at(&service, backfill(&[A]), clock.now)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(A), "{err}");
    assert!(emulator.runs_of(A).is_empty());
    assert_eq!(emulator.runs_of(B).len(), 2);
}

#[tokio::test]
async fn a_run_the_ledger_holds_for_another_account_does_not_hold_up_the_accounts_creates() {
    let clock = Clock::read_with_room(120);
    let emulator = emulator_of(&BOTH, vec![report_type(&clock, BALANCE)]).await;
    let aws = aws().await;
    // A run B made at Stripe (with B's key) for yesterday...
    let yesterday = Interval {
        start: clock.today - DAY,
        end: clock.today,
    };
    let spec = ReportSpec::new(BALANCE);
    let of_b = test_support::stripe_client(
        &emulator,
        KEY_B,
        "127.0.0.1",
        test_support::quick_retries(0),
    )
    .create_report_run(
        &CreateReportRun::for_spec(&spec, yesterday),
        "made-by-b-elsewhere",
    )
    .await
    .unwrap();
    // ...that the ledger holds for A, as a delivery attributed to A leaves it.
    let as_a = RunFacts {
        account: id(A),
        run_id: of_b.id.clone(),
        report_type: BALANCE.into(),
        interval_start: Some(yesterday.start),
        interval_end: Some(yesterday.end),
    };
    assert_eq!(
        aws.ledger.mark_succeeded(&as_a, clock.now).await.unwrap(),
        Transition::Applied
    );

    let service = schedulers(
        aws.ledger.clone(),
        &aws,
        &emulator,
        &BOTH,
        vec![spec.clone()],
        3,
    );
    let answer = scheduler::handle_at(&service, scheduled(), clock.now)
        .await
        .unwrap_or_else(|err| panic!("the scheduled invocation failed: {err}"));
    // B adopted nothing, and created every planned run: none was deferred.
    let b = part(&answer, B);
    assert_eq!(b["planned"], 3, "{answer}");
    assert_eq!(b["created"], 3, "{answer}");
    assert_eq!(b["deferred"], 0, "{answer}");
    assert_eq!(b["adopted"], 0, "{answer}");
    assert_eq!(b["errors"], 0, "{answer}");
    assert_eq!(part(&answer, A)["created"], 3, "{answer}");
    assert_eq!(
        emulator.runs_of(B).len(),
        4,
        "B's 3 and the one the ledger holds for A"
    );
    // The run stays A's in the ledger; B's request for yesterday names a
    // run of B's own, made now.
    let held = aws.ledger.run(&of_b.id).await.unwrap().unwrap();
    assert_eq!(held.facts.account, id(A));
    assert_eq!(held.request_key, None);
    let requested = aws
        .ledger
        .requested_run(&RequestKey::new(&id(B), &spec, yesterday, 0))
        .await
        .unwrap()
        .expect("B's request for yesterday");
    assert_ne!(requested, of_b.id);
    let record = aws.ledger.run(&requested).await.unwrap().unwrap();
    assert_eq!(record.facts.account, id(B));
    assert!(ids(&emulator.runs_of(B)).contains(&requested));

    // The next invocation is quiet: nothing created, nothing failing.
    let again = scheduler::handle_at(&service, scheduled(), clock.now + 60)
        .await
        .unwrap_or_else(|err| panic!("the next invocation failed: {err}"));
    assert_eq!(part(&again, B)["created"], 0, "{again}");
    assert_eq!(part(&again, B)["errors"], 0, "{again}");
    assert_eq!(emulator.runs_of(B).len(), 4);
    assert_eq!(
        aws.ledger
            .run(&of_b.id)
            .await
            .unwrap()
            .unwrap()
            .facts
            .account,
        id(A)
    );
}
