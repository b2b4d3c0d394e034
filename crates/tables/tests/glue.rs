//! The Glue catalog adapter against moto's Glue over HTTP (run with
//! `scripts/local_aws.py run -- cargo test -p tables --test glue`).
//!
//! moto stores a table's `TableInput` as given (parameters and partition keys
//! included) and numbers its versions (`VersionId` 1, 2, …), but accepts an
//! `UpdateTable` with a stale `VersionId`, where AWS Glue refuses it with
//! `ConcurrentModificationException` (optimistic locking). The concurrency
//! tests therefore go through [`VersionCheckingGlue`], a proxy in front of
//! moto that refuses a stale `VersionId` as Glue does, and can hold
//! readers together to force a race.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tables::catalog::{Catalog, CatalogChange, CatalogError, TableDefinition};
use tables::glue::{ATTEMPTS, GlueCatalog};
use tables::layout::CsvKey;
use tables::schema::columns;

const BUCKET: &str = "reports-bucket";
const PREFIX: &str = "reports/";
const REPORT_TYPE: &str = "balance_change_from_activity.itemized.3";
const TABLE: &str = "balance_change_from_activity_itemized_3";
/// One column of each type, as `balance_change_from_activity.itemized.3`
/// names them (plus a count and a flag, which it does not have).
const HEADER: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "currency",
    "gross",
    "net",
    "reporting_category",
    "is_link",
    "dispute_count",
];

fn moto() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL is not set: run with `scripts/local_aws.py run -- cargo test -p tables --test glue`",
    )
}

async fn sdk() -> aws_config::SdkConfig {
    moto();
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A Glue client for `endpoint` (moto, or the checking proxy in front of it).
async fn glue_client(endpoint: &str) -> aws_sdk_glue::Client {
    let config = aws_sdk_glue::config::Builder::from(&sdk().await)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_glue::Client::from_conf(config)
}

/// A new database (tests share one moto server) and a catalog on it.
async fn catalog_at(endpoint: &str) -> GlueCatalog {
    let client = glue_client(endpoint).await;
    let database = test_support::glue_database(&client).await;
    GlueCatalog::new(client, database)
}

fn file(account: &str, header: &[&str]) -> TableDefinition {
    TableDefinition::for_file(BUCKET, PREFIX, REPORT_TYPE, account, &columns(header))
}

/// `GetTable` as moto answers it.
async fn table(catalog: &GlueCatalog) -> aws_sdk_glue::types::Table {
    catalog
        .client
        .get_table()
        .database_name(&catalog.database)
        .name(TABLE)
        .send()
        .await
        .expect("get table")
        .table
        .expect("a table")
}

fn column_pairs(columns: &[aws_sdk_glue::types::Column]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.r#type().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn data_columns(table: &aws_sdk_glue::types::Table) -> Vec<(String, String)> {
    column_pairs(
        table
            .storage_descriptor()
            .expect("storage descriptor")
            .columns(),
    )
}

fn names(table: &aws_sdk_glue::types::Table) -> Vec<String> {
    data_columns(table)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn parameter<'a>(table: &'a aws_sdk_glue::types::Table, key: &str) -> Option<&'a str> {
    table
        .parameters()
        .and_then(|p| p.get(key))
        .map(String::as_str)
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn the_first_file_creates_the_table_with_its_columns_partitions_and_projection() {
    let catalog = catalog_at(&moto()).await;
    let change = catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("ensure");
    assert_eq!(change, CatalogChange::Created);

    let table = table(&catalog).await;
    assert_eq!(table.name(), TABLE);
    assert_eq!(table.table_type(), Some("EXTERNAL_TABLE"));
    assert_eq!(
        data_columns(&table),
        pairs(&[
            ("balance_transaction_id", "string"),
            ("created_utc", "timestamp"),
            ("created", "timestamp"),
            ("currency", "string"),
            ("gross", "decimal(38,3)"),
            ("net", "decimal(38,3)"),
            ("reporting_category", "string"),
            ("is_link", "boolean"),
            ("dispute_count", "bigint"),
        ])
    );
    assert_eq!(
        column_pairs(table.partition_keys()),
        pairs(&[("account", "string"), ("date", "string")])
    );
    let storage = table.storage_descriptor().expect("storage descriptor");
    let location = format!("s3://{BUCKET}/reports/tables/{TABLE}/");
    assert_eq!(storage.location(), Some(location.as_str()));
    assert_eq!(
        storage.input_format(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
    );
    assert_eq!(
        storage.output_format(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
    );
    assert_eq!(
        storage.serde_info().and_then(|s| s.serialization_library()),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    let template = format!("{location}account=${{account}}/date=${{date}}/");
    let expected: BTreeMap<String, String> = [
        ("classification", "parquet"),
        ("EXTERNAL", "TRUE"),
        ("projection.enabled", "true"),
        ("projection.account.type", "enum"),
        ("projection.account.values", "acct_1"),
        ("projection.date.type", "date"),
        ("projection.date.format", "yyyy-MM-dd"),
        ("projection.date.range", "2010-01-01,NOW"),
        ("projection.date.interval", "1"),
        ("projection.date.interval.unit", "DAYS"),
        ("storage.location.template", template.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let stored: BTreeMap<String, String> = table
        .parameters()
        .expect("parameters")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn the_location_template_names_where_the_converter_writes_table_files() {
    let catalog = catalog_at(&moto()).await;
    catalog
        .ensure_table(&file("acct_1Nv0FGQ9RKHgCVdK", HEADER))
        .await
        .expect("ensure");
    let table = table(&catalog).await;
    let template = parameter(&table, "storage.location.template").expect("template");

    let csv = CsvKey::parse(
        PREFIX,
        "reports/account=acct_1Nv0FGQ9RKHgCVdK/report_type=balance_change_from_activity.itemized.3/date=2026-11-02/frr_1Q2w3E.csv",
    )
    .expect("a report CSV key");
    let partition = template
        .replace("${account}", &csv.account)
        .replace("${date}", &csv.date);
    let partition_key = partition
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .expect("the template is in the bucket");
    let table_key = csv.table_key();
    assert!(
        table_key.starts_with(partition_key),
        "{table_key} is not under the projected partition {partition_key}"
    );
    assert_eq!(&table_key[partition_key.len()..], "frr_1Q2w3E.parquet");
    let location = table
        .storage_descriptor()
        .and_then(|s| s.location())
        .expect("location");
    assert!(partition.starts_with(location));
}

#[tokio::test]
async fn a_file_with_a_new_column_widens_the_table_keeping_the_old_columns_in_order() {
    let catalog = catalog_at(&moto()).await;
    catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("first");
    let before = table(&catalog).await;

    // A later file: one column gone, one new in the middle.
    let later = [
        "balance_transaction_id",
        "created_utc",
        "customer_facing_amount",
        "currency",
        "gross",
        "net",
    ];
    let change = catalog
        .ensure_table(&file("acct_1", &later))
        .await
        .expect("second");
    assert_eq!(change, CatalogChange::Updated);

    let after = table(&catalog).await;
    let mut expected = names(&before);
    expected.push("customer_facing_amount".to_owned());
    assert_eq!(names(&after), expected);
    assert_eq!(
        data_columns(&after).last(),
        Some(&(
            "customer_facing_amount".to_owned(),
            "decimal(38,3)".to_owned()
        ))
    );
    assert_eq!(before.version_id(), Some("1"));
    assert_eq!(after.version_id(), Some("2"));
    // The rest of the table is as the first file made it.
    assert_eq!(after.parameters(), before.parameters());
    assert_eq!(after.partition_keys(), before.partition_keys());
}

#[tokio::test]
async fn the_same_file_again_writes_nothing() {
    let catalog = catalog_at(&moto()).await;
    catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("first");
    let before = table(&catalog).await;
    for _ in 0..2 {
        let change = catalog
            .ensure_table(&file("acct_1", HEADER))
            .await
            .expect("again");
        assert_eq!(change, CatalogChange::Unchanged);
    }
    // A file with fewer columns needs nothing either.
    let change = catalog
        .ensure_table(&file("acct_1", &["balance_transaction_id", "net"]))
        .await
        .expect("fewer columns");
    assert_eq!(change, CatalogChange::Unchanged);
    let after = table(&catalog).await;
    assert_eq!(after.version_id(), before.version_id());
    assert_eq!(
        after.update_time(),
        None,
        "moto records an update time on UpdateTable"
    );
}

#[tokio::test]
async fn a_second_account_joins_the_account_projection() {
    let catalog = catalog_at(&moto()).await;
    catalog
        .ensure_table(&file("acct_b", HEADER))
        .await
        .expect("first");
    let change = catalog
        .ensure_table(&file("acct_a", HEADER))
        .await
        .expect("second account");
    assert_eq!(change, CatalogChange::Updated);
    let table_now = table(&catalog).await;
    assert_eq!(
        parameter(&table_now, "projection.account.values"),
        Some("acct_a,acct_b")
    );
    assert_eq!(table_now.version_id(), Some("2"));

    for account in ["acct_a", "acct_b"] {
        let change = catalog
            .ensure_table(&file(account, HEADER))
            .await
            .expect("again");
        assert_eq!(change, CatalogChange::Unchanged, "{account}");
    }
    assert_eq!(table(&catalog).await.version_id(), Some("2"));
}

#[tokio::test]
async fn a_column_whose_type_mapping_changed_takes_the_new_type_in_place() {
    let catalog = catalog_at(&moto()).await;
    // The table as an older mapping made it: `gross` as a string.
    let mut old = file("acct_1", HEADER);
    old.columns
        .iter_mut()
        .filter(|c| c.name == "gross")
        .for_each(|c| c.glue_type = "string".to_owned());
    catalog.ensure_table(&old).await.expect("old mapping");

    let change = catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("new mapping");
    assert_eq!(change, CatalogChange::Updated);
    let after = table(&catalog).await;
    assert_eq!(
        names(&after),
        HEADER.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()
    );
    assert!(data_columns(&after).contains(&("gross".to_owned(), "decimal(38,3)".to_owned())));
}

#[tokio::test]
async fn a_missing_database_is_named_in_the_error() {
    let client = glue_client(&moto()).await;
    let catalog = GlueCatalog::new(client, "no_such_database");
    let err = catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect_err("no database");
    assert!(
        matches!(&err, CatalogError::NoDatabase { database } if database == "no_such_database"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no_such_database"), "{err}");
}

#[tokio::test]
async fn a_view_of_the_same_name_is_left_alone() {
    let catalog = catalog_at(&moto()).await;
    catalog
        .client
        .create_table()
        .database_name(&catalog.database)
        .table_input(
            aws_sdk_glue::types::TableInput::builder()
                .name(TABLE)
                .table_type("VIRTUAL_VIEW")
                .view_original_text("SELECT 1")
                .build()
                .expect("view input"),
        )
        .send()
        .await
        .expect("create view");
    let err = catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect_err("a view");
    assert!(
        matches!(&err, CatalogError::Foreign { table_type, .. } if table_type == "VIRTUAL_VIEW"),
        "{err:?}"
    );
    let view = table(&catalog).await;
    assert_eq!(view.version_id(), Some("1"));
    assert_eq!(view.table_type(), Some("VIRTUAL_VIEW"));
}

// ---- Concurrency, through the VersionId-checking proxy ----

#[tokio::test]
async fn the_checking_proxy_refuses_a_stale_version_as_glue_does() {
    let proxy = VersionCheckingGlue::start().await;
    let catalog = catalog_at(&proxy.endpoint).await;
    catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("create");
    let input = tables::glue::table_input(&file("acct_2", HEADER)).expect("input");
    let update = |version: &'static str| {
        catalog
            .client
            .update_table()
            .database_name(&catalog.database)
            .table_input(input.clone())
            .version_id(version)
            .send()
    };
    update("1").await.expect("the current version is accepted");
    let err = update("1").await.expect_err("a stale version is refused");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_concurrent_modification_exception()),
        "{err:?}"
    );
    assert_eq!(proxy.state.refused.load(Ordering::SeqCst), 1);
    assert_eq!(table(&catalog).await.version_id(), Some("2"));
}

#[tokio::test]
async fn two_files_racing_with_different_new_columns_both_end_up_in_the_table() {
    let proxy = VersionCheckingGlue::start().await;
    let catalog = catalog_at(&proxy.endpoint).await;
    catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("create");

    // Both calls read version 1 before either writes: one update must lose.
    proxy.state.hold_reads.store(2, Ordering::SeqCst);
    let with_fee: Vec<&str> = HEADER.iter().copied().chain(["fee"]).collect();
    let with_tax: Vec<&str> = HEADER.iter().copied().chain(["tax"]).collect();
    let (fee, tax) = (file("acct_1", &with_fee), file("acct_2", &with_tax));
    let (a, b) = tokio::join!(catalog.ensure_table(&fee), catalog.ensure_table(&tax));
    assert_eq!(a.expect("fee"), CatalogChange::Updated);
    assert_eq!(b.expect("tax"), CatalogChange::Updated);
    assert_eq!(
        proxy.state.refused.load(Ordering::SeqCst),
        1,
        "the race happened"
    );

    let after = table(&catalog).await;
    let added: Vec<String> = names(&after).split_off(HEADER.len());
    assert!(
        added == ["fee", "tax"] || added == ["tax", "fee"],
        "both columns after the old ones: {added:?}"
    );
    assert_eq!(
        parameter(&after, "projection.account.values"),
        Some("acct_1,acct_2")
    );
    assert_eq!(after.version_id(), Some("3"));
}

#[tokio::test]
async fn many_accounts_converting_at_once_all_join_the_table() {
    let proxy = VersionCheckingGlue::start().await;
    let catalog = catalog_at(&proxy.endpoint).await;
    let accounts: Vec<String> = (0..6).map(|n| format!("acct_{n}")).collect();
    let headers: Vec<Vec<String>> = (0..6)
        .map(|n| {
            HEADER
                .iter()
                .map(|h| (*h).to_owned())
                .chain([format!("extra_{n}")])
                .collect()
        })
        .collect();
    let files: Vec<TableDefinition> = accounts
        .iter()
        .zip(&headers)
        .map(|(account, header)| {
            TableDefinition::for_file(BUCKET, PREFIX, REPORT_TYPE, account, &columns(header))
        })
        .collect();
    let results =
        futures_util::future::join_all(files.iter().map(|f| catalog.ensure_table(f))).await;
    let changes: Vec<CatalogChange> = results.into_iter().map(|r| r.expect("ensure")).collect();
    assert_eq!(
        changes
            .iter()
            .filter(|c| **c == CatalogChange::Created)
            .count(),
        1,
        "{changes:?}"
    );

    let after = table(&catalog).await;
    let mut added: Vec<String> = names(&after).split_off(HEADER.len());
    added.sort();
    assert_eq!(
        added,
        (0..6).map(|n| format!("extra_{n}")).collect::<Vec<_>>()
    );
    assert_eq!(
        parameter(&after, "projection.account.values"),
        Some(accounts.join(",").as_str())
    );
}

#[tokio::test]
async fn a_table_that_changes_under_every_attempt_gives_up_with_a_clear_error() {
    let proxy = VersionCheckingGlue::start().await;
    let catalog = catalog_at(&proxy.endpoint).await;
    catalog
        .ensure_table(&file("acct_1", HEADER))
        .await
        .expect("create");
    proxy.state.refuse_all.store(true, Ordering::SeqCst);
    let err = catalog
        .ensure_table(&file("acct_2", HEADER))
        .await
        .expect_err("contended");
    assert!(
        matches!(&err, CatalogError::Contended { table, attempts } if table == TABLE && *attempts == ATTEMPTS),
        "{err:?}"
    );
    assert_eq!(
        proxy.state.refused.load(Ordering::SeqCst),
        ATTEMPTS as usize
    );
    assert_eq!(
        parameter(&table(&catalog).await, "projection.account.values"),
        Some("acct_1")
    );
}

/// moto's Glue behind a proxy that checks `UpdateTable`'s `VersionId`
/// against the table's current version, as AWS Glue does, and refuses a
/// stale one with `ConcurrentModificationException`. The check and the
/// update hold one lock, so they are atomic (as at AWS).
struct VersionCheckingGlue {
    endpoint: String,
    state: Arc<ProxyState>,
}

struct ProxyState {
    moto: String,
    http: reqwest::Client,
    /// Serializes check-and-update.
    updates: tokio::sync::Mutex<()>,
    /// The next this-many `GetTable` answers wait until all of them are
    /// read, so their callers race on the same version.
    hold_reads: AtomicUsize,
    held: tokio::sync::Barrier,
    /// Refuse every `UpdateTable` (a table changing under every attempt).
    refuse_all: AtomicBool,
    /// `UpdateTable` calls refused.
    refused: AtomicUsize,
}

impl VersionCheckingGlue {
    async fn start() -> Self {
        let state = Arc::new(ProxyState {
            moto: moto(),
            http: reqwest::Client::new(),
            updates: tokio::sync::Mutex::new(()),
            hold_reads: AtomicUsize::new(0),
            held: tokio::sync::Barrier::new(2),
            refuse_all: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, state }
    }
}

async fn proxy(State(state): State<Arc<ProxyState>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match target.as_str() {
        "AWSGlue.UpdateTable" => {
            let _one_at_a_time = state.updates.lock().await;
            let request: Value = serde_json::from_slice(&body).expect("JSON request");
            if let Some(version) = request["VersionId"].as_str() {
                let current = current_version(&state, &headers, &request).await;
                if state.refuse_all.load(Ordering::SeqCst) || current.as_deref() != Some(version) {
                    state.refused.fetch_add(1, Ordering::SeqCst);
                    return glue_error(
                        "ConcurrentModificationException",
                        &format!("version {version} is not the current version {current:?}"),
                    );
                }
            }
            forward(&state, &headers, body).await
        }
        "AWSGlue.GetTable" => {
            let held = state
                .hold_reads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let answer = forward(&state, &headers, body).await;
            if held {
                state.held.wait().await;
            }
            answer
        }
        _ => forward(&state, &headers, body).await,
    }
}

/// The table's `VersionId` in moto (asked with the update's own headers:
/// moto finds the service from the `Authorization` header).
async fn current_version(
    state: &ProxyState,
    headers: &HeaderMap,
    update: &Value,
) -> Option<String> {
    let body =
        json!({"DatabaseName": update["DatabaseName"], "Name": update["TableInput"]["Name"]});
    let mut headers = headers.clone();
    headers.insert(
        "x-amz-target",
        axum::http::HeaderValue::from_static("AWSGlue.GetTable"),
    );
    let answer = forward(state, &headers, Bytes::from(body.to_string())).await;
    let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .expect("GetTable from moto");
    let answer: Value = serde_json::from_slice(&bytes).expect("GetTable JSON");
    answer["Table"]["VersionId"].as_str().map(str::to_owned)
}

async fn forward(state: &ProxyState, headers: &HeaderMap, body: Bytes) -> Response {
    let mut request = state.http.post(&state.moto).body(body);
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = request.send().await.expect("moto answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("status");
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name == "content-length" || name == "transfer-encoding" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.insert(name, value);
        }
    }
    let bytes = answer.bytes().await.expect("moto's body");
    (status, out, bytes.to_vec()).into_response()
}

/// An AWS JSON 1.1 error, as Glue answers one.
fn glue_error(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-errortype", code),
        ],
        json!({"__type": code, "Message": message}).to_string(),
    )
        .into_response()
}
