//! The [`Catalog`] on the AWS Glue Data Catalog: one table per report type in
//! the stack's database.
//!
//! Every converter of a report type's files may call [`Catalog::ensure_table`]
//! at the same time (a backfill runs many), so each call is an optimistic
//! read-merge-write that starts over when it loses a race:
//! 1. `GetTable`. Not found: `CreateTable` from the definition; if another
//!    converter created it first (`AlreadyExistsException`), start over.
//! 2. Found: read it back into a [`TableDefinition`] and
//!    [merge](TableDefinition::merge) the file's definition into it. Nothing
//!    to change: done, nothing written.
//! 3. Otherwise `UpdateTable` with the union, passing the `VersionId` read in
//!    step 1: Glue refuses the update (`ConcurrentModificationException`) if
//!    the table changed since, so a column or account another converter
//!    added in between is never overwritten; start over from its new
//!    version.
//!
//! A conflict means another writer succeeded, so each round makes progress;
//! after [`ATTEMPTS`] rounds the call gives up with
//! [`CatalogError::Contended`] (the message is retried by its queue).
//!
//! `UpdateTable` replaces the whole table: what [`TableDefinition`] does not
//! hold (a description, SerDe parameters set by hand) is not kept. The table
//! properties are kept (see [`TableDefinition::merge`]).

use std::collections::BTreeMap;

use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{Column, SerDeInfo, StorageDescriptor, Table, TableInput};

use crate::catalog::{
    BoxError, Catalog, CatalogChange, CatalogColumn, CatalogError, TABLE_TYPE, TableDefinition,
};

/// Rounds of read-merge-write before giving up: each lost round means
/// another converter changed the table, so this is also the number of
/// simultaneous changes one call outlasts.
pub const ATTEMPTS: u32 = 10;

/// The stack's Glue database and a client for it.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    pub client: aws_sdk_glue::Client,
    pub database: String,
}

/// How one round ended.
enum Round {
    Done(CatalogChange),
    /// Another writer got there first: read the table again.
    Raced,
}

impl GlueCatalog {
    pub fn new(client: aws_sdk_glue::Client, database: impl Into<String>) -> Self {
        Self {
            client,
            database: database.into(),
        }
    }

    async fn round(&self, table: &TableDefinition) -> Result<Round, CatalogError> {
        let got = self
            .client
            .get_table()
            .database_name(&self.database)
            .name(&table.name)
            .send()
            .await;
        let existing = match got {
            Ok(out) => out.table,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(err) => return Err(call("GetTable", table, err)),
        };
        match existing {
            None => self.create(table).await,
            Some(existing) => self.update(&existing, table).await,
        }
    }

    async fn create(&self, table: &TableDefinition) -> Result<Round, CatalogError> {
        let created = self
            .client
            .create_table()
            .database_name(&self.database)
            .table_input(table_input(table)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(Round::Done(CatalogChange::Created)),
            Err(err) => match err.as_service_error() {
                Some(e)
                    if e.is_already_exists_exception()
                        || e.is_concurrent_modification_exception() =>
                {
                    Ok(Round::Raced)
                }
                // The database itself is missing (GetTable said "not found" for it too).
                Some(e) if e.is_entity_not_found_exception() => Err(CatalogError::NoDatabase {
                    database: self.database.clone(),
                }),
                _ => Err(call("CreateTable", table, err)),
            },
        }
    }

    async fn update(
        &self,
        existing: &Table,
        table: &TableDefinition,
    ) -> Result<Round, CatalogError> {
        if let Some(table_type) = foreign_kind(existing) {
            return Err(CatalogError::Foreign {
                database: self.database.clone(),
                table: table.name.clone(),
                table_type,
            });
        }
        let Some(merged) = TableDefinition::merge(&definition_of(existing), table) else {
            return Ok(Round::Done(CatalogChange::Unchanged));
        };
        let updated = self
            .client
            .update_table()
            .database_name(&self.database)
            .table_input(table_input(&merged)?)
            .set_version_id(existing.version_id().map(str::to_owned))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(Round::Done(CatalogChange::Updated)),
            // Changed since it was read, or deleted since: read it again.
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_concurrent_modification_exception() || e.is_entity_not_found_exception()
                }) =>
            {
                Ok(Round::Raced)
            }
            Err(err) => Err(call("UpdateTable", table, err)),
        }
    }
}

impl Catalog for GlueCatalog {
    async fn ensure_table(&self, table: &TableDefinition) -> Result<CatalogChange, CatalogError> {
        for _ in 0..ATTEMPTS {
            if let Round::Done(change) = self.round(table).await? {
                return Ok(change);
            }
        }
        Err(CatalogError::Contended {
            table: table.name.clone(),
            attempts: ATTEMPTS,
        })
    }
}

/// A table that is not a plain external table (a view, an Iceberg table):
/// what it is.
fn foreign_kind(table: &Table) -> Option<String> {
    if let Some(kind) = table.table_type().filter(|kind| *kind != TABLE_TYPE) {
        return Some(kind.to_owned());
    }
    table
        .parameters()
        .and_then(|p| p.get("table_type"))
        .filter(|format| format.eq_ignore_ascii_case("iceberg"))
        .map(|format| format!("{format} table"))
}

/// The Glue table as a [`TableDefinition`]; anything missing reads as empty
/// (and the merge puts it back).
pub fn definition_of(table: &Table) -> TableDefinition {
    let storage = table.storage_descriptor();
    let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
    TableDefinition {
        name: table.name().to_owned(),
        columns: storage
            .map(|s| catalog_columns(s.columns()))
            .unwrap_or_default(),
        partition_keys: catalog_columns(table.partition_keys()),
        location: text(storage.and_then(StorageDescriptor::location)),
        input_format: text(storage.and_then(StorageDescriptor::input_format)),
        output_format: text(storage.and_then(StorageDescriptor::output_format)),
        serde: text(
            storage
                .and_then(StorageDescriptor::serde_info)
                .and_then(SerDeInfo::serialization_library),
        ),
        table_type: text(table.table_type()),
        parameters: table
            .parameters()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default(),
    }
}

fn catalog_columns(columns: &[Column]) -> Vec<CatalogColumn> {
    columns
        .iter()
        .map(|c| CatalogColumn::new(c.name(), c.r#type().unwrap_or_default()))
        .collect()
}

/// The `TableInput` of `CreateTable` and `UpdateTable`.
pub fn table_input(table: &TableDefinition) -> Result<TableInput, CatalogError> {
    let storage = StorageDescriptor::builder()
        .set_columns(Some(glue_columns(table, &table.columns)?))
        .location(&table.location)
        .input_format(&table.input_format)
        .output_format(&table.output_format)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(&table.serde)
                .build(),
        )
        .build();
    TableInput::builder()
        .name(&table.name)
        .table_type(&table.table_type)
        .storage_descriptor(storage)
        .set_partition_keys(Some(glue_columns(table, &table.partition_keys)?))
        .set_parameters(Some(
            table
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
        .build()
        .map_err(|err| call("building the TableInput of", table, err))
}

fn glue_columns(
    table: &TableDefinition,
    columns: &[CatalogColumn],
) -> Result<Vec<Column>, CatalogError> {
    columns
        .iter()
        .map(|c| {
            Column::builder()
                .name(&c.name)
                .r#type(&c.glue_type)
                .build()
                .map_err(|err| call("building the columns of", table, err))
        })
        .collect()
}

/// A failed call, its kind kept as the source and its whole chain of causes
/// in the message (the SDK's own `Display` says only "service error").
fn call<E>(operation: &'static str, table: &TableDefinition, err: E) -> CatalogError
where
    E: std::error::Error + Send + Sync + 'static,
{
    CatalogError::Call {
        operation,
        table: table.name.clone(),
        message: DisplayErrorContext(&err).to_string(),
        source: BoxError::from(err),
    }
}
