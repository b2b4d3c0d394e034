//! `stripe-reports fetch`: run reports now and save their files, with only a
//! Stripe key (a folder) or AWS credentials too (`--out s3://…`), under the
//! same `account=<acct>/report_type=…/date=…/<run>.csv` keys as the functions.
//!
//! In a folder, `--format parquet|both` also (or only) writes each file's
//! typed table file (SPEC "Tables") at the relative key the bucket gets,
//! `tables/<table>/account=<acct>/date=<d>/<run>.parquet`: converted on a
//! blocking thread from the CSV on disk (for `parquet` alone, a `.csv.part`
//! beside the table file, removed afterwards), streamed in bounded memory,
//! into a `.parquet.part` renamed into place only once the conversion
//! succeeded. A run whose CSV does not convert is one line on stderr; the
//! other runs are still fetched, and the command exits 1 at the end.

use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jiff::civil::Date;
use sha2::{Digest, Sha256};
use stripe_reports::aws::s3::S3Sink;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::calendar::{self, Interval};
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::downloader::{object_key, object_spec};
use stripe_reports::stripe::{CreateReportRun, ReportRun, StripeClient, StripeRunStatus};
use tables::CsvKey;

/// How long one file's upload to S3 may take (no Lambda deadline here).
const FETCH_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// Where files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Folder(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Destination {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("s3://") {
            None => Ok(Destination::Folder(PathBuf::from(text))),
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("--out {text}: no bucket name after s3://"));
                }
                let prefix = match prefix.trim_matches('/') {
                    "" => String::new(),
                    p => format!("{p}/"),
                };
                Ok(Destination::S3 {
                    bucket: bucket.to_owned(),
                    prefix,
                })
            }
        }
    }
}

/// What to write for each file (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The CSV as Stripe sent it, at account=…/report_type=…/date=…/<run>.csv
    #[default]
    Csv,
    /// Only its typed table file, at the bucket's layout:
    /// tables/<table>/account=…/date=…/<run>.parquet
    Parquet,
    /// The CSV and its table file
    Both,
}

impl Format {
    fn writes_csv(self) -> bool {
        matches!(self, Format::Csv | Format::Both)
    }
}

/// Which intervals to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dates {
    /// The interval (of the spec's frequency) containing this date.
    One(Date),
    /// Whole intervals inside `[from, to]`, both dates included.
    Range { from: Date, to: Date },
}

#[derive(Debug, Clone)]
pub struct Fetch {
    pub spec: ReportSpec,
    pub dates: Dates,
    pub destination: Destination,
    pub format: Format,
}

/// What [`run`] did besides the lines it printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Runs whose CSV could not be converted to a table file (each one
    /// line on stderr already).
    pub not_converted: usize,
}

/// Why a run's table file was not written. Its file was fetched; the
/// other runs go on.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The CSV itself: its Display names the line and the column.
    #[error("{0}")]
    Convert(#[from] tables::ConvertError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CSV read for the conversion differs from the downloaded bytes")]
    Changed,
    #[error("no table file key for {0} (the run has no interval date)")]
    NoKey(String),
    #[error("the conversion stopped: {0}")]
    Stopped(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.to_owned(),
        source,
    }
}

fn intervals(spec: &ReportSpec, dates: &Dates) -> Result<Vec<Interval>, String> {
    let tz = spec.time_zone();
    match dates {
        Dates::One(date) => Ok(vec![
            calendar::interval_containing(spec.frequency, &tz, *date).map_err(|e| e.to_string())?,
        ]),
        Dates::Range { from, to } => {
            let after_to = to.tomorrow().map_err(|e| e.to_string())?;
            let found = calendar::intervals_within_dates(spec.frequency, &tz, *from, after_to)
                .map_err(|e| e.to_string())?;
            if found.is_empty() {
                return Err(format!(
                    "no whole {} interval lies between {from} and {to}",
                    spec.frequency.as_str()
                ));
            }
            Ok(found)
        }
    }
}

/// Progress on one line of a terminal, or plain lines otherwise.
struct Progress {
    terminal: bool,
}

impl Progress {
    fn status(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        }
    }

    fn line(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
    }
}

/// Fetches for `account` with `client`, which sends that account's key only.
pub async fn run(
    client: &StripeClient,
    account: &AccountId,
    fetch: Fetch,
    s3: Option<S3Sink>,
) -> Result<Fetched, String> {
    let progress = Progress {
        terminal: std::io::stderr().is_terminal(),
    };
    let kind = client
        .report_type(&fetch.spec.report_type)
        .await
        .map_err(|e| e.to_string())?;
    let mut wanted = Vec::new();
    for interval in intervals(&fetch.spec, &fetch.dates)? {
        if interval.start < kind.data_available_start || interval.end > kind.data_available_end {
            return Err(format!(
                "{}: Stripe has data from {} to {}; the interval {}–{} is outside it (data for a day arrives about 12 hours after it closes)",
                kind.id,
                ts(kind.data_available_start),
                ts(kind.data_available_end),
                ts(interval.start),
                ts(interval.end)
            ));
        }
        wanted.push(interval);
    }
    // Create every run first (Stripe computes them in parallel), then wait.
    let mut runs: Vec<ReportRun> = Vec::new();
    for interval in &wanted {
        let key = RequestKey::new(account, &fetch.spec, *interval, 0);
        let run = client
            .create_report_run(
                &CreateReportRun::for_spec(&fetch.spec, *interval),
                key.as_str(),
            )
            .await
            .map_err(|e| e.to_string())?;
        progress.line(&format!(
            "requested {} for {}–{}",
            run.id,
            ts(interval.start),
            ts(interval.end)
        ));
        runs.push(run);
    }
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    let mut finished: Vec<ReportRun> = Vec::new();
    while !runs.is_empty() {
        let mut still = Vec::new();
        for run in runs {
            let current = client
                .report_run(&run.id)
                .await
                .map_err(|e| e.to_string())?;
            match current.status {
                StripeRunStatus::Succeeded => finished.push(current),
                StripeRunStatus::Failed => {
                    return Err(format!(
                        "report run {} failed at Stripe: {}",
                        current.id,
                        current.error.unwrap_or_default()
                    ));
                }
                _ => still.push(current),
            }
        }
        runs = still;
        if !runs.is_empty() {
            progress.status(&format!(
                "waiting for Stripe: {} of {} finished ({}s)",
                finished.len(),
                finished.len() + runs.len(),
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(Duration::from_secs(15));
        }
    }
    let mut fetched = Fetched::default();
    for run in &finished {
        let saved = save(
            client,
            account,
            run,
            &fetch.destination,
            fetch.format,
            s3.as_ref(),
            &progress,
        )
        .await?;
        for line in &saved.lines {
            println!("{line}");
        }
        if let Some(err) = saved.not_converted {
            // One line naming the run, at the time; the exit code comes at the end.
            let hint = match fetch.format {
                Format::Parquet => " (--format both keeps the CSV)",
                _ => "",
            };
            progress.line(&format!(
                "stripe-reports: {}: not converted to Parquet: {err}{hint}",
                run.id
            ));
            fetched.not_converted += 1;
        }
    }
    Ok(fetched)
}

fn ts(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// What saving one run's file wrote.
struct Saved {
    /// One line per file written: path, bytes, sha256 or rows.
    lines: Vec<String>,
    /// Why its table file was not written, when one was wanted.
    not_converted: Option<TableError>,
}

async fn save(
    client: &StripeClient,
    account: &AccountId,
    run: &ReportRun,
    destination: &Destination,
    format: Format,
    s3: Option<&S3Sink>,
    progress: &Progress,
) -> Result<Saved, String> {
    let file = run.result.as_ref().ok_or("run succeeded without a file")?;
    let url = file.url.as_deref().ok_or("run's file has no URL")?;
    let download = client.download_file(url).await.map_err(|e| e.to_string())?;
    match destination {
        Destination::S3 { bucket, prefix } => {
            // main refuses --format parquet|both with s3:// before anything runs.
            let sink = s3.ok_or("no S3 client")?;
            let object = object_spec(prefix, account, run, file.size);
            let written = sink
                // A command run by hand has no invocation deadline.
                .store(
                    &object,
                    download.body,
                    tokio::time::Instant::now() + FETCH_BUDGET,
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(Saved {
                lines: vec![format!(
                    "s3://{bucket}/{}\t{} bytes\tsha256 {}",
                    object.key, written.bytes, written.sha256
                )],
                not_converted: None,
            })
        }
        Destination::Folder(root) => {
            save_to_folder(
                root,
                account,
                run,
                download.body,
                file.size,
                format,
                progress,
            )
            .await
        }
    }
}

/// The folder's files of one run: its CSV at the bucket's relative key
/// and/or its table file at the key the bucket's table file gets.
async fn save_to_folder<S, E>(
    root: &Path,
    account: &AccountId,
    run: &ReportRun,
    body: S,
    size: u64,
    format: Format,
    progress: &Progress,
) -> Result<Saved, String>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let csv_key = object_key("", account, run);
    let csv_path = root.join(&csv_key);
    let table_path = CsvKey::parse("", &csv_key).map(|key| root.join(key.table_key()));
    let table_path = match (format, table_path) {
        (Format::Csv, _) => {
            let line = save_csv(&csv_path, body, size, progress).await?.0;
            return Ok(Saved {
                lines: vec![line],
                not_converted: None,
            });
        }
        (_, Some(table_path)) => table_path,
        // No interval date to file it under (not a run `fetch` creates):
        // the CSV, if wanted, is still saved.
        (_, None) => {
            let mut lines = Vec::new();
            if format.writes_csv() {
                lines.push(save_csv(&csv_path, body, size, progress).await?.0);
            }
            return Ok(Saved {
                lines,
                not_converted: Some(TableError::NoKey(csv_key)),
            });
        }
    };
    // The CSV the table file is made from: the saved one, or (parquet
    // alone) a partial file beside the table file, never renamed, removed
    // once converted.
    let mut lines = Vec::new();
    let (source, sha256) = if format.writes_csv() {
        let (line, sha256) = save_csv(&csv_path, body, size, progress).await?;
        lines.push(line);
        (csv_path, sha256)
    } else {
        let partial = table_path.with_extension("csv.part");
        let (_, sha256) = download_to(&partial, &table_path, body, size, progress).await?;
        (partial, sha256)
    };
    progress.status(&format!("{}: converting to Parquet", run.id));
    // The footer names the CSV it came from, under the keys the stack's
    // converter writes. Fixed values: the same CSV gives the same bytes, so
    // a rerun rewrites an identical file.
    let options = tables::ConvertOptions {
        metadata: vec![
            ("stripe-reports.report-run".into(), run.id.clone()),
            ("stripe-reports.account".into(), account.to_string()),
            ("stripe-reports.report-type".into(), run.report_type.clone()),
            ("stripe-reports.csv-sha256".into(), sha256.clone()),
        ],
        ..tables::ConvertOptions::default()
    };
    let converted = {
        let (source, table_path) = (source.clone(), table_path.clone());
        tokio::task::spawn_blocking(move || convert_file(&source, &table_path, &sha256, &options))
            .await
            .unwrap_or_else(|join| Err(TableError::Stopped(join.to_string())))
    };
    if !format.writes_csv() {
        let _ = std::fs::remove_file(&source);
    }
    let not_converted = match converted {
        Ok(converted) => {
            lines.push(format!(
                "{}\t{} bytes\t{} rows",
                table_path.display(),
                converted.parquet_bytes,
                converted.rows
            ));
            None
        }
        Err(err) => Some(err),
    };
    Ok(Saved {
        lines,
        not_converted,
    })
}

/// Saves the file at `path` as `fetch` always has: streamed to
/// `<path>.part`, size checked, renamed, and the SHA-256 read back from
/// disk. Returns the line to print and the SHA-256.
async fn save_csv<S, E>(
    path: &Path,
    body: S,
    expected: u64,
    progress: &Progress,
) -> Result<(String, String), String>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let partial = path.with_extension("csv.part");
    let (bytes, sha256) = download_to(&partial, path, body, expected, progress).await?;
    std::fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Read back what landed on disk: the check is of the file, not the stream.
    let on_disk = hash_file(path)?;
    if on_disk != sha256 {
        return Err(format!(
            "{}: SHA-256 on disk differs from the downloaded bytes",
            path.display()
        ));
    }
    Ok((
        format!("{}\t{bytes} bytes\tsha256 {sha256}", path.display()),
        sha256,
    ))
}

/// Streams `body` into `partial` (synced; removed on any error) and checks
/// its size. `shown` names the file in the progress line.
async fn download_to<S, E>(
    partial: &Path,
    shown: &Path,
    mut body: S,
    expected: u64,
    progress: &Progress,
) -> Result<(u64, String), String>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(parent) = partial.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut out =
        std::fs::File::create(partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| format!("download interrupted after {bytes} bytes: {e}"))?;
            hasher.update(&chunk);
            let before = bytes;
            bytes += chunk.len() as u64;
            out.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            // One status update per MiB, not per chunk.
            if bytes >> 20 != before >> 20 {
                progress.status(&format!(
                    "{}: {} of {} MiB",
                    shown.display(),
                    bytes >> 20,
                    expected >> 20
                ));
            }
        }
        if bytes != expected {
            return Err(format!(
                "size mismatch: the file should have {expected} bytes, {bytes} arrived"
            ));
        }
        out.sync_all()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        Ok(())
    }
    .await;
    if let Err(err) = result {
        let _ = std::fs::remove_file(partial);
        return Err(err);
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Converts the CSV at `csv` into the table file at `table` (synchronous:
/// run it on a blocking thread). The conversion streams (bounded memory,
/// see `tables::ConvertOptions`) into `<run>.parquet.part`, which becomes `table`
/// only when the conversion succeeded and read exactly the bytes whose
/// SHA-256 is `sha256`; on any error it is removed, and a table file
/// already at `table` is left as it was.
fn convert_file(
    csv: &Path,
    table: &Path,
    sha256: &str,
    options: &tables::ConvertOptions,
) -> Result<tables::Converted, TableError> {
    if let Some(parent) = table.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let partial = table.with_extension("parquet.part");
    let written = (|| {
        let input = std::fs::File::open(csv).map_err(io_error(csv))?;
        let mut reader = HashingReader {
            inner: BufReader::new(input),
            hasher: Sha256::new(),
        };
        let output = std::fs::File::create(&partial).map_err(io_error(&partial))?;
        let (converted, output) = tables::convert(&mut reader, BufWriter::new(output), options)?;
        if hex::encode(reader.hasher.finalize()) != sha256 {
            return Err(TableError::Changed);
        }
        let output = output
            .into_inner()
            .map_err(|e| io_error(&partial)(e.into_error()))?;
        output.sync_all().map_err(io_error(&partial))?;
        Ok(converted)
    })();
    match written {
        Ok(converted) => match std::fs::rename(&partial, table) {
            Ok(()) => Ok(converted),
            Err(source) => {
                let _ = std::fs::remove_file(&partial);
                Err(io_error(table)(source))
            }
        },
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            Err(err)
        }
    }
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn hash_file(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}
