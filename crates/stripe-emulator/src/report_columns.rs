//! The columns Stripe documents for each report type the emulator knows, in
//! Stripe's order, and where each list comes from.
//!
//! Stripe documents a report type's columns as a table of name, "default"
//! mark and description on its report-type pages:
//! - `https://docs.stripe.com/reports/report-types/balance` (once
//!   `https://docs.stripe.com/reports/balance`): balance, balance change from
//!   activity and payouts;
//! - `https://docs.stripe.com/reports/report-types/payout-reconciliation`:
//!   payout reconciliation and ending balance reconciliation;
//! - `https://docs.stripe.com/reports/report-types/connect`: every
//!   `connected_account_` variant.
//!
//! Each list below names its page and anchor (`#schema-<type with dots and
//! underscores as dashes>`). The lists were checked against stored copies of
//! those pages (2023–2024 captures) and, for `balance.summary.1` and
//! `balance_change_from_activity.itemized.3`, against
//! `shared/stripe/facts.md`. Two things could not be verified and are said
//! where they matter:
//! - The "default" marks did not survive in any copy, so which columns Stripe
//!   includes when a run gives no `columns` is not known here. The emulator
//!   therefore treats every documented column (except the `…[key]` metadata
//!   templates, which need a key) as a default: a run without `columns` gets
//!   them all, and the report type's `default_columns` says so. Configure
//!   [`crate::ReportTypeConfig::default_columns`] to narrow it.
//! - Newer versions than the ones listed (a later `payout_reconciliation.itemized`
//!   and so on) may exist; a report type not listed here gets
//!   [`FALLBACK`] unless its configuration names its columns.
//!
//! Some copies show a page's columns sorted alphabetically; the order kept
//! here is the documentation (schema) order, which is the order the columns
//! have in the files.

/// One report type's documented columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportColumns {
    pub report_type: &'static str,
    /// In Stripe's order. `payment_metadata[key]`, `refund_metadata[key]`
    /// and `transfer_metadata[key]` stand for one column per requested key.
    pub columns: &'static [&'static str],
    /// The documentation page (and anchor) the list comes from.
    pub source: &'static str,
}

impl ReportColumns {
    /// The columns of a run without `columns`: every documented one but the
    /// metadata templates (see the module notes on default marks).
    pub fn default_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|name| !is_metadata_template(name))
            .map(|name| (*name).to_owned())
            .collect()
    }
}

/// `payment_metadata[key]` and the like: a column name Stripe documents as a
/// pattern, one column per key given in `columns`.
pub fn is_metadata_template(name: &str) -> bool {
    name.ends_with("_metadata[key]")
}

/// The page of the balance, balance change from activity and payouts types.
pub const BALANCE_PAGE: &str = "https://docs.stripe.com/reports/report-types/balance";
/// The page of the payout and ending balance reconciliation types.
pub const PAYOUT_RECONCILIATION_PAGE: &str =
    "https://docs.stripe.com/reports/report-types/payout-reconciliation";
/// The page of the `connected_account_` types.
pub const CONNECT_PAGE: &str = "https://docs.stripe.com/reports/report-types/connect";

/// `balance.summary.1` and `connected_account_balance.summary.1`.
/// facts.md gives the same four (the API reference's `default_columns`).
const BALANCE_SUMMARY: &[&str] = &["category", "description", "net_amount", "currency"];

/// Every `*.summary.1` by reporting category (balance change from activity,
/// payouts, payout reconciliation, by-id payout reconciliation, ending
/// balance reconciliation), platform and connected account alike.
const CATEGORY_SUMMARY: &[&str] = &[
    "reporting_category",
    "currency",
    "count",
    "gross",
    "fee",
    "net",
];

/// `balance_change_from_activity.itemized.3`, as facts.md lists it too.
const BALANCE_CHANGE_FROM_ACTIVITY_ITEMIZED_3: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account_id",
    "connected_account_name",
    "connected_account_country",
    "connected_account_direct_charge_id",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

const PAYOUTS_ITEMIZED_3: &[&str] = &[
    "payout_id",
    "effective_at_utc",
    "effective_at",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "balance_transaction_id",
    "description",
    "payout_expected_arrival_date",
    "payout_status",
    "payout_reversed_at_utc",
    "payout_reversed_at",
    "payout_type",
    "payout_description",
    "payout_destination_id",
    "regulatory_tag",
];

/// The copy of the page names no column; the names are matched to its
/// descriptions from the page's alphabetical listing (`order_id`: "Unique ID
/// for the order associated with this balance transaction",
/// `destination_payment_id`: "Destination payment id in the case of
/// Separate Charges & Transfers and destination charges").
const PAYOUT_RECONCILIATION_ITEMIZED_5: &[&str] = &[
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_effective_at_utc",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "order_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account_id",
    "connected_account_name",
    "connected_account_country",
    "connected_account_direct_charge_id",
    "destination_payment_id",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

/// Matched to the page's descriptions as for `payout_reconciliation.itemized.5`.
const PAYOUT_RECONCILIATION_BY_ID_ITEMIZED_4: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account_id",
    "connected_account_name",
    "connected_account_country",
    "connected_account_direct_charge_id",
    "destination_payment_id",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

/// Matched to the page's descriptions as for `payout_reconciliation.itemized.5`.
const ENDING_BALANCE_RECONCILIATION_ITEMIZED_4: &[&str] = &[
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_effective_at_utc",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account_id",
    "connected_account_name",
    "connected_account_country",
    "connected_account_direct_charge_id",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

/// Like the platform's, without the `connected_account_*` group, with
/// `connected_account` after `dispute_reason`.
const CONNECTED_ACCOUNT_BALANCE_CHANGE_FROM_ACTIVITY_ITEMIZED_3: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

const CONNECTED_ACCOUNT_PAYOUTS_ITEMIZED_3: &[&str] = &[
    "payout_id",
    "effective_at_utc",
    "effective_at",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "balance_transaction_id",
    "description",
    "payout_expected_arrival_date",
    "payout_status",
    "payout_reversed_at_utc",
    "payout_reversed_at",
    "payout_type",
    "payout_description",
    "payout_destination_id",
    "regulatory_tag",
    "connected_account",
];

const CONNECTED_ACCOUNT_PAYOUT_RECONCILIATION_ITEMIZED_5: &[&str] = &[
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_effective_at_utc",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account",
    "source_transaction_id",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

const CONNECTED_ACCOUNT_PAYOUT_RECONCILIATION_BY_ID_ITEMIZED_4: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account",
    "source_transaction_id",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

const CONNECTED_ACCOUNT_ENDING_BALANCE_RECONCILIATION_ITEMIZED_4: &[&str] = &[
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "regulatory_tag",
    "automatic_payout_effective_at_utc",
    "customer_id",
    "customer_email",
    "customer_name",
    "customer_description",
    "customer_shipping_address_line1",
    "customer_shipping_address_line2",
    "customer_shipping_address_city",
    "customer_shipping_address_state",
    "customer_shipping_address_postal_code",
    "customer_shipping_address_country",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_postal_code",
    "customer_address_country",
    "shipping_address_line1",
    "shipping_address_line2",
    "shipping_address_city",
    "shipping_address_state",
    "shipping_address_postal_code",
    "shipping_address_country",
    "card_address_line1",
    "card_address_line2",
    "card_address_city",
    "card_address_state",
    "card_address_postal_code",
    "card_address_country",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "invoice_number",
    "subscription_id",
    "payment_method_type",
    "is_link",
    "card_brand",
    "card_funding",
    "card_country",
    "statement_descriptor",
    "dispute_reason",
    "connected_account",
    "payment_metadata[key]",
    "refund_metadata[key]",
    "transfer_metadata[key]",
];

/// Every report type whose columns the emulator knows.
pub const REPORT_TYPES: &[ReportColumns] = &[
    // Balance (BALANCE_PAGE).
    ReportColumns {
        report_type: "balance.summary.1",
        columns: BALANCE_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/balance#schema-balance-summary-1",
    },
    ReportColumns {
        report_type: "balance_change_from_activity.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/balance#schema-balance-change-from-activity-summary-1",
    },
    ReportColumns {
        report_type: "balance_change_from_activity.itemized.3",
        columns: BALANCE_CHANGE_FROM_ACTIVITY_ITEMIZED_3,
        source: "https://docs.stripe.com/reports/report-types/balance#schema-balance-change-from-activity-itemized-3",
    },
    ReportColumns {
        report_type: "payouts.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/balance#schema-payouts-summary-1",
    },
    ReportColumns {
        report_type: "payouts.itemized.3",
        columns: PAYOUTS_ITEMIZED_3,
        source: "https://docs.stripe.com/reports/report-types/balance#schema-payouts-itemized-3",
    },
    // Payout reconciliation and ending balance reconciliation
    // (PAYOUT_RECONCILIATION_PAGE).
    ReportColumns {
        report_type: "payout_reconciliation.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/payout-reconciliation#schema-payout-reconciliation-summary-1",
    },
    ReportColumns {
        report_type: "payout_reconciliation.itemized.5",
        columns: PAYOUT_RECONCILIATION_ITEMIZED_5,
        source: "https://docs.stripe.com/reports/report-types/payout-reconciliation#schema-payout-reconciliation-itemized-5",
    },
    ReportColumns {
        report_type: "payout_reconciliation.by_id.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/payout-reconciliation#schema-payout-reconciliation-by-id-summary-1",
    },
    ReportColumns {
        report_type: "payout_reconciliation.by_id.itemized.4",
        columns: PAYOUT_RECONCILIATION_BY_ID_ITEMIZED_4,
        source: "https://docs.stripe.com/reports/report-types/payout-reconciliation#schema-payout-reconciliation-by-id-itemized-4",
    },
    ReportColumns {
        report_type: "ending_balance_reconciliation.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/payout-reconciliation#schema-ending-balance-reconciliation-summary-1",
    },
    ReportColumns {
        report_type: "ending_balance_reconciliation.itemized.4",
        columns: ENDING_BALANCE_RECONCILIATION_ITEMIZED_4,
        source: "https://docs.stripe.com/reports/report-types/payout-reconciliation#schema-ending-balance-reconciliation-itemized-4",
    },
    // Connected accounts (CONNECT_PAGE).
    ReportColumns {
        report_type: "connected_account_balance.summary.1",
        columns: BALANCE_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-balance-summary-1",
    },
    ReportColumns {
        report_type: "connected_account_balance_change_from_activity.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-balance-change-from-activity-summary-1",
    },
    ReportColumns {
        report_type: "connected_account_balance_change_from_activity.itemized.3",
        columns: CONNECTED_ACCOUNT_BALANCE_CHANGE_FROM_ACTIVITY_ITEMIZED_3,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-balance-change-from-activity-itemized-3",
    },
    ReportColumns {
        report_type: "connected_account_payouts.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-payouts-summary-1",
    },
    ReportColumns {
        report_type: "connected_account_payouts.itemized.3",
        columns: CONNECTED_ACCOUNT_PAYOUTS_ITEMIZED_3,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-payouts-itemized-3",
    },
    ReportColumns {
        report_type: "connected_account_payout_reconciliation.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-payout-reconciliation-summary-1",
    },
    ReportColumns {
        report_type: "connected_account_payout_reconciliation.itemized.5",
        columns: CONNECTED_ACCOUNT_PAYOUT_RECONCILIATION_ITEMIZED_5,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-payout-reconciliation-itemized-5",
    },
    ReportColumns {
        report_type: "connected_account_payout_reconciliation.by_id.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-payout-reconciliation-by-id-summary-1",
    },
    ReportColumns {
        report_type: "connected_account_payout_reconciliation.by_id.itemized.4",
        columns: CONNECTED_ACCOUNT_PAYOUT_RECONCILIATION_BY_ID_ITEMIZED_4,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-payout-reconciliation-by-id-itemized-4",
    },
    ReportColumns {
        report_type: "connected_account_ending_balance_reconciliation.summary.1",
        columns: CATEGORY_SUMMARY,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-ending-balance-reconciliation-summary-1",
    },
    ReportColumns {
        report_type: "connected_account_ending_balance_reconciliation.itemized.4",
        columns: CONNECTED_ACCOUNT_ENDING_BALANCE_RECONCILIATION_ITEMIZED_4,
        source: "https://docs.stripe.com/reports/report-types/connect#schema-connected-account-ending-balance-reconciliation-itemized-4",
    },
];

/// The columns of a report type the emulator does not know (say
/// `tax.transactions.1`) and whose configuration names none: the itemized
/// balance change from activity, as the most general report. Not Stripe's
/// columns for that type.
pub const FALLBACK: &ReportColumns = &REPORT_TYPES[2];

/// The documented columns of `report_type`, if the emulator knows them.
pub fn documented(report_type: &str) -> Option<&'static ReportColumns> {
    REPORT_TYPES
        .iter()
        .find(|known| known.report_type == report_type)
}

/// The columns a run of `report_type` without `columns` gets: the
/// configured `default_columns`, else the documented ones (every one but
/// the metadata templates), else [`FALLBACK`]'s.
pub fn default_columns(report_type: &str, configured: Option<&[String]>) -> Vec<String> {
    match configured {
        Some(columns) => columns.to_vec(),
        None => documented(report_type)
            .unwrap_or(FALLBACK)
            .default_columns(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_names_its_page_and_has_no_duplicate() {
        for known in REPORT_TYPES {
            let page = if known.report_type.starts_with("connected_account_") {
                CONNECT_PAGE
            } else if known.report_type.contains("reconciliation") {
                PAYOUT_RECONCILIATION_PAGE
            } else {
                BALANCE_PAGE
            };
            let anchor = format!(
                "{page}#schema-{}",
                known.report_type.replace(['.', '_'], "-")
            );
            assert_eq!(known.source, anchor, "{}", known.report_type);
            let mut names = known.columns.to_vec();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), known.columns.len(), "{}", known.report_type);
        }
        assert_eq!(
            FALLBACK.report_type,
            "balance_change_from_activity.itemized.3"
        );
    }

    #[test]
    fn defaults_leave_out_the_metadata_templates() {
        let columns = default_columns("balance_change_from_activity.itemized.3", None);
        assert_eq!(
            columns.len(),
            BALANCE_CHANGE_FROM_ACTIVITY_ITEMIZED_3.len() - 3
        );
        assert!(!columns.iter().any(|c| c.contains('[')));
        assert_eq!(
            default_columns("balance.summary.1", None),
            ["category", "description", "net_amount", "currency"]
        );
        let configured = vec!["gross".to_owned()];
        assert_eq!(default_columns("nope.1", Some(&configured)), ["gross"]);
        assert_eq!(
            default_columns("tax.transactions.1", None),
            FALLBACK.default_columns()
        );
    }
}
