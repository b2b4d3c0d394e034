//! Table and column names and column types, from the report type and the
//! CSV header alone (pure: no I/O, no Arrow).
//!
//! Stripe documents each report type's columns as name, default mark and
//! description, and states no types (`shared/stripe/facts.md`, "Report files
//! (CSV)"). The type of a column follows from its description, and the
//! descriptions follow the column names closely enough to map by name:
//!
//! - **Amounts** — "Expressed in major units of the currency (e.g. dollars for
//!   USD, yen for JPY)": `gross`, `fee`, `net`
//!   (docs.stripe.com/reports/report-types/balance,
//!   `#schema-balance-change-from-activity-itemized-3`, and every itemized and
//!   summary type on the balance, payout reconciliation and connect pages);
//!   `net_amount` of `balance.summary.1` (its `default_columns`, API reference
//!   "The Report Type object"); `customer_facing_amount` ("the amount of the
//!   original charge or refund", in `customer_facing_currency`);
//!   `non_taxable_amount`, `tax_amount`, `taxable_amount`, `total` and their
//!   `filing_*` forms "in filing currency" (docs.stripe.com/reports/report-types/tax,
//!   `tax.transactions.itemized.2`); `amount` and `tax` of fee data ("expressed
//!   in major units of the currency", docs.stripe.com/stripe-data/query-all-fees-data).
//!   Any other name ending `_amount`, `_fee`, `_fees`, `_gross`, `_net`,
//!   `_total` or `_subtotal` is taken as an amount too. CSV amounts are
//!   decimals in major units, unlike the API's integer minor units
//!   (docs.stripe.com/reports/api, "CSV and API monetary formats differ").
//! - **Timestamps** — "Dates in UTC" for the `*_utc` columns; "Dates in the
//!   requested timezone, or UTC if not provided" for their unsuffixed twins
//!   (`created`, `available_on`, `effective_at`, `automatic_payout_effective_at`,
//!   `charge_created`, `payout_reversed_at`, …); and dates such as
//!   `payout_expected_arrival_date`. By name: `*_utc`, `created`, `updated`,
//!   `*_created`, `*_at`, `*_on`, `*_date`.
//! - **Counts** — `count` of the `*.summary.1` types ("number of
//!   transactions"), and any `*_count`.
//! - **Flags** — `is_*` (`is_link`: "whether the payment was made with Link").
//! - **Strings** — everything else: ids (`*_id`, checked first, so
//!   `application_fee_id` stays an id), codes, currencies, categories,
//!   addresses, free text, and every `*_metadata[<key>]` column whatever its
//!   key says (`payment_metadata[amount]` is the merchant's text, not Stripe's
//!   amount). Rates (`filing_exchange_rate`, tax rates) are strings too: they
//!   are not amounts and their precision is not documented.
//!
//! A value that does not parse as its column's type fails the conversion
//! (the CSV stays the record); it is never guessed at or rounded.

/// How exactly an amount is stored: `DECIMAL(38, 3)`.
///
/// Scale 3: every currency Stripe supports has 0, 2 or 3 decimals
/// (docs.stripe.com/currencies: the zero-decimal BIF, CLP, DJF, GNF, JPY,
/// KMF, KRW, MGA, PYG, RWF, UGX, VND, VUV, XAF, XOF, XPF; the three-decimal
/// BHD, JOD, KWD, OMR, TND, "e.g. 5.124 KWD"; the rest 2), and a report
/// amount is an integer number of the currency's minor units written in
/// major units (docs.stripe.com/reports/api), so it has at most 3 decimals.
/// One type for every currency keeps one column type per table (Glue has
/// one type per column, and rows of many currencies share a file). A value
/// with more decimals is an error, never rounded.
///
/// Precision 38: the widest decimal Athena, Glue, Spark and Parquet's
/// 16-byte decimals share. The API's amounts are 64-bit integers of minor
/// units (at most 19 digits), so 35 integer digits hold any amount, and sums
/// of billions of them, with room to spare.
pub const AMOUNT_PRECISION: u8 = 38;
/// See [`AMOUNT_PRECISION`].
pub const AMOUNT_SCALE: u32 = 3;

/// Which clock a timestamp column reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clock {
    /// `*_utc`: stored as an instant (Parquet `isAdjustedToUTC = true`).
    Utc,
    /// The run's `timezone` (or UTC when the run gave none): stored as the
    /// wall-clock time the CSV shows, with no zone (Parquet
    /// `isAdjustedToUTC = false`). See the crate docs for why it is not
    /// converted to UTC.
    Local,
}

/// The type of a column in the table (and in the Parquet file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// `DECIMAL(38, 3)`, an amount in major units.
    Decimal,
    Timestamp(Clock),
    /// `BIGINT`.
    BigInt,
    Boolean,
    String,
}

impl ColumnType {
    /// The Glue / Athena (Hive DDL) name of the type.
    pub fn glue_type(self) -> String {
        match self {
            ColumnType::Decimal => format!("decimal({AMOUNT_PRECISION},{AMOUNT_SCALE})"),
            ColumnType::Timestamp(_) => "timestamp".to_owned(),
            ColumnType::BigInt => "bigint".to_owned(),
            ColumnType::Boolean => "boolean".to_owned(),
            ColumnType::String => "string".to_owned(),
        }
    }
}

/// The partition keys of every table, in the order of the key layout
/// (`…/account=<id>/date=<YYYY-MM-DD>/…`).
pub const PARTITION_KEYS: [&str; 2] = ["account", "date"];

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name in the CSV header, as Stripe wrote it.
    pub source: String,
    /// The safe name (see [`safe_name`]), unique within the table.
    pub name: String,
    pub ty: ColumnType,
    /// For an amount: the CSV header name of the column holding its currency
    /// (`currency`, `customer_facing_currency`, `filing_currency`), if the
    /// file has it. Sums are kept per value of that column.
    pub currency_column: Option<String>,
}

/// `<table>`: the report type with every character outside `[a-z0-9]`
/// replaced by `_` (`balance_change_from_activity.itemized.3` →
/// `balance_change_from_activity_itemized_3`).
pub fn table_name(report_type: &str) -> String {
    safe_name(report_type)
}

/// A name Glue and Athena accept: every character outside `[a-z0-9]`
/// (upper case letters and non-ASCII letters included, one `_` per
/// character) replaced by `_`, as the SPEC says for tables and columns.
/// An empty name becomes `_`.
pub fn safe_name(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            _ => '_',
        })
        .collect()
}

/// The type of a column, from its name in the CSV header (see the module
/// docs for the sources).
pub fn column_type(name: &str) -> ColumnType {
    // Metadata columns hold the merchant's text whatever the key is called.
    if name.contains('[') || name.contains(']') {
        return ColumnType::String;
    }
    if name == "id" || name.ends_with("_id") || name.ends_with("_ids") {
        return ColumnType::String;
    }
    if name.starts_with("is_") {
        return ColumnType::Boolean;
    }
    if name == "count" || name.ends_with("_count") {
        return ColumnType::BigInt;
    }
    if name.ends_with("_utc") {
        return ColumnType::Timestamp(Clock::Utc);
    }
    const LOCAL_TIME_NAMES: &[&str] = &["created", "updated", "available_on"];
    const LOCAL_TIME_SUFFIXES: &[&str] = &["_created", "_at", "_on", "_date"];
    if LOCAL_TIME_NAMES.contains(&name) || LOCAL_TIME_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return ColumnType::Timestamp(Clock::Local);
    }
    const AMOUNT_NAMES: &[&str] = &["gross", "fee", "net", "amount", "tax", "total", "subtotal"];
    const AMOUNT_SUFFIXES: &[&str] = &[
        "_amount",
        "_fee",
        "_fees",
        "_gross",
        "_net",
        "_total",
        "_subtotal",
    ];
    if AMOUNT_NAMES.contains(&name) || AMOUNT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return ColumnType::Decimal;
    }
    ColumnType::String
}

/// The CSV column that holds the currency of amount column `name`:
/// `customer_facing_amount` is in `customer_facing_currency`, the tax
/// report's `filing_*` amounts in `filing_currency`, the rest in `currency`.
pub fn currency_column_of(name: &str) -> &'static str {
    if name.starts_with("customer_facing_") {
        "customer_facing_currency"
    } else if name.starts_with("filing_") {
        "filing_currency"
    } else {
        "currency"
    }
}

/// The table's columns for a CSV header, in the header's order: safe names
/// (a name that would repeat an earlier one gets `_2`, `_3`, … so that
/// `payment_metadata[a b]` and `payment_metadata[a_b]` stay two columns),
/// types by name, and the currency column of each amount.
pub fn columns<S: AsRef<str>>(header: &[S]) -> Vec<Column> {
    // The partition keys are the table's columns too: a CSV column of the
    // same name would clash with them in Glue, so it becomes `date_2`.
    let mut taken: std::collections::HashSet<String> =
        PARTITION_KEYS.iter().map(|key| (*key).to_owned()).collect();
    header
        .iter()
        .map(|source| {
            let source = source.as_ref();
            let base = safe_name(source);
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}_{n}");
                n += 1;
            }
            let ty = column_type(source);
            let currency_column = match ty {
                ColumnType::Decimal => {
                    let wanted = currency_column_of(source);
                    header
                        .iter()
                        .any(|h| h.as_ref() == wanted)
                        .then(|| wanted.to_owned())
                }
                _ => None,
            };
            Column {
                source: source.to_owned(),
                name,
                ty,
                currency_column,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_column_named_like_a_partition_key_is_renamed() {
        let columns = columns(&["date", "account", "net"]);
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["date_2", "account_2", "net"]);
        assert_eq!(columns[0].source, "date");
    }

    #[test]
    fn table_names_replace_everything_outside_lowercase_and_digits() {
        assert_eq!(
            table_name("balance_change_from_activity.itemized.3"),
            "balance_change_from_activity_itemized_3"
        );
        assert_eq!(
            table_name("connected_account_payout_reconciliation.by_id.itemized.4"),
            "connected_account_payout_reconciliation_by_id_itemized_4"
        );
        assert_eq!(
            safe_name("payment_metadata[order-id]"),
            "payment_metadata_order_id_"
        );
        assert_eq!(safe_name("Gross"), "_ross");
        assert_eq!(safe_name("café"), "caf_");
        assert_eq!(safe_name(""), "_");
    }

    #[test]
    fn repeated_safe_names_get_a_number() {
        let cols = columns(&[
            "payment_metadata[a b]",
            "payment_metadata[a_b]",
            "payment_metadata[a.b]",
        ]);
        let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "payment_metadata_a_b_",
                "payment_metadata_a_b__2",
                "payment_metadata_a_b__3"
            ]
        );
    }

    #[test]
    fn amounts_know_their_currency_column() {
        let cols = columns(&[
            "currency",
            "gross",
            "customer_facing_amount",
            "customer_facing_currency",
            "filing_tax_amount",
        ]);
        let of = |n: &str| {
            cols.iter()
                .find(|c| c.source == n)
                .and_then(|c| c.currency_column.clone())
        };
        assert_eq!(of("gross").as_deref(), Some("currency"));
        assert_eq!(
            of("customer_facing_amount").as_deref(),
            Some("customer_facing_currency")
        );
        // No `filing_currency` in this header: no currency to sum by.
        assert_eq!(of("filing_tax_amount"), None);
        assert_eq!(of("currency"), None);
    }
}
