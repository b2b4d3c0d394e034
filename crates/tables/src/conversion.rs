//! The conversion use case (SPEC "Tables"): a stored run's CSV becomes its
//! table file, the report type's table in the catalog covers it, and the
//! ledger records the file and its rows — exactly once, and safe to repeat.
//!
//! A message names a run and its account; the ledger must hold that run,
//! `stored`, for that account (nothing else is trusted). The CSV is streamed
//! from the bucket through [`convert()`] on a blocking thread into a
//! multipart upload, so memory stays bounded whatever the file's size. The
//! file is kept only when its rows equal the CSV's data rows (checked against
//! the Parquet footer): any error ends the upload with an error item, which
//! aborts it, so no partial file is ever visible. The key is a function of
//! the CSV's key and the bytes a function of the CSV's bytes, so a retry or a
//! duplicate writes the same single file; the ledger is written last.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::ledger::RunStatus;
use stripe_reports::domain::messages::ConversionMessage;
use stripe_reports::ports::{
    ConversionQueue, Ledger, LedgerError, QueueError, TableFile, Transition,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::io::SyncIoBridge;
use tracing::{Instrument, info, warn};

use crate::catalog::{Catalog, CatalogChange, CatalogError, TableDefinition};
use crate::convert::{ConvertError, ConvertOptions, convert};
use crate::files::{FilesError, ReportFiles};
use crate::layout::CsvKey;

/// The converting thread's error when the upload ended first.
const UPLOAD_STOPPED: &str = "the table file's upload stopped";
/// Bytes handed from the converting thread to the upload at a time.
const CHUNK: usize = 1024 * 1024;

/// What happened to one conversion message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tabled {
    /// This attempt wrote the table file and recorded it.
    Now {
        key: String,
        rows: u64,
        bytes: u64,
        catalog: CatalogChange,
    },
    /// The ledger already records the run's table file (a duplicate message).
    Already,
}

#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    #[error("message is not {{\"run_id\": \"frr_…\", \"account\": \"acct_…\"}}: {0}")]
    BadMessage(String),
    #[error("backfill: {0}")]
    BadBackfill(String),
    #[error("run {0} is not in the ledger: nothing stored to convert")]
    Unknown(String),
    #[error("the ledger holds this run for {owner}, not for the message's account {account}")]
    OtherAccount {
        account: AccountId,
        owner: AccountId,
    },
    #[error("run is {0} in the ledger, not stored: nothing to convert yet")]
    NotStored(RunStatus),
    #[error("the stored CSV's key {0} is not of the reports layout")]
    UnexpectedKey(String),
    /// The CSV itself cannot be converted (an unparseable value, a row with
    /// too few fields, …): where, and why. It stays stored; the message is
    /// retried and, if the file never converts, ends in the dead-letter queue.
    #[error("the CSV cannot be converted: {0}")]
    Csv(#[source] ConvertError),
    /// Reading the CSV or writing the table file failed mid-way (a cut
    /// stream, an I/O error): nothing was kept, and a retry may succeed.
    #[error("converting: {0}")]
    Converting(#[source] ConvertError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the invocation's time ran out while {0}; nothing was kept, SQS delivers it again")]
    Deadline(&'static str),
    #[error("the conversion thread ended abnormally: {0}")]
    Thread(String),
}

impl ConversionError {
    /// An error of the file itself, which the same bytes will give again
    /// (the `ConversionFailures` metric and alarm), as opposed to an outage.
    pub fn is_bad_file(&self) -> bool {
        matches!(self, ConversionError::Csv(_))
    }
}

/// The converter: ledger, bucket, catalog, and the conversion queue a
/// backfill fills.
pub struct Converter<L, F, C, Q> {
    pub ledger: L,
    pub files: F,
    pub catalog: C,
    pub queue: Q,
    /// The reports bucket (the catalog's locations name it).
    pub bucket: String,
    pub prefix: String,
    pub options: ConvertOptions,
}

impl<L: Ledger, F: ReportFiles, C: Catalog, Q: ConversionQueue> Converter<L, F, C, Q> {
    /// Handles one conversion-queue message body, by `deadline`.
    pub async fn handle_message(
        &self,
        body: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Tabled, ConversionError> {
        let message: ConversionMessage = serde_json::from_str(body)
            .map_err(|err| ConversionError::BadMessage(err.to_string()))?;
        let span = tracing::info_span!("run", run_id = %message.run_id, account = %message.account);
        self.convert_run(
            &message.account,
            &message.run_id,
            message.again,
            now,
            deadline,
        )
        .instrument(span)
        .await
    }

    /// Converts one stored run of `account`; `again` converts even when a
    /// table file is recorded (a backfill).
    pub async fn convert_run(
        &self,
        account: &AccountId,
        run_id: &str,
        again: bool,
        now: i64,
        deadline: Instant,
    ) -> Result<Tabled, ConversionError> {
        let record = self
            .ledger
            .run(run_id)
            .await?
            .ok_or_else(|| ConversionError::Unknown(run_id.to_owned()))?;
        if record.facts.account != *account {
            return Err(ConversionError::OtherAccount {
                account: account.clone(),
                owner: record.facts.account,
            });
        }
        let stored = match (&record.status, &record.stored) {
            (RunStatus::Stored, Some(stored)) => stored,
            (status, _) => return Err(ConversionError::NotStored(*status)),
        };
        if record.table.is_some() && !again {
            return Ok(Tabled::Already);
        }
        let csv_key = CsvKey::parse(&self.prefix, &stored.s3_key)
            .ok_or_else(|| ConversionError::UnexpectedKey(stored.s3_key.clone()))?;
        let table_key = csv_key.table_key();
        let started = std::time::Instant::now();
        let metadata = vec![
            ("report-run".to_owned(), run_id.to_owned()),
            ("account".to_owned(), account.to_string()),
            ("report-type".to_owned(), record.facts.report_type.clone()),
            ("csv-sha256".to_owned(), stored.sha256.clone()),
        ];
        // The footer names the CSV it came from (run, account, its SHA-256):
        // fixed values, so the same CSV always gives the same bytes.
        let mut options = self.options.clone();
        options.metadata.extend(
            metadata
                .iter()
                .map(|(k, v)| (format!("stripe-reports.{k}"), v.clone())),
        );
        let (converted, bytes) = self
            .write_table_file(&stored.s3_key, &table_key, metadata, options, deadline)
            .await?;
        let definition = TableDefinition::for_file(
            &self.bucket,
            &self.prefix,
            &record.facts.report_type,
            account.as_str(),
            &converted.columns,
        );
        let catalog = tokio::time::timeout_at(deadline, self.catalog.ensure_table(&definition))
            .await
            .map_err(|_| ConversionError::Deadline("updating the catalog"))??;
        let table = TableFile {
            key: table_key.clone(),
            rows: converted.rows,
        };
        match self
            .ledger
            .mark_tabled(account, run_id, &table, now)
            .await?
        {
            Transition::Applied => {}
            Transition::Refused { current } => return Err(ConversionError::NotStored(current)),
            Transition::OtherAccount { owner } => {
                return Err(ConversionError::OtherAccount {
                    account: account.clone(),
                    owner,
                });
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        info!(
            table_key = %table_key,
            rows = converted.rows,
            bytes,
            csv_bytes = stored.bytes,
            row_groups = converted.row_groups,
            catalog = ?catalog,
            seconds,
            mib_per_s = stored.bytes as f64 / 1_048_576.0 / seconds.max(1e-9),
            "table file written"
        );
        Ok(Tabled::Now {
            key: table_key,
            rows: converted.rows,
            bytes,
            catalog,
        })
    }

    /// Streams the CSV through the conversion into the table file's upload.
    async fn write_table_file(
        &self,
        csv_key: &str,
        table_key: &str,
        metadata: Vec<(String, String)>,
        options: ConvertOptions,
        deadline: Instant,
    ) -> Result<(crate::Converted, u64), ConversionError> {
        let csv = tokio::time::timeout_at(deadline, self.files.open(csv_key))
            .await
            .map_err(|_| ConversionError::Deadline("opening the CSV"))??;
        let (sender, receiver) = mpsc::channel::<Result<Bytes, String>>(2);
        let converting = tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter::new(sender);
            let (converted, writer) = convert(SyncIoBridge::new(csv), writer, &options)?;
            writer.finish().map_err(|err| ConvertError::Read {
                line: 0,
                source: err,
            })?;
            Ok::<_, ConvertError>(converted)
        });
        let body = Box::pin(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        ));
        let upload = self.files.write_table(table_key, metadata, body, deadline);
        let (converted, written) = tokio::join!(converting, upload);
        let converted = converted.map_err(|err| ConversionError::Thread(err.to_string()))?;
        match (converted, written) {
            (Ok(converted), Ok(bytes)) => Ok((converted, bytes)),
            // A fault of the file says more than the upload it aborted.
            (Err(err), _) if err.is_in_the_file() => Err(ConversionError::Csv(err)),
            // The conversion's own failure (a cut read, a row count that does
            // not add up): its error, not the aborted upload's, is the cause.
            (Err(err), _) if !err.to_string().contains(UPLOAD_STOPPED) => {
                Err(ConversionError::Converting(err))
            }
            // Else the upload failed first, which stopped the conversion.
            (_, Err(_)) if Instant::now() >= deadline => {
                Err(ConversionError::Deadline("writing the table file"))
            }
            (_, Err(err)) => Err(err.into()),
            (Err(err), Ok(_)) => Err(ConversionError::Converting(err)),
        }
    }

    /// Queues every stored CSV of the range for conversion again (a backfill:
    /// CSVs stored before tables existed, or after the type mapping changed).
    /// Reads the bucket, not the ledger, so a CSV is found wherever it came
    /// from; each message converts its run again and replaces its file, so
    /// running the same backfill twice gives the same files.
    pub async fn queue_backfill(
        &self,
        backfill: &TableBackfill,
    ) -> Result<BackfillSummary, ConversionError> {
        if backfill.from > backfill.to {
            return Err(ConversionError::BadBackfill(format!(
                "from {} is after to {}",
                backfill.from, backfill.to
            )));
        }
        let from = backfill.from.to_string();
        let to = backfill.to.to_string();
        let mut summary = BackfillSummary::default();
        for prefix in backfill.listing_prefixes(&self.prefix) {
            for key in self.files.list(&prefix).await? {
                let Some(csv) = CsvKey::parse(&self.prefix, &key) else {
                    continue;
                };
                if !(csv.date >= from && csv.date <= to && backfill.covers(&csv)) {
                    continue;
                }
                let account = AccountId::parse(&csv.account)
                    .map_err(|_| ConversionError::UnexpectedKey(key.clone()))?;
                // Only runs the ledger holds stored for that account convert
                // (the converter trusts nothing else): a CSV written some other
                // way (`fetch --out s3://`, a copy) would only fail five times
                // and end in the dead-letter queue. Counted and logged instead.
                let stored = self.ledger.run(&csv.run_id).await?.is_some_and(|record| {
                    record.status == RunStatus::Stored
                        && record.facts.account == account
                        && record.stored.as_ref().is_some_and(|s| s.s3_key == key)
                });
                if !stored {
                    warn!(s3_key = %key, "not converted again: the ledger holds no stored run for this CSV");
                    summary.not_in_ledger += 1;
                    continue;
                }
                self.queue
                    .enqueue_conversion(&account, &csv.run_id, true)
                    .await?;
                summary.queued += 1;
            }
        }
        info!(
            queued = summary.queued,
            not_in_ledger = summary.not_in_ledger,
            from,
            to,
            "backfill of table files queued"
        );
        Ok(summary)
    }
}

/// `{"backfill": {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD", "accounts": [..], "report_types": [..]}}`:
/// the stored CSVs whose date (the `date=` of their key) is in the range,
/// both ends included.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableBackfill {
    pub from: jiff::civil::Date,
    pub to: jiff::civil::Date,
    #[serde(default)]
    pub accounts: Option<Vec<AccountId>>,
    #[serde(default)]
    pub report_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSummary {
    /// Runs queued for conversion.
    pub queued: u64,
    /// CSVs in the range the ledger holds no stored run for (not queued).
    pub not_in_ledger: u64,
}

impl TableBackfill {
    /// Where to list: the accounts' (and types') own folders when the
    /// backfill names them, else every account's.
    fn listing_prefixes(&self, prefix: &str) -> Vec<String> {
        let accounts: Vec<String> = match &self.accounts {
            Some(accounts) => accounts
                .iter()
                .map(|a| format!("{prefix}account={a}/report_type="))
                .collect(),
            None => return vec![format!("{prefix}account=")],
        };
        match &self.report_types {
            Some(types) => accounts
                .iter()
                .flat_map(|a| types.iter().map(move |t| format!("{a}{t}/")))
                .collect(),
            None => accounts,
        }
    }

    /// Whether a CSV is of the accounts and types asked for.
    fn covers(&self, csv: &CsvKey) -> bool {
        self.accounts
            .as_ref()
            .is_none_or(|a| a.iter().any(|a| a.as_str() == csv.account))
            && self
                .report_types
                .as_ref()
                .is_none_or(|t| t.contains(&csv.report_type))
    }
}

/// The converting thread's side of the upload: a `Write` that hands full
/// chunks to the async upload, waiting while it is busy (so at most a few
/// chunks are ever held). Dropped before [`finish`](Self::finish) — the
/// conversion failed — it sends an error item, which aborts the upload.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, String>>,
    buffer: Vec<u8>,
    finished: bool,
}

impl ChannelWriter {
    fn new(sender: mpsc::Sender<Result<Bytes, String>>) -> Self {
        Self {
            sender,
            buffer: Vec::with_capacity(CHUNK),
            finished: false,
        }
    }

    fn send(&mut self, item: Result<Bytes, String>) -> std::io::Result<()> {
        self.sender
            .blocking_send(item)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, UPLOAD_STOPPED))
    }

    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.send(Ok(Bytes::from(chunk)))
    }

    /// Sends what is left; the upload completes when the channel closes.
    fn finish(mut self) -> std::io::Result<()> {
        self.send_buffer()?;
        self.finished = true;
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Runs on the blocking thread (never inside the runtime), where
            // a blocking send is allowed; if the upload is gone, so be it.
            let _ = self.sender.blocking_send(Err(
                "the conversion did not finish; nothing is kept".to_owned(),
            ));
        }
    }
}

/// How long a conversion may take when the invocation has no deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(14 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_dropped_unfinished_sends_an_error_item() {
        let (sender, mut receiver) = mpsc::channel(4);
        std::thread::spawn(move || {
            let mut writer = ChannelWriter::new(sender);
            writer.write_all(b"PAR1 partial").expect("buffered");
            drop(writer);
        })
        .join()
        .expect("thread");
        let item = receiver.blocking_recv().expect("an item");
        assert!(item.is_err(), "{item:?}");
    }

    #[test]
    fn a_finished_writer_sends_every_byte_then_closes() {
        let (sender, mut receiver) = mpsc::channel(8);
        let handle = std::thread::spawn(move || {
            let mut writer = ChannelWriter::new(sender);
            writer.write_all(&vec![7u8; CHUNK + 10]).expect("written");
            writer.write_all(b"tail").expect("written");
            writer.finish().expect("finished");
        });
        let mut total = 0;
        while let Some(item) = receiver.blocking_recv() {
            total += item.expect("no error item").len();
        }
        handle.join().expect("thread");
        assert_eq!(total, CHUNK + 10 + 4);
    }
}
