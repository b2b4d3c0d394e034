//! The `stripe-reports` binary as a user runs it: `fetch` to a folder,
//! argument errors, and `local` driving the whole pipeline for two Stripe
//! accounts against the emulator and moto's server (by webhook, and by
//! EventBridge through the event queue).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stripe_emulator::{
    AccountConfig, Emulator, EmulatorConfig, EventBridgeConfig, ReportTypeConfig, WebhookConfig,
};
use test_support::{ACCOUNT, Clock, DAY, bucket, emulator_with, ledger, local_aws, queue, unique};

const KEY: &str = "sk_test_cli_tests";
const SECRET: &str = "whsec_cli_tests";
/// A second account, with its own key and webhook secret.
const OTHER: &str = "acct_1CliTestsOther";
const OTHER_KEY: &str = "sk_test_cli_tests_other";
const OTHER_SECRET: &str = "whsec_cli_tests_other";

/// Both accounts as the emulator serves them: [`ACCOUNT`] (the default) and [`OTHER`].
fn two_accounts() -> Vec<AccountConfig> {
    let mut first = AccountConfig::new(ACCOUNT, KEY);
    first.webhook_secrets = vec![SECRET.into()];
    let mut other = AccountConfig::new(OTHER, OTHER_KEY);
    other.webhook_secrets = vec![OTHER_SECRET.into()];
    vec![first, other]
}

/// Both accounts as `STRIPE_ACCOUNTS` gives them to the CLI.
fn stripe_accounts() -> String {
    serde_json::json!([
        {"account": ACCOUNT, "api_key": KEY, "webhook_secret": SECRET},
        {"account": OTHER, "api_key": OTHER_KEY, "webhook_secret": OTHER_SECRET},
    ])
    .to_string()
}

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
        accounts: two_accounts(),
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
async fn fetch_saves_a_date_a_range_and_a_weekly_spec_to_a_folder_under_the_keys_account() {
    let today = today();
    let emulator = emulator(kinds(today), None, 300).await;
    let out = std::env::temp_dir().join(unique("fetch"));
    let base = emulator.base_url();
    let run = |env: Vec<(&'static str, String)>, args: Vec<String>| {
        let base = base.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                bin()
                    .envs(env)
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
    let one_key = || vec![("STRIPE_API_KEY", KEY.to_owned())];
    let out_arg = out.to_str().unwrap().to_owned();
    let one_date = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "fetch",
            "--report-type",
            "balance.summary.1",
            "--date",
            &date(today - 2 * DAY),
            "--out",
            &out_arg,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    // One date, with the key of the default account: its account is learned.
    let one = run(one_key(), one_date(&[])).await;
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let stdout = String::from_utf8(one.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let expected = out.join(format!(
        "account={ACCOUNT}/report_type=balance.summary.1/date={}",
        date(today - 2 * DAY)
    ));
    assert!(stdout.contains(expected.to_str().unwrap()), "{stdout}");
    // The key of one account with --account of another: refused in one
    // line, before anything is requested.
    for env in [one_key(), vec![("STRIPE_API_KEY", OTHER_KEY.to_owned())]] {
        let wanted = if env[0].1 == KEY { OTHER } else { ACCOUNT };
        let refused = run(env, one_date(&["--account", wanted])).await;
        let stderr = String::from_utf8(refused.stderr).unwrap();
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("--account {wanted}: STRIPE_API_KEY is the key of")),
            "{stderr}"
        );
        assert!(!stderr.contains("sk_test"), "{stderr}");
    }
    assert_eq!(
        emulator.stats().runs_created,
        1,
        "nothing requested when refused"
    );
    // Several accounts configured and none named: every account, each
    // with its own key, each file under its own account=.
    let several = run(vec![("STRIPE_ACCOUNTS", stripe_accounts())], one_date(&[])).await;
    assert!(
        several.status.success(),
        "{}",
        String::from_utf8_lossy(&several.stderr)
    );
    let stdout = String::from_utf8(several.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for account in [ACCOUNT, OTHER] {
        assert!(
            stdout.contains(&format!("account={account}/report_type=balance.summary.1/")),
            "{stdout}"
        );
    }
    assert_eq!(
        emulator.runs_of(ACCOUNT).len(),
        1,
        "the default account's run was requested before: the same request, the same run"
    );
    // A range of three days, of the other account named among several.
    let range = run(
        vec![("STRIPE_ACCOUNTS", stripe_accounts())],
        vec![
            "fetch".into(),
            "--report-type".into(),
            "payouts.itemized.3".into(),
            "--from".into(),
            date(today - 5 * DAY),
            "--to".into(),
            date(today - 3 * DAY),
            "--out".into(),
            out_arg.clone(),
            "--account".into(),
            OTHER.into(),
        ],
    )
    .await;
    assert!(
        range.status.success(),
        "{}",
        String::from_utf8_lossy(&range.stderr)
    );
    let stdout = String::from_utf8(range.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3);
    assert!(
        stdout
            .lines()
            .all(|line| line.contains(&format!("account={OTHER}/report_type=payouts.itemized.3/"))),
        "{stdout}"
    );
    assert_eq!(
        emulator.runs_of(OTHER).len(),
        1 + 3,
        "created with the other account's key"
    );
    // A weekly spec over a month: its whole ISO weeks (the key's own account named).
    let weekly = run(
        one_key(),
        vec![
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
            "--account".into(),
            ACCOUNT.into(),
        ],
    )
    .await;
    assert!(
        weekly.status.success(),
        "{}",
        String::from_utf8_lossy(&weekly.stderr)
    );
    let weeks = String::from_utf8(weekly.stdout).unwrap().lines().count();
    assert!((3..=4).contains(&weeks), "{weeks} weeks");

    let files = files_under(&out);
    assert_eq!(files.len(), 2 + 3 + weeks, "{files:?}");
    // Every file is whole (the emulator's size and SHA-256), under its account.
    for account in [ACCOUNT, OTHER] {
        for run in emulator.runs_of(account) {
            let id = run["id"].as_str().unwrap();
            let path = files
                .iter()
                .find(|p| p.to_str().unwrap().ends_with(&format!("{id}.csv")))
                .expect("file for run");
            assert!(
                path.starts_with(out.join(format!("account={account}"))),
                "{path:?}"
            );
            let (sha256, size) = emulator
                .file_digest(run["result"]["id"].as_str().unwrap())
                .unwrap();
            assert_eq!(std::fs::metadata(path).unwrap().len(), size);
            assert_eq!(sha256_file(path), sha256);
        }
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

/// The itemized balance report: amounts in several currencies, both clocks.
const ITEMIZED: &str = "balance_change_from_activity.itemized.3";
/// Its table: the report type with every character outside `[a-z0-9]` made `_`.
const ITEMIZED_TABLE: &str = "balance_change_from_activity_itemized_3";

/// Runs `stripe-reports` with `env` against the emulator at `base`.
async fn stripe_reports(
    base: &str,
    env: Vec<(&'static str, String)>,
    args: Vec<String>,
) -> std::process::Output {
    let base = base.to_owned();
    tokio::task::spawn_blocking(move || {
        bin()
            .envs(env)
            .env("STRIPE_API_BASE", &base)
            .env("STRIPE_FILE_HOSTS", "127.0.0.1")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `fetch` of the itemized report for the days `from`..=`to` into `out`.
fn fetch_itemized(from: i64, to: i64, out: &Path, format: &str) -> Vec<String> {
    [
        "fetch",
        "--report-type",
        ITEMIZED,
        "--from",
        &date(from),
        "--to",
        &date(to),
        "--out",
        out.to_str().unwrap(),
        "--format",
        format,
    ]
    .map(String::from)
    .to_vec()
}

/// Where a run's table file goes in the folder `out`: the bucket's layout
/// with the folder as the root and an empty prefix (spelled out here, not
/// computed with the code under test).
fn table_path(out: &Path, account: &str, run: &serde_json::Value) -> PathBuf {
    out.join(format!(
        "tables/{ITEMIZED_TABLE}/account={account}/date={}/{}.parquet",
        date(run["parameters"]["interval_start"].as_i64().unwrap()),
        run["id"].as_str().unwrap()
    ))
}

fn csv_path(out: &Path, account: &str, run: &serde_json::Value) -> PathBuf {
    out.join(format!(
        "account={account}/report_type={ITEMIZED}/date={}/{}.csv",
        date(run["parameters"]["interval_start"].as_i64().unwrap()),
        run["id"].as_str().unwrap()
    ))
}

/// Every file under `root` with its SHA-256, by path relative to `root`.
fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    files_under(root)
        .into_iter()
        .map(|path| {
            let sha256 = sha256_file(&path);
            (path.strip_prefix(root).unwrap().to_path_buf(), sha256)
        })
        .collect()
}

/// A decimal in major units (`-12.34`, `1500`) as thousandths, the scale of
/// the table's amounts, by text alone.
fn thousandths(text: &str) -> i128 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(fraction.len() <= 3, "{text}");
    let value: i128 = format!("{whole}{fraction:0<3}").parse().unwrap();
    if negative { -value } else { value }
}

/// A table file read back with the parquet crate: its columns' types by
/// name, its rows, and for each (amount column, currency) the sum.
struct TableFile {
    types: std::collections::BTreeMap<String, arrow_schema::DataType>,
    rows: u64,
    sums: std::collections::BTreeMap<(String, String), i128>,
}

fn read_table(path: &Path) -> TableFile {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Decimal128Type;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap();
    let types: std::collections::BTreeMap<String, arrow_schema::DataType> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let footer_rows = builder.metadata().file_metadata().num_rows();
    let mut rows = 0u64;
    let mut sums = std::collections::BTreeMap::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        rows += batch.num_rows() as u64;
        for (name, ty) in &types {
            if !matches!(ty, arrow_schema::DataType::Decimal128(..)) {
                continue;
            }
            let currency_column = if name.starts_with("customer_facing_") {
                "customer_facing_currency"
            } else {
                "currency"
            };
            let amounts = batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Decimal128Type>();
            let currencies = batch
                .column_by_name(currency_column)
                .unwrap()
                .as_string::<i32>();
            for row in 0..batch.num_rows() {
                if amounts.is_null(row) {
                    continue;
                }
                let currency = currencies.value(row).to_ascii_lowercase();
                *sums.entry((name.clone(), currency)).or_insert(0i128) += amounts.value(row);
            }
        }
    }
    assert_eq!(
        rows as i64, footer_rows,
        "{path:?}: rows read and the footer's"
    );
    TableFile { types, rows, sums }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_format_both_writes_typed_table_files_that_hold_the_emulators_totals() {
    use arrow_schema::{DataType, TimeUnit};
    let today = today();
    let emulator = emulator(vec![kind(ITEMIZED, 300_000, today, today)], None, 300).await;
    let base = emulator.base_url();
    let out = std::env::temp_dir().join(unique("fetch-both"));
    let accounts = || vec![("STRIPE_ACCOUNTS", stripe_accounts())];
    let both = stripe_reports(
        &base,
        accounts(),
        fetch_itemized(today - 3 * DAY, today - 2 * DAY, &out, "both"),
    )
    .await;
    assert!(
        both.status.success(),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let stdout = String::from_utf8(both.stdout).unwrap();
    // Two accounts, two days: a CSV and a table file each.
    assert_eq!(stdout.lines().count(), 2 * 2 * 2, "{stdout}");
    for account in [ACCOUNT, OTHER] {
        let runs = emulator.runs_of(account);
        assert_eq!(runs.len(), 2, "{account}");
        for run in &runs {
            let file_id = run["result"]["id"].as_str().unwrap();
            // The CSV as before: whole, at its key.
            let csv = csv_path(&out, account, run);
            let (sha256, _) = emulator.file_digest(file_id).unwrap();
            assert_eq!(sha256_file(&csv), sha256, "{csv:?}");
            // The table file at the bucket's layout, its rows and sums the
            // emulator's (computed from integer minor units, not the text).
            let path = table_path(&out, account, run);
            let table = read_table(&path);
            let totals = emulator.file_totals(file_id).unwrap();
            assert!(totals.rows > 100, "a file of some size: {}", totals.rows);
            assert_eq!(table.rows, totals.rows, "{path:?}");
            assert!(
                stdout.contains(&format!("{}\t", path.display()))
                    && stdout.contains(&format!("\t{} rows", totals.rows)),
                "{stdout}"
            );
            let expected: std::collections::BTreeMap<(String, String), i128> = totals
                .sums
                .iter()
                .map(|((column, currency), sum)| {
                    ((column.clone(), currency.clone()), thousandths(sum))
                })
                .collect();
            assert!(
                expected.len() >= 4,
                "several amounts and currencies: {expected:?}"
            );
            assert_eq!(table.sums, expected, "{path:?}");
            // Typed columns: exact decimals, instants in UTC, wall times, text.
            let decimal = DataType::Decimal128(38, 3);
            for amount in ["gross", "fee", "net", "customer_facing_amount"] {
                assert_eq!(table.types[amount], decimal, "{amount}");
            }
            assert_eq!(
                table.types["created_utc"],
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            );
            assert_eq!(
                table.types["created"],
                DataType::Timestamp(TimeUnit::Microsecond, None)
            );
            assert_eq!(table.types["currency"], DataType::Utf8);
        }
    }
    let first = snapshot(&out);
    assert_eq!(first.len(), 2 * 2 * 2, "{first:?}");
    assert!(
        first
            .keys()
            .all(|p| p.extension().is_some_and(|e| e == "csv" || e == "parquet")),
        "no partial file left: {first:?}"
    );
    // A rerun asks for the same runs and leaves the same files, byte for byte.
    let again = stripe_reports(
        &base,
        accounts(),
        fetch_itemized(today - 3 * DAY, today - 2 * DAY, &out, "both"),
    )
    .await;
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        emulator.stats().runs_created,
        4,
        "the same request, the same runs"
    );
    assert_eq!(snapshot(&out), first, "a rerun changes nothing");
    // --format parquet: the table files only, the same bytes.
    let only = std::env::temp_dir().join(unique("fetch-parquet"));
    let parquet = stripe_reports(
        &base,
        accounts(),
        fetch_itemized(today - 3 * DAY, today - 2 * DAY, &only, "parquet"),
    )
    .await;
    assert!(
        parquet.status.success(),
        "{}",
        String::from_utf8_lossy(&parquet.stderr)
    );
    assert_eq!(
        String::from_utf8(parquet.stdout).unwrap().lines().count(),
        4
    );
    let tables_only: std::collections::BTreeMap<PathBuf, String> = first
        .into_iter()
        .filter(|(path, _)| path.starts_with("tables"))
        .collect();
    assert_eq!(tables_only.len(), 4);
    assert_eq!(snapshot(&only), tables_only, "no .csv, no partial file");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&only);
}

/// A file host for the emulator's `file_redirect_base`: the first file asked
/// for is answered with `bad` (always, for that file), every other one is
/// sent back to the emulator. Returns its base URL and the bad file's id
/// once one was asked for.
fn file_host(
    emulator: &str,
    bad: Vec<u8>,
) -> (String, std::sync::Arc<std::sync::Mutex<Option<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let chosen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let emulator = emulator.to_owned();
    let bad_file = chosen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // The headers, up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let target = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
            let path = target.split('?').next().unwrap_or("").to_owned();
            let file_id = path.split('/').nth(3).unwrap_or("").to_owned();
            let is_bad = {
                let mut chosen = bad_file.lock().unwrap();
                chosen.get_or_insert_with(|| file_id.clone()) == &file_id
            };
            let response = if is_bad {
                let mut response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bad.len()
                )
                .into_bytes();
                response.extend_from_slice(&bad);
                response
            } else {
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {emulator}{path}?redirected=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .into_bytes()
            };
            let _ = stream.write_all(&response);
        }
    });
    (base, chosen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_that_does_not_convert_is_one_line_no_table_file_and_the_other_runs_are_fetched() {
    const SIZE: u64 = 8_000;
    let today = today();
    let emulator = emulator(vec![kind(ITEMIZED, SIZE, today, today)], None, 300).await;
    let base = emulator.base_url();
    // A file of the right size whose third line has an amount that is not one.
    let mut bad =
        b"balance_transaction_id,currency,net\ntxn_1,usd,1.50\ntxn_2,usd,12.5x\n".to_vec();
    bad.resize(SIZE as usize, b'\n');
    let (host, chosen) = file_host(&base, bad);
    emulator.set_faults(stripe_emulator::Faults {
        file_redirect_base: Some(host),
        ..stripe_emulator::Faults::default()
    });
    let key = || vec![("STRIPE_API_KEY", KEY.to_owned())];
    let bad_run = |chosen: &str| {
        emulator
            .runs_of(ACCOUNT)
            .into_iter()
            .find(|run| run["result"]["id"] == chosen)
            .unwrap()
    };
    for format in ["both", "parquet"] {
        let out = std::env::temp_dir().join(unique("fetch-refused"));
        let fetched = stripe_reports(
            &base,
            key(),
            fetch_itemized(today - 3 * DAY, today - 2 * DAY, &out, format),
        )
        .await;
        let stderr = String::from_utf8(fetched.stderr).unwrap();
        assert_eq!(fetched.status.code(), Some(1), "{format}: {stderr}");
        let chosen = chosen
            .lock()
            .unwrap()
            .clone()
            .expect("a file was asked for");
        let refused = bad_run(&chosen);
        let refused_id = refused["id"].as_str().unwrap();
        // One error line (the others say which runs were requested),
        // naming the run, the line and the column.
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("stripe-reports:"))
            .collect();
        assert_eq!(errors.len(), 1, "{format}: {stderr}");
        assert!(
            stderr
                .lines()
                .all(|line| line.starts_with("requested frr_") || line == errors[0]),
            "{format}: {stderr}"
        );
        for needle in [
            refused_id,
            "not converted to Parquet",
            "line 3",
            "column net",
            "12.5x",
        ] {
            assert!(errors[0].contains(needle), "{format}: {needle} in {stderr}");
        }
        // No table file for it, none partial; the other run's is there.
        let files = snapshot(&out);
        assert!(
            !table_path(&out, ACCOUNT, &refused).exists(),
            "{format}: {files:?}"
        );
        let others: Vec<serde_json::Value> = emulator
            .runs_of(ACCOUNT)
            .into_iter()
            .filter(|run| run["id"] != refused["id"])
            .collect();
        assert_eq!(others.len(), 1);
        let other = table_path(&out, ACCOUNT, &others[0]);
        assert_eq!(
            read_table(&other).rows,
            emulator
                .file_totals(others[0]["result"]["id"].as_str().unwrap())
                .unwrap()
                .rows
        );
        let expected_files = match format {
            // The CSV as it came (the record of what was sent) stays.
            "both" => {
                assert!(csv_path(&out, ACCOUNT, &refused).exists(), "{files:?}");
                3
            }
            _ => 1,
        };
        assert_eq!(files.len(), expected_files, "{format}: {files:?}");
        assert!(
            files
                .keys()
                .all(|p| p.extension().is_some_and(|e| e == "csv" || e == "parquet")),
            "{format}: no partial file: {files:?}"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
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
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-10-01",
                "--account",
                KEY,
            ],
            "is not a Stripe account id",
        ),
        (
            vec!["status", "--account", "acct_"],
            "is not a Stripe account id",
        ),
        (
            vec!["types", "--account", "acct_ok,nope"],
            "is not a Stripe account id",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-10-01",
                "--format",
                "xml",
            ],
            "xml",
        ),
        (
            vec![
                "fetch",
                "--report-type",
                "balance.summary.1",
                "--date",
                "2026-10-01",
                "--out",
                "s3://bucket/prefix",
                "--format",
                "both",
            ],
            "write to a folder only",
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
        "--format",
        "--account",
    ] {
        assert!(help.contains(option), "{option} missing from --help");
    }
    for value in ["csv", "parquet", "both"] {
        assert!(help.contains(value), "--format {value} missing from --help");
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

/// Every run of both accounts at the emulator, as (account, run).
fn all_runs(emulator: &Emulator) -> Vec<(&'static str, serde_json::Value)> {
    [ACCOUNT, OTHER]
        .into_iter()
        .flat_map(|account| {
            emulator
                .runs_of(account)
                .into_iter()
                .map(move |run| (account, run))
        })
        .collect()
}

/// Waits until the emulator has `count` runs (both accounts) and the ledger
/// has each stored.
async fn wait_until_stored(
    emulator: &Emulator,
    ledger: &stripe_reports::aws::DynamoLedger,
    count: usize,
    within: Duration,
) {
    use stripe_reports::ports::Ledger;
    let deadline = Instant::now() + within;
    loop {
        let runs = all_runs(emulator);
        let mut stored = 0;
        for (_, run) in &runs {
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
async fn local_runs_the_whole_pipeline_for_two_accounts_from_tick_to_stored_objects() {
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
    // before, in both accounts: the first tick plans 2 + 1 runs per account,
    // and yesterday's balance runs wait for Stripe's `report_type.updated`.
    // Each account signs its webhooks with its own secret.
    let emulator = emulator(
        vec![
            kind("balance.summary.1", 70_000, today, today - DAY),
            kind("payouts.itemized.3", 6 * 1024 * 1024, today, today),
        ],
        Some(WebhookConfig {
            url: format!("http://127.0.0.1:{port}/webhooks/stripe"),
            secrets: Vec::new(),
            max_attempts: 20,
            retry_delay: Duration::from_millis(200),
        }),
        500,
    )
    .await;
    let _runner = Child(
        bin()
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("AWS_")))
            .env("STRIPE_ACCOUNTS", stripe_accounts())
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
    // The tick: per account, payouts for 2 days, balance for the 1 day Stripe has.
    use stripe_reports::ports::Ledger;
    wait_until_stored(&emulator, &ledger, 6, Duration::from_secs(90)).await;
    assert_eq!(emulator.stats().runs_created, 6);
    let balance_runs = |account: &str| -> Vec<(i64, i64)> {
        let mut intervals: Vec<(i64, i64)> = emulator
            .runs_of(account)
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
    for account in [ACCOUNT, OTHER] {
        assert_eq!(emulator.runs_of(account).len(), 3, "{account}");
        assert_eq!(balance_runs(account), [(today - 2 * DAY, today - DAY)]);
    }
    assert!(
        emulator.stats().webhook_deliveries >= 6,
        "the files came through webhooks"
    );
    // New data announced by Stripe in the other account only: the webhook
    // (verified with that account's secret) puts `report_type.updated` on
    // the schedule queue, the runner's schedule-queue poller plans the type
    // again for that account, and its yesterday's balance run is created (no
    // tick is due for an hour: nothing else plans), downloaded and stored.
    assert!(emulator.set_data_available_end_in(OTHER, "balance.summary.1", today));
    wait_until_stored(&emulator, &ledger, 7, Duration::from_secs(60)).await;
    assert_eq!(emulator.stats().runs_created, 7);
    assert_eq!(
        balance_runs(OTHER),
        [(today - 2 * DAY, today - DAY), (today - DAY, today)],
        "the new day's run"
    );
    assert_eq!(
        balance_runs(ACCOUNT),
        [(today - 2 * DAY, today - DAY)],
        "not announced there"
    );
    // Objects: one per run, under its own account, bytes equal to the emulator's file.
    for (account, run) in all_runs(&emulator) {
        let record = ledger
            .run(run["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.facts.account.as_str(), account);
        let key = record.stored.unwrap().s3_key;
        assert!(
            key.starts_with(&format!("stripe/account={account}/report_type=")),
            "{key}"
        );
        let object = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            object
                .metadata()
                .and_then(|m| m.get("account"))
                .map(String::as_str),
            Some(account)
        );
        let body = object.body.collect().await.unwrap().into_bytes();
        let (sha256, _) = emulator
            .file_digest(run["result"]["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex::encode(Sha256::digest(&body)), sha256);
    }
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(listed.contents().len(), 7);
    // The whole pipeline, both accounts interleaved: every request that
    // named an object (run, type, file, event) named one of the key's own
    // account, and every request came with one of the two keys.
    let requests = emulator.requests();
    assert!(requests.len() > 20, "{} requests", requests.len());
    for request in &requests {
        let key = request.account.as_deref();
        assert!(
            key == Some(ACCOUNT) || key == Some(OTHER),
            "a request without a configured key: {request:?}"
        );
        if let Some(owner) = request.object_account.as_deref() {
            assert_eq!(Some(owner), key, "{request:?}");
        }
    }
    for account in [ACCOUNT, OTHER] {
        assert!(
            requests
                .iter()
                .any(|r| r.account.as_deref() == Some(account)
                    && r.object_account.as_deref() == Some(account)
                    && r.path.starts_with("/v1/reporting/report_runs/")),
            "{account}'s runs were read with its key"
        );
    }
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

/// POSTs `body` to `path` on 127.0.0.1:`port`: the HTTP status answered.
fn post_status(port: u16, path: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// Messages on `url`, visible or in flight.
async fn messages_on(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .unwrap()
        .values()
        .map(|count| count.parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_takes_eventbridge_events_through_the_event_queue_and_attributes_them_by_destination()
{
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let table = ledger.table().to_owned();
    let (_, bucket) = bucket(&sdk).await;
    let (sqs, downloads) = queue(&sdk, "dl").await;
    let (_, schedules) = queue(&sdk, "sched").await;
    let (_, events) = queue(&sdk, "events").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let today = today();
    // No webhook at all: Stripe's events reach the runner only in
    // EventBridge's shape, each from its account's event destination (the
    // first account's is the emulator's default, the other's named).
    let mut accounts = two_accounts();
    accounts[1].event_destination = Some("ed_test_61CliTestsOther".into());
    let emulator = emulator_with(EmulatorConfig {
        accounts,
        report_types: vec![kind("balance.summary.1", 70_000, today, today)],
        run_delay: Duration::from_millis(500),
        eventbridge: Some(EventBridgeConfig {
            url: format!("http://127.0.0.1:{port}/eventbridge/events"),
            max_attempts: 20,
            retry_delay: Duration::from_millis(200),
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let destination = emulator.event_destination_of(ACCOUNT).unwrap();
    let _runner = Child(
        bin()
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("AWS_")))
            .env(
                "STRIPE_ACCOUNTS",
                serde_json::json!([
                    {"account": ACCOUNT, "api_key": KEY, "webhook_secret": SECRET,
                     "event_destination": destination},
                    {"account": OTHER, "api_key": OTHER_KEY, "webhook_secret": OTHER_SECRET,
                     "event_destination": "ed_test_61CliTestsOther"},
                ])
                .to_string(),
            )
            .env("STRIPE_API_BASE", emulator.base_url())
            .env("STRIPE_FILE_HOSTS", "127.0.0.1")
            .env("REPORTS", r#"[{"report_type":"balance.summary.1"}]"#)
            .env("LOOKBACK_DAYS", "1")
            .env("RUNS_TABLE", &table)
            .env("REPORTS_BUCKET", &bucket)
            .env("DOWNLOAD_QUEUE_URL", &downloads)
            .env("SCHEDULE_QUEUE_URL", &schedules)
            .env("EVENTBRIDGE_QUEUE_URL", &events)
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
    // The first tick creates one run per account; only the events (no
    // other tick for an hour) get them downloaded, each with its own key.
    wait_until_stored(&emulator, &ledger, 2, Duration::from_secs(60)).await;
    use stripe_reports::ports::Ledger;
    for (account, run) in all_runs(&emulator) {
        let record = ledger
            .run(run["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.facts.account.as_str(), account);
    }
    let stats = emulator.stats();
    assert_eq!(stats.webhook_deliveries, 0);
    assert!(stats.eventbridge_deliveries >= 2, "{stats:?}");
    assert_eq!(stats.eventbridge_failures, 0, "{stats:?}");
    // What EventBridge would never deliver is refused at the door, not queued.
    assert_eq!(post_status(port, "/eventbridge/events", b"not json"), 400);
    assert_eq!(post_status(port, "/eventbridge/events", b"[1, 2]"), 400);
    // Every event handled was deleted from the event queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    while messages_on(&sqs, &events).await != 0 {
        assert!(
            Instant::now() < deadline,
            "messages left on the event queue"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn invoke_explains_a_missing_or_unreadable_event_in_one_line() {
    for (args, expected) in [
        (
            vec!["invoke", "webhook"],
            "--event FILE is required for the webhook, eventbridge, downloader and converter",
        ),
        (
            vec!["invoke", "converter"],
            "--event FILE is required for the webhook, eventbridge, downloader and converter",
        ),
        (
            vec!["invoke", "eventbridge"],
            "--event FILE is required for the webhook, eventbridge, downloader and converter",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_lists_each_configured_accounts_report_types_with_its_own_key() {
    let today = today();
    // The other account has a report type of its own: what it lists is
    // what its key sees.
    let mut accounts = two_accounts();
    accounts[1].report_types = Some(vec![kind("payouts.itemized.3", 1024, today, today)]);
    let emulator = emulator_with(EmulatorConfig {
        accounts,
        report_types: vec![kind("balance.summary.1", 1024, today, today)],
        ..EmulatorConfig::default()
    })
    .await;
    let base = emulator.base_url();
    let types = |accounts: String, args: Vec<&'static str>| {
        let base = base.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                bin()
                    .env("STRIPE_ACCOUNTS", accounts)
                    .env("STRIPE_API_BASE", &base)
                    .arg("types")
                    .args(args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let listed = types(stripe_accounts(), vec!["--json"]).await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let pairs: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["account"].as_str().unwrap().to_owned(),
                t["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (ACCOUNT.to_owned(), "balance.summary.1".to_owned()),
            (OTHER.to_owned(), "payouts.itemized.3".to_owned())
        ]
    );
    // One account named: its rows only, in the table.
    let other = types(stripe_accounts(), vec!["--account", OTHER]).await;
    let table = String::from_utf8(other.stdout).unwrap();
    assert!(other.status.success(), "{table}");
    assert!(
        table.lines().next().unwrap().starts_with("account"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with(OTHER) && table.contains("payouts.itemized.3"),
        "{table}"
    );
    // An account not configured: one line, exit 2.
    let unknown = types(stripe_accounts(), vec!["--account", "acct_1NotConfigured"]).await;
    let stderr = String::from_utf8(unknown.stderr).unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a configured account"), "{stderr}");
    // A key labelled with another account's id stops before anything is listed.
    let swapped = serde_json::json!([
        {"account": OTHER, "api_key": KEY, "webhook_secret": SECRET},
    ])
    .to_string();
    let refused = types(swapped, vec![]).await;
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("is the key of {ACCOUNT}, not {OTHER}")),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());
    assert!(!stderr.contains(KEY), "{stderr}");
}

/// `tables backfill` queues, for the deployed converter, every stored CSV
/// whose `date=` is in the range (of the accounts and types asked), marked
/// to convert again; objects of other layouts and dates are left alone.
#[tokio::test]
async fn tables_backfill_queues_the_stored_csvs_of_a_date_range_for_conversion_again() {
    let sdk = local_aws().await;
    let table = ledger(&sdk).await;
    let (s3, bucket) = bucket(&sdk).await;
    let (sqs, conversions) = queue(&sdk, "conversions").await;
    let csv = |account: &str, kind: &str, date: &str, run: &str| {
        format!("stripe/account={account}/report_type={kind}/date={date}/{run}.csv")
    };
    // Stored runs, as the downloader leaves them in the ledger…
    for (account, kind, date, run) in [
        (ACCOUNT, "balance.summary.1", "2026-11-01", "frr_a"),
        (ACCOUNT, "payouts.itemized.3", "2026-11-02", "frr_b"),
        (OTHER, "balance.summary.1", "2026-11-02", "frr_c"),
        (ACCOUNT, "balance.summary.1", "2026-11-03", "frr_outside"),
    ] {
        use stripe_reports::ports::Ledger;
        let facts = stripe_reports::ports::RunFacts {
            run_id: run.into(),
            account: stripe_reports::domain::account::AccountId::parse(account).expect("id"),
            report_type: kind.into(),
            interval_start: None,
            interval_end: None,
        };
        let stored = stripe_reports::domain::ledger::StoredObject {
            s3_key: csv(account, kind, date, run),
            bytes: 4,
            sha256: "0".repeat(64),
            file_id: format!("file_{run}"),
        };
        table
            .mark_stored(&facts, &stored, 1_790_000_000)
            .await
            .expect("stored");
    }
    // …and a CSV the ledger does not hold (written by `fetch --out s3://`).
    for key in [
        csv(ACCOUNT, "balance.summary.1", "2026-11-01", "frr_a"),
        csv(ACCOUNT, "payouts.itemized.3", "2026-11-02", "frr_b"),
        csv(OTHER, "balance.summary.1", "2026-11-02", "frr_c"),
        csv(ACCOUNT, "balance.summary.1", "2026-11-03", "frr_outside"),
        csv(ACCOUNT, "balance.summary.1", "2026-11-02", "frr_fetched"),
        "stripe/tables/balance_summary_1/account=acct_x/date=2026-11-01/frr_a.parquet".to_owned(),
        "stripe/notes.txt".to_owned(),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(b"a,b\n".to_vec().into())
            .send()
            .await
            .expect("put");
    }
    let run = |args: &[&str]| {
        bin()
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("AWS_")))
            .env("RUNS_TABLE", table.table())
            .env("REPORTS_BUCKET", &bucket)
            .env("CONVERSION_QUEUE_URL", &conversions)
            .env("GLUE_DATABASE", "stripe_reports_cli_tests")
            .args(["tables", "backfill"])
            .args(args)
            .output()
            .expect("run stripe-reports")
    };
    let output = run(&["--from", "2026-11-01", "--to", "2026-11-02"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with(
            "3 stored report(s) from 2026-11-01 to 2026-11-02 queued for conversion to table files; \
             1 CSV(s) the ledger holds no stored run for, not queued"
        ),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut queued: Vec<String> = test_support::drain(&sqs, &conversions)
        .await
        .iter()
        .map(|m| {
            assert_eq!(m["again"], true, "{m}");
            format!(
                "{} {}",
                m["account"].as_str().unwrap_or_default(),
                m["run_id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    queued.sort();
    let mut expected = [
        format!("{ACCOUNT} frr_a"),
        format!("{ACCOUNT} frr_b"),
        format!("{OTHER} frr_c"),
    ];
    expected.sort();
    assert_eq!(queued, expected);

    // One account, one type.
    let output = run(&[
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--account",
        OTHER,
        "--report-type",
        "balance.summary.1",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let queued = test_support::drain(&sqs, &conversions).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["run_id"], "frr_c");

    // A range backwards is one line, nothing queued.
    let output = run(&["--from", "2026-11-02", "--to", "2026-11-01"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is after"), "{stderr}");
    assert!(test_support::drain(&sqs, &conversions).await.is_empty());
}
