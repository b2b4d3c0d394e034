//! Log lines name the run they are about, even when several messages of a
//! batch are handled at once on one task (`buffer_unordered`), where a span
//! guard held across an `.await` would put another run's id on the line.
//! Its own test binary, so the global subscriber sees every callsite.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use stripe_emulator::{Faults, ReportTypeConfig};
use stripe_reports::aws::S3Sink;
use stripe_reports::domain::calendar::Interval;
use stripe_reports::downloader::{Downloader, work_deadline};
use stripe_reports::ports::NoConversions;
use test_support::*;

const API_KEY: &str = "sk_test_downloader_logs";
const BALANCE: &str = "balance.summary.1";
const RUNS: i64 = 6;

/// The `run_id` of the innermost `run` span a JSON log line carries.
fn span_run_id(line: &Value) -> Option<&str> {
    line["spans"]
        .as_array()?
        .iter()
        .rev()
        .find(|span| span["name"] == "run")?
        .get("run_id")?
        .as_str()
}

#[tokio::test]
async fn concurrent_runs_each_log_under_their_own_run_id() {
    let logs = CapturedLogs::global();

    let mut kind = ReportTypeConfig::new(BALANCE);
    kind.file_size = Some(256 * 1024);
    kind.data_available_start = Some(1_700_000_000);
    kind.data_available_end = Some(1_800_000_000);
    let emulator = emulator(API_KEY, vec![kind], Duration::from_millis(20)).await;
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let (s3, bucket) = bucket(&sdk).await;
    let stripe = stripe_client(&emulator, API_KEY, "127.0.0.1", quick_retries(2));
    let base = 1_790_000_000 - 1_790_000_000 % DAY;
    let mut run_ids = BTreeSet::new();
    for day in 0..RUNS {
        let interval = Interval {
            start: base + day * DAY,
            end: base + (day + 1) * DAY,
        };
        run_ids.insert(requested_run(&stripe, &account(), &ledger, BALANCE, interval, base).await);
    }
    for _ in 0..200 {
        if emulator.runs().iter().all(|r| r["status"] != "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let runs = emulator.runs();
    assert_eq!(runs.len(), RUNS as usize);
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
    // Slow files, so that every download is under way at once and their
    // futures interleave on the batch's one task.
    emulator.set_faults(Faults {
        file_bytes_per_sec: Some(512 * 1024),
        ..Faults::default()
    });
    let deps = downloader::Deps {
        downloader: Downloader {
            ledger,
            stripe: account_clients(
                &emulator,
                &[(ACCOUNT, API_KEY)],
                "127.0.0.1",
                quick_retries(2),
            ),
            sink: S3Sink::new(s3, &bucket).with_parts(5 * MIB as usize, 2),
            prefix: "stripe/".into(),
            conversions: NoConversions,
        },
        concurrency: RUNS as usize,
    };
    let records: Vec<Value> = run_ids
        .iter()
        .map(|id| json!({"messageId": id, "body": json!({"run_id": id, "account": ACCOUNT}).to_string(), "eventSource": "aws:sqs"}))
        .collect();
    let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = downloader::handle_batch(&deps, batch, base, work_deadline(0, 0)).await;
    assert!(response.batch_item_failures.is_empty());

    // Every "report stored" line names, in its span, the run whose object
    // (whose key ends in the run id) it reports.
    let lines = logs.json_lines();
    let stored: Vec<&Value> = lines
        .iter()
        .filter(|line| line["fields"]["message"] == "report stored")
        .collect();
    assert_eq!(stored.len(), RUNS as usize, "{}", logs.text());
    let mut seen = BTreeSet::new();
    for line in stored {
        let key = line["fields"]["s3_key"].as_str().unwrap();
        let span_id = span_run_id(line).unwrap_or_else(|| panic!("no run span: {line}"));
        assert!(
            key.ends_with(&format!("/{span_id}.csv")),
            "the line about {key} carries run_id {span_id}"
        );
        // And the account whose key read it, whose segment the key has.
        let span = line["spans"]
            .as_array()
            .and_then(|spans| spans.iter().rev().find(|span| span["name"] == "run"))
            .unwrap();
        assert_eq!(span["account"], ACCOUNT, "{line}");
        assert!(key.contains(&format!("/account={ACCOUNT}/")), "{key}");
        seen.insert(span_id.to_owned());
    }
    assert_eq!(seen, run_ids, "each run logged under its own id, once");
    // And no line of the batch carries more than one run span.
    for line in &lines {
        let runs = line["spans"]
            .as_array()
            .map(|spans| spans.iter().filter(|s| s["name"] == "run").count())
            .unwrap_or(0);
        assert!(runs <= 1, "a line inside two runs' spans: {line}");
    }
}
