//! The scheduler of several Stripe accounts, through its handler, against
//! an emulator serving two accounts (each selected by its own key, with its
//! own runs and rate limit) and moto's server: each account's runs are made
//! with its key only and recorded under its account; a spec for one account
//! is requested for that one only; an account whose key is revoked does not
//! stop the other; the accounts are worked at the same time.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use stripe_emulator::{AccountConfig, Emulator, EmulatorConfig, Faults, ReportTypeConfig};
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::{ReportSpec, read_specs};
use stripe_reports::ports::Ledger;
use stripe_reports::scheduler::{Outcome, Summary};

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

#[tokio::test]
async fn each_accounts_runs_are_made_with_its_own_key_and_recorded_under_it() {
    let clock = Clock::read_with_room(600);
    let emulator = emulator_of(
        &BOTH,
        vec![report_type(&clock, BALANCE), report_type(&clock, PAYOUTS)],
    )
    .await;
    let aws = aws().await;
    let specs = vec![ReportSpec::new(BALANCE), ReportSpec::new(PAYOUTS)];
    let service = schedulers(aws.ledger.clone(), &aws, &emulator, &BOTH, specs.clone(), 3);
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
    let emulator = emulator_of(
        &BOTH,
        vec![report_type(&clock, BALANCE), report_type(&clock, PAYOUTS)],
    )
    .await;
    emulator.set_faults(Faults {
        revoked_accounts: vec![A.into()],
        ..Faults::default()
    });
    let aws = aws().await;
    let service = schedulers(
        aws.ledger.clone(),
        &aws,
        &emulator,
        &BOTH,
        vec![ReportSpec::new(BALANCE), ReportSpec::new(PAYOUTS)],
        3,
    );
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
    service.max_rps = MAX_RPS;
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
