//! The downloader use case: re-read → allow-list → stream → commit.
//!
//! A message names a run id and nothing else is trusted: the run is read
//! again from Stripe, its `result.url` checked against the allow-list (by the
//! Stripe client, before a byte is sent), the file streamed into S3 with its
//! SHA-256 and size checked, and only then the ledger moved to `stored` with
//! a conditional write. Any failure leaves the ledger as it was and no object
//! behind, so the message can simply be retried.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use tracing::{info, warn};

use crate::aws::s3::{ObjectSpec, S3Sink, SinkError};
use crate::domain::calendar::local_date;
use crate::domain::ledger::{RunStatus, StoredObject};
use crate::domain::messages::DownloadMessage;
use crate::domain::spec::DEFAULT_TIMEZONE;
use crate::ports::{Ledger, LedgerError, RunFacts, StripeApi, Transition};
use crate::stripe::{ReportRun, StripeError, StripeRunStatus};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(14 * 60);

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// This downloader stored the file.
    Now(StoredObject),
    /// The run was stored before (or by a concurrent downloader).
    Already,
    /// Stripe reports the run failed: nothing to download. `recorded_now`
    /// when this call moved the ledger to `failed` (the `FailedRuns` metric
    /// counts each failure once, wherever it was first seen).
    RunFailed { recorded_now: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("message is not {{\"run_id\": \"frr_…\"}}: {0}")]
    BadMessage(String),
    #[error("report run is not finished yet (status {0})")]
    NotFinished(String),
    #[error("report run succeeded without a downloadable file")]
    NoFile,
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("download took longer than {0:?}; aborted")]
    Timeout(Duration),
    #[error("run is {0} in the ledger; not stored")]
    Refused(RunStatus),
}

pub struct Downloader<L, S> {
    pub ledger: L,
    pub stripe: S,
    pub sink: S3Sink,
    pub prefix: String,
    pub timeout: Duration,
}

/// `<prefix>report_type=<type>/date=<YYYY-MM-DD>/<run id>.csv` (SPEC "S3 objects"):
/// the date of `interval_start` in the run's timezone; of `interval_end` for
/// a type without a start; of the run's creation for a run with neither.
pub fn object_key(prefix: &str, run: &ReportRun) -> String {
    let tz = run
        .parameters
        .timezone
        .as_deref()
        .and_then(|name| TimeZone::get(name).ok())
        .unwrap_or_else(|| TimeZone::get(DEFAULT_TIMEZONE).unwrap_or(TimeZone::UTC));
    let instant = run
        .parameters
        .interval_start
        .or(run.parameters.interval_end)
        .unwrap_or(run.created);
    let date = local_date(instant, &tz)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!(
        "{prefix}report_type={}/date={date}/{}.csv",
        run.report_type, run.id
    )
}

/// The S3 object a run's file becomes (SPEC "S3 objects"): its key, CSV
/// content type, the run's metadata, and the byte count it must have.
pub fn object_spec(prefix: &str, run: &ReportRun, expected_size: u64) -> ObjectSpec {
    let number = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
    ObjectSpec {
        key: object_key(prefix, run),
        content_type: "text/csv".into(),
        metadata: HashMap::from([
            ("report-run".to_owned(), run.id.clone()),
            ("report-type".to_owned(), run.report_type.clone()),
            (
                "interval-start".to_owned(),
                number(run.parameters.interval_start),
            ),
            (
                "interval-end".to_owned(),
                number(run.parameters.interval_end),
            ),
        ]),
        expected_size,
    }
}

impl<L: Ledger, S: StripeApi> Downloader<L, S> {
    /// Handles one download-queue message body.
    pub async fn handle_message(&self, body: &str, now: i64) -> Result<Stored, DownloadError> {
        let message: DownloadMessage =
            serde_json::from_str(body).map_err(|err| DownloadError::BadMessage(err.to_string()))?;
        self.store_run(&message.run_id, now).await
    }

    /// Stores one run's file, exactly once.
    pub async fn store_run(&self, run_id: &str, now: i64) -> Result<Stored, DownloadError> {
        if let Some(record) = self.ledger.run(run_id).await?
            && record.status == RunStatus::Stored
        {
            return Ok(Stored::Already);
        }
        let run = self.stripe.report_run(run_id).await?;
        let span = tracing::info_span!("run", run_id = %run.id, report_type = %run.report_type);
        let _entered = span.enter();
        let facts = RunFacts {
            run_id: run.id.clone(),
            report_type: run.report_type.clone(),
            interval_start: run.parameters.interval_start,
            interval_end: run.parameters.interval_end,
        };
        match &run.status {
            StripeRunStatus::Succeeded => {}
            StripeRunStatus::Failed => {
                let error = run
                    .error
                    .as_deref()
                    .unwrap_or("Stripe reported the run failed without an error message");
                let transition = self.ledger.mark_failed(&facts, error, now).await?;
                warn!(error, "report run failed at Stripe: nothing to download");
                return Ok(Stored::RunFailed {
                    recorded_now: transition == Transition::Applied,
                });
            }
            StripeRunStatus::Pending => return Err(DownloadError::NotFinished("pending".into())),
            StripeRunStatus::Other(status) => {
                return Err(DownloadError::NotFinished(status.clone()));
            }
        }
        let file = run.result.clone().ok_or(DownloadError::NoFile)?;
        let url = file.url.clone().ok_or(DownloadError::NoFile)?;
        let object = object_spec(&self.prefix, &run, file.size);
        let key = object.key.clone();
        let started = Instant::now();
        let written = tokio::time::timeout(self.timeout, async {
            let download = self.stripe.download_file(&url).await?;
            Ok::<_, DownloadError>(self.sink.store(&object, download.body).await?)
        })
        .await
        .map_err(|_| DownloadError::Timeout(self.timeout))
        .and_then(|inner| inner);
        let written = match written {
            Ok(written) => written,
            Err(err) => {
                // A concurrent attempt that stored the run first also aborts
                // this one's upload (see `abort_leftover_uploads`): that is done, not failed.
                if let Ok(Some(record)) = self.ledger.run(run_id).await
                    && record.status == RunStatus::Stored
                {
                    info!(error = %err, "stored meanwhile by a concurrent attempt");
                    return Ok(Stored::Already);
                }
                return Err(err);
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let stored = StoredObject {
            s3_key: key,
            bytes: written.bytes,
            sha256: written.sha256,
            file_id: file.id.clone(),
        };
        let outcome = self.ledger.mark_stored(&facts, &stored, now).await?;
        self.abort_leftover_uploads(&stored.s3_key).await;
        match outcome {
            Transition::Applied => {
                info!(
                    bytes = stored.bytes,
                    sha256 = %stored.sha256,
                    s3_key = %stored.s3_key,
                    parts = written.parts,
                    seconds,
                    mib_per_s = stored.bytes as f64 / 1_048_576.0 / seconds.max(1e-9),
                    "report stored"
                );
                Ok(Stored::Now(stored))
            }
            // A concurrent downloader stored it first: same key, same bytes.
            Transition::Refused {
                current: RunStatus::Stored,
            } => Ok(Stored::Already),
            Transition::Refused { current } => Err(DownloadError::Refused(current)),
        }
    }
}

impl<L, S> Downloader<L, S> {
    /// Earlier attempts on this run that died mid-upload left their multipart
    /// uploads open (their own abort failed or never ran); with the object
    /// stored they are only cost. Best effort: the lifecycle rule is the backstop.
    async fn abort_leftover_uploads(&self, key: &str) {
        match self.sink.abort_leftover_uploads(key).await {
            Ok(0) => {}
            Ok(aborted) => info!(
                s3_key = key,
                aborted, "aborted multipart uploads left by earlier attempts"
            ),
            Err(err) => {
                warn!(s3_key = key, error = %err, "cannot list leftover multipart uploads; the lifecycle rule removes them")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::RunParameters;

    fn run(params: RunParameters) -> ReportRun {
        ReportRun {
            id: "frr_1".into(),
            object: "reporting.report_run".into(),
            created: 1_796_000_000,
            error: None,
            livemode: false,
            parameters: params,
            report_type: "balance.summary.1".into(),
            result: None,
            status: StripeRunStatus::Succeeded,
            succeeded_at: None,
        }
    }

    #[test]
    fn keys_use_the_local_date_of_the_interval_start() {
        let utc = run(RunParameters {
            interval_start: Some(1_795_910_400),
            interval_end: Some(1_795_996_800),
            ..Default::default()
        });
        assert_eq!(
            object_key("stripe/", &utc),
            "stripe/report_type=balance.summary.1/date=2026-11-29/frr_1.csv"
        );
        // Midnight in Tokyo is 15:00 UTC the day before: the local date counts.
        let tokyo = run(RunParameters {
            interval_start: Some(1_795_910_400 - 9 * 3600),
            interval_end: Some(1_795_996_800 - 9 * 3600),
            timezone: Some("Asia/Tokyo".into()),
            ..Default::default()
        });
        assert_eq!(
            object_key("", &tokyo),
            "report_type=balance.summary.1/date=2026-11-29/frr_1.csv"
        );
        let end_only = run(RunParameters {
            interval_end: Some(1_795_996_800),
            ..Default::default()
        });
        assert_eq!(
            object_key("p/", &end_only),
            "p/report_type=balance.summary.1/date=2026-11-30/frr_1.csv"
        );
    }
}
