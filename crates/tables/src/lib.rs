//! Stripe report CSVs as typed Parquet tables (`SPEC.md`, "Tables").
//!
//! - [`schema`]: the table name of a report type, the safe name and the type
//!   of each column, from Stripe's documented meaning of the column. Pure.
//! - [`layout`]: the key of a report's table file, from its CSV's key. Pure.
//! - [`catalog`]: the Glue table of a report type and how a new file widens
//!   it (pure), and the [`catalog::Catalog`] port; [`glue`] is its adapter.
//! - [`convert()`]: one CSV, streamed, into one Parquet file (zstd), with the
//!   row count checked against the file's footer and exact per-currency sums
//!   of every amount column.
//!
//! - [`conversion`]: the use case — a stored run's CSV into its table file,
//!   the catalog and the ledger, exactly once — over the ports [`files`]
//!   (S3) and [`catalog`] (Glue), and the backfill.
//!
//! # Amounts
//! `DECIMAL(38, 3)` for every currency ([`schema::AMOUNT_PRECISION`] says
//! why): the CSV's decimal text is parsed digit by digit into an `i128` of
//! thousandths ([`Amount`]); no floating point touches an amount, and a value
//! with more than 3 decimals fails the conversion instead of being rounded.
//!
//! # Timestamps
//! Both kinds are Parquet `TIMESTAMP(MICROS)`, read by Glue and Athena as
//! `timestamp`:
//! - `*_utc` columns are instants (`isAdjustedToUTC = true`).
//! - The others (`created`, `available_on`, …) are in the run's time zone
//!   and are stored as the wall-clock time the CSV shows, without a zone
//!   (`isAdjustedToUTC = false`), not converted to UTC. Converting would
//!   need the run's zone at conversion time, cannot be done exactly for the
//!   hour a daylight-saving change repeats (the CSV carries no offset), and
//!   would only duplicate the `*_utc` twin, which Stripe writes beside it.
//!   Kept as the wall time, `date(created)` is the local business day, as in
//!   the CSV and the Dashboard.
//!
//! # Memory
//! The CSV is read record by record ([`records`]); rows are decoded into
//! Arrow arrays of [`ConvertOptions::batch_rows`] rows, handed to the
//! Parquet encoder, and a row group is written out whenever the encoder
//! holds [`ConvertOptions::row_group_bytes`]. Peak memory is those two
//! bounds plus the file footer's metadata (about 30 KB per row group), not
//! the size of the CSV: with the defaults, a 66-column itemized report peaks
//! at 52 MiB resident for 100 MiB of CSV and 66 MiB for 1 GiB
//! (`examples/convert_rss.rs`).
//!
//! # In a Lambda function
//! [`convert()`] is synchronous and CPU-bound: run it with
//! `tokio::task::spawn_blocking`, reading the S3 object's body through
//! `tokio_util::io::SyncIoBridge` (see `tests/convert.rs`,
//! `an_s3_style_async_body_converts_on_a_blocking_thread`), and write to a
//! file in `/tmp` or to a writer that feeds a multipart upload. On an error
//! the output is incomplete: discard it (delete the file, abort the upload).

pub mod amount;
pub mod catalog;
pub mod conversion;
pub mod convert;
pub mod files;
pub mod glue;
pub mod layout;
pub mod records;
pub mod schema;
pub mod timestamp;

pub use amount::Amount;
pub use convert::{ConvertError, ConvertOptions, Converted, Sums, ValueProblem, convert};
pub use layout::CsvKey;
pub use schema::{Clock, Column, ColumnType, PARTITION_KEYS};
