use std::collections::BTreeMap;
use std::time::Instant;

use super::*;
use crate::report_columns::{REPORT_TYPES, default_columns};

fn spec(report_type: &str, size: u64) -> FileSpec {
    FileSpec::new(7, size, report_type, default_columns(report_type, None))
}

fn whole(spec: &FileSpec) -> Vec<u8> {
    let mut generator = CsvGenerator::new(spec.clone());
    let mut all = Vec::new();
    while let Some(chunk) = generator.next_chunk() {
        assert!(chunk.len() <= CHUNK + 8192, "a chunk of {}", chunk.len());
        all.extend(chunk);
    }
    all
}

/// Every record of `bytes`, read strictly (RFC 4180, every record as long
/// as the header), the header first.
fn records(bytes: &[u8]) -> Vec<Vec<String>> {
    let body = bytes.strip_prefix(BYTE_ORDER_MARK).unwrap_or(bytes);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(body);
    reader
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// `text` in minor units of a currency with `exponent` decimals, checking
/// that it has exactly that many.
fn minor_units(text: &str, exponent: u32) -> i128 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert_eq!(
        frac.len() as u32,
        exponent,
        "{text} has {exponent} decimals"
    );
    assert!(
        int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()),
        "{text}"
    );
    let value: i128 = format!("{int}{frac}").parse().unwrap();
    if negative { -value } else { value }
}

/// Totals computed from the file's text.
fn parsed_totals(rows: &[Vec<String>]) -> FileTotals {
    let header = &rows[0];
    let at = |name: &str| header.iter().position(|h| h == name);
    let mut minor: BTreeMap<(String, String), (i128, u32)> = BTreeMap::new();
    for row in &rows[1..] {
        for (column, currency_column) in [
            ("gross", "currency"),
            ("fee", "currency"),
            ("net", "currency"),
            ("net_amount", "currency"),
            ("customer_facing_amount", "customer_facing_currency"),
        ] {
            let (Some(value), Some(currency)) = (at(column), at(currency_column)) else {
                continue;
            };
            // An empty row (a file too small for a real one) pads with
            // zeros but names no currency: no amount.
            if row[value].is_empty() || row[currency].is_empty() {
                continue;
            }
            let currency = row[currency].clone();
            let exponent = exponent(&currency);
            let entry = minor
                .entry((column.to_owned(), currency))
                .or_insert((0, exponent));
            entry.0 += minor_units(&row[value], exponent);
        }
    }
    FileTotals {
        rows: rows.len() as u64 - 1,
        sums: minor
            .into_iter()
            .map(|(key, (sum, exponent))| (key, decimal_string(sum, exponent)))
            .collect(),
    }
}

fn header_len(spec: &FileSpec) -> u64 {
    CsvGenerator::new(spec.clone()).header().len() as u64
}

#[test]
fn every_type_has_the_exact_size_at_every_size_and_reads_strictly() {
    for known in REPORT_TYPES {
        let header = header_len(&spec(known.report_type, 0));
        let sizes = [
            0,
            1,
            header - 1,
            header,
            header + 1,
            header + 2,
            header + 3,
            header + 40,
            header + 333,
            header + 1000,
            4096,
            65_536,
            200_003,
        ];
        for size in sizes {
            let spec = spec(known.report_type, size);
            let bytes = whole(&spec);
            assert_eq!(
                bytes.len() as u64,
                size,
                "{} size {size}",
                known.report_type
            );
            if size < header {
                assert_eq!(bytes, CsvGenerator::new(spec).header()[..size as usize]);
                continue;
            }
            let rows = records(&bytes);
            assert_eq!(rows[0], spec.columns, "{} size {size}", known.report_type);
            assert_eq!(
                CsvGenerator::new(spec.clone()).totals(),
                parsed_totals(&rows),
                "{} size {size}",
                known.report_type
            );
            if size >= 4096 {
                assert!(rows.len() > 2, "{} size {size}", known.report_type);
                assert!(bytes.ends_with(b"\n"));
            }
        }
    }
}

#[test]
fn every_small_size_of_a_wide_and_a_narrow_file_is_exact() {
    for (report_type, columns) in [
        ("balance_change_from_activity.itemized.3", None),
        ("balance.summary.1", None),
        ("payouts.summary.1", Some(vec!["gross", "currency"])),
        ("payouts.summary.1", Some(vec!["currency"])),
        (
            "payouts.itemized.3",
            Some(vec!["customer_facing_amount", "customer_facing_currency"]),
        ),
        ("balance.summary.1", Some(vec!["regulatory_tag"])),
    ] {
        for crlf in [false, true] {
            for byte_order_mark in [false, true] {
                let mut spec = spec(report_type, 0);
                if let Some(columns) = &columns {
                    spec.columns = columns.iter().map(|c| (*c).to_owned()).collect();
                }
                spec.crlf = crlf;
                spec.byte_order_mark = byte_order_mark;
                let header = header_len(&spec);
                for size in header..header + 1500 {
                    let spec = FileSpec {
                        size,
                        ..spec.clone()
                    };
                    let bytes = whole(&spec);
                    assert_eq!(bytes.len() as u64, size, "{report_type} {columns:?} {size}");
                    let rows = records(&bytes);
                    assert_eq!(rows[0], spec.columns, "{report_type} {size}");
                    let totals = CsvGenerator::new(spec.clone()).totals();
                    assert_eq!(totals.rows, rows.len() as u64 - 1);
                    assert_eq!(totals, parsed_totals(&rows), "{report_type} {size}");
                }
            }
        }
    }
}

#[test]
fn the_same_file_twice_gives_the_same_bytes_and_another_seed_others() {
    let a = spec("balance_change_from_activity.itemized.3", 300_000);
    assert_eq!(whole(&a), whole(&a));
    assert_ne!(
        whole(&a),
        whole(&FileSpec {
            seed: 8,
            ..a.clone()
        })
    );
    assert_eq!(
        CsvGenerator::new(a.clone()).sha256(),
        hex::encode(Sha256::digest(whole(&a)))
    );
}

#[test]
fn amounts_have_the_currencys_decimals_and_some_are_negative() {
    let bytes = whole(&spec("balance_change_from_activity.itemized.3", 400_000));
    let rows = records(&bytes);
    let header = &rows[0];
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut seen = BTreeMap::new();
    let mut negative = 0;
    for row in &rows[1..] {
        let currency = row[at("currency")].clone();
        for column in ["gross", "fee", "net"] {
            let value = &row[at(column)];
            let decimals = value.split_once('.').map_or(0, |(_, f)| f.len());
            assert_eq!(decimals as u32, exponent(&currency), "{currency} {value}");
            negative += usize::from(value.starts_with('-'));
        }
        *seen.entry(currency).or_insert(0) += 1;
    }
    for currency in ["usd", "jpy", "bhd", "eur", "gbp"] {
        assert!(seen.get(currency).is_some_and(|n| *n > 10), "{seen:?}");
    }
    assert!(negative > 10);
}

#[test]
fn a_runs_currency_timezone_and_category_shape_the_rows() {
    let parameters = serde_json::json!({
        "interval_start": 1_772_928_000, // 2026-03-08 00:00 UTC
        "interval_end": 1_773_014_400,
        "timezone": "America/New_York",
        "currency": "JPY",
        "reporting_category": "refund",
        "columns": ["created_utc", "created", "gross", "currency", "reporting_category"],
    });
    let spec = FileSpec::for_run(
        3,
        50_000,
        "balance_change_from_activity.itemized.3",
        &parameters,
        vec![],
        0,
    )
    .unwrap();
    let rows = records(&whole(&spec));
    assert_eq!(
        rows[0],
        [
            "created_utc",
            "created",
            "gross",
            "currency",
            "reporting_category"
        ]
    );
    for row in &rows[1..] {
        assert_eq!(row[3], "jpy");
        assert_eq!(row[4], "refund");
        assert!(row[2].starts_with('-') && !row[2].contains('.'), "{row:?}");
        assert!(
            row[0].as_str() >= "2026-03-08 00:00:00" && row[0].as_str() < "2026-03-09 00:00:00"
        );
        // New York is five hours behind until 07:00 UTC, four after.
        let utc = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", &row[0]).unwrap();
        let local = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", &row[1]).unwrap();
        let behind = (utc - local).get_hours();
        assert_eq!(
            behind,
            if row[0].as_str() < "2026-03-08 07:00:00" {
                5
            } else {
                4
            },
            "{row:?}"
        );
    }
    let bad = serde_json::json!({"timezone": "Nowhere/City"});
    assert_eq!(
        FileSpec::for_run(3, 10, "balance.summary.1", &bad, vec![], 0),
        Err(FileSpecError::UnknownTimezone("Nowhere/City".into()))
    );
}

#[test]
fn text_fields_hold_what_readers_must_get_right() {
    let bytes = whole(&spec("balance_change_from_activity.itemized.3", 200_000));
    let rows = records(&bytes);
    let fields: Vec<&String> = rows[1..].iter().flatten().collect();
    for (what, test) in [
        (
            "a comma",
            &(|f: &str| f.contains(',')) as &dyn Fn(&str) -> bool,
        ),
        ("a double quote", &|f: &str| f.contains('"')),
        ("a line break", &|f: &str| f.contains('\n')),
        ("a CRLF", &|f: &str| f.contains("\r\n")),
        ("non-ASCII letters", &|f: &str| !f.is_ascii()),
    ] {
        assert!(fields.iter().any(|f| test(f)), "no field with {what}");
    }
    assert!(fields.iter().any(|f| f.is_empty()), "no empty field");
}

#[test]
fn a_byte_order_mark_and_crlf_on_request() {
    let mut spec = spec("payouts.itemized.3", 10_000);
    spec.byte_order_mark = true;
    spec.crlf = true;
    let bytes = whole(&spec);
    assert_eq!(bytes.len(), 10_000);
    assert!(bytes.starts_with(b"\xEF\xBB\xBFpayout_id,"));
    let text = String::from_utf8(bytes.clone()).unwrap();
    // Outside quoted fields every line ends with CRLF.
    let mut quoted = false;
    let mut previous = 0u8;
    for byte in text.bytes() {
        if byte == b'"' {
            quoted = !quoted;
        }
        if byte == b'\n' && !quoted {
            assert_eq!(previous, b'\r');
        }
        previous = byte;
    }
    assert!(bytes.ends_with(b"\r\n"));
    assert_eq!(records(&bytes)[0], spec.columns);
}

#[test]
fn balance_summary_lines_add_up() {
    let rows = records(&whole(&spec("balance.summary.1", 20_000)));
    assert_eq!(
        rows[0],
        ["category", "description", "net_amount", "currency"]
    );
    for group in rows[1..].chunks_exact(4).take(20) {
        let categories: Vec<&str> = group.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            categories,
            ["starting_balance", "activity", "payouts", "ending_balance"]
        );
        assert_eq!(group[0][1], "Starting balance (2026-09-14)");
        assert_eq!(group[3][1], "Ending balance (2026-09-14)");
        let exponent = exponent(&group[0][3]);
        let amounts: Vec<i128> = group.iter().map(|r| minor_units(&r[2], exponent)).collect();
        assert_eq!(amounts[0] + amounts[1] + amounts[2], amounts[3]);
    }
}

/// Generates `size` bytes with local times in `timezone` and answers MiB/s.
fn throughput(size: u64, timezone: &str) -> f64 {
    let mut generator = CsvGenerator::new(FileSpec {
        timezone: timezone.to_owned(),
        ..spec("balance_change_from_activity.itemized.3", size)
    });
    let started = Instant::now();
    let mut total = 0u64;
    while let Some(chunk) = generator.next_chunk() {
        total += chunk.len() as u64;
    }
    assert_eq!(total, size);
    size as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

#[test]
fn generation_streams_fast() {
    for timezone in ["Etc/UTC", "America/New_York"] {
        let rate = throughput(64 << 20, timezone);
        eprintln!("64 MiB ({timezone}) generated at {rate:.0} MiB/s");
        // A floor far below what it does, so that a busy machine does not fail it.
        assert!(rate > 20.0, "{rate:.0} MiB/s");
    }
}

/// `cargo test -p stripe-emulator --release -- --ignored --nocapture one_gib`
#[test]
#[ignore = "generates 1 GiB; run on purpose to measure"]
fn one_gib_streams_at_hundreds_of_mib_per_second() {
    for timezone in ["Etc/UTC", "America/New_York"] {
        let rate = throughput(1 << 30, timezone);
        eprintln!("1 GiB ({timezone}) generated at {rate:.0} MiB/s");
        assert!(rate > 100.0, "{rate:.0} MiB/s");
    }
}
