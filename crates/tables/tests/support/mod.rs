//! Reading a Parquet file back with the parquet crate's own reader, and the
//! CSV with the csv crate, into the same canonical text per cell, so tests
//! compare every value without trusting the conversion's code.

#![allow(dead_code)]

pub mod report_csv;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;

pub type Cells = Vec<Vec<Option<String>>>;

/// Every row of the Parquet file as text: decimals with exactly their scale
/// (`-12.340`), timestamps as `YYYY-MM-DD HH:MM:SS`, flags `true`/`false`.
pub fn read_parquet(bytes: &[u8]) -> (Vec<(String, DataType)>, Cells, ParquetMetaData) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let metadata = builder.metadata().as_ref().clone();
    let fields = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let mut rows = Vec::new();
    for batch in builder.with_batch_size(1000).build().unwrap() {
        let batch: RecordBatch = batch.unwrap();
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| cell(column.as_ref(), r))
                    .collect(),
            );
        }
    }
    (fields, rows, metadata)
}

fn cell(column: &dyn Array, r: usize) -> Option<String> {
    if column.is_null(r) {
        return None;
    }
    Some(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(r).to_owned(),
        DataType::Decimal128(_, scale) => {
            let units = column
                .as_primitive::<arrow_array::types::Decimal128Type>()
                .value(r);
            let factor = 10u128.pow(*scale as u32);
            let sign = if units < 0 { "-" } else { "" };
            let abs = units.unsigned_abs();
            format!(
                "{sign}{}.{:0w$}",
                abs / factor,
                abs % factor,
                w = *scale as usize
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = column.as_primitive::<TimestampMicrosecondType>().value(r);
            assert_eq!(micros % 1_000_000, 0, "whole seconds in these tests");
            report_csv::timestamp(micros / 1_000_000)
        }
        DataType::Int64 => column.as_primitive::<Int64Type>().value(r).to_string(),
        DataType::Boolean => column.as_boolean().value(r).to_string(),
        other => panic!("unexpected type {other}"),
    })
}

/// Every data row of a CSV as the Parquet file should hold it: empty → null;
/// amounts (`amount_columns`) padded to 3 decimals by text alone; the rest
/// verbatim.
pub fn read_csv(csv: &[u8], amount_columns: &[&str]) -> Cells {
    let csv = csv.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(csv);
    let mut reader = csv::ReaderBuilder::new().from_reader(csv);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    reader
        .records()
        .map(|record| {
            record
                .unwrap()
                .iter()
                .zip(&header)
                .map(|(value, name)| {
                    if value.is_empty() {
                        None
                    } else if amount_columns.contains(&name.as_str()) {
                        Some(pad_to_three(value))
                    } else {
                        Some(value.to_owned())
                    }
                })
                .collect()
        })
        .collect()
}

/// `12.3` → `12.300`, `5` → `5.000`, `-0.125` as is.
pub fn pad_to_three(value: &str) -> String {
    match value.split_once('.') {
        Some((int, frac)) => format!("{int}.{frac:0<3}"),
        None => format!("{value}.000"),
    }
}

/// Like [`read_csv`], for files whose typed fields may carry padding (the
/// emulator ends a file at its exact size by padding one field): typed
/// values are trimmed, amounts and counts lose leading zeros, flags are
/// lower-cased; text stays verbatim.
pub fn read_csv_trimmed(csv: &[u8], columns: &[tables::Column], amounts: &[&str]) -> Cells {
    use tables::ColumnType;
    read_csv(csv, &[])
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(columns)
                .map(|(value, column)| {
                    let value = value?;
                    if column.ty == ColumnType::String {
                        return Some(value);
                    }
                    let value = value.trim();
                    if value.is_empty() {
                        return None;
                    }
                    Some(match column.ty {
                        _ if amounts.contains(&column.source.as_str()) => {
                            let (sign, digits) = match value.strip_prefix('-') {
                                Some(rest) => ("-", rest),
                                None => ("", value),
                            };
                            let digits = digits.trim_start_matches('0');
                            let digits = if digits.is_empty() || digits.starts_with('.') {
                                format!("0{digits}")
                            } else {
                                digits.to_owned()
                            };
                            pad_to_three(&format!("{sign}{digits}"))
                        }
                        ColumnType::BigInt => value.parse::<i64>().unwrap().to_string(),
                        ColumnType::Boolean => value.to_ascii_lowercase(),
                        // A date alone is midnight.
                        ColumnType::Timestamp(_) if value.len() == 10 => {
                            format!("{value} 00:00:00")
                        }
                        _ => value.to_owned(),
                    })
                })
                .collect()
        })
        .collect()
}
