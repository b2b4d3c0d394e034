//! The `stripe-reports` binary as a user runs it: `fetch` to a folder,
//! argument errors, and `local` driving the whole pipeline against the
//! emulator and moto's server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stripe_emulator::{Emulator, EmulatorConfig, ReportTypeConfig, WebhookConfig};
use test_support::{Clock, DAY, bucket, emulator_with, ledger, local_aws, queue, unique};

const KEY: &str = "sk_test_cli_tests";
const SECRET: &str = "whsec_cli_tests";

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stripe-reports"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    command
}

/// The UTC midnight that starts today. Read once per test, and every date of
/// the test derived from that one reading, so a test running across midnight
/// does not mix two days.
fn today() -> i64 {
    Clock::read().today
}

fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

/// A report type with data from 400 days before `today` up to `data_end`.
fn kind(id: &str, size: u64, today: i64, data_end: i64) -> ReportTypeConfig {
    let mut kind = ReportTypeConfig::new(id);
    kind.file_size = Some(size);
    kind.data_available_start = Some(today - 400 * DAY);
    kind.data_available_end = Some(data_end);
    kind
}

/// Both report types with data up to `today`'s midnight.
fn kinds(today: i64) -> Vec<ReportTypeConfig> {
    vec![
        kind("balance.summary.1", 70_000, today, today),
        kind("payouts.itemized.3", 6 * 1024 * 1024, today, today),
    ]
}

async fn emulator(
    report_types: Vec<ReportTypeConfig>,
    webhook: Option<WebhookConfig>,
    delay_ms: u64,
) -> Emulator {
    emulator_with(EmulatorConfig {
        api_key: KEY.into(),
        report_types,
        run_delay: Duration::from_millis(delay_ms),
        webhook,
        ..EmulatorConfig::default()
    })
    .await
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_saves_a_date_a_range_and_a_weekly_spec_to_a_folder() {
    let today = today();
    let emulator = emulator(kinds(today), None, 300).await;
    let out = std::env::temp_dir().join(unique("fetch"));
    let base = emulator.base_url();
    let run = |args: Vec<String>| {
        let base = base.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                bin()
                    .env("STRIPE_API_KEY", KEY)
                    .env("STRIPE_API_BASE", &base)
                    .env("STRIPE_FILE_HOSTS", "127.0.0.1")
                    .args(args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out_arg = out.to_str().unwrap().to_owned();
    // One date.
    let one = run(vec![
        "fetch".into(),
        "--report-type".into(),
        "balance.summary.1".into(),
        "--date".into(),
        date(today - 2 * DAY),
        "--out".into(),
        out_arg.clone(),
    ])
    .await;
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let stdout = String::from_utf8(one.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let expected = out.join(format!(
        "report_type=balance.summary.1/date={}",
        date(today - 2 * DAY)
    ));
    assert!(stdout.contains(expected.to_str().unwrap()), "{stdout}");
    // A range of three days.
    let range = run(vec![
        "fetch".into(),
        "--report-type".into(),
        "payouts.itemized.3".into(),
        "--from".into(),
        date(today - 5 * DAY),
        "--to".into(),
        date(today - 3 * DAY),
        "--out".into(),
        out_arg.clone(),
    ])
    .await;
    assert!(
        range.status.success(),
        "{}",
        String::from_utf8_lossy(&range.stderr)
    );
    assert_eq!(String::from_utf8(range.stdout).unwrap().lines().count(), 3);
    // A weekly spec over a month: its whole ISO weeks.
    let weekly = run(vec![
        "fetch".into(),
        "--report-type".into(),
        "balance.summary.1".into(),
        "--frequency".into(),
        "weekly".into(),
        "--from".into(),
        date(today - 35 * DAY),
        "--to".into(),
        date(today - 8 * DAY),
        "--column".into(),
        "id".into(),
        "--column".into(),
        "amount".into(),
        "--out".into(),
        out_arg.clone(),
    ])
    .await;
    assert!(
        weekly.status.success(),
        "{}",
        String::from_utf8_lossy(&weekly.stderr)
    );
    let weeks = String::from_utf8(weekly.stdout).unwrap().lines().count();
    assert!((3..=4).contains(&weeks), "{weeks} weeks");

    let files = files_under(&out);
    assert_eq!(files.len(), 1 + 3 + weeks, "{files:?}");
    // Every file is whole: the emulator's size and SHA-256.
    for run in emulator.runs() {
        let id = run["id"].as_str().unwrap();
        let path = files
            .iter()
            .find(|p| p.to_str().unwrap().ends_with(&format!("{id}.csv")))
            .expect("file for run");
        let (sha256, size) = emulator
            .file_digest(run["result"]["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), size);
        assert_eq!(sha256_file(path), sha256);
    }
    // The weekly runs carried the columns.
    assert!(
        emulator
            .runs()
            .iter()
            .any(|r| r["parameters"]["columns"] == serde_json::json!(["id", "amount"]))
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_arguments_give_one_line_and_exit_2() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["fetch", "--report-type", "balance.summary.1"],
            "give --date",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-13-01",
            ],
            "--date",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--from",
                "2026-10-02",
                "--to",
                "2026-10-01",
            ],
            "is after",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--from",
                "2026-10-02",
            ],
            "--to",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-10-01",
                "--frequency",
                "hourly",
            ],
            "hourly",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-10-01",
                "--timezone",
                "Mars/Base",
            ],
            "Mars/Base",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-10-01",
                "--out",
                "s3://",
            ],
            "no bucket",
        ),
        (vec!["local", "--schedule-every", "soon"], "duration"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let output = bin()
            .env("STRIPE_API_KEY", KEY)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, not {stderr}"
        );
        assert!(!stderr.contains(KEY), "{stderr}");
    }
    // Bad configuration is one line naming the variable.
    let output = bin()
        .env("LOOKBACK_DAYS", "seven")
        .args(["types"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap().trim(),
        "stripe-reports: LOOKBACK_DAYS: \"seven\" is not a whole number of days from 1 to 366"
    );
    // --help documents every fetch option.
    let help = String::from_utf8(bin().args(["fetch", "--help"]).output().unwrap().stdout).unwrap();
    for option in [
        "--report-type",
        "--date",
        "--from",
        "--to",
        "--frequency",
        "--timezone",
        "--column",
        "--currency",
        "--out",
    ] {
        assert!(help.contains(option), "{option} missing from --help");
    }
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the emulator has `count` runs and the ledger has each stored.
async fn wait_until_stored(
    emulator: &Emulator,
    ledger: &stripe_reports::aws::DynamoLedger,
    count: usize,
    within: Duration,
) {
    use stripe_reports::ports::Ledger;
    let deadline = Instant::now() + within;
    loop {
        let runs = emulator.runs();
        let mut stored = 0;
        for run in &runs {
            if let Some(record) = ledger.run(run["id"].as_str().unwrap()).await.unwrap() {
                stored +=
                    usize::from(record.status == stripe_reports::domain::ledger::RunStatus::Stored);
            }
        }
        if runs.len() == count && stored == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?}: {stored} of {} runs stored, expected {count}",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_runs_the_whole_pipeline_from_tick_to_stored_objects() {
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let table = ledger.table().to_owned();
    let (s3, bucket) = bucket(&sdk).await;
    let (sqs, downloads) = queue(&sdk, "dl").await;
    let (_, schedules) = queue(&sdk, "sched").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let today = today();
    // Stripe has yesterday's payouts but balance data only up to the day
    // before: the first tick plans 2 + 1 runs, and yesterday's balance run
    // waits for Stripe's `report_type.updated`.
    let emulator = emulator(
        vec![
            kind("balance.summary.1", 70_000, today, today - DAY),
            kind("payouts.itemized.3", 6 * 1024 * 1024, today, today),
        ],
        Some(WebhookConfig {
            url: format!("http://127.0.0.1:{port}/webhooks/stripe"),
            secrets: vec![SECRET.into()],
            max_attempts: 20,
            retry_delay: Duration::from_millis(200),
        }),
        500,
    )
    .await;
    let _runner = Child(
        bin()
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("AWS_")))
            .env("STRIPE_API_KEY", KEY)
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .env("STRIPE_API_BASE", emulator.base_url())
            .env("STRIPE_FILE_HOSTS", "127.0.0.1")
            .env(
                "REPORTS",
                r#"[{"report_type":"balance.summary.1"},{"report_type":"payouts.itemized.3"}]"#,
            )
            .env("LOOKBACK_DAYS", "2")
            .env("RUNS_TABLE", &table)
            .env("REPORTS_BUCKET", &bucket)
            .env("DOWNLOAD_QUEUE_URL", &downloads)
            .env("SCHEDULE_QUEUE_URL", &schedules)
            .args([
                "local",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--schedule-every",
                "1h",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The tick: payouts for 2 days, balance for the 1 day Stripe has.
    use stripe_reports::ports::Ledger;
    wait_until_stored(&emulator, &ledger, 3, Duration::from_secs(90)).await;
    assert_eq!(emulator.stats().runs_created, 3);
    let balance_runs = || -> Vec<(i64, i64)> {
        let mut intervals: Vec<(i64, i64)> = emulator
            .runs()
            .iter()
            .filter(|r| r["report_type"] == "balance.summary.1")
            .map(|r| {
                let p = &r["parameters"];
                (
                    p["interval_start"].as_i64().unwrap(),
                    p["interval_end"].as_i64().unwrap(),
                )
            })
            .collect();
        intervals.sort();
        intervals
    };
    assert_eq!(balance_runs(), [(today - 2 * DAY, today - DAY)]);
    assert!(
        emulator.stats().webhook_deliveries >= 3,
        "the files came through webhooks"
    );
    // New data announced by Stripe: the webhook puts `report_type.updated`
    // on the schedule queue, the runner's schedule-queue poller plans the
    // type again, and yesterday's balance run is created (no tick is due for
    // an hour: nothing else plans), downloaded and stored.
    emulator.set_data_available_end("balance.summary.1", today);
    wait_until_stored(&emulator, &ledger, 4, Duration::from_secs(60)).await;
    assert_eq!(emulator.stats().runs_created, 4);
    assert_eq!(
        balance_runs(),
        [(today - 2 * DAY, today - DAY), (today - DAY, today)],
        "the new day's run"
    );
    // Objects: one per run, bytes equal to the emulator's file.
    for run in emulator.runs() {
        let record = ledger
            .run(run["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let key = record.stored.unwrap().s3_key;
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let (sha256, _) = emulator
            .file_digest(run["result"]["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex::encode(Sha256::digest(&body)), sha256);
    }
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(listed.contents().len(), 4);
    // Queues end empty: every message handled was deleted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for url in [&downloads, &schedules] {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap();
        let counts = attrs.attributes().unwrap();
        assert_eq!(
            counts
                .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .map(String::as_str),
            Some("0"),
            "{url}"
        );
    }
}

#[test]
fn invoke_explains_a_missing_or_unreadable_event_in_one_line() {
    for (args, expected) in [
        (
            vec!["invoke", "webhook"],
            "--event FILE is required for the webhook and downloader",
        ),
        (
            vec!["invoke", "downloader", "--event", "/nonexistent.json"],
            "--event /nonexistent.json:",
        ),
        (
            vec!["invoke", "downloader", "--event", "Cargo.toml"],
            "not JSON",
        ),
    ] {
        let output = bin()
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}
