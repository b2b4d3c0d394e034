//! `stripe-reports status` as an operator runs it, against a ledger in moto:
//! the table, `--json`, and the exit code that monitoring reads, for every
//! configured account or the ones named with `--account`.

use std::process::Command;

use serde_json::Value;
use stripe_reports::aws::DynamoLedger;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::StoredObject;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{Ledger, RunFacts};
use test_support::{Clock, DAY, ledger, local_aws};

const BALANCE: &str = "balance.summary.1";
const PAYOUTS: &str = "payouts.itemized.3";
const A: &str = "acct_1StatusTestA";
const B: &str = "acct_1StatusTestB";

/// Both accounts as `STRIPE_ACCOUNTS` names them. Stripe is never asked
/// (the API base is a closed port): status reads the ledger only.
fn two_accounts() -> Vec<(&'static str, String)> {
    vec![
        (
            "STRIPE_ACCOUNTS",
            serde_json::json!([
                {"account": A, "api_key": "sk_test_status_a", "webhook_secret": "whsec_status_a"},
                {"account": B, "api_key": "sk_test_status_b", "webhook_secret": "whsec_status_b"},
            ])
            .to_string(),
        ),
        ("STRIPE_API_BASE", "http://127.0.0.1:9".into()),
    ]
}

fn status(
    table: &str,
    reports: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stripe-reports"));
    command.env_clear();
    for name in [
        "PATH",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    let output = command
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .env("RUST_LOG", "warn")
        .env("RUNS_TABLE", table)
        .env("REPORTS", reports)
        .env("LOOKBACK_DAYS", "3")
        .env("OVERDUE_AFTER_MINUTES", "60")
        .arg("status")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn day(clock: &Clock, days_ago: i64) -> Interval {
    Interval {
        start: clock.today - days_ago * DAY,
        end: clock.today - (days_ago - 1) * DAY,
    }
}

/// Records a request of `spec` over `interval` (attempt) and moves its run
/// to `status` as the functions would.
async fn run_in(
    ledger: &DynamoLedger,
    account: &AccountId,
    spec: &ReportSpec,
    interval: Interval,
    attempt: u32,
    status: &str,
    created: i64,
) -> String {
    let run_id = format!(
        "frr_{}_{}_{}_{attempt}",
        account.as_str().trim_start_matches("acct_"),
        spec.report_type.replace('.', "_"),
        interval.start
    );
    let facts = RunFacts {
        account: account.clone(),
        run_id: run_id.clone(),
        report_type: spec.report_type.clone(),
        interval_start: Some(interval.start),
        interval_end: Some(interval.end),
    };
    ledger
        .record_requested(
            &RequestKey::new(account, spec, interval, attempt),
            &facts,
            created,
        )
        .await
        .unwrap();
    match status {
        "pending" => {}
        "failed" => {
            ledger
                .mark_failed(&facts, "Unable to generate the report", created + 600)
                .await
                .unwrap();
        }
        "stored" => {
            let object = StoredObject {
                s3_key: format!("stripe/{run_id}.csv"),
                bytes: 10,
                sha256: "0".repeat(64),
                file_id: "file_1".into(),
            };
            ledger
                .mark_stored(&facts, &object, created + 1800)
                .await
                .unwrap();
        }
        other => panic!("{other}"),
    }
    run_id
}

#[tokio::test]
async fn status_shows_what_is_overdue_or_failed_per_account_and_exits_non_zero() {
    let clock = Clock::read();
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let (a, b) = (AccountId::parse(A).unwrap(), AccountId::parse(B).unwrap());
    let balance = ReportSpec::new(BALANCE);
    let payouts = ReportSpec::new(PAYOUTS);
    // The scheduler saw data up to yesterday's end 30 h ago, up to today
    // 5 h ago, in both accounts: every interval of the 3-day window is due.
    for account in [&a, &b] {
        for kind in [BALANCE, PAYOUTS] {
            ledger
                .record_availability(account, kind, clock.today - DAY, clock.now - 30 * 3600)
                .await
                .unwrap();
            ledger
                .record_availability(account, kind, clock.today, clock.now - 5 * 3600)
                .await
                .unwrap();
        }
    }
    // A's balance: stored 3 days ago, failed twice 2 days ago, pending since 4 h.
    run_in(
        &ledger,
        &a,
        &balance,
        day(&clock, 3),
        0,
        "stored",
        clock.now - 29 * 3600,
    )
    .await;
    run_in(
        &ledger,
        &a,
        &balance,
        day(&clock, 2),
        0,
        "failed",
        clock.now - 29 * 3600,
    )
    .await;
    run_in(
        &ledger,
        &a,
        &balance,
        day(&clock, 2),
        1,
        "failed",
        clock.now - 28 * 3600,
    )
    .await;
    let pending = run_in(
        &ledger,
        &a,
        &balance,
        day(&clock, 1),
        0,
        "pending",
        clock.now - 4 * 3600,
    )
    .await;
    // Everything else stored: A's payouts, and both of B's types (the same
    // intervals as A's failed and pending ones: nothing of B may show as A's).
    for (account, spec) in [(&a, &payouts), (&b, &balance), (&b, &payouts)] {
        for days_ago in 1..=3 {
            run_in(
                &ledger,
                account,
                spec,
                day(&clock, days_ago),
                0,
                "stored",
                clock.now - 4 * 3600,
            )
            .await;
        }
    }
    let reports = format!(r#"[{{"report_type":"{BALANCE}"}},{{"report_type":"{PAYOUTS}"}}]"#);

    // Every configured account, in the order configured.
    let (code, stdout, stderr) = status(ledger.table(), &reports, &["--json"], &two_accounts());
    assert_eq!(code, 1, "overdue and failed: non-zero\n{stdout}\n{stderr}");
    let json: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["healthy"], false);
    assert_eq!(json["accounts"], serde_json::json!([A, B]));
    let specs = json["specs"].as_array().unwrap();
    let of = |spec: &Value| {
        (
            spec["account"].as_str().unwrap().to_owned(),
            spec["spec"]["report_type"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        specs.iter().map(of).collect::<Vec<_>>(),
        [(A, BALANCE), (A, PAYOUTS), (B, BALANCE), (B, PAYOUTS)]
            .map(|(x, y)| (x.to_owned(), y.to_owned()))
    );
    let balance_status = &specs[0];
    assert_eq!(
        balance_status["last_stored"]["interval_start"],
        day(&clock, 3).start
    );
    let not_stored = balance_status["not_stored"].as_array().unwrap();
    assert_eq!(not_stored.len(), 2, "{not_stored:?}");
    // Newest first: the pending one, 4 h old, overdue by 4 h (due 5 h ago,
    // one hour of grace); then the one that failed on both attempts.
    assert_eq!(not_stored[0]["state"], "pending");
    assert_eq!(not_stored[0]["run_id"], pending.as_str());
    let age = not_stored[0]["age_secs"].as_i64().unwrap();
    assert!((4 * 3600..4 * 3600 + 60).contains(&age), "{age}");
    let late = not_stored[0]["overdue_secs"].as_i64().unwrap();
    assert!((4 * 3600..4 * 3600 + 60).contains(&late), "{late}");
    assert_eq!(not_stored[1]["state"], "failed");
    assert!(
        not_stored[1]["error"]
            .as_str()
            .unwrap()
            .contains("Unable to generate")
    );
    // Freshness of the stored one: from due (30 h ago) to stored.
    assert_eq!(
        balance_status["recent_freshness_secs"],
        serde_json::json!([30 * 3600 - 29 * 3600 + 1800])
    );
    for healthy in &specs[1..] {
        assert_eq!(
            healthy["not_stored"].as_array().unwrap().len(),
            0,
            "{healthy}"
        );
        assert_eq!(
            healthy["last_stored"]["interval_start"],
            day(&clock, 1).start
        );
    }
    // B's stored run of the day A's is pending: its own, not A's.
    assert_ne!(specs[2]["last_stored"]["run_id"], pending.as_str());

    // The table says the same to a person, a row per account and spec.
    let (code, table, _) = status(ledger.table(), &reports, &[], &two_accounts());
    assert_eq!(code, 1);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("account"), "{table}");
    assert!(header.contains("report spec"), "{table}");
    let balance_row = table
        .lines()
        .find(|l| l.starts_with(A) && l.contains(BALANCE))
        .unwrap();
    assert!(balance_row.contains(&date(day(&clock, 3).start)), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with(B)).count(),
        2,
        "{table}"
    );
    assert!(
        table.contains(&format!("  {A} {BALANCE} ")) && table.contains("OVERDUE by 4h"),
        "{table}"
    );
    assert!(table.contains("failed at Stripe"), "{table}");
    assert!(
        !table.contains(&format!("  {B} ")),
        "nothing of B is not stored: {table}"
    );

    // Only B, named on the command line: healthy, exit 0, without any key.
    let (code, stdout, stderr) = status(ledger.table(), &reports, &["--json", "--account", B], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: Value = serde_json::from_str(stdout.trim()).unwrap();
    let specs = json["specs"].as_array().unwrap();
    assert_eq!(specs.len(), 2);
    assert!(specs.iter().all(|spec| spec["account"] == B), "{json}");
    // Only A's healthy spec: exit 0.
    let only_payouts = format!(r#"[{{"report_type":"{PAYOUTS}"}}]"#);
    let (code, stdout, _) = status(
        ledger.table(),
        &only_payouts,
        &["--json", "--account", A],
        &[],
    );
    assert_eq!(code, 0, "{stdout}");
    // A ledger that cannot be read is its own exit code, with one line.
    let (code, _, stderr) = status("no-such-table", &only_payouts, &[], &two_accounts());
    assert_eq!(code, 3);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // No account named and no key to learn one from: one line saying how, exit 2.
    let (code, stdout, stderr) = status(ledger.table(), &only_payouts, &[], &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--account"), "{stderr}");
    // A malformed id is refused before anything is read.
    let (code, _, stderr) = status(
        ledger.table(),
        &only_payouts,
        &["--account", "sk_test_oops"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(!stderr.contains("sk_test_oops"), "{stderr}");
}

fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}
