//! Report files as Stripe sends them, generated as a stream.
//!
//! A file has the columns Stripe documents for its report type
//! ([`crate::report_columns`]) or the run's `columns`, in that order, and one
//! row per balance transaction, payout or summary line. Amounts
//! are exact decimals in major units with the currency's own number of
//! decimals (`usd` 2, `jpy` 0, `bhd` 3), negative where money leaves the
//! balance; timestamps are written `YYYY-MM-DD HH:MM:SS`, in UTC for the
//! `*_utc` columns and in the run's time zone for the others; some fields are
//! empty; free text holds commas, double quotes, line breaks and non-ASCII
//! letters, quoted as RFC 4180 requires. Lines end with LF (or CRLF, and the
//! file may start with a UTF-8 byte order mark, when the run was created with
//! [`crate::Faults::files_crlf`] / [`crate::Faults::files_byte_order_mark`]).
//!
//! **Deterministic and streamed.** Every value comes from the file's seed
//! ([`seed_for`] of the file id) and the run's parameters, so the same run
//! always gives the same bytes; chunks of about [`CHUNK`] bytes are made on
//! demand and a 1 GiB file never sits in memory.
//!
//! **Exact size.** A file is exactly [`FileSpec::size`] bytes (the File's
//! `size`):
//! - rows are written whole while the next row still fits after them; the
//!   last row is then made longer to end the file exactly at `size`, in its
//!   padded column: the first free-text column takes plain words (`lorem
//!   ipsum`, inside the quotes if the value has them), else the first id
//!   takes more characters, else the first amount or count takes leading
//!   zeros (the same value), else the first column takes trailing spaces. The
//!   padding is always shorter than one row.
//! - When not even the first row fits after the header, the one row is an
//!   empty one (every field empty but the padded column) if that fits.
//! - When no row fits at all, the file is the header alone, made longer by
//!   quoting some of its names (the same names to a reader, two bytes each)
//!   and, for an odd byte, by ending it with CRLF instead of LF (with LF
//!   instead of CRLF in a CRLF file).
//! - A size smaller than the header (byte order mark included) gives the
//!   header's first `size` bytes: not a usable file, but the exact size.
//!
//! **Known totals.** [`FileTotals`] (row count, and the sum of each amount
//! column per currency as an exact decimal) come from the same generator, so
//! tests can check a conversion against the file's source instead of
//! against itself.

mod fields;
mod rows;
mod text;
mod write;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use fields::{Amount, Field, Stretch, stretch_column};
use rows::{Model, ModelParams, Row};
use text::{Encoded, push_padding};
use write::{Clock, DAY, decimal_string};

pub use rows::exponent;

/// Chunks are about this long (a chunk ends after the row that crosses it).
pub const CHUNK: usize = 64 * 1024;

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Everything a file is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Seeds every value ([`seed_for`] of the file id).
    pub seed: u64,
    /// The file's exact size in bytes.
    pub size: u64,
    pub report_type: String,
    /// The header, in order.
    pub columns: Vec<String>,
    /// IANA time zone of the columns without `_utc`.
    pub timezone: String,
    /// The run's `currency`: every row in it. Without it rows come in `usd`,
    /// `eur`, `gbp`, `jpy` and `bhd`.
    pub currency: Option<String>,
    /// The run's `reporting_category`: every row in it.
    pub reporting_category: Option<String>,
    /// The interval the rows' timestamps fall in, `[start, end)`.
    pub interval_start: i64,
    pub interval_end: i64,
    /// The run's `payout` (by-id reconciliation): every row's automatic payout.
    pub payout: Option<String>,
    /// The run's `connected_account`: every row's `connected_account`.
    pub connected_account: Option<String>,
    pub byte_order_mark: bool,
    pub crlf: bool,
}

/// Why a run's parameters cannot make a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileSpecError {
    #[error(
        "Invalid timezone: '{0}'. It must be a valid IANA time zone name, such as 'America/Los_Angeles'."
    )]
    UnknownTimezone(String),
}

impl FileSpec {
    /// A file of `report_type` with `columns`, in UTC, over 2026-09-14, in
    /// every currency.
    pub fn new(seed: u64, size: u64, report_type: &str, columns: Vec<String>) -> Self {
        Self {
            seed,
            size,
            report_type: report_type.to_owned(),
            columns,
            timezone: "Etc/UTC".to_owned(),
            currency: None,
            reporting_category: None,
            interval_start: 1_789_344_000,
            interval_end: 1_789_344_000 + DAY,
            payout: None,
            connected_account: None,
            byte_order_mark: false,
            crlf: false,
        }
    }

    /// The file of a run with `parameters` (its `parameters` object as the
    /// API shows it), created at `created`: its `columns` or else
    /// `default_columns`, its `timezone` (UTC without one), `currency`,
    /// `reporting_category`, `payout`, `connected_account`, and its interval
    /// (without `interval_end`, the UTC midnight before `created`; without
    /// `interval_start`, a day before the end).
    pub fn for_run(
        seed: u64,
        size: u64,
        report_type: &str,
        parameters: &Value,
        default_columns: Vec<String>,
        created: i64,
    ) -> Result<Self, FileSpecError> {
        let text = |name: &str| parameters[name].as_str().map(str::to_owned);
        let columns = parameters["columns"]
            .as_array()
            .map(|columns| {
                columns
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .filter(|columns| !columns.is_empty())
            .unwrap_or(default_columns);
        let timezone = text("timezone").unwrap_or_else(|| "Etc/UTC".to_owned());
        if Clock::new(&timezone).is_none() {
            return Err(FileSpecError::UnknownTimezone(timezone));
        }
        let end = parameters["interval_end"]
            .as_i64()
            .unwrap_or(created - created.rem_euclid(DAY));
        let start = parameters["interval_start"]
            .as_i64()
            .filter(|start| *start < end)
            .unwrap_or(end - DAY);
        Ok(Self {
            timezone,
            currency: text("currency").map(|c| c.to_ascii_lowercase()),
            reporting_category: text("reporting_category"),
            interval_start: start,
            interval_end: end,
            payout: text("payout"),
            connected_account: text("connected_account"),
            ..Self::new(seed, size, report_type, columns)
        })
    }
}

/// A stable seed for a file id.
pub fn seed_for(file_id: &str) -> u64 {
    let digest = Sha256::digest(file_id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// What a file holds, for checking a conversion against its source: the
/// number of data rows and, for each amount column (`gross`, `fee`, `net`,
/// `net_amount`, `customer_facing_amount`) and currency, the exact sum of
/// the column's non-empty values in the rows of that currency (for
/// `customer_facing_amount`, the row's `customer_facing_currency`), as a
/// decimal in major units. Serialized as `{"rows": n, "sums": {"<column>":
/// {"<currency>": "<decimal>"}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "TotalsWire", from = "TotalsWire")]
pub struct FileTotals {
    pub rows: u64,
    /// (column, currency) → sum.
    pub sums: BTreeMap<(String, String), String>,
}

#[derive(Serialize, Deserialize)]
struct TotalsWire {
    rows: u64,
    sums: BTreeMap<String, BTreeMap<String, String>>,
}

impl From<FileTotals> for TotalsWire {
    fn from(totals: FileTotals) -> Self {
        let mut sums: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ((column, currency), sum) in totals.sums {
            sums.entry(column).or_default().insert(currency, sum);
        }
        Self {
            rows: totals.rows,
            sums,
        }
    }
}

impl From<TotalsWire> for FileTotals {
    fn from(wire: TotalsWire) -> Self {
        let sums = wire
            .sums
            .into_iter()
            .flat_map(|(column, by_currency)| {
                by_currency
                    .into_iter()
                    .map(move |(currency, sum)| ((column.clone(), currency), sum))
            })
            .collect();
        Self {
            rows: wire.rows,
            sums,
        }
    }
}

/// Rows and sums (minor units) of the rows written so far.
#[derive(Debug, Default)]
struct Tally {
    rows: u64,
    sums: HashMap<(usize, u8), i128>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Rows,
    Done,
}

/// Produces one file chunk by chunk.
pub struct CsvGenerator {
    spec: FileSpec,
    model: Model,
    fields: Vec<Field>,
    names: Vec<Encoded>,
    eol: &'static [u8],
    /// The column the last row pads.
    stretch: usize,
    clock: Clock,
    stage: Stage,
    /// Bytes returned so far.
    emitted: u64,
    /// The last row written, not yet known to be whole or the padded last
    /// one. It sits at the end of the chunk being made, or in `carry`
    /// between chunks.
    pending_row: Row,
    carry: Vec<u8>,
    tally: Option<Tally>,
}

impl std::fmt::Debug for CsvGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvGenerator")
            .field("spec", &self.spec)
            .field("emitted", &self.emitted)
            .finish_non_exhaustive()
    }
}

impl CsvGenerator {
    pub fn new(spec: FileSpec) -> Self {
        let fields: Vec<Field> = spec.columns.iter().map(|c| Field::for_name(c)).collect();
        let names = spec.columns.iter().map(|c| Encoded::new(c)).collect();
        // A rough row width, only to spread timestamps over the interval.
        let expected_rows = spec.size / (8 * spec.columns.len() as u64 + 1).max(16);
        let model = Model::new(&ModelParams {
            report_type: &spec.report_type,
            seed: spec.seed,
            currency: spec.currency.as_deref(),
            reporting_category: spec.reporting_category.as_deref(),
            interval_start: spec.interval_start,
            interval_end: spec.interval_end,
            payout: spec.payout.as_deref(),
            connected_account: spec.connected_account.as_deref(),
            expected_rows,
        });
        Self {
            clock: Clock::new(&spec.timezone).unwrap_or_else(Clock::utc),
            eol: if spec.crlf { b"\r\n" } else { b"\n" },
            stretch: stretch_column(&fields),
            fields,
            names,
            model,
            spec,
            stage: Stage::Start,
            emitted: 0,
            pending_row: Row::default(),
            carry: Vec::new(),
            tally: None,
        }
    }

    pub fn size(&self) -> u64 {
        self.spec.size
    }

    /// The header line as written when rows follow it.
    fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.spec.byte_order_mark {
            out.extend_from_slice(BYTE_ORDER_MARK);
        }
        for (at, name) in self.names.iter().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            name.push(&mut out, 0);
        }
        out.extend_from_slice(self.eol);
        out
    }

    /// The header `extra` bytes longer, with no row after it (see the
    /// module's sizing rules).
    fn stretched_header(&self, extra: usize) -> Vec<u8> {
        let odd = extra % 2 == 1;
        // An odd byte comes from the other line ending.
        let (eol, quotes): (&[u8], usize) = match (self.spec.crlf, odd) {
            (false, false) => (b"\n", extra / 2),
            (false, true) => (b"\r\n", extra / 2),
            (true, false) => (b"\r\n", extra / 2),
            (true, true) => (b"\n", extra.div_ceil(2)),
        };
        let mut out = Vec::new();
        if self.spec.byte_order_mark {
            out.extend_from_slice(BYTE_ORDER_MARK);
        }
        let mut left = quotes;
        for (at, name) in self.names.iter().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            if left > 0 && !name.is_quoted() {
                name.push_quoted(&mut out);
                left -= 1;
            } else {
                name.push(&mut out, 0);
            }
        }
        // Only names that all need quotes already could leave bytes over: a
        // header no report type has; keep the size exact anyway.
        out.extend(std::iter::repeat_n(b' ', 2 * left));
        out.extend_from_slice(eol);
        out
    }

    /// Row `index`. When the padded column is `customer_facing_amount`
    /// (the run's columns have no text, id or other amount), every row has
    /// one, so that the last row's padding is leading zeros of a value.
    fn row(&self, index: u64) -> Row {
        let mut row = self.model.row(index);
        if self.fields.get(self.stretch) == Some(&Field::Amount(Amount::CustomerFacing))
            && row.customer_facing.is_none()
            && let Some((currency, gross)) = row.amount(Amount::Gross)
        {
            row.customer_facing = Some((currency, gross));
        }
        row
    }

    /// Writes `row` with its padded column `pad` bytes longer.
    fn write_row(&mut self, row: &Row, pad: usize, out: &mut Vec<u8>) {
        let line_start = out.len();
        for (at, field) in self.fields.iter().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            let pad = if at == self.stretch { pad } else { 0 };
            if row.empty {
                match field.stretch() {
                    Stretch::Number => out.extend(std::iter::repeat_n(b'0', pad)),
                    Stretch::Id => out.extend(std::iter::repeat_n(b'x', pad)),
                    Stretch::Text | Stretch::Other => push_padding(out, pad),
                }
            } else {
                self.model
                    .push_field(out, &mut self.clock, *field, row, pad);
            }
        }
        if self.fields.len() == 1 && !row.empty {
            // One column: an empty value is written `""`, since a blank line
            // would be no record at all; padded, `"<padding>"`.
            out.truncate(line_start);
            self.model
                .push_field(out, &mut self.clock, self.fields[0], row, 0);
            if out.len() == line_start {
                out.push(b'"');
                push_padding(out, pad);
                out.push(b'"');
            } else if pad > 0 {
                out.truncate(line_start);
                self.model
                    .push_field(out, &mut self.clock, self.fields[0], row, pad);
            }
        }
        out.extend_from_slice(self.eol);
    }

    fn count(&mut self, row: &Row) {
        let Some(tally) = &mut self.tally else {
            return;
        };
        tally.rows += 1;
        for (at, field) in self.fields.iter().enumerate() {
            if let Field::Amount(which) = field
                && let Some((currency, minor)) = row.amount(*which)
            {
                *tally.sums.entry((at, currency)).or_default() += i128::from(minor);
            }
        }
    }

    /// Writes the header and the first row, or the whole file when it is
    /// too small for rows; answers where the pending row starts in `out`.
    fn start(&mut self, out: &mut Vec<u8>) -> usize {
        let header = self.header();
        if self.spec.size <= header.len() as u64 {
            out.extend_from_slice(&header[..self.spec.size as usize]);
            self.stage = Stage::Done;
            return out.len();
        }
        let room = self.spec.size - header.len() as u64;
        out.extend_from_slice(&header);
        let first = self.row(0);
        self.write_row(&first, 0, out);
        if room >= (out.len() - header.len()) as u64 {
            self.pending_row = first;
            self.stage = Stage::Rows;
            return header.len();
        }
        out.clear();
        // Commas and line end; one column needs one byte of padding to
        // make a record.
        let bare = self.fields.len().saturating_sub(1) + self.eol.len();
        let empty_width = bare.max(self.eol.len() + 1);
        if room >= empty_width as u64 {
            out.extend_from_slice(&header);
            let empty = Row::empty(0);
            self.write_row(&empty, room as usize - bare, out);
            self.count(&empty);
        } else {
            out.extend_from_slice(&self.stretched_header(room as usize));
        }
        self.stage = Stage::Done;
        out.len()
    }

    /// Writes the row after the pending one: if the rest of the file still
    /// has room for it, the pending row is whole and the new one pending;
    /// otherwise the pending row is written again, padded, as the last.
    fn step(&mut self, out: &mut Vec<u8>, pending_at: usize) -> usize {
        // Bytes of the file from the pending row on.
        let left = self.spec.size - self.emitted - pending_at as u64;
        let next_at = out.len();
        let pending = (next_at - pending_at) as u64;
        let next = self.row(self.pending_row.index + 1);
        self.write_row(&next, 0, out);
        if left - pending >= (out.len() - next_at) as u64 {
            let done = self.pending_row;
            self.count(&done);
            self.pending_row = next;
            return next_at;
        }
        out.truncate(pending_at);
        let last = self.pending_row;
        self.write_row(&last, (left - pending) as usize, out);
        self.count(&last);
        self.stage = Stage::Done;
        out.len()
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.stage == Stage::Done && self.carry.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(CHUNK + 2 * self.carry.len() + 4096);
        out.append(&mut self.carry);
        let mut pending_at = 0;
        if self.stage == Stage::Start {
            pending_at = self.start(&mut out);
        }
        while self.stage == Stage::Rows && pending_at < CHUNK {
            pending_at = self.step(&mut out, pending_at);
        }
        // The pending row goes out with the next chunk.
        self.carry.extend_from_slice(&out[pending_at..]);
        out.truncate(pending_at);
        self.emitted += out.len() as u64;
        debug_assert!(self.emitted <= self.spec.size);
        if out.is_empty() { None } else { Some(out) }
    }

    /// SHA-256 (hex) of the whole file, computed by generating it.
    pub fn sha256(mut self) -> String {
        let mut hasher = Sha256::new();
        while let Some(chunk) = self.next_chunk() {
            hasher.update(&chunk);
        }
        hex::encode(hasher.finalize())
    }

    /// The file's totals, computed by generating it.
    pub fn totals(mut self) -> FileTotals {
        self.tally = Some(Tally::default());
        while self.next_chunk().is_some() {}
        let tally = self.tally.take().unwrap_or_default();
        let mut minor: BTreeMap<(String, String), (i128, u32)> = BTreeMap::new();
        for ((column, currency), sum) in tally.sums {
            let currency = &self.model.currencies[currency as usize];
            let entry = minor
                .entry((self.spec.columns[column].clone(), currency.code.clone()))
                .or_insert((0, currency.exponent));
            entry.0 += sum;
        }
        FileTotals {
            rows: tally.rows,
            sums: minor
                .into_iter()
                .map(|(key, (sum, exponent))| (key, decimal_string(sum, exponent)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
