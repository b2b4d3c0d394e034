//! `stripe-reports fetch`: run reports now and save their files, with only a
//! Stripe key (a folder) or AWS credentials too (`--out s3://…`), under the
//! same `account=<acct>/report_type=…/date=…/<run>.csv` keys as the functions.

use std::io::{IsTerminal, Write};
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
) -> Result<(), String> {
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
    for run in &finished {
        let saved = save(
            client,
            account,
            run,
            &fetch.destination,
            s3.as_ref(),
            &progress,
        )
        .await?;
        println!("{saved}");
    }
    Ok(())
}

fn ts(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

async fn save(
    client: &StripeClient,
    account: &AccountId,
    run: &ReportRun,
    destination: &Destination,
    s3: Option<&S3Sink>,
    progress: &Progress,
) -> Result<String, String> {
    let file = run.result.as_ref().ok_or("run succeeded without a file")?;
    let url = file.url.as_deref().ok_or("run's file has no URL")?;
    let download = client.download_file(url).await.map_err(|e| e.to_string())?;
    match destination {
        Destination::S3 { bucket, prefix } => {
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
            Ok(format!(
                "s3://{bucket}/{}\t{} bytes\tsha256 {}",
                object.key, written.bytes, written.sha256
            ))
        }
        Destination::Folder(root) => {
            let path = root.join(object_key("", account, run));
            let (bytes, sha256) = write_file(&path, download.body, file.size, progress).await?;
            // Read back what landed on disk: the check is of the file, not the stream.
            let on_disk = hash_file(&path)?;
            if on_disk != sha256 {
                return Err(format!(
                    "{}: SHA-256 on disk differs from the downloaded bytes",
                    path.display()
                ));
            }
            Ok(format!(
                "{}\t{bytes} bytes\tsha256 {sha256}",
                path.display()
            ))
        }
    }
}

async fn write_file<S, E>(
    path: &Path,
    mut body: S,
    expected: u64,
    progress: &Progress,
) -> Result<(u64, String), String>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let partial = path.with_extension("csv.part");
    let mut out =
        std::fs::File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
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
                    path.display(),
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
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn hash_file(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}
