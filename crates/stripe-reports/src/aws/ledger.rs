//! The ledger on DynamoDB (SPEC "Ledger"): partition key `pk`, TTL `expires_at`.
//!
//! Every state change is a conditional write built from the domain's allowed
//! transitions, so a `stored` run never goes back and two writers never both win.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::account::AccountId;
use crate::domain::due::Availability;
use crate::domain::ledger::{RunStatus, StoredObject};
use crate::domain::request_key::RequestKey;
use crate::ports::{
    ClaimEnd, ClaimToken, DownloadLease, EventClaim, Ledger, LedgerError, Recorded, RunFacts,
    RunRecord, TableFile, Transition,
};

/// How long a handled webhook event id is remembered (Stripe retries for 3 days).
pub const EVENT_TTL_SECS: i64 = 30 * 24 * 3600;
const EVENT_PROCESSING: &str = "processing";
const EVENT_DONE: &str = "done";
/// The sparse global secondary index of unfinished runs: only `pending` and
/// `succeeded` run items carry its key attribute (every transition to a final
/// state removes it), so reconcile reads the few runs it waits for instead of
/// scanning years of stored ones. The attribute's value is the run's
/// account, so each account's reconcile reads its own runs only.
pub const UNFINISHED_INDEX: &str = "unfinished";
/// The index's partition key attribute (its value: the account id).
const UNFINISHED_ATTRIBUTE: &str = "unfinished";

type Item = HashMap<String, AttributeValue>;

pub fn run_pk(run_id: &str) -> String {
    format!("run#{run_id}")
}

pub fn availability_pk(account: &AccountId, report_type: &str) -> String {
    format!("available#{account}#{report_type}")
}

pub fn event_pk(event_id: &str) -> String {
    format!("event#{event_id}")
}

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn unavailable<E, R>(err: SdkError<E, R>) -> LedgerError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    LedgerError::Unavailable(super::sdk_message(&err))
}

fn is_condition_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|service| service.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a ledger table with the SPEC's key schema (on-demand) and
    /// returns the ledger on it: for local stacks and tests. Deployed tables
    /// come from template.yaml, which also turns on TTL and point-in-time recovery.
    pub async fn create_table(
        client: Client,
        table: impl Into<String>,
    ) -> Result<Self, LedgerError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
            Projection, ProjectionType, ScalarAttributeType,
        };
        let table = table.into();
        let built =
            |err: aws_sdk_dynamodb::error::BuildError| LedgerError::Unavailable(err.to_string());
        let hash_key = |name: &str| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::Hash)
                .build()
                .map_err(built)
        };
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(built)
        };
        let unfinished = GlobalSecondaryIndex::builder()
            .index_name(UNFINISHED_INDEX)
            .key_schema(hash_key(UNFINISHED_ATTRIBUTE)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(built)?;
        client
            .create_table()
            .table_name(&table)
            .key_schema(hash_key("pk")?)
            .attribute_definitions(string_attribute("pk")?)
            .attribute_definitions(string_attribute(UNFINISHED_ATTRIBUTE)?)
            .global_secondary_indexes(unfinished)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(Self::new(client, table))
    }

    async fn get(&self, pk: String) -> Result<Option<Item>, LedgerError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// Moves a run to `next` if its current state allows it (or it has no item
    /// yet), setting `extra` attributes. The condition is the domain's
    /// [`RunStatus::allowed_sources`]; on refusal the current state is read back.
    async fn transition(
        &self,
        run: &RunFacts,
        next: RunStatus,
        extra: Vec<(&str, AttributeValue)>,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":next".to_owned(), s(next.as_str())),
            (":now".to_owned(), n(now)),
            (":report_type".to_owned(), s(&run.report_type)),
            (":account".to_owned(), s(run.account.as_str())),
        ]);
        let mut sets = vec![
            "account = if_not_exists(account, :account)".to_owned(),
            "#status = :next".to_owned(),
            "updated = :now".to_owned(),
            "created = if_not_exists(created, :now)".to_owned(),
            "report_type = if_not_exists(report_type, :report_type)".to_owned(),
        ];
        if let Some(start) = run.interval_start {
            values.insert(":interval_start".into(), n(start));
            sets.push("interval_start = if_not_exists(interval_start, :interval_start)".into());
        }
        if let Some(end) = run.interval_end {
            values.insert(":interval_end".into(), n(end));
            sets.push("interval_end = if_not_exists(interval_end, :interval_end)".into());
        }
        for (index, (name, value)) in extra.into_iter().enumerate() {
            names.insert(format!("#x{index}"), name.to_owned());
            values.insert(format!(":x{index}"), value);
            sets.push(format!("#x{index} = :x{index}"));
        }
        // Membership of the unfinished-runs index follows the state.
        names.insert("#unfinished".into(), UNFINISHED_ATTRIBUTE.into());
        let update_expression = if next.is_final() {
            format!("SET {} REMOVE #unfinished", sets.join(", "))
        } else {
            sets.push("#unfinished = :account".into());
            format!("SET {}", sets.join(", "))
        };
        let condition = format!(
            "attribute_not_exists(pk) OR (#status IN ({}) AND account = :account)",
            source_placeholders(next, &mut values)
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&run.run_id)))
            .update_expression(update_expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(err) if is_condition_failure(&err) => {
                let current = self
                    .run(&run.run_id)
                    .await?
                    .ok_or_else(|| LedgerError::Corrupt {
                        pk: run_pk(&run.run_id),
                        problem: "condition failed but the item is gone".into(),
                    })?;
                if current.facts.account != run.account {
                    return Ok(Transition::OtherAccount {
                        owner: current.facts.account,
                    });
                }
                Ok(Transition::Refused {
                    current: current.status,
                })
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

/// `:from0, :from1, …`: the states a run may move to `next` from (the
/// domain's [`RunStatus::allowed_sources`]), bound into `values`, for an
/// `#status IN (…)` condition.
fn source_placeholders(next: RunStatus, values: &mut HashMap<String, AttributeValue>) -> String {
    RunStatus::allowed_sources(next)
        .into_iter()
        .enumerate()
        .map(|(index, status)| {
            values.insert(format!(":from{index}"), s(status.as_str()));
            format!(":from{index}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|text| text.parse().ok())
}

fn parse_run(item: &Item) -> Result<RunRecord, LedgerError> {
    let pk = get_s(item, "pk").unwrap_or_default();
    let corrupt = |problem: &str| LedgerError::Corrupt {
        pk: pk.clone(),
        problem: problem.to_owned(),
    };
    let run_id = pk
        .strip_prefix("run#")
        .ok_or_else(|| corrupt("not a run item"))?
        .to_owned();
    let status_text = get_s(item, "status").ok_or_else(|| corrupt("no status"))?;
    let status = RunStatus::parse(&status_text).ok_or_else(|| corrupt("unknown status"))?;
    let stored = match (
        get_s(item, "s3_key"),
        get_n(item, "bytes"),
        get_s(item, "sha256"),
    ) {
        (Some(s3_key), Some(bytes), Some(sha256)) => Some(StoredObject {
            s3_key,
            bytes: u64::try_from(bytes).map_err(|_| corrupt("negative bytes"))?,
            sha256,
            file_id: get_s(item, "file_id").unwrap_or_default(),
        }),
        _ => None,
    };
    if status == RunStatus::Stored && stored.is_none() {
        return Err(corrupt("stored without s3_key, bytes and sha256"));
    }
    let account = get_s(item, "account").ok_or_else(|| corrupt("no account"))?;
    let account = AccountId::parse(&account).map_err(|_| corrupt("account is not an acct_ id"))?;
    Ok(RunRecord {
        facts: RunFacts {
            run_id,
            account,
            report_type: get_s(item, "report_type").ok_or_else(|| corrupt("no report_type"))?,
            interval_start: get_n(item, "interval_start"),
            interval_end: get_n(item, "interval_end"),
        },
        status,
        created: get_n(item, "created").unwrap_or_default(),
        updated: get_n(item, "updated").unwrap_or_default(),
        request_key: get_s(item, "request_key"),
        error: get_s(item, "error"),
        stored,
        table: match (get_s(item, "parquet_key"), get_n(item, "rows")) {
            (Some(key), Some(rows)) => Some(TableFile {
                key,
                rows: u64::try_from(rows).map_err(|_| corrupt("negative rows"))?,
            }),
            _ => None,
        },
    })
}

impl Ledger for DynamoLedger {
    async fn requested_run(&self, key: &RequestKey) -> Result<Option<String>, LedgerError> {
        Ok(self
            .get(key.as_str().to_owned())
            .await?
            .and_then(|item| get_s(&item, "run_id")))
    }

    async fn record_requested(
        &self,
        key: &RequestKey,
        run: &RunFacts,
        now: i64,
    ) -> Result<Recorded, LedgerError> {
        // 1. The request item is the guard: a conditional put, so one request
        //    never records two runs. (Two plain writes rather than a
        //    transaction: half the write cost, and step 2 is idempotent.)
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key.as_str()))
            .item("run_id", s(&run.run_id))
            .item("account", s(run.account.as_str()))
            .item("report_type", s(&run.report_type))
            .item("created", n(now))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        let outcome = match request {
            Ok(_) => Recorded::New,
            Err(err) if is_condition_failure(&err) => {
                let run_id = self.requested_run(key).await?.unwrap_or_default();
                if run_id != run.run_id {
                    // Another run answers this request: leave this one alone.
                    return Ok(Recorded::AlreadyRequested { run_id });
                }
                // The same run: a retry after a crash between the two writes,
                // so step 2 below is still owed.
                Recorded::AlreadyRequested { run_id }
            }
            Err(err) => return Err(unavailable(err)),
        };
        // 2. The run item: created pending (and in the unfinished index) when
        //    it is new; when a webhook or an earlier attempt wrote it first,
        //    only the link to the request is added, whatever its state (an
        //    orphan adopted after it was stored stays stored). Repeating this
        //    after a crash between the two writes heals the ledger.
        let mut item = HashMap::from([
            ("pk".to_owned(), s(run_pk(&run.run_id))),
            ("request_key".to_owned(), s(key.as_str())),
            ("status".to_owned(), s(RunStatus::Pending.as_str())),
            ("report_type".to_owned(), s(&run.report_type)),
            ("account".to_owned(), s(run.account.as_str())),
            ("created".to_owned(), n(now)),
            ("updated".to_owned(), n(now)),
            (UNFINISHED_ATTRIBUTE.to_owned(), s(run.account.as_str())),
        ]);
        if let Some(start) = run.interval_start {
            item.insert("interval_start".into(), n(start));
        }
        if let Some(end) = run.interval_end {
            item.insert("interval_end".into(), n(end));
        }
        let created = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match created {
            Ok(_) => return Ok(outcome),
            Err(err) if is_condition_failure(&err) => {}
            Err(err) => return Err(unavailable(err)),
        }
        let mut sets = vec![
            "request_key = :key",
            "report_type = if_not_exists(report_type, :report_type)",
            "created = if_not_exists(created, :now)",
            "updated = if_not_exists(updated, :now)",
        ];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&run.run_id)))
            .expression_attribute_values(":key", s(key.as_str()))
            .expression_attribute_values(":account", s(run.account.as_str()))
            // A run is linked only to a request of its own account.
            .condition_expression("account = :account")
            .expression_attribute_values(":report_type", s(&run.report_type))
            .expression_attribute_values(":now", n(now));
        if let Some(start) = run.interval_start {
            sets.push("interval_start = if_not_exists(interval_start, :interval_start)");
            update = update.expression_attribute_values(":interval_start", n(start));
        }
        if let Some(end) = run.interval_end {
            sets.push("interval_end = if_not_exists(interval_end, :interval_end)");
            update = update.expression_attribute_values(":interval_end", n(end));
        }
        match update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(outcome),
            Err(err) if is_condition_failure(&err) => {
                // The run item is another account's: the request naming it
                // (written in step 1 now, or by an attempt that crashed
                // before taking it back) is taken back, so it stays free.
                {
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .key("pk", s(key.as_str()))
                        .condition_expression("run_id = :run")
                        .expression_attribute_values(":run", s(&run.run_id))
                        .send()
                        .await
                        .map_err(unavailable)?;
                }
                let owner = self
                    .run(&run.run_id)
                    .await?
                    .map(|record| record.facts.account)
                    .ok_or_else(|| LedgerError::Corrupt {
                        pk: run_pk(&run.run_id),
                        problem: "condition failed but the item is gone".into(),
                    })?;
                Ok(Recorded::OtherAccount { owner })
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, LedgerError> {
        self.get(run_pk(run_id))
            .await?
            .map(|item| parse_run(&item))
            .transpose()
    }

    async fn mark_succeeded(&self, run: &RunFacts, now: i64) -> Result<Transition, LedgerError> {
        self.transition(run, RunStatus::Succeeded, Vec::new(), now)
            .await
    }

    async fn mark_failed(
        &self,
        run: &RunFacts,
        error: &str,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.transition(run, RunStatus::Failed, vec![("error", s(error))], now)
            .await
    }

    async fn mark_retired(
        &self,
        run: &RunFacts,
        reason: &str,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        self.transition(run, RunStatus::Retired, vec![("error", s(reason))], now)
            .await
    }

    async fn lease_download(
        &self,
        run_id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<DownloadLease, LedgerError> {
        // Only a run that may still become stored is leased (the domain's
        // transitions decide which states those are).
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":owner".to_owned(), s(owner)),
            (":until".to_owned(), n(until)),
            (":now".to_owned(), n(now)),
        ]);
        let sources = source_placeholders(RunStatus::Stored, &mut values);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(run_id)))
            .update_expression("SET download_lease = :owner, lease_until = :until")
            .condition_expression(format!(
                "attribute_exists(pk) AND #status IN ({}) AND \
                 (attribute_not_exists(lease_until) OR lease_until < :now OR download_lease = :owner)",
                sources
            ))
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(DownloadLease::Acquired),
            Err(err) if is_condition_failure(&err) => Ok(match self.run(run_id).await? {
                None => DownloadLease::Unrecorded,
                Some(record) if record.status == RunStatus::Stored => DownloadLease::Stored,
                Some(record) if record.status.is_final() => DownloadLease::Final(record.status),
                Some(_) => DownloadLease::Held,
            }),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn release_download(&self, run_id: &str, owner: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(run_id)))
            .update_expression("REMOVE download_lease, lease_until")
            .condition_expression("download_lease = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            // Not ours (any more): nothing to give up.
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn mark_stored(
        &self,
        run: &RunFacts,
        stored: &StoredObject,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        let extra = vec![
            ("s3_key", s(&stored.s3_key)),
            ("bytes", n(stored.bytes)),
            ("sha256", s(&stored.sha256)),
            ("file_id", s(&stored.file_id)),
        ];
        self.transition(run, RunStatus::Stored, extra, now).await
    }

    async fn mark_tabled(
        &self,
        account: &AccountId,
        run_id: &str,
        table: &TableFile,
        now: i64,
    ) -> Result<Transition, LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(run_id)))
            .update_expression("SET parquet_key = :key, #rows = :rows, tabled_at = :now")
            .condition_expression("#status = :stored AND account = :account")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_values(":key", s(&table.key))
            .expression_attribute_values(":rows", n(table.rows))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":stored", s(RunStatus::Stored.as_str()))
            .expression_attribute_values(":account", s(account.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(err) if is_condition_failure(&err) => match self.run(run_id).await? {
                Some(current) if current.facts.account != *account => {
                    Ok(Transition::OtherAccount {
                        owner: current.facts.account,
                    })
                }
                Some(current) => Ok(Transition::Refused {
                    current: current.status,
                }),
                // The condition also fails on an absent item: nothing is
                // stored for that run id, so there is nothing to record.
                None => Err(LedgerError::Corrupt {
                    pk: run_pk(run_id),
                    problem: "no run item to record a table file on".into(),
                }),
            },
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn claim_event(
        &self,
        event_id: &str,
        event_type: &str,
        now: i64,
        stale_after_secs: i64,
    ) -> Result<EventClaim, LedgerError> {
        let token = ClaimToken(uuid::Uuid::new_v4().simple().to_string());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(event_pk(event_id)))
            .item("event_type", s(event_type))
            .item("state", s(EVENT_PROCESSING))
            .item("claim_token", s(&token.0))
            .item("claimed_at", n(now))
            .item("expires_at", n(now + EVENT_TTL_SECS))
            // TTL deletion is lazy: an expired marker counts as absent. A claim
            // whose handler died (never finished nor released) may be taken over.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now \
                 OR (#state = :processing AND claimed_at < :stale)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":processing", s(EVENT_PROCESSING))
            .expression_attribute_values(":stale", n(now - stale_after_secs))
            .send()
            .await;
        match result {
            Ok(_) => Ok(EventClaim::Claimed(token)),
            Err(err) if is_condition_failure(&err) => {
                let item = self.get(event_pk(event_id)).await?;
                let done = item
                    .as_ref()
                    .and_then(|item| get_s(item, "state"))
                    .is_some_and(|state| state == EVENT_DONE);
                Ok(if done {
                    EventClaim::Done
                } else {
                    EventClaim::InProgress
                })
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn finish_event(
        &self,
        event_id: &str,
        token: &ClaimToken,
        now: i64,
    ) -> Result<ClaimEnd, LedgerError> {
        // Conditional on the token: never overwrite another delivery's claim,
        // and never create an item (without `expires_at`) where none is.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(event_pk(event_id)))
            .update_expression("SET #state = :done, finished_at = :now")
            .condition_expression("claim_token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s(EVENT_DONE))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":token", s(&token.0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimEnd::Owned),
            Err(err) if is_condition_failure(&err) => Ok(ClaimEnd::TakenOver),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn release_event(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> Result<ClaimEnd, LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(event_pk(event_id)))
            .condition_expression("claim_token = :token")
            .expression_attribute_values(":token", s(&token.0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimEnd::Owned),
            Err(err) if is_condition_failure(&err) => Ok(ClaimEnd::TakenOver),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn availability(
        &self,
        account: &AccountId,
        report_type: &str,
    ) -> Result<Availability, LedgerError> {
        let pk = availability_pk(account, report_type);
        let Some(item) = self.get(pk.clone()).await? else {
            return Ok(Availability::default());
        };
        let corrupt = |problem: &str| LedgerError::Corrupt {
            pk: pk.clone(),
            problem: problem.to_owned(),
        };
        let map = item
            .get("first_seen")
            .and_then(|value| value.as_m().ok())
            .ok_or_else(|| corrupt("no first_seen map"))?;
        let mut entries = Vec::with_capacity(map.len());
        for (end, seen) in map {
            let end: i64 = end.parse().map_err(|_| corrupt("a key is not a number"))?;
            let seen: i64 = seen
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("a sighting is not a number"))?;
            entries.push((end, seen));
        }
        Ok(Availability::from_entries(entries))
    }

    async fn record_availability(
        &self,
        account: &AccountId,
        report_type: &str,
        data_available_end: i64,
        now: i64,
    ) -> Result<(), LedgerError> {
        // One item per report type, a map of end → first sighting (a day's
        // entry a day: decades fit in an item). Adding to the map needs it
        // to exist; the first sighting creates it.
        let pk = availability_pk(account, report_type);
        for _ in 0..2 {
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .update_expression("SET first_seen.#end = if_not_exists(first_seen.#end, :now)")
                .condition_expression("attribute_exists(first_seen)")
                .expression_attribute_names("#end", data_available_end.to_string())
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match added {
                Ok(_) => return Ok(()),
                Err(err) if is_condition_failure(&err) => {}
                Err(err) => return Err(unavailable(err)),
            }
            let created = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(&pk))
                .item(
                    "first_seen",
                    AttributeValue::M(HashMap::from([(data_available_end.to_string(), n(now))])),
                )
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match created {
                Ok(_) => return Ok(()),
                // Created meanwhile by another invocation: add to it.
                Err(err) if is_condition_failure(&err) => {}
                Err(err) => return Err(unavailable(err)),
            }
        }
        Err(LedgerError::Corrupt {
            pk,
            problem: "exists without a first_seen map".into(),
        })
    }

    async fn unfinished_runs(&self, account: &AccountId) -> Result<Vec<RunRecord>, LedgerError> {
        // The sparse index holds only unfinished runs: the cost of this read
        // follows what reconcile waits for, not the ledger's history. (Index
        // reads are eventually consistent: a run recorded a moment ago may
        // show on the next tick; Stripe's run list covers it meanwhile.)
        let mut runs = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(UNFINISHED_INDEX)
                .key_condition_expression("#unfinished = :account")
                .expression_attribute_names("#unfinished", UNFINISHED_ATTRIBUTE)
                .expression_attribute_values(":account", s(account.as_str()))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                let record = parse_run(item)?;
                // A projection lagging behind a transition: trust the state.
                if !record.status.is_final() {
                    runs.push(record);
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => return Ok(runs),
            }
        }
    }
}
