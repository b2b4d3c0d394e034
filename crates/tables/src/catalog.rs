//! What the data catalog holds for a report type (SPEC "Tables"): one
//! external Parquet table per report type, partitioned by `account` and
//! `date` with partition projection, and the union of every column its
//! files have had. Pure: [`TableDefinition::for_file`] says what one table
//! file needs, [`TableDefinition::merge`] what the catalog's table must
//! become to cover it; the [`Catalog`] port (AWS Glue in [`crate::glue`])
//! applies it.
//!
//! # Partition projection
//! Athena computes the partitions from the table's properties instead of
//! reading them from the catalog, so no crawler runs and no partition is ever
//! added: a file is queryable as soon as it is stored.
//! - `date` is a `date` projection (`yyyy-MM-dd`, from 2010-01-01 to `NOW`,
//!   one day at a time).
//! - `account` is an `enum` projection listing every account whose files the
//!   table has, not an `injected` one. With `injected`, Athena refuses every
//!   query that does not filter on `account` by equality, so "net per account"
//!   or "all accounts for March" would fail; the accounts of a stack are few
//!   and known (each converter adds its own to the list before recording the
//!   file), so listing them costs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use crate::layout::table_prefix;
use crate::schema::{Column, PARTITION_KEYS, table_name};

/// `TableType` of every table: the files are not the catalog's.
pub const TABLE_TYPE: &str = "EXTERNAL_TABLE";
/// The Hive input format of Parquet files.
pub const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
/// The Hive output format of Parquet files.
pub const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
/// The SerDe reading Parquet columns by name (a column added later reads as
/// null in older files).
pub const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// The table property listing the accounts of the `account` projection.
pub const ACCOUNT_VALUES: &str = "projection.account.values";

/// A column of the catalog's table: its safe name and its Glue type
/// (`decimal(38,3)`, `timestamp`, `bigint`, `boolean`, `string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub name: String,
    pub glue_type: String,
}

impl CatalogColumn {
    pub fn new(name: impl Into<String>, glue_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            glue_type: glue_type.into(),
        }
    }
}

/// One report type's table as the catalog holds it (or must hold it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    /// The table name: the report type made safe (see [`table_name`]).
    pub name: String,
    /// The data columns, in order (the partition keys are not among them).
    pub columns: Vec<CatalogColumn>,
    /// `account` and `date`, both `string`.
    pub partition_keys: Vec<CatalogColumn>,
    /// `s3://<bucket>/<prefix>tables/<table>/`.
    pub location: String,
    pub input_format: String,
    pub output_format: String,
    pub serde: String,
    pub table_type: String,
    /// The table properties: the classification, `EXTERNAL`, and the
    /// partition projection (see the module docs).
    pub parameters: BTreeMap<String, String>,
}

impl TableDefinition {
    /// The table one table file of `report_type` and `account` needs: its
    /// columns (as [`crate::schema::columns`] named and typed them) and
    /// `account` in the projection's accounts.
    pub fn for_file(
        bucket: &str,
        prefix: &str,
        report_type: &str,
        account: &str,
        columns: &[Column],
    ) -> Self {
        let name = table_name(report_type);
        let location = format!("s3://{bucket}/{}", table_prefix(prefix, &name));
        let template = format!("{location}account=${{account}}/date=${{date}}/");
        let parameters = [
            ("classification", "parquet"),
            ("EXTERNAL", "TRUE"),
            ("projection.enabled", "true"),
            ("projection.account.type", "enum"),
            (ACCOUNT_VALUES, account),
            ("projection.date.type", "date"),
            ("projection.date.format", "yyyy-MM-dd"),
            ("projection.date.range", "2010-01-01,NOW"),
            ("projection.date.interval", "1"),
            ("projection.date.interval.unit", "DAYS"),
            ("storage.location.template", template.as_str()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        Self {
            name,
            columns: columns
                .iter()
                .map(|column| CatalogColumn::new(&column.name, column.ty.glue_type()))
                .collect(),
            partition_keys: PARTITION_KEYS
                .iter()
                .map(|key| CatalogColumn::new(*key, "string"))
                .collect(),
            location,
            input_format: INPUT_FORMAT.to_owned(),
            output_format: OUTPUT_FORMAT.to_owned(),
            serde: SERDE.to_owned(),
            table_type: TABLE_TYPE.to_owned(),
            parameters,
        }
    }

    /// The accounts of the `account` projection, sorted.
    pub fn accounts(&self) -> BTreeSet<&str> {
        self.parameters
            .get(ACCOUNT_VALUES)
            .map(|values| {
                values
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the catalog's table (`existing`, as read back) must become to
    /// cover a new file's table (`new`); `None` when it covers it already.
    ///
    /// - Columns: the existing ones in their order, a column the new file
    ///   adds appended in the file's order. A column the new file lacks stays
    ///   (older files have it); a column whose type differs takes the new
    ///   file's type (the type mapping changed, and a backfill rewrites the
    ///   older files with it).
    /// - The `account` projection: the union of both lists, sorted.
    /// - Everything else (location, formats, partition keys, the other
    ///   properties): the new definition's, so a table damaged by hand is
    ///   repaired; a property only the catalog has (one added by a person or
    ///   another tool) is kept.
    pub fn merge(existing: &TableDefinition, new: &TableDefinition) -> Option<TableDefinition> {
        let mut columns = existing.columns.clone();
        for column in &new.columns {
            match columns.iter_mut().find(|c| c.name == column.name) {
                Some(known) => known.glue_type.clone_from(&column.glue_type),
                None => columns.push(column.clone()),
            }
        }
        let accounts: BTreeSet<&str> = existing
            .accounts()
            .union(&new.accounts())
            .copied()
            .collect();
        let mut parameters = existing.parameters.clone();
        parameters.extend(new.parameters.clone());
        parameters.insert(
            ACCOUNT_VALUES.to_owned(),
            accounts.into_iter().collect::<Vec<_>>().join(","),
        );
        let merged = TableDefinition {
            name: new.name.clone(),
            columns,
            partition_keys: new.partition_keys.clone(),
            location: new.location.clone(),
            input_format: new.input_format.clone(),
            output_format: new.output_format.clone(),
            serde: new.serde.clone(),
            table_type: new.table_type.clone(),
            parameters,
        };
        (merged != *existing).then_some(merged)
    }
}

/// What [`Catalog::ensure_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogChange {
    /// The table did not exist: it was created from the definition.
    Created,
    /// The table lacked a column, a column's type or the account: it now has
    /// the union.
    Updated,
    /// The table covers the file already: nothing was written.
    Unchanged,
}

/// Any error of the catalog; the cause is kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The stack's database is missing (the template creates it).
    #[error(
        "catalog database {database} does not exist: deploy the stack (its template creates it)"
    )]
    NoDatabase { database: String },
    /// A table of that name exists and is not an external table (a view, an
    /// Iceberg table): it is not ours to change.
    #[error(
        "catalog table {database}.{table} is a {table_type}, not an {TABLE_TYPE}: not changed; drop or rename it"
    )]
    Foreign {
        database: String,
        table: String,
        table_type: String,
    },
    /// Other writers changed the table under every attempt.
    #[error(
        "catalog table {table} changed under each of {attempts} attempts (other converters updating it): try again"
    )]
    Contended { table: String, attempts: u32 },
    /// The catalog's call failed (throttled, access denied, unavailable).
    #[error("catalog {operation} of table {table} failed: {message}")]
    Call {
        operation: &'static str,
        table: String,
        /// The error and its causes on one line.
        message: String,
        #[source]
        source: BoxError,
    },
}

/// The data catalog (AWS Glue): creates or widens a report type's table.
pub trait Catalog: Send + Sync {
    /// Makes the table cover `table` (see [`TableDefinition::merge`]):
    /// creates it if missing, updates it if it lacks something, and never
    /// loses what a concurrent call added. Safe to repeat.
    fn ensure_table(
        &self,
        table: &TableDefinition,
    ) -> impl Future<Output = Result<CatalogChange, CatalogError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::columns;

    fn definition(account: &str, header: &[&str]) -> TableDefinition {
        TableDefinition::for_file(
            "bucket",
            "reports/",
            "balance_change_from_activity.itemized.3",
            account,
            &columns(header),
        )
    }

    fn names(table: &TableDefinition) -> Vec<&str> {
        table.columns.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_file_names_its_table_columns_location_and_projection() {
        let table = definition(
            "acct_1",
            &[
                "balance_transaction_id",
                "created_utc",
                "gross",
                "is_fee",
                "payment_metadata[order id]",
            ],
        );
        assert_eq!(table.name, "balance_change_from_activity_itemized_3");
        assert_eq!(
            table.columns,
            vec![
                CatalogColumn::new("balance_transaction_id", "string"),
                CatalogColumn::new("created_utc", "timestamp"),
                CatalogColumn::new("gross", "decimal(38,3)"),
                CatalogColumn::new("is_fee", "boolean"),
                CatalogColumn::new("payment_metadata_order_id_", "string"),
            ]
        );
        assert_eq!(
            table.partition_keys,
            vec![
                CatalogColumn::new("account", "string"),
                CatalogColumn::new("date", "string")
            ]
        );
        assert_eq!(
            table.location,
            "s3://bucket/reports/tables/balance_change_from_activity_itemized_3/"
        );
        assert_eq!(table.table_type, "EXTERNAL_TABLE");
        assert_eq!(
            table.serde,
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        );
        let p = |key: &str| table.parameters.get(key).map(String::as_str);
        assert_eq!(p("projection.account.values"), Some("acct_1"));
        assert_eq!(p("projection.account.type"), Some("enum"));
        assert_eq!(
            p("storage.location.template"),
            Some(
                "s3://bucket/reports/tables/balance_change_from_activity_itemized_3/account=${account}/date=${date}/"
            )
        );
    }

    #[test]
    fn the_same_file_again_changes_nothing() {
        let table = definition("acct_1", &["id", "gross"]);
        assert_eq!(TableDefinition::merge(&table, &table.clone()), None);
    }

    #[test]
    fn a_file_with_fewer_columns_changes_nothing() {
        let existing = definition("acct_1", &["id", "gross", "fee"]);
        let new = definition("acct_1", &["gross"]);
        assert_eq!(TableDefinition::merge(&existing, &new), None);
    }

    #[test]
    fn new_columns_are_appended_after_the_existing_ones_in_order() {
        let existing = definition("acct_1", &["id", "gross", "fee"]);
        let new = definition("acct_1", &["extra_b", "id", "extra_a", "fee"]);
        let merged = TableDefinition::merge(&existing, &new).expect("an update");
        assert_eq!(names(&merged), ["id", "gross", "fee", "extra_b", "extra_a"]);
        // Merging again with the same file: nothing more to do.
        assert_eq!(TableDefinition::merge(&merged, &new), None);
    }

    #[test]
    fn a_changed_type_takes_the_new_files_type_in_place() {
        let mut existing = definition("acct_1", &["id", "gross", "fee"]);
        existing.columns[1].glue_type = "string".to_owned();
        let new = definition("acct_1", &["id", "gross"]);
        let merged = TableDefinition::merge(&existing, &new).expect("an update");
        assert_eq!(names(&merged), ["id", "gross", "fee"]);
        assert_eq!(merged.columns[1].glue_type, "decimal(38,3)");
    }

    #[test]
    fn accounts_are_the_sorted_union() {
        let existing = definition("acct_b", &["id"]);
        let merged =
            TableDefinition::merge(&existing, &definition("acct_a", &["id"])).expect("an update");
        assert_eq!(merged.parameters[ACCOUNT_VALUES], "acct_a,acct_b");
        assert_eq!(
            merged.accounts().into_iter().collect::<Vec<_>>(),
            ["acct_a", "acct_b"]
        );
        // An account already listed changes nothing.
        assert_eq!(
            TableDefinition::merge(&merged, &definition("acct_b", &["id"])),
            None
        );
        let merged =
            TableDefinition::merge(&merged, &definition("acct_0", &["id"])).expect("an update");
        assert_eq!(merged.parameters[ACCOUNT_VALUES], "acct_0,acct_a,acct_b");
    }

    #[test]
    fn a_damaged_table_is_repaired_and_foreign_properties_are_kept() {
        let new = definition("acct_1", &["id"]);
        let mut existing = new.clone();
        existing.parameters.remove("projection.enabled");
        existing
            .parameters
            .insert("comment".to_owned(), "by hand".to_owned());
        existing.serde = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe".to_owned();
        let merged = TableDefinition::merge(&existing, &new).expect("an update");
        assert_eq!(merged.parameters["projection.enabled"], "true");
        assert_eq!(merged.parameters["comment"], "by hand");
        assert_eq!(merged.serde, SERDE);
        assert_eq!(TableDefinition::merge(&merged, &new), None);
    }
}
