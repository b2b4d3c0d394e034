//! The emulator's report files (the columns Stripe documents for each type,
//! amounts in each currency's decimals, both clocks, quoted free text, exact
//! sizes) convert, and the conversion agrees with what the emulator says the
//! file holds: the row count and each amount column's sum per currency,
//! which the emulator computes from integer minor units, not from the text.

mod support;

use stripe_emulator::csv::{CsvGenerator, FileSpec};
use stripe_emulator::report_columns::REPORT_TYPES;
use tables::schema::ColumnType;
use tables::{Amount, ConvertOptions, convert};

/// The whole file, generated chunk by chunk.
fn file(spec: FileSpec) -> Vec<u8> {
    let mut generator = CsvGenerator::new(spec);
    let mut out = Vec::new();
    while let Some(chunk) = generator.next_chunk() {
        out.extend(chunk);
    }
    out
}

fn check(spec: FileSpec) {
    let label = format!(
        "{} ({} bytes, {}{})",
        spec.report_type,
        spec.size,
        spec.timezone,
        if spec.crlf { ", CRLF" } else { "" }
    );
    let csv = file(spec.clone());
    assert_eq!(csv.len() as u64, spec.size, "{label}");
    let totals = CsvGenerator::new(spec).totals();
    let (converted, parquet) = convert(&csv[..], Vec::new(), &ConvertOptions::default())
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(converted.rows, totals.rows, "{label}: rows");

    // Sums: the emulator's decimal strings, compared as exact amounts.
    let mut expected = std::collections::BTreeMap::new();
    for ((column, currency), sum) in &totals.sums {
        let sum: Amount = sum
            .parse()
            .unwrap_or_else(|e| panic!("{label}: {sum}: {e}"));
        expected.insert((tables::schema::safe_name(column), currency.clone()), sum);
    }
    let mut got = std::collections::BTreeMap::new();
    for (column, per_currency) in &converted.sums {
        for (currency, sum) in per_currency {
            got.insert((column.clone(), currency.clone()), *sum);
        }
    }
    assert_eq!(got, expected, "{label}: sums");

    // Every value, read back, against the CSV read by the csv crate.
    let amounts: Vec<&str> = converted
        .columns
        .iter()
        .filter(|c| c.ty == ColumnType::Decimal)
        .map(|c| c.source.as_str())
        .collect();
    let (_, rows, _) = support::read_parquet(&parquet);
    let expected_rows = support::read_csv_trimmed(&csv, &converted.columns, &amounts);
    assert_eq!(rows.len(), expected_rows.len(), "{label}");
    for (i, (got, want)) in rows.iter().zip(&expected_rows).enumerate() {
        assert_eq!(got, want, "{label}: data row {}", i + 1);
    }
}

#[test]
fn every_report_type_the_emulator_serves_converts_with_its_totals() {
    for known in REPORT_TYPES {
        let columns = known.default_columns();
        for size in [2_000, 150_000] {
            check(FileSpec::new(
                size ^ 0x5eed,
                size,
                known.report_type,
                columns.clone(),
            ));
        }
    }
}

#[test]
fn a_time_zone_crlf_a_byte_order_mark_and_metadata_columns_convert() {
    let known =
        stripe_emulator::report_columns::documented("balance_change_from_activity.itemized.3")
            .unwrap();
    let mut columns = known.default_columns();
    columns.push("payment_metadata[order, id]".to_owned());
    columns.push("refund_metadata[amount]".to_owned());
    let spec = FileSpec {
        timezone: "America/New_York".to_owned(),
        crlf: true,
        byte_order_mark: true,
        ..FileSpec::new(99, 400_000, known.report_type, columns)
    };
    check(spec);
}

#[test]
fn tiny_files_that_end_mid_design_still_convert() {
    // Sizes where the emulator pads its one row, or the header alone.
    let columns = vec![
        "currency".to_owned(),
        "net".to_owned(),
        "description".to_owned(),
    ];
    for size in [24, 30, 40, 60, 61, 62, 100] {
        check(FileSpec::new(
            size,
            size,
            "balance_change_from_activity.itemized.3",
            columns.clone(),
        ));
    }
}
