//! One report CSV → one Parquet file, streamed: the CSV is read record by
//! record and written out in row groups, so memory stays bounded whatever
//! the file's size (see [`ConvertOptions`] for the bounds).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::amount::{Amount, AmountError};
use crate::records::{Record, Records};
use crate::schema::{AMOUNT_PRECISION, AMOUNT_SCALE, Clock, Column, ColumnType, columns};
use crate::timestamp::{TimestampError, parse_micros};

/// How to read the CSV and how large the pieces held in memory may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// The decimal separator of the amounts: `.`, or `,` for a run created
    /// with `decimal_separator=,` (a run parameter of the itemized types).
    pub decimal_separator: u8,
    /// Rows decoded into Arrow arrays before they are handed to the Parquet
    /// encoder. Memory: about this many CSV rows' bytes.
    pub batch_rows: usize,
    /// A row group is written out once the encoder holds this many bytes
    /// (values not yet in a page, dictionaries, compressed pages), or has
    /// [`row_group_rows`](Self::row_group_rows) rows. Memory: about this
    /// much, plus the open batch.
    pub row_group_bytes: usize,
    pub row_group_rows: usize,
    /// zstd level of every column chunk.
    pub zstd_level: i32,
    /// Extra key/value pairs for the file footer (say the run id and the CSV's
    /// SHA-256, to trace the table file back to the CSV it came from).
    pub metadata: Vec<(String, String)>,
}

impl Default for ConvertOptions {
    /// 8,192-row batches, 16 MiB or 1 Mi-row row groups, zstd level 1.
    ///
    /// Measured with `examples/convert_rss.rs` on a 67-column itemized
    /// report (1 GiB CSV): a 16 MiB budget peaks at about 65 MiB resident and
    /// gives row groups of about 16,000 rows and 3.7 MB compressed; 32 MiB
    /// peaks at 87 MiB for a few percent more speed, 8 MiB at 57 MiB for a
    /// few percent less. Batches of 1,024 rows cost a quarter more CPU than
    /// 8,192. zstd level 3 was 25% slower than level 1 for no smaller file.
    fn default() -> Self {
        ConvertOptions {
            decimal_separator: b'.',
            batch_rows: 8_192,
            row_group_bytes: 16 * 1024 * 1024,
            row_group_rows: 1024 * 1024,
            zstd_level: 1,
            metadata: Vec::new(),
        }
    }
}

/// Sums of amounts: safe column name → currency (lower case; `""` for rows
/// without one) → sum.
pub type Sums = BTreeMap<String, BTreeMap<String, Amount>>;

/// What a successful conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Data rows of the CSV, equal to the rows in the Parquet file's footer
    /// (checked before returning).
    pub rows: u64,
    /// The table's columns, in the CSV's order.
    pub columns: Vec<Column>,
    /// For each amount column, the sum per currency (the currency of the
    /// column's [`Column::currency_column`]), exact: to check the file
    /// against totals computed elsewhere.
    pub sums: Sums,
    pub row_groups: usize,
    /// Bytes of the Parquet file.
    pub parquet_bytes: u64,
}

/// Why a value does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    #[error("is not an amount: {0}")]
    Amount(#[from] AmountError),
    #[error("is not a timestamp: {0}")]
    Timestamp(#[from] TimestampError),
    #[error("is not a whole number within 64 bits")]
    BigInt,
    #[error("is not a flag (true/false, yes/no, 1/0)")]
    Boolean,
    #[error("is not UTF-8 text")]
    NotUtf8,
    #[error("makes the column's sum exceed DECIMAL({AMOUNT_PRECISION}, {AMOUNT_SCALE})")]
    SumOverflow,
}

/// Why a CSV was not converted. The line is the 1-based line of the file
/// where the offending CSV record starts (the header is line 1; line breaks
/// inside quoted fields count); the row is the 1-based data row. When an
/// error is returned, whatever was written to the output is incomplete and
/// must be discarded.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the CSV is empty: no header row")]
    NoHeader,
    #[error("line 1: header field {index} is not UTF-8")]
    HeaderNotUtf8 { index: usize },
    #[error(
        "line {line} (row {row}): {found} fields where the header has {expected} (column {column})"
    )]
    FieldCount {
        line: u64,
        row: u64,
        expected: usize,
        found: usize,
        /// The first missing column, or `field <n>` for the first extra one.
        column: String,
    },
    /// `value` is shown for amounts, timestamps, counts and flags only:
    /// free-text columns can hold personal data, which stays out of logs.
    #[error("line {line} (row {row}), column {column}: {value:?} {problem}")]
    Value {
        line: u64,
        row: u64,
        /// The column's name in the CSV header.
        column: String,
        value: String,
        problem: ValueProblem,
    },
    #[error("reading the CSV at line {line}: {source}")]
    Read { line: u64, source: std::io::Error },
    #[error("the Parquet file holds {parquet} rows where the CSV has {csv}")]
    RowCount { csv: u64, parquet: i64 },
    #[error("writing the Parquet file: {0}")]
    Parquet(#[from] ParquetError),
    #[error("building Arrow arrays: {0}")]
    Arrow(#[from] ArrowError),
}

impl ConvertError {
    /// Whether the error is in the CSV's own bytes (a value, a row, the
    /// header), so that the same file fails the same way every time; the
    /// others come from reading or writing (a cut stream, a failed upload).
    pub fn is_in_the_file(&self) -> bool {
        matches!(
            self,
            ConvertError::NoHeader
                | ConvertError::HeaderNotUtf8 { .. }
                | ConvertError::FieldCount { .. }
                | ConvertError::Value { .. }
        )
    }
}

/// The Arrow type of a column in the Parquet file. Timestamps are
/// microseconds: `*_utc` with zone `UTC` (Parquet `isAdjustedToUTC = true`),
/// the others without a zone (`isAdjustedToUTC = false`, the wall time).
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Decimal => DataType::Decimal128(AMOUNT_PRECISION, AMOUNT_SCALE as i8),
        ColumnType::Timestamp(Clock::Utc) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ColumnType::Timestamp(Clock::Local) => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::String => DataType::Utf8,
    }
}

/// The Arrow schema of a table: every column nullable (an empty field is null).
pub fn arrow_schema(columns: &[Column]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.ty), true))
            .collect::<Vec<_>>(),
    )
}

/// Converts the CSV read from `csv` into one Parquet file written to
/// `parquet`, and returns what it wrote with the writer.
///
/// The CSV: a header row, then data rows; RFC 4180 quoting (commas, quotes
/// and line breaks inside quoted fields); LF or CRLF line endings; an
/// optional UTF-8 byte order mark; blank lines ignored. Every row must have
/// the header's number of fields.
///
/// Synchronous and CPU-bound. In an async function (the S3 object's body
/// is a stream), run it on a blocking thread and bridge the body:
///
/// ```text
/// let body = object.body.into_async_read();
/// let converted = tokio::task::spawn_blocking(move || {
///     tables::convert(tokio_util::io::SyncIoBridge::new(body), file, &options)
/// })
/// .await??;
/// ```
pub fn convert<R: Read, W: Write + Send>(
    csv: R,
    parquet: W,
    options: &ConvertOptions,
) -> Result<(Converted, W), ConvertError> {
    let mut reader = Records::new(csv);
    let mut record = Record::default();
    if !read(&mut reader, &mut record)? {
        return Err(ConvertError::NoHeader);
    }
    let header = record
        .fields()
        .enumerate()
        .map(|(index, name)| {
            std::str::from_utf8(name)
                .map(str::to_owned)
                .map_err(|_| ConvertError::HeaderNotUtf8 { index })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let columns = columns(&header);
    let schema: SchemaRef = Arc::new(arrow_schema(&columns));

    let properties = writer_properties(&columns, options)?;
    let counted = Counting {
        inner: parquet,
        bytes: 0,
    };
    let mut writer = ArrowWriter::try_new(counted, schema.clone(), Some(properties))?;

    let batch_rows = options.batch_rows.max(1);
    let mut builders: Vec<ColumnBuilder> = columns
        .iter()
        .map(|c| ColumnBuilder::new(c, &header, batch_rows))
        .collect::<Result<_, _>>()?;
    let mut rows: u64 = 0;
    let mut in_batch = 0;
    while read(&mut reader, &mut record)? {
        rows += 1;
        let line = record.line();
        if record.len() != columns.len() {
            return Err(ConvertError::FieldCount {
                line,
                row: rows,
                expected: columns.len(),
                found: record.len(),
                column: match columns.get(record.len()) {
                    Some(missing) => missing.source.clone(),
                    None => format!("field {}", columns.len() + 1),
                },
            });
        }
        for (index, builder) in builders.iter_mut().enumerate() {
            builder
                .append(&record, index, options.decimal_separator)
                .map_err(|(problem, shown)| ConvertError::Value {
                    line,
                    row: rows,
                    column: header[index].clone(),
                    value: if shown {
                        excerpt(record.field(index))
                    } else {
                        String::new()
                    },
                    problem,
                })?;
        }
        in_batch += 1;
        if in_batch == batch_rows {
            write_batch(&mut writer, &schema, &mut builders, options)?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        write_batch(&mut writer, &schema, &mut builders, options)?;
    }
    writer.flush()?;
    let written: i64 = writer
        .flushed_row_groups()
        .iter()
        .map(|g| g.num_rows())
        .sum();
    if i64::try_from(rows).ok() != Some(written) {
        return Err(ConvertError::RowCount {
            csv: rows,
            parquet: written,
        });
    }
    let row_groups = writer.flushed_row_groups().len();
    let mut sums = Sums::new();
    for (column, builder) in columns.iter().zip(builders) {
        if let ColumnBuilder::Decimal {
            sums: per_currency, ..
        } = builder
        {
            let per_currency = per_currency
                .into_iter()
                .map(|(code, sum)| (String::from_utf8_lossy(&code).into_owned(), sum))
                .collect();
            sums.insert(column.name.clone(), per_currency);
        }
    }
    // Writes the footer.
    let counted = writer.into_inner()?;
    let converted = Converted {
        rows,
        columns,
        sums,
        row_groups,
        parquet_bytes: counted.bytes,
    };
    Ok((converted, counted.inner))
}

/// zstd, the row group bounds, no statistics for amounts, the footer's
/// extra metadata.
fn writer_properties(
    columns: &[Column],
    options: &ConvertOptions,
) -> Result<WriterProperties, ConvertError> {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(options.zstd_level)?))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_max_row_group_bytes(Some(options.row_group_bytes.max(1)))
        .set_created_by(format!(
            "stripe-reports tables {}",
            env!("CARGO_PKG_VERSION")
        ));
    // No min/max statistics for amounts: arrow-rs 60 writes DECIMAL(38, _)
    // as 16-byte FIXED_LEN_BYTE_ARRAY values sliced from one buffer per batch,
    // and a statistic keeps its whole batch buffer alive until the file is
    // closed, which grew peak memory by about 1 MiB per row group (1 GiB
    // CSV, 32 MiB row groups: 136 MiB peak with them, 87 MiB without,
    // measured with `examples/convert_rss.rs`). Queries over amounts aggregate; they are
    // pruned by partition (account, date), not by amount ranges.
    for column in columns.iter().filter(|c| c.ty == ColumnType::Decimal) {
        properties = properties.set_column_statistics_enabled(
            ColumnPath::new(vec![column.name.clone()]),
            EnabledStatistics::None,
        );
    }
    if !options.metadata.is_empty() {
        properties = properties.set_key_value_metadata(Some(
            options
                .metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ));
    }
    Ok(properties.build())
}

fn read<R: Read>(reader: &mut Records<R>, record: &mut Record) -> Result<bool, ConvertError> {
    reader.read(record).map_err(|source| ConvertError::Read {
        line: reader.line(),
        source,
    })
}

fn write_batch<W: Write + Send>(
    writer: &mut ArrowWriter<W>,
    schema: &SchemaRef,
    builders: &mut [ColumnBuilder],
    options: &ConvertOptions,
) -> Result<(), ConvertError> {
    let arrays: Vec<ArrayRef> = builders.iter_mut().map(ColumnBuilder::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    writer.write(&batch)?;
    // The byte limit above counts encoded bytes; also bound what the
    // encoders hold (dictionaries, unflushed pages).
    if writer.memory_size() >= options.row_group_bytes {
        writer.flush()?;
    }
    Ok(())
}

/// The first 64 characters of a typed value, for an error message.
fn excerpt(value: &[u8]) -> String {
    String::from_utf8_lossy(value).chars().take(64).collect()
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One column's Arrow builder and, for amounts, the running sums.
enum ColumnBuilder {
    Decimal {
        values: Decimal128Builder,
        currency: Option<usize>,
        sums: Vec<(Vec<u8>, Amount)>,
    },
    Timestamp {
        values: TimestampMicrosecondBuilder,
        utc: bool,
    },
    BigInt(Int64Builder),
    Boolean(BooleanBuilder),
    String(StringBuilder),
}

type Problem = (ValueProblem, bool);

impl ColumnBuilder {
    fn new(column: &Column, header: &[String], capacity: usize) -> Result<Self, ArrowError> {
        Ok(match column.ty {
            ColumnType::Decimal => ColumnBuilder::Decimal {
                values: Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(AMOUNT_PRECISION, AMOUNT_SCALE as i8)?,
                currency: column
                    .currency_column
                    .as_ref()
                    .and_then(|name| header.iter().position(|h| h == name)),
                sums: Vec::new(),
            },
            ColumnType::Timestamp(clock) => {
                let values = TimestampMicrosecondBuilder::with_capacity(capacity);
                ColumnBuilder::Timestamp {
                    values: match clock {
                        Clock::Utc => values.with_timezone("UTC"),
                        Clock::Local => values,
                    },
                    utc: clock == Clock::Utc,
                }
            }
            ColumnType::BigInt => ColumnBuilder::BigInt(Int64Builder::with_capacity(capacity)),
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnType::String => {
                ColumnBuilder::String(StringBuilder::with_capacity(capacity, capacity * 16))
            }
        })
    }

    /// Appends field `index` of `record`: null when empty (or, for a typed
    /// column, only spaces), else the parsed value. The error's flag says
    /// whether the value may be shown.
    fn append(&mut self, record: &Record, index: usize, separator: u8) -> Result<(), Problem> {
        let raw = record.field(index);
        if let ColumnBuilder::String(values) = self {
            if raw.is_empty() {
                values.append_null();
            } else {
                let text = std::str::from_utf8(raw).map_err(|_| (ValueProblem::NotUtf8, false))?;
                values.append_value(text);
            }
            return Ok(());
        }
        let field = raw.trim_ascii();
        let shown = |problem: ValueProblem| (problem, true);
        match self {
            ColumnBuilder::Decimal {
                values,
                currency,
                sums,
            } => {
                if field.is_empty() {
                    values.append_null();
                    return Ok(());
                }
                let amount = Amount::parse(field, separator).map_err(|e| shown(e.into()))?;
                values.append_value(amount.units());
                // Few currencies per file: a short list beats a map.
                let code = currency.map_or(&[][..], |c| record.field(c).trim_ascii());
                match sums.iter_mut().find(|(c, _)| c.eq_ignore_ascii_case(code)) {
                    Some((_, sum)) => {
                        *sum = sum
                            .checked_add(amount)
                            .ok_or(shown(ValueProblem::SumOverflow))?;
                    }
                    None => sums.push((code.to_ascii_lowercase(), amount)),
                }
            }
            ColumnBuilder::Timestamp { values, utc } => {
                if field.is_empty() {
                    values.append_null();
                } else {
                    values.append_value(parse_micros(field, *utc).map_err(|e| shown(e.into()))?);
                }
            }
            ColumnBuilder::BigInt(values) => {
                if field.is_empty() {
                    values.append_null();
                } else {
                    let n = std::str::from_utf8(field)
                        .ok()
                        .filter(|s| !s.starts_with('+') || s.len() > 1)
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or(shown(ValueProblem::BigInt))?;
                    values.append_value(n);
                }
            }
            ColumnBuilder::Boolean(values) => {
                if field.is_empty() {
                    values.append_null();
                } else {
                    values.append_value(parse_flag(field).ok_or(shown(ValueProblem::Boolean))?);
                }
            }
            ColumnBuilder::String(_) => unreachable!("handled above"),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Decimal { values, .. } => Arc::new(values.finish()),
            ColumnBuilder::Timestamp { values, .. } => Arc::new(values.finish()),
            ColumnBuilder::BigInt(values) => Arc::new(values.finish()),
            ColumnBuilder::Boolean(values) => Arc::new(values.finish()),
            ColumnBuilder::String(values) => Arc::new(values.finish()),
        }
    }
}

fn parse_flag(field: &[u8]) -> Option<bool> {
    const TRUE: &[&[u8]] = &[b"true", b"t", b"yes", b"y", b"1"];
    const FALSE: &[&[u8]] = &[b"false", b"f", b"no", b"n", b"0"];
    if TRUE.iter().any(|t| field.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| field.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_the_usual_spellings() {
        assert_eq!(parse_flag(b"TRUE"), Some(true));
        assert_eq!(parse_flag(b"false"), Some(false));
        assert_eq!(parse_flag(b"1"), Some(true));
        assert_eq!(parse_flag(b"maybe"), None);
    }
}
