//! The type of every documented column of the report types this system
//! stores, as the SPEC maps Stripe's descriptions: amounts in major units →
//! DECIMAL, timestamps → TIMESTAMP (UTC or the run's zone), counts → BIGINT,
//! flags → BOOLEAN, the rest → STRING.

use tables::schema::{Clock, ColumnType, column_type, columns, table_name};

mod support;

use ColumnType::{BigInt, Boolean, Decimal, String as Text, Timestamp};
const UTC: ColumnType = Timestamp(Clock::Utc);
const LOCAL: ColumnType = Timestamp(Clock::Local);

#[test]
fn every_documented_column_has_the_type_of_its_description() {
    let table: &[(&str, ColumnType)] = &[
        // balance.summary.1 (API reference's default_columns).
        ("category", Text),
        ("description", Text),
        ("net_amount", Decimal),
        ("currency", Text),
        // *.summary.1 by reporting category.
        ("reporting_category", Text),
        ("count", BigInt),
        ("gross", Decimal),
        ("fee", Decimal),
        ("net", Decimal),
        // balance_change_from_activity.itemized.3 and its relatives.
        ("balance_transaction_id", Text),
        ("created_utc", UTC),
        ("created", LOCAL),
        ("available_on_utc", UTC),
        ("available_on", LOCAL),
        ("source_id", Text),
        ("customer_facing_amount", Decimal),
        ("customer_facing_currency", Text),
        ("regulatory_tag", Text),
        ("automatic_payout_id", Text),
        ("automatic_payout_effective_at_utc", UTC),
        ("automatic_payout_effective_at", LOCAL),
        ("customer_id", Text),
        ("customer_email", Text),
        ("customer_name", Text),
        ("customer_description", Text),
        ("customer_shipping_address_line1", Text),
        ("customer_address_postal_code", Text),
        ("shipping_address_country", Text),
        ("card_address_state", Text),
        ("charge_id", Text),
        ("payment_intent_id", Text),
        ("charge_created_utc", UTC),
        ("charge_created", LOCAL),
        ("invoice_id", Text),
        ("invoice_number", Text),
        ("subscription_id", Text),
        ("order_id", Text),
        ("payment_method_type", Text),
        ("is_link", Boolean),
        ("card_brand", Text),
        ("card_funding", Text),
        ("card_country", Text),
        ("statement_descriptor", Text),
        ("dispute_reason", Text),
        ("connected_account", Text),
        ("connected_account_id", Text),
        ("connected_account_name", Text),
        ("connected_account_country", Text),
        ("connected_account_direct_charge_id", Text),
        ("destination_payment_id", Text),
        ("source_transaction_id", Text),
        // Metadata: the merchant's text, whatever the key is called.
        ("payment_metadata[order_id]", Text),
        ("refund_metadata[amount]", Text),
        ("transfer_metadata[created_at]", Text),
        ("payment_metadata[is_gift]", Text),
        // payouts.itemized.3.
        ("payout_id", Text),
        ("effective_at_utc", UTC),
        ("effective_at", LOCAL),
        ("payout_expected_arrival_date", LOCAL),
        ("payout_status", Text),
        ("payout_reversed_at_utc", UTC),
        ("payout_reversed_at", LOCAL),
        ("payout_type", Text),
        ("payout_description", Text),
        ("payout_destination_id", Text),
        // tax.transactions.itemized.2.
        ("filing_currency", Text),
        ("filing_exchange_rate", Text),
        ("filing_non_taxable_amount", Decimal),
        ("filing_tax_amount", Decimal),
        ("filing_taxable_amount", Decimal),
        ("filing_total", Decimal),
        ("non_taxable_amount", Decimal),
        ("tax_amount", Decimal),
        ("taxable_amount", Decimal),
        ("total", Decimal),
        ("line_item_id", Text),
        ("jurisdiction_level", Text),
        ("country_code", Text),
        // Names not documented for these types follow the same patterns.
        ("amount", Decimal),
        ("application_fee", Decimal),
        ("application_fee_id", Text),
        ("refund_count", BigInt),
        ("discount_amount", Decimal),
        ("is_refunded", Boolean),
        ("incurred_at", LOCAL),
        ("updated", LOCAL),
        ("something_new", Text),
        ("", Text),
    ];
    let wrong: Vec<String> = table
        .iter()
        .filter(|(name, ty)| column_type(name) != *ty)
        .map(|(name, ty)| format!("{name}: {:?}, expected {ty:?}", column_type(name)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn glue_types_name_the_decimal_exactly() {
    assert_eq!(Decimal.glue_type(), "decimal(38,3)");
    assert_eq!(UTC.glue_type(), "timestamp");
    assert_eq!(LOCAL.glue_type(), "timestamp");
    assert_eq!(BigInt.glue_type(), "bigint");
    assert_eq!(Boolean.glue_type(), "boolean");
    assert_eq!(Text.glue_type(), "string");
}

#[test]
fn the_itemized_header_maps_to_safe_unique_names() {
    let cols = columns(support::report_csv::COLUMNS);
    assert_eq!(cols.len(), support::report_csv::COLUMNS.len());
    for c in &cols {
        assert!(
            c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}",
            c.name
        );
    }
    let names: std::collections::HashSet<_> = cols.iter().map(|c| &c.name).collect();
    assert_eq!(names.len(), cols.len());
    let refund = cols
        .iter()
        .find(|c| c.source == "refund_metadata[reason, free text]")
        .unwrap();
    assert_eq!(refund.name, "refund_metadata_reason__free_text_");
    assert_eq!(
        table_name("connected_account_balance_change_from_activity.itemized.3"),
        "connected_account_balance_change_from_activity_itemized_3"
    );
}
