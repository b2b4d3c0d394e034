//! `stripe-reports status` as an operator runs it, against a ledger in moto:
//! the table, `--json`, and the exit code that monitoring reads.

use std::process::Command;

use serde_json::Value;
use stripe_reports::aws::DynamoLedger;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::StoredObject;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::ports::{Ledger, RunFacts};
use test_support::{Clock, DAY, ledger, local_aws};

const BALANCE: &str = "balance.summary.1";
const PAYOUTS: &str = "payouts.itemized.3";

fn status(table: &str, reports: &str, args: &[&str]) -> (i32, String, String) {
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
    // No Stripe key: status reads the ledger only.
    let output = command
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
    spec: &ReportSpec,
    interval: Interval,
    attempt: u32,
    status: &str,
    created: i64,
) -> String {
    let run_id = format!(
        "frr_{}_{}_{attempt}",
        spec.report_type.replace('.', "_"),
        interval.start
    );
    let facts = RunFacts {
        run_id: run_id.clone(),
        report_type: spec.report_type.clone(),
        interval_start: Some(interval.start),
        interval_end: Some(interval.end),
    };
    ledger
        .record_requested(&RequestKey::new(spec, interval, attempt), &facts, created)
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
async fn status_shows_what_is_overdue_or_failed_and_exits_non_zero() {
    let clock = Clock::read();
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let balance = ReportSpec::new(BALANCE);
    let payouts = ReportSpec::new(PAYOUTS);
    // The scheduler saw data up to yesterday's end 30 h ago, up to today
    // 5 h ago: every interval of the 3-day window is due.
    for kind in [BALANCE, PAYOUTS] {
        ledger
            .record_availability(kind, clock.today - DAY, clock.now - 30 * 3600)
            .await
            .unwrap();
        ledger
            .record_availability(kind, clock.today, clock.now - 5 * 3600)
            .await
            .unwrap();
    }
    // balance: stored 3 days ago, failed twice 2 days ago, pending since 4 h.
    run_in(
        &ledger,
        &balance,
        day(&clock, 3),
        0,
        "stored",
        clock.now - 29 * 3600,
    )
    .await;
    run_in(
        &ledger,
        &balance,
        day(&clock, 2),
        0,
        "failed",
        clock.now - 29 * 3600,
    )
    .await;
    run_in(
        &ledger,
        &balance,
        day(&clock, 2),
        1,
        "failed",
        clock.now - 28 * 3600,
    )
    .await;
    let pending = run_in(
        &ledger,
        &balance,
        day(&clock, 1),
        0,
        "pending",
        clock.now - 4 * 3600,
    )
    .await;
    // payouts: everything stored.
    for days_ago in 1..=3 {
        run_in(
            &ledger,
            &payouts,
            day(&clock, days_ago),
            0,
            "stored",
            clock.now - 4 * 3600,
        )
        .await;
    }
    let reports = format!(r#"[{{"report_type":"{BALANCE}"}},{{"report_type":"{PAYOUTS}"}}]"#);

    let (code, stdout, stderr) = status(ledger.table(), &reports, &["--json"]);
    assert_eq!(code, 1, "overdue and failed: non-zero\n{stdout}\n{stderr}");
    let json: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["healthy"], false);
    let specs = json["specs"].as_array().unwrap();
    assert_eq!(specs.len(), 2);
    let balance_status = &specs[0];
    assert_eq!(balance_status["spec"]["report_type"], BALANCE);
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
    assert_eq!(specs[1]["not_stored"].as_array().unwrap().len(), 0);
    assert_eq!(
        specs[1]["last_stored"]["interval_start"],
        day(&clock, 1).start
    );

    // The table says the same to a person.
    let (code, table, _) = status(ledger.table(), &reports, &[]);
    assert_eq!(code, 1);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("report spec"), "{table}");
    let balance_row = table.lines().find(|l| l.starts_with(BALANCE)).unwrap();
    assert!(balance_row.contains(&date(day(&clock, 3).start)), "{table}");
    assert!(table.contains("OVERDUE by 4h"), "{table}");
    assert!(table.contains("failed at Stripe"), "{table}");

    // Only the healthy spec: exit 0.
    let only_payouts = format!(r#"[{{"report_type":"{PAYOUTS}"}}]"#);
    let (code, stdout, _) = status(ledger.table(), &only_payouts, &["--json"]);
    assert_eq!(code, 0, "{stdout}");
    // A ledger that cannot be read is its own exit code, with one line.
    let (code, _, stderr) = status("no-such-table", &only_payouts, &[]);
    assert_eq!(code, 3);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}
