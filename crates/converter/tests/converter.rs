//! The converter through its batch handler, fed by the real downloader's
//! conversion messages: the Stripe emulator's realistic report files, moto's
//! S3, DynamoDB, SQS and Glue over HTTP. Each table file is read back with
//! Arrow and checked against the emulator's own totals of the CSV (not
//! against the conversion's sums).

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_array::{Array, Decimal128Array, RecordBatch, StringArray};
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use stripe_emulator::Emulator;
use stripe_reports::accounts::AccountClients;
use stripe_reports::aws::{DynamoLedger, S3Sink, SqsQueue};
use stripe_reports::domain::calendar::Interval;
use stripe_reports::domain::ledger::StoredObject;
use stripe_reports::downloader::Downloader;
use stripe_reports::ports::{Ledger, RunFacts};
use tables::ConvertOptions;
use tables::conversion::Converter;
use tables::files::S3ReportFiles;
use tables::glue::GlueCatalog;
use test_support::{
    ACCOUNT, CapturedLogs, Clock, DAY, MIB, account, account_clients, bucket, drain, glue_database,
    ledger, local_aws, object_keys, open_upload_keys, queue, quick_retries, report_type,
    requested_run, stripe_client, wait_finished,
};

const API_KEY: &str = "sk_test_converter_tests";
const ITEMIZED: &str = "balance_change_from_activity.itemized.3";
const SUMMARY: &str = "balance.summary.1";

fn now() -> i64 {
    Clock::read().now
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(120)
}

struct Env {
    emulator: Emulator,
    s3: aws_sdk_s3::Client,
    bucket: String,
    ledger: DynamoLedger,
    glue: aws_sdk_glue::Client,
    database: String,
    sqs: aws_sdk_sqs::Client,
    conversions: String,
    downloader: downloader::Deps<DynamoLedger, AccountClients, SqsQueue>,
    converter: converter::Service,
}

async fn env() -> Env {
    let emulator = test_support::emulator(
        API_KEY,
        vec![report_type(ITEMIZED, 3 * MIB), report_type(SUMMARY, 20_000)],
        Duration::from_millis(20),
    )
    .await;
    let sdk = local_aws().await;
    let ledger = ledger(&sdk).await;
    let (s3, bucket) = bucket(&sdk).await;
    let (sqs, conversions) = queue(&sdk, "conversions").await;
    let glue = aws_sdk_glue::Client::new(&sdk);
    let database = glue_database(&glue).await;
    let queue = SqsQueue::new(sqs.clone(), conversions.clone());
    let downloader = downloader::Deps {
        downloader: Downloader {
            ledger: ledger.clone(),
            stripe: account_clients(
                &emulator,
                &[(ACCOUNT, API_KEY)],
                "127.0.0.1",
                quick_retries(2),
            ),
            sink: S3Sink::new(s3.clone(), &bucket).with_parts(5 * MIB as usize, 2),
            prefix: "stripe/".into(),
            conversions: queue.clone(),
        },
        concurrency: 2,
    };
    let converter = Converter {
        ledger: ledger.clone(),
        files: S3ReportFiles::new(s3.clone(), bucket.clone(), 5 * MIB as usize, 1),
        catalog: GlueCatalog::new(glue.clone(), database.clone()),
        queue,
        bucket: bucket.clone(),
        prefix: "stripe/".into(),
        // Small row groups, so a 3 MiB file has several.
        options: ConvertOptions {
            row_group_bytes: 512 * 1024,
            ..ConvertOptions::default()
        },
    };
    Env {
        emulator,
        s3,
        bucket,
        ledger,
        glue,
        database,
        sqs,
        conversions,
        downloader,
        converter,
    }
}

fn sqs_batch(bodies: &[(&str, String)]) -> SqsEvent {
    let pairs: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(id, body)| (*id, body.as_str()))
        .collect();
    test_support::sqs_batch(&pairs)
}

impl Env {
    /// A run of `report_type` for `day`, finished at Stripe and stored by the
    /// downloader (which queues it for conversion).
    async fn stored_run(&self, report_type: &str, day: i64) -> String {
        let client = stripe_client(&self.emulator, API_KEY, "127.0.0.1", quick_retries(2));
        let start = 1_790_000_000 - 1_790_000_000 % DAY + day * DAY;
        let interval = Interval {
            start,
            end: start + DAY,
        };
        let run_id = requested_run(
            &client,
            &account(),
            &self.ledger,
            report_type,
            interval,
            now(),
        )
        .await;
        wait_finished(&client, &run_id).await;
        let body = json!({"run_id": run_id, "account": ACCOUNT}).to_string();
        let answer = downloader::handle_batch(
            &self.downloader,
            sqs_batch(&[("d", body)]),
            now(),
            deadline(),
        )
        .await;
        assert!(answer.batch_item_failures.is_empty(), "download failed");
        run_id
    }

    /// The converter's answer to a batch: the failed message ids.
    async fn convert(&self, bodies: &[(&str, String)]) -> Vec<String> {
        converter::handle_batch(&self.converter, sqs_batch(bodies), now(), deadline())
            .await
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    async fn object(&self, key: &str) -> Bytes {
        self.s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
    }

    fn totals(&self, run_id: &str) -> stripe_emulator::FileTotals {
        let run = self
            .emulator
            .runs()
            .into_iter()
            .find(|r| r["id"] == run_id)
            .expect("run");
        let file = run["result"]["id"].as_str().expect("file id").to_owned();
        self.emulator.file_totals(&file).expect("totals")
    }
}

/// `"-12.5"` → -12500 thousandths (the emulator's totals are decimal text).
fn thousandths(text: &str) -> i128 {
    let (negative, digits) = text.strip_prefix('-').map_or((false, text), |d| (true, d));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction = format!("{fraction:0<3}");
    let value: i128 = format!("{whole}{}", &fraction[..3])
        .parse()
        .expect("decimal");
    if negative { -value } else { value }
}

/// Rows and the per-currency sum of each amount column, read back with Arrow.
fn read_back(parquet: Bytes) -> (u64, BTreeMap<(String, String), i128>, RecordBatch) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(parquet)
        .expect("a Parquet file")
        .build()
        .expect("reader");
    let mut rows = 0;
    let mut sums = BTreeMap::new();
    let mut first = None;
    for batch in reader {
        let batch = batch.expect("batch");
        rows += batch.num_rows() as u64;
        let schema = batch.schema();
        // An amount's currency: `customer_facing_amount` is in
        // `customer_facing_currency`, the rest in `currency` (as Stripe documents).
        let text = |name: &str| {
            schema.index_of(name).ok().map(|i| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("currency is text")
                    .clone()
            })
        };
        let (currency, customer_currency) = (text("currency"), text("customer_facing_currency"));
        for (index, field) in schema.fields().iter().enumerate() {
            let Some(amounts) = batch
                .column(index)
                .as_any()
                .downcast_ref::<Decimal128Array>()
            else {
                continue;
            };
            assert_eq!(
                (amounts.precision(), amounts.scale()),
                (38, 3),
                "{}",
                field.name()
            );
            for row in 0..amounts.len() {
                if amounts.is_null(row) {
                    continue;
                }
                let currency = if field.name().starts_with("customer_facing_") {
                    &customer_currency
                } else {
                    &currency
                };
                let currency = currency
                    .as_ref()
                    .map_or(String::new(), |c| c.value(row).to_owned());
                *sums.entry((field.name().clone(), currency)).or_insert(0) += amounts.value(row);
            }
        }
        first.get_or_insert(batch);
    }
    (rows, sums, first.expect("at least one batch"))
}

#[tokio::test]
async fn a_stored_run_becomes_one_table_file_with_the_csvs_rows_and_sums() {
    let env = env().await;
    let run_id = env.stored_run(ITEMIZED, 1).await;
    let messages = drain(&env.sqs, &env.conversions).await;
    assert_eq!(
        messages,
        vec![json!({"run_id": run_id, "account": ACCOUNT})],
        "the downloader queued the stored run once"
    );

    let failed = env.convert(&[("m1", messages[0].to_string())]).await;
    assert!(failed.is_empty(), "{failed:?}");

    let record = env.ledger.run(&run_id).await.expect("ledger").expect("run");
    let csv_key = record.stored.as_ref().expect("stored").s3_key.clone();
    let date = csv_key
        .split("/date=")
        .nth(1)
        .and_then(|d| d.split('/').next())
        .expect("date")
        .to_owned();
    let table_key = format!(
        "stripe/tables/balance_change_from_activity_itemized_3/account={ACCOUNT}/date={date}/{run_id}.parquet"
    );
    let table = record
        .table
        .clone()
        .expect("the ledger records the table file");
    assert_eq!(table.key, table_key);
    assert_eq!(
        object_keys(&env.s3, &env.bucket).await,
        vec![csv_key, table_key.clone()]
    );

    // Checked against the emulator's totals of the CSV it served.
    let totals = env.totals(&run_id);
    let (rows, sums, batch) = read_back(env.object(&table_key).await);
    assert_eq!(rows, totals.rows);
    assert_eq!(table.rows, totals.rows);
    assert!(rows > 1_000, "{rows} rows");
    let expected: BTreeMap<(String, String), i128> = totals
        .sums
        .iter()
        .map(|((column, currency), sum)| ((column.clone(), currency.clone()), thousandths(sum)))
        .collect();
    for (key, sum) in &expected {
        assert_eq!(sums.get(key), Some(sum), "sum of {key:?}");
    }
    assert!(
        expected.keys().any(|(column, _)| column == "net"),
        "{expected:?}"
    );
    let created_utc = batch
        .schema()
        .field_with_name("created_utc")
        .expect("created_utc")
        .data_type()
        .clone();
    assert!(
        matches!(created_utc, arrow_schema::DataType::Timestamp(_, Some(_))),
        "{created_utc:?}"
    );

    // The catalog: a table of the type, partitioned by account and date,
    // whose projected location is where the file landed.
    let glue_table = env
        .glue
        .get_table()
        .database_name(&env.database)
        .name("balance_change_from_activity_itemized_3")
        .send()
        .await
        .expect("the table exists")
        .table
        .expect("table");
    let partition_keys: Vec<&str> = glue_table
        .partition_keys()
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(partition_keys, ["account", "date"]);
    let columns: BTreeMap<&str, &str> = glue_table
        .storage_descriptor()
        .expect("storage")
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap_or_default()))
        .collect();
    assert_eq!(columns.get("net"), Some(&"decimal(38,3)"));
    assert_eq!(columns.get("created_utc"), Some(&"timestamp"));
    let parameters = glue_table.parameters().expect("parameters");
    let template = parameters["storage.location.template"]
        .replace("${account}", ACCOUNT)
        .replace("${date}", &date);
    assert_eq!(
        template,
        format!(
            "s3://{}/{}",
            env.bucket,
            table_key.rsplit_once('/').expect("folder").0
        ) + "/"
    );
    assert_eq!(parameters["projection.account.values"], ACCOUNT);
}

#[tokio::test]
async fn duplicates_and_a_backfill_leave_one_identical_file_per_run() {
    let env = env().await;
    let run_id = env.stored_run(SUMMARY, 2).await;
    let message = drain(&env.sqs, &env.conversions)
        .await
        .remove(0)
        .to_string();
    // Two deliveries at once and one later: one file, one ledger record.
    let (first_delivery, second_delivery) = ([("a", message.clone())], [("b", message.clone())]);
    let (a, b) = tokio::join!(env.convert(&first_delivery), env.convert(&second_delivery));
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
    assert!(env.convert(&[("c", message.clone())]).await.is_empty());
    let keys = object_keys(&env.s3, &env.bucket).await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".parquet")).count(),
        1,
        "{keys:?}"
    );
    let table_key = env
        .ledger
        .run(&run_id)
        .await
        .expect("ledger")
        .expect("run")
        .table
        .expect("table")
        .key;
    let first = env.object(&table_key).await;

    // A redelivered download message finds the run stored and its table
    // recorded: nothing more is queued.
    let body = json!({"run_id": run_id, "account": ACCOUNT}).to_string();
    downloader::handle_batch(
        &env.downloader,
        sqs_batch(&[("d", body)]),
        now(),
        deadline(),
    )
    .await;
    assert!(drain(&env.sqs, &env.conversions).await.is_empty());

    // A backfill over the run's date queues it to convert again; the file
    // is rewritten at the same key with the same bytes.
    let date = table_key
        .split("/date=")
        .nth(1)
        .and_then(|d| d.split('/').next())
        .expect("date")
        .to_owned();
    let answer = converter::handle_at(
        &env.converter,
        json!({"backfill": {"from": date, "to": date}}),
        now(),
        deadline(),
    )
    .await
    .expect("backfill");
    assert_eq!(
        answer,
        json!({"backfill": {"queued": 1, "not_in_ledger": 0}})
    );
    let again = drain(&env.sqs, &env.conversions).await;
    assert_eq!(
        again,
        vec![json!({"run_id": run_id, "account": ACCOUNT, "again": true})]
    );
    assert!(env.convert(&[("e", again[0].to_string())]).await.is_empty());
    assert_eq!(
        env.object(&table_key).await,
        first,
        "the same CSV gives the same bytes"
    );
    assert_eq!(object_keys(&env.s3, &env.bucket).await.len(), 2);

    // A range without the run queues nothing; a bad range is a clear error.
    let answer = converter::handle_at(
        &env.converter,
        json!({"backfill": {"from": "2001-01-01", "to": "2001-01-31"}}),
        now(),
        deadline(),
    )
    .await
    .expect("backfill");
    assert_eq!(
        answer,
        json!({"backfill": {"queued": 0, "not_in_ledger": 0}})
    );
    let err = converter::handle_at(
        &env.converter,
        json!({"backfill": {"from": "January"}}),
        now(),
        deadline(),
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("backfill must be"), "{err}");
}

#[tokio::test]
async fn a_csv_that_cannot_be_converted_stays_stored_and_blocks_no_other_run() {
    let env = env().await;
    let good = env.stored_run(SUMMARY, 3).await;
    let good_message = drain(&env.sqs, &env.conversions)
        .await
        .remove(0)
        .to_string();

    // A stored CSV with an amount that is not one, on line 3.
    let bad = "frr_UnconvertibleRun0000001";
    let csv_key =
        format!("stripe/account={ACCOUNT}/report_type={SUMMARY}/date=2026-11-03/{bad}.csv");
    let csv = "category,description,net_amount,currency\r\nstarting_balance,Start,10.00,usd\r\nending_balance,End,ten,usd\r\n";
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(&csv_key)
        .body(csv.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put CSV");
    let facts = RunFacts {
        run_id: bad.into(),
        account: account(),
        report_type: SUMMARY.into(),
        interval_start: None,
        interval_end: None,
    };
    let stored = StoredObject {
        s3_key: csv_key.clone(),
        bytes: csv.len() as u64,
        sha256: "0".repeat(64),
        file_id: "file_bad".into(),
    };
    env.ledger
        .mark_stored(&facts, &stored, now())
        .await
        .expect("stored");

    let logs = CapturedLogs::global();
    let bad_message = json!({"run_id": bad, "account": ACCOUNT}).to_string();
    let failed = env
        .convert(&[("bad", bad_message), ("good", good_message)])
        .await;
    assert_eq!(failed, ["bad"], "only the bad file's message is retried");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("cannot be converted") && l.contains(bad))
        .unwrap_or_else(|| panic!("no failure line naming the run in:\n{text}"));
    assert!(
        line.contains("line 3") && line.contains("net_amount"),
        "{line}"
    );

    let keys = object_keys(&env.s3, &env.bucket).await;
    assert!(keys.contains(&csv_key), "the CSV stays stored");
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(bad) && k.ends_with(".parquet")),
        "{keys:?}"
    );
    assert!(
        open_upload_keys(&env.s3, &env.bucket).await.is_empty(),
        "the upload was aborted"
    );
    assert_eq!(
        env.ledger
            .run(bad)
            .await
            .expect("ledger")
            .expect("run")
            .table,
        None
    );
    assert!(
        env.ledger
            .run(&good)
            .await
            .expect("ledger")
            .expect("run")
            .table
            .is_some()
    );

    // Not trusted: a run of another account, or one not stored.
    let other = json!({"run_id": good, "account": "acct_1SomeoneElse0000"}).to_string();
    let unknown = json!({"run_id": "frr_NeverStored", "account": ACCOUNT}).to_string();
    let failed = env
        .convert(&[
            ("other", other),
            ("unknown", unknown),
            ("junk", "{}".into()),
        ])
        .await;
    assert_eq!(failed.len(), 3, "{failed:?}");
}

/// `events/converter-*.json`, the samples for `sam local invoke -e`: a batch
/// whose message names its run's account, and a backfill naming accounts.
#[test]
fn the_sample_events_are_a_conversion_batch_and_a_backfill_each_naming_the_account() {
    let read = |name: &str| -> serde_json::Value {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../events")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let batch: SqsEvent = serde_json::from_value(read("converter-sqs.json")).unwrap();
    assert_eq!(batch.records.len(), 1);
    let message: stripe_reports::domain::messages::ConversionMessage =
        serde_json::from_str(batch.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(message.account.as_str(), "acct_1EmulatorDefault00");
    let backfill: tables::conversion::TableBackfill =
        serde_json::from_value(read("converter-backfill.json")["backfill"].clone()).unwrap();
    assert_eq!(
        backfill
            .accounts
            .as_deref()
            .map(|accounts| accounts.iter().map(|a| a.as_str()).collect::<Vec<_>>()),
        Some(vec!["acct_1EmulatorDefault00"])
    );
    assert!(backfill.from <= backfill.to);
}
