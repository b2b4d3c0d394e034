//! The downloader use case: re-read → allow-list → stream → commit.
//!
//! A message names a run id and its account, and nothing else is trusted:
//! the run is read again from Stripe with that account's key (another
//! account's run is Stripe's 404), its `result.url` checked against the allow-list (by the
//! Stripe client, before a byte is sent), the file streamed into S3 with its
//! SHA-256 and size checked, and only then the ledger moved to `stored` with
//! a conditional write. Any failure leaves the ledger as it was and no object
//! behind, so the message can simply be retried.

use std::collections::HashMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use crate::aws::s3::{ObjectSpec, S3Sink, SinkError};
use crate::domain::account::AccountId;
use crate::domain::calendar::local_date;
use crate::domain::ledger::{RunStatus, StoredObject};
use crate::domain::messages::DownloadMessage;
use crate::domain::spec::DEFAULT_TIMEZONE;
use crate::ports::{
    ConversionQueue, DownloadLease, Ledger, LedgerError, NoConversions, QueueError, RunFacts,
    StripeApi, StripeByAccount, Transition,
};
use crate::stripe::{ReportRun, StripeError, StripeRunStatus};

/// The budget of one message when the invocation has no deadline (tests,
/// `stripe-reports invoke`); on Lambda it comes from `Context.deadline`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(14 * 60);
/// Kept back from the invocation's deadline: the ledger writes after an
/// upload, aborting leftover uploads, and the batch answer itself.
pub const ANSWER_RESERVE: Duration = Duration::from_secs(10);
/// How long cleaning up leftover uploads may take once a run is stored.
const LEFTOVER_BUDGET: Duration = Duration::from_secs(5);
/// The download lease: held this long, renewed every third of it while the
/// file streams, so an attempt that dies (killed, out of memory) blocks a
/// redelivery for at most this long.
const LEASE_SECS: i64 = 30;
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often an attempt that found the lease held looks again.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// The time by which a message's Stripe reads and upload must be done: the
/// invocation's deadline (Unix milliseconds, `Context.deadline`) less
/// [`ANSWER_RESERVE`], or [`DEFAULT_TIMEOUT`] from now without a deadline
/// (`deadline_ms` 0, as in `Context::default()`).
pub fn work_deadline(deadline_ms: u64, now_ms: u64) -> Instant {
    if deadline_ms == 0 {
        return Instant::now() + DEFAULT_TIMEOUT;
    }
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(ANSWER_RESERVE)
}

/// A report this attempt stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub object: StoredObject,
    /// Seconds from when the interval's data was first seen available to
    /// now (unknown for a run without an interval end, or when the
    /// availability record cannot be read).
    pub freshness_secs: Option<i64>,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// This downloader stored the file.
    Now(StoredReport),
    /// The run was stored before (or by a concurrent downloader).
    Already,
    /// Stripe reports the run failed: nothing to download. `recorded_now`
    /// when this call moved the ledger to `failed` (the `FailedRuns` metric
    /// counts each failure once, wherever it was first seen).
    RunFailed { recorded_now: bool },
    /// Stripe no longer has a run the ledger waits for (404): nothing to
    /// download, and no point retrying the message. The scheduler's
    /// reconcile retires the run (once, counted) and requests it again.
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("message is not {{\"run_id\": \"frr_…\", \"account\": \"acct_…\"}}: {0}")]
    BadMessage(String),
    #[error(
        "the ledger holds this run for {owner}, not for the message's account {account}: not read with either key"
    )]
    OtherAccount {
        account: AccountId,
        owner: AccountId,
    },
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
    #[error("the invocation's time ran out while {0}; nothing was kept, SQS delivers it again")]
    Deadline(&'static str),
    #[error("run is {0} in the ledger; not stored")]
    Refused(RunStatus),
    #[error("another attempt is downloading this run and the time ran out waiting for it")]
    InProgress,
    #[error("stored, but not queued for conversion to a table file: {0}")]
    Conversion(#[from] QueueError),
}

pub struct Downloader<L, S, Q = NoConversions> {
    pub ledger: L,
    /// Each account's Stripe client (a message's run is read with its
    /// account's key only).
    pub stripe: S,
    pub sink: S3Sink,
    pub prefix: String,
    /// Where a stored run goes next: its CSV becomes a table file.
    pub conversions: Q,
}

/// The invocation's clock: the `now` it was handed (tests replay their own
/// time) moved on by the time elapsed since.
struct Clock {
    now: i64,
    since: std::time::Instant,
}

impl Clock {
    fn starting_at(now: i64) -> Self {
        Self {
            now,
            since: std::time::Instant::now(),
        }
    }

    fn now(&self) -> i64 {
        self.now + self.since.elapsed().as_secs() as i64
    }
}

/// `<prefix>account=<account>/report_type=<type>/date=<YYYY-MM-DD>/<run id>.csv`
/// (SPEC "S3 objects"): the date of `interval_start` in the run's timezone;
/// of `interval_end` for a type without a start; of the run's creation for a
/// run with neither.
pub fn object_key(prefix: &str, account: &AccountId, run: &ReportRun) -> String {
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
        "{prefix}account={account}/report_type={}/date={date}/{}.csv",
        run.report_type, run.id
    )
}

/// The S3 object a run's file becomes (SPEC "S3 objects"): its key, CSV
/// content type, the run's metadata, and the byte count it must have.
pub fn object_spec(
    prefix: &str,
    account: &AccountId,
    run: &ReportRun,
    expected_size: u64,
) -> ObjectSpec {
    let number = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
    ObjectSpec {
        key: object_key(prefix, account, run),
        content_type: "text/csv".into(),
        metadata: HashMap::from([
            ("report-run".to_owned(), run.id.clone()),
            ("account".to_owned(), account.to_string()),
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
        expected_size: Some(expected_size),
    }
}

impl<L: Ledger, S: StripeByAccount, Q: ConversionQueue> Downloader<L, S, Q> {
    /// Handles one download-queue message body; the Stripe reads and the
    /// upload must be done by `deadline` (see [`work_deadline`]).
    pub async fn handle_message(
        &self,
        body: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Stored, DownloadError> {
        let message: DownloadMessage =
            serde_json::from_str(body).map_err(|err| DownloadError::BadMessage(err.to_string()))?;
        self.store_run(&message.account, &message.run_id, now, deadline)
            .await
    }

    /// Stores one run of `account`, exactly once.
    pub async fn store_run(
        &self,
        account: &AccountId,
        run_id: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Stored, DownloadError> {
        // Attached with `instrument`, never entered across an await: several
        // messages share one task under `buffer_unordered`.
        let span = tracing::info_span!("run", run_id = %run_id, account = %account, report_type = tracing::field::Empty);
        async {
            let stored = self
                .store_run_in_span(account, run_id, now, deadline)
                .await?;
            self.queue_conversion(account, run_id, &stored).await?;
            Ok(stored)
        }
        .instrument(span)
        .await
    }

    /// Sends a stored run on to the converter: always when this attempt
    /// stored it, and again for a run stored before whose table file the
    /// ledger does not record yet — so a message redelivered because the
    /// send failed (or a crash right after storing) still gets its run
    /// converted. A duplicate conversion message is harmless: the converter
    /// skips a run whose table file is recorded.
    async fn queue_conversion(
        &self,
        account: &AccountId,
        run_id: &str,
        stored: &Stored,
    ) -> Result<(), DownloadError> {
        let wanted =
            match stored {
                Stored::Now(_) => true,
                Stored::Already => self.ledger.run(run_id).await?.is_some_and(|record| {
                    record.status == RunStatus::Stored && record.table.is_none()
                }),
                Stored::RunFailed { .. } | Stored::Gone => false,
            };
        if wanted {
            self.conversions
                .enqueue_conversion(account, run_id, false)
                .await?;
        }
        Ok(())
    }

    async fn store_run_in_span(
        &self,
        account: &AccountId,
        run_id: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Stored, DownloadError> {
        let record = self.ledger.run(run_id).await?;
        if let Some(record) = &record {
            if record.facts.account != *account {
                return Err(DownloadError::OtherAccount {
                    account: account.clone(),
                    owner: record.facts.account.clone(),
                });
            }
            tracing::Span::current().record("report_type", record.facts.report_type.as_str());
            if record.status == RunStatus::Stored {
                return Ok(Stored::Already);
            }
        }
        let stripe = self.stripe.for_account(account);
        let run = match tokio::time::timeout_at(deadline, stripe.report_run(run_id)).await {
            Err(_) => return Err(DownloadError::Deadline("reading the run from Stripe")),
            Ok(Ok(run)) => run,
            Ok(Err(err)) if err.status() == Some(404) => return self.gone(record.as_ref(), err),
            Ok(Err(err)) => return Err(err.into()),
        };
        tracing::Span::current().record("report_type", run.report_type.as_str());
        let facts = RunFacts {
            account: account.clone(),
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
        let object = object_spec(&self.prefix, account, &run, file.size);
        let key = object.key.clone();
        // One attempt downloads at a time: a duplicate delivery handled at
        // the same moment waits for it (and then finds the run stored)
        // instead of downloading and writing the same file again.
        let clock = Clock::starting_at(now);
        let owner = uuid::Uuid::new_v4().simple().to_string();
        match self.lease(run_id, &owner, &clock, deadline).await? {
            DownloadLease::Acquired | DownloadLease::Unrecorded => {}
            DownloadLease::Stored => return Ok(Stored::Already),
            // Settled meanwhile: nothing to retry.
            DownloadLease::Final(RunStatus::Failed) => {
                return Ok(Stored::RunFailed {
                    recorded_now: false,
                });
            }
            DownloadLease::Final(RunStatus::Retired) => return Ok(Stored::Gone),
            DownloadLease::Final(status) => return Err(DownloadError::Refused(status)),
            // `lease` waits a held lease out: it never answers `Held`.
            DownloadLease::Held => return Err(DownloadError::InProgress),
        }
        let started = std::time::Instant::now();
        let written = self
            .download_holding_lease(&stripe, run_id, &owner, &url, &object, &clock, deadline)
            .await;
        let written = match written {
            Ok(written) => written,
            Err(err) => {
                if let Err(release) = self.ledger.release_download(run_id, &owner).await {
                    warn!(error = %release, "download lease not released; it expires on its own");
                }
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
        // Cleaning up leftovers is worth only the time left before the
        // batch answer is due (a quarter of the reserve past the deadline).
        let cleanup_by = (deadline + ANSWER_RESERVE / 4).min(Instant::now() + LEFTOVER_BUDGET);
        self.abort_leftover_uploads(&stored.s3_key, cleanup_by)
            .await;
        match outcome {
            Transition::Applied => {
                let freshness_secs = self.freshness(account, &run, clock.now()).await;
                info!(
                    freshness_secs,
                    bytes = stored.bytes,
                    sha256 = %stored.sha256,
                    s3_key = %stored.s3_key,
                    parts = written.parts,
                    seconds,
                    mib_per_s = stored.bytes as f64 / 1_048_576.0 / seconds.max(1e-9),
                    "report stored"
                );
                Ok(Stored::Now(StoredReport {
                    object: stored,
                    freshness_secs,
                }))
            }
            // A concurrent downloader stored it first: same key, same bytes.
            Transition::Refused {
                current: RunStatus::Stored,
            } => Ok(Stored::Already),
            Transition::Refused {
                current: RunStatus::Failed,
            } => Ok(Stored::RunFailed {
                recorded_now: false,
            }),
            Transition::Refused {
                current: RunStatus::Retired,
            } => Ok(Stored::Gone),
            Transition::Refused { current } => Err(DownloadError::Refused(current)),
            Transition::OtherAccount { owner } => Err(DownloadError::OtherAccount {
                account: account.clone(),
                owner,
            }),
        }
    }

    /// Takes the download lease (`Acquired` or `Unrecorded`: go ahead), or
    /// says how the run was settled meanwhile (`Stored`, `Final`). Waits
    /// while another attempt holds it, until it is released, expires or the
    /// run is settled, or the deadline comes; never answers `Held`.
    async fn lease(
        &self,
        run_id: &str,
        owner: &str,
        clock: &Clock,
        deadline: Instant,
    ) -> Result<DownloadLease, DownloadError> {
        let mut waited = false;
        loop {
            let now = clock.now();
            match self
                .ledger
                .lease_download(run_id, owner, now, now + LEASE_SECS)
                .await?
            {
                DownloadLease::Held => {
                    if !waited {
                        info!("another attempt is downloading this run: waiting for it");
                        waited = true;
                    }
                    if Instant::now() + LEASE_POLL >= deadline {
                        return Err(DownloadError::InProgress);
                    }
                    tokio::time::sleep(LEASE_POLL).await;
                }
                settled => return Ok(settled),
            }
        }
    }

    /// Streams the file into S3 by `deadline`, renewing the lease while it runs.
    #[allow(clippy::too_many_arguments)]
    async fn download_holding_lease(
        &self,
        stripe: &S::Api,
        run_id: &str,
        owner: &str,
        url: &str,
        object: &crate::aws::s3::ObjectSpec,
        clock: &Clock,
        deadline: Instant,
    ) -> Result<crate::aws::s3::Written, DownloadError> {
        let store = async {
            let download = tokio::time::timeout_at(deadline, stripe.download_file(url))
                .await
                .map_err(|_| DownloadError::Deadline("starting the download"))??;
            // The sink aborts its own upload when the deadline passes.
            Ok::<_, DownloadError>(self.sink.store(object, download.body, deadline).await?)
        };
        tokio::pin!(store);
        let mut renew =
            tokio::time::interval_at(Instant::now() + LEASE_RENEW_EVERY, LEASE_RENEW_EVERY);
        loop {
            tokio::select! {
                written = &mut store => return written,
                _ = renew.tick() => {
                    let now = clock.now();
                    // A lost renewal only means a duplicate may start; the
                    // store stays correct (same key, same bytes, one winner).
                    // Bounded: the upload is not polled while this waits.
                    let renewal = self.ledger.lease_download(run_id, owner, now, now + LEASE_SECS);
                    match tokio::time::timeout(LEASE_RENEW_EVERY / 4, renewal).await {
                        Ok(Ok(DownloadLease::Acquired | DownloadLease::Unrecorded)) => {}
                        Ok(Ok(other)) => warn!(lease = ?other, "download lease lost while downloading"),
                        Ok(Err(err)) => warn!(error = %err, "download lease not renewed"),
                        Err(_) => warn!("download lease renewal timed out"),
                    }
                }
            }
        }
    }

    /// How long ago the run's interval was first seen available.
    async fn freshness(&self, account: &AccountId, run: &ReportRun, now: i64) -> Option<i64> {
        let end = run.parameters.interval_end?;
        match self.ledger.availability(account, &run.report_type).await {
            Ok(seen) => seen.since(end).map(|since| (now - since).max(0)),
            Err(err) => {
                warn!(error = %err, "cannot read when the data became available: no freshness figure");
                None
            }
        }
    }

    /// Stripe answered 404 for the run. For a run the ledger waits for, the
    /// message is done (retrying cannot help): the scheduler's reconcile,
    /// which reads every unfinished run, retires it with the reason, counts
    /// it once and requests the interval again. A run the ledger does not
    /// know came from elsewhere: a failed message.
    fn gone(
        &self,
        record: Option<&crate::ports::RunRecord>,
        err: StripeError,
    ) -> Result<Stored, DownloadError> {
        match record {
            Some(record) if !record.status.is_final() => {
                warn!(error = %err, "Stripe no longer has this run: left to the scheduler's reconcile to retire");
                Ok(Stored::Gone)
            }
            _ => Err(err.into()),
        }
    }
}

impl<L, S, Q> Downloader<L, S, Q> {
    /// Earlier attempts on this run that died mid-upload left their multipart
    /// uploads open (their own abort failed or never ran); with the object
    /// stored they are only cost. Best effort: the lifecycle rule is the backstop.
    async fn abort_leftover_uploads(&self, key: &str, by: Instant) {
        match tokio::time::timeout_at(by, self.sink.abort_leftover_uploads(key)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(aborted)) => info!(
                s3_key = key,
                aborted, "aborted multipart uploads left by earlier attempts"
            ),
            Ok(Err(err)) => {
                warn!(s3_key = key, error = %err, "leftover multipart uploads not all aborted; the lifecycle rule removes them")
            }
            Err(_) => {
                warn!(
                    s3_key = key,
                    "no time left to abort leftover multipart uploads; the lifecycle rule removes them"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::RunParameters;

    fn acct() -> AccountId {
        AccountId::parse("acct_A").unwrap()
    }

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
            object_key("stripe/", &acct(), &utc),
            "stripe/account=acct_A/report_type=balance.summary.1/date=2026-11-29/frr_1.csv"
        );
        // Midnight in Tokyo is 15:00 UTC the day before: the local date counts.
        let tokyo = run(RunParameters {
            interval_start: Some(1_795_910_400 - 9 * 3600),
            interval_end: Some(1_795_996_800 - 9 * 3600),
            timezone: Some("Asia/Tokyo".into()),
            ..Default::default()
        });
        assert_eq!(
            object_key("", &acct(), &tokyo),
            "account=acct_A/report_type=balance.summary.1/date=2026-11-29/frr_1.csv"
        );
        let end_only = run(RunParameters {
            interval_end: Some(1_795_996_800),
            ..Default::default()
        });
        assert_eq!(
            object_key("p/", &acct(), &end_only),
            "p/account=acct_A/report_type=balance.summary.1/date=2026-11-30/frr_1.csv"
        );
    }
}
