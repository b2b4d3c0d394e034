//! CSV → Parquet: every value read back with the parquet crate's reader
//! equals the CSV's, amounts exactly; the row count and the per-currency
//! sums match what the CSV says; bad input fails naming line and column.

mod support;

use std::collections::BTreeMap;
use std::io::Read;

use arrow_schema::{DataType, TimeUnit};
use parquet::basic::{Compression, LogicalType, ZstdLevel};
use tables::{Amount, ConvertError, ConvertOptions, Converted, ValueProblem, convert};

use support::report_csv::ReportCsv;
use support::{pad_to_three, read_csv, read_parquet};

fn run(csv: &[u8]) -> Result<(Converted, Vec<u8>), ConvertError> {
    convert(csv, Vec::new(), &ConvertOptions::default())
}

fn sums(converted: &Converted, column: &str) -> BTreeMap<String, String> {
    converted.sums[column]
        .iter()
        .map(|(currency, sum)| (currency.clone(), sum.to_string()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn amounts_are_exact_for_zero_two_and_three_decimal_currencies() {
    let csv = b"currency,gross,fee,net\n\
        usd,10.00,0.59,9.41\n\
        usd,-10.00,0.00,-10.00\n\
        jpy,1000,36,964\n\
        jpy,-500,,-500\n\
        bhd,1.234,0.050,1.184\n\
        bhd,-0.001,0.000,-0.001\n\
        usd,0.10,0.01,0.09\n";
    let (converted, parquet) = run(csv).unwrap();
    assert_eq!(converted.rows, 7);
    let (fields, rows, _) = read_parquet(&parquet);
    assert_eq!(fields[1].1, DataType::Decimal128(38, 3));
    let expected = read_csv(csv, &["gross", "fee", "net"]);
    assert_eq!(rows, expected);
    // Spot-check the padding the comparison relies on.
    assert_eq!(rows[2][1].as_deref(), Some("1000.000"));
    assert_eq!(rows[5][3].as_deref(), Some("-0.001"));
    assert_eq!(rows[3][2], None, "an empty amount is null, not zero");

    assert_eq!(
        sums(&converted, "gross"),
        map(&[("bhd", "1.233"), ("jpy", "500.000"), ("usd", "0.100")])
    );
    assert_eq!(
        sums(&converted, "fee"),
        map(&[("bhd", "0.050"), ("jpy", "36.000"), ("usd", "0.600")])
    );
    assert_eq!(
        sums(&converted, "net"),
        map(&[("bhd", "1.183"), ("jpy", "464.000"), ("usd", "-0.500")])
    );
}

#[test]
fn customer_facing_amounts_are_summed_in_their_own_currency() {
    let csv = b"currency,net,customer_facing_amount,customer_facing_currency\n\
        usd,9.41,1500,jpy\n\
        usd,1.00,0.926,bhd\n\
        eur,2.00,,\n";
    let (converted, _) = run(csv).unwrap();
    assert_eq!(
        sums(&converted, "customer_facing_amount"),
        map(&[("bhd", "0.926"), ("jpy", "1500.000")])
    );
    assert_eq!(
        sums(&converted, "net"),
        map(&[("eur", "2.000"), ("usd", "10.410")])
    );
}

#[test]
fn a_decimal_comma_is_read_when_the_run_asked_for_it() {
    let csv = "currency,net\nusd,\"-1,25\"\n".as_bytes();
    let options = ConvertOptions {
        decimal_separator: b',',
        ..ConvertOptions::default()
    };
    let (converted, _) = convert(csv, Vec::new(), &options).unwrap();
    assert_eq!(sums(&converted, "net"), map(&[("usd", "-1.250")]));
    // With the default separator the same file is refused, not misread.
    assert!(matches!(run(csv), Err(ConvertError::Value { line: 2, .. })));
}

#[test]
fn more_decimals_than_the_scale_fail_instead_of_rounding() {
    let err = run(b"currency,fee\nusd,0.0049\n").unwrap_err();
    match err {
        ConvertError::Value {
            line,
            row,
            column,
            value,
            problem,
        } => {
            assert_eq!(
                (line, row, column.as_str(), value.as_str()),
                (2, 1, "fee", "0.0049")
            );
            assert!(matches!(problem, ValueProblem::Amount(_)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timestamps_keep_both_clocks() {
    let csv = b"created_utc,created,payout_expected_arrival_date\n\
        2026-09-14 10:02:11,2026-09-14 12:02:11,2026-09-16\n\
        2026-03-29 00:30:00,2026-03-29 01:30:00,\n";
    let (_, parquet) = run(csv).unwrap();
    let (fields, rows, metadata) = read_parquet(&parquet);
    assert_eq!(
        fields[0].1,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        fields[1].1,
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    // In the Parquet schema itself (what Athena and DuckDB read).
    let schema = metadata.file_metadata().schema_descr();
    let adjusted = |i: usize| match schema.column(i).logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => t.is_adjusted_to_u_t_c,
        other => panic!("{other:?}"),
    };
    assert!(adjusted(0), "*_utc is an instant");
    assert!(!adjusted(1), "the run's time zone is kept as wall time");
    assert_eq!(rows[0][0].as_deref(), Some("2026-09-14 10:02:11"));
    assert_eq!(rows[0][1].as_deref(), Some("2026-09-14 12:02:11"));
    assert_eq!(rows[0][2].as_deref(), Some("2026-09-16 00:00:00"));
    assert_eq!(rows[1][2], None);
}

#[test]
fn an_impossible_timestamp_names_its_line_and_column() {
    let err = run(b"id,created\nx,2026-09-14 10:02:11\ny,2026-02-30 10:00:00\n").unwrap_err();
    assert!(
        matches!(&err, ConvertError::Value { line: 3, row: 2, column, problem: ValueProblem::Timestamp(_), .. } if column == "created"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "line 3 (row 2), column created: \"2026-02-30 10:00:00\" is not a timestamp: not a date or time of day that exists"
    );
}

#[test]
fn counts_and_flags_are_typed_and_checked() {
    let csv = b"reporting_category,count,is_link\ncharge,12,true\nrefund,0,FALSE\nfee,,\n";
    let (_, parquet) = run(csv).unwrap();
    let (fields, rows, _) = read_parquet(&parquet);
    assert_eq!(fields[1].1, DataType::Int64);
    assert_eq!(fields[2].1, DataType::Boolean);
    let cell = |r: usize, c: usize| rows[r][c].clone();
    assert_eq!(
        (cell(0, 1), cell(0, 2), cell(1, 2), cell(2, 1), cell(2, 2)),
        (
            Some("12".into()),
            Some("true".into()),
            Some("false".into()),
            None,
            None
        )
    );
    let err = run(b"count\n1.5\n").unwrap_err();
    assert!(matches!(
        err,
        ConvertError::Value {
            problem: ValueProblem::BigInt,
            ..
        }
    ));
    let err = run(b"is_link\nsometimes\n").unwrap_err();
    assert!(matches!(
        err,
        ConvertError::Value {
            problem: ValueProblem::Boolean,
            ..
        }
    ));
}

#[test]
fn a_byte_order_mark_and_crlf_are_tolerated() {
    let csv =
        b"\xEF\xBB\xBFcurrency,net,description\r\nusd,1.00,first\r\njpy,5,\"two\r\nlines\"\r\n";
    let (converted, parquet) = run(csv).unwrap();
    assert_eq!(
        converted.columns[0].name, "currency",
        "no BOM in the first name"
    );
    assert_eq!(converted.rows, 2);
    let (fields, rows, _) = read_parquet(&parquet);
    assert_eq!(fields[0].0, "currency");
    assert_eq!(rows, read_csv(csv, &["net"]));
    assert_eq!(rows[1][2].as_deref(), Some("two\r\nlines"), "kept verbatim");
}

#[test]
fn quoted_fields_keep_commas_quotes_line_breaks_and_non_ascii() {
    let csv = "balance_transaction_id,description,customer_name,net,currency\n\
        txn_1,\"Order 12, size \"\"large\"\"\",\"Zoë Ångström\",1.00,usd\n\
        txn_2,\"line one\nline two\n\nline four\",東京 株式会社,2.00,usd\n\
        txn_3,,\"\",3.00,usd\n\
        txn_4,x,\"ends with a comma,\",bad,usd\n"
        .as_bytes();
    let err = run(csv).unwrap_err();
    // txn_4's record starts on line 8: the quoted line breaks count.
    assert!(
        matches!(&err, ConvertError::Value { line: 8, row: 4, column, .. } if column == "net"),
        "{err:?}"
    );

    let good = &csv[..csv.len() - "txn_4,x,\"ends with a comma,\",bad,usd\n".len()];
    let (converted, parquet) = run(good).unwrap();
    assert_eq!(converted.rows, 3);
    let (_, rows, _) = read_parquet(&parquet);
    assert_eq!(rows, read_csv(good, &["net"]));
    assert_eq!(rows[0][1].as_deref(), Some("Order 12, size \"large\""));
    assert_eq!(
        rows[1][1].as_deref(),
        Some("line one\nline two\n\nline four")
    );
    assert_eq!(rows[1][2].as_deref(), Some("東京 株式会社"));
    assert_eq!(rows[2][2], None, "an empty quoted field is null too");
}

#[test]
fn a_row_with_the_wrong_number_of_fields_names_its_line() {
    let err = run(b"currency,gross,fee,net\nusd,1.00,0.10,0.90\n\nusd,1.00,0.10\n").unwrap_err();
    assert!(
        matches!(&err, ConvertError::FieldCount { line: 4, row: 2, expected: 4, found: 3, column } if column == "net"),
        "{err:?}"
    );
    let err = run(b"currency,net\nusd,1.00,extra\n").unwrap_err();
    assert!(
        matches!(&err, ConvertError::FieldCount { line: 2, found: 3, column, .. } if column == "field 3"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "line 2 (row 1): 3 fields where the header has 2 (column field 3)"
    );
}

#[test]
fn free_text_is_never_echoed_into_an_error() {
    let err = run(b"customer_name\n\"Zo\xFF\"\n").unwrap_err();
    match err {
        ConvertError::Value {
            value,
            problem,
            line,
            ..
        } => {
            assert_eq!(
                (value.as_str(), problem, line),
                ("", ValueProblem::NotUtf8, 2)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_row_count_is_the_data_rows() {
    // Header only: a file with the columns and no rows.
    let (converted, parquet) = run(b"currency,net\n").unwrap();
    assert_eq!(converted.rows, 0);
    let (fields, rows, metadata) = read_parquet(&parquet);
    assert_eq!(fields.len(), 2);
    assert!(rows.is_empty());
    assert_eq!(metadata.file_metadata().num_rows(), 0);
    // Blank lines are not rows; a last line without a line break is.
    let (converted, parquet) = run(b"currency,net\n\nusd,1.00\n\neur,2.00").unwrap();
    assert_eq!(converted.rows, 2);
    assert_eq!(read_parquet(&parquet).2.file_metadata().num_rows(), 2);
    assert!(matches!(run(b""), Err(ConvertError::NoHeader)));
}

#[test]
fn a_generated_report_reads_back_value_for_value() {
    // Small batches and row groups, so the file has many of each.
    let options = ConvertOptions {
        batch_rows: 500,
        row_group_rows: 2_000,
        metadata: vec![("stripe_reports.run_id".into(), "frr_test".into())],
        ..ConvertOptions::default()
    };
    for crlf in [false, true] {
        let mut source = ReportCsv::new(7, 3 * 1024 * 1024, crlf);
        let mut csv = Vec::new();
        source.read_to_end(&mut csv).unwrap();
        let (converted, parquet) = convert(&csv[..], Vec::new(), &options).unwrap();
        assert_eq!(converted.rows, source.rows());
        assert!(converted.rows > 4_000, "{}", converted.rows);
        assert_eq!(converted.parquet_bytes, parquet.len() as u64);
        assert!(converted.row_groups >= 3, "{}", converted.row_groups);

        let (_, rows, metadata) = read_parquet(&parquet);
        let amounts = ["gross", "fee", "net", "customer_facing_amount"];
        let expected = read_csv(&csv, &amounts);
        assert_eq!(rows.len(), expected.len());
        for (i, (got, want)) in rows.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "data row {}", i + 1);
        }
        assert_eq!(metadata.file_metadata().num_rows() as u64, source.rows());
        assert_eq!(metadata.num_row_groups(), converted.row_groups);
        for rg in metadata.row_groups() {
            for column in rg.columns() {
                assert_eq!(
                    column.compression(),
                    Compression::ZSTD(ZstdLevel::default())
                );
            }
        }
        let kv = metadata.file_metadata().key_value_metadata().unwrap();
        assert!(
            kv.iter()
                .any(|kv| kv.key == "stripe_reports.run_id"
                    && kv.value.as_deref() == Some("frr_test"))
        );

        // The sums equal the generator's, computed from integer minor units.
        for (column, per_currency) in &source.sums {
            let got: BTreeMap<String, i128> = converted.sums[column]
                .iter()
                .map(|(c, a)| (c.clone(), a.units()))
                .collect();
            assert_eq!(&got, per_currency, "{column}");
        }
        assert_eq!(converted.sums.len(), amounts.len());
    }
}

#[test]
fn a_failure_half_way_returns_no_success() {
    // A bad amount after several flushed row groups: an error naming it,
    // not a shorter file.
    let mut source = ReportCsv::new(3, 512 * 1024, false);
    let mut csv = Vec::new();
    source.read_to_end(&mut csv).unwrap();
    let bad: Vec<&str> = support::report_csv::COLUMNS
        .iter()
        .map(|c| if *c == "fee" { "0.0049" } else { "" })
        .collect();
    // Its line: one after the generated part's line breaks (quoted ones too).
    let line = csv.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    csv.extend_from_slice(bad.join(",").as_bytes());
    csv.push(b'\n');
    let options = ConvertOptions {
        batch_rows: 100,
        row_group_rows: 300,
        ..ConvertOptions::default()
    };
    let err = convert(&csv[..], Vec::new(), &options).err();
    let row = source.rows() + 1;
    assert!(line > row + 1, "the generated part has quoted line breaks");
    assert!(
        matches!(&err, Some(ConvertError::Value { line: l, row: r, column, .. }) if (*l, *r) == (line, row) && column == "fee"),
        "{err:?}"
    );
}

#[test]
fn amounts_print_with_the_scale_of_the_table() {
    assert_eq!(
        "12.3".parse::<Amount>().unwrap().to_string(),
        pad_to_three("12.3")
    );
}

#[test]
fn an_s3_style_async_body_converts_on_a_blocking_thread() {
    // What the downloader will do: the object's body is an AsyncRead; the
    // conversion runs in spawn_blocking over a SyncIoBridge.
    let mut csv = Vec::new();
    let mut source = ReportCsv::new(11, 256 * 1024, true);
    source.read_to_end(&mut csv).unwrap();
    let chunks: Vec<std::io::Result<bytes::Bytes>> = csv
        .chunks(7_919)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let converted = runtime.block_on(async move {
        let body = tokio_util::io::StreamReader::new(futures_util::stream::iter(chunks));
        tokio::task::spawn_blocking(move || {
            convert(
                tokio_util::io::SyncIoBridge::new(body),
                Vec::new(),
                &ConvertOptions::default(),
            )
        })
        .await
        .unwrap()
        .unwrap()
        .0
    });
    assert_eq!(converted.rows, source.rows());
}
