//! The small traits the use cases are written against. The real adapters
//! (DynamoDB, SQS, Stripe) implement them; in-memory fakes serve unit tests.
//! Methods are named after what the domain does, not after the AWS call.

use std::future::Future;

use crate::domain::account::AccountId;
use crate::domain::due::Availability;
use crate::domain::ledger::{RunStatus, StoredObject};
use crate::domain::request_key::RequestKey;

/// What the ledger knows of a report run, enough to create its item when
/// the run was created elsewhere (a Dashboard run announced by a webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    pub run_id: String,
    /// The account whose run it is (whose key created or announced it).
    pub account: AccountId,
    pub report_type: String,
    pub interval_start: Option<i64>,
    pub interval_end: Option<i64>,
}

/// A `run#` item of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub facts: RunFacts,
    pub status: RunStatus,
    pub created: i64,
    pub updated: i64,
    /// The request key the run was created for, when this system created it.
    pub request_key: Option<String>,
    pub error: Option<String>,
    pub stored: Option<StoredObject>,
    /// The run's table file, once its CSV was converted.
    pub table: Option<TableFile>,
}

/// A stored run's table file (SPEC "Tables"): its S3 key and its rows (equal
/// to the CSV's data rows, checked before it was kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    pub key: String,
    pub rows: u64,
}

/// The result of recording a newly requested run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// This call wrote the `request#` and `run#` items.
    New,
    /// The request was recorded before, for this run id.
    AlreadyRequested { run_id: String },
    /// The ledger holds the run for another account (`owner`): nothing was
    /// recorded, and the request stays free.
    OtherAccount { owner: AccountId },
}

/// Proof that one delivery owns the claim on an event: written with the
/// claim and required to finish or release it, so a slow handler whose claim
/// was taken over (after `stale_after_secs`) cannot delete or overwrite the
/// claim of the handler that took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(pub String);

/// The state of a webhook event in the ledger, as a delivery finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventClaim {
    /// This delivery owns the event: route it, then finish or release it
    /// with the token.
    Claimed(ClaimToken),
    /// Handled before: a duplicate delivery, answer 200 and change nothing.
    Done,
    /// Another delivery is handling it right now.
    InProgress,
}

/// The answer to a request for a run's download lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadLease {
    /// This attempt holds the lease (or renewed it) until the time asked.
    Acquired,
    /// Another attempt holds an unexpired lease: it is downloading now.
    Held,
    /// The run is stored: nothing to download.
    Stored,
    /// The ledger has no item for the run (a run created elsewhere, never
    /// recorded): there is nothing to lease, and storing it records it.
    Unrecorded,
    /// The run is in a final state other than stored: it is not downloaded.
    Final(RunStatus),
}

/// Whether finishing or releasing a claim found it still owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimEnd {
    /// The claim was this delivery's: it is now done (or released).
    Owned,
    /// Another delivery took the claim over (this one was slower than the
    /// stale age): its claim was left as it is.
    TakenOver,
}

/// The result of a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The run is now in the requested state.
    Applied,
    /// The run is in `current`, from which the requested state is not allowed
    /// (a `succeeded` after `stored`, a `failed` after `stored`, …). Nothing changed.
    Refused { current: RunStatus },
    /// The ledger holds the run for another account (`owner`): nothing of
    /// one account changes the runs of another. Nothing changed.
    OtherAccount { owner: AccountId },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("ledger item {pk} is malformed: {problem}")]
    Corrupt { pk: String, problem: String },
}

/// The DynamoDB table of SPEC "Ledger".
pub trait Ledger: Send + Sync {
    /// The run id recorded for a request, if any.
    fn requested_run(
        &self,
        key: &RequestKey,
    ) -> impl Future<Output = Result<Option<String>, LedgerError>> + Send;

    /// Records that `key` created `run` (pending): both items or neither, and
    /// never a second run for the same request.
    fn record_requested(
        &self,
        key: &RequestKey,
        run: &RunFacts,
        now: i64,
    ) -> impl Future<Output = Result<Recorded, LedgerError>> + Send;

    fn run(
        &self,
        run_id: &str,
    ) -> impl Future<Output = Result<Option<RunRecord>, LedgerError>> + Send;

    /// `pending → succeeded`, creating the item if the run is new to the ledger.
    fn mark_succeeded(
        &self,
        run: &RunFacts,
        now: i64,
    ) -> impl Future<Output = Result<Transition, LedgerError>> + Send;

    /// `pending → failed` with Stripe's error text.
    fn mark_failed(
        &self,
        run: &RunFacts,
        error: &str,
        now: i64,
    ) -> impl Future<Output = Result<Transition, LedgerError>> + Send;

    /// `pending|succeeded → retired` with the reason: Stripe no longer has the run.
    fn mark_retired(
        &self,
        run: &RunFacts,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = Result<Transition, LedgerError>> + Send;

    /// Takes (or renews) the lease on downloading a run until `until`, for
    /// the attempt `owner`: granted when nobody holds an unexpired lease, so
    /// two deliveries of one message never download and write the file
    /// twice at once. Only runs that may still become `stored` are leased.
    fn lease_download(
        &self,
        run_id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> impl Future<Output = Result<DownloadLease, LedgerError>> + Send;

    /// Gives the lease up (only while `owner` holds it), so a retry need not
    /// wait for it to expire.
    fn release_download(
        &self,
        run_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// `pending|succeeded → stored` with where the file landed. Of two
    /// downloaders racing on one run, exactly one gets `Applied`.
    fn mark_stored(
        &self,
        run: &RunFacts,
        stored: &StoredObject,
        now: i64,
    ) -> impl Future<Output = Result<Transition, LedgerError>> + Send;

    /// Records the table file of a `stored` run of `account` (`Applied`, also
    /// when the same or a newer conversion recorded one before: the last
    /// conversion's file is the one at the key). Any other state or account
    /// changes nothing (`Refused`, `OtherAccount`).
    fn mark_tabled(
        &self,
        account: &AccountId,
        run_id: &str,
        table: &TableFile,
        now: i64,
    ) -> impl Future<Output = Result<Transition, LedgerError>> + Send;

    /// Claims a webhook event for processing. `Claimed` the first time (and
    /// when an earlier claim is older than `stale_after_secs`, i.e. its handler
    /// died mid-way); `Done` when it was handled; `InProgress` while another
    /// delivery of the same event is being handled.
    fn claim_event(
        &self,
        event_id: &str,
        event_type: &str,
        now: i64,
        stale_after_secs: i64,
    ) -> impl Future<Output = Result<EventClaim, LedgerError>> + Send;

    /// Marks a claimed event as handled (only while `token` still owns the
    /// claim): later deliveries are duplicates.
    fn finish_event(
        &self,
        event_id: &str,
        token: &ClaimToken,
        now: i64,
    ) -> impl Future<Output = Result<ClaimEnd, LedgerError>> + Send;

    /// Releases a claim (only while `token` still owns it) so that Stripe's
    /// next delivery is processed again (when routing failed after the claim).
    fn release_event(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<ClaimEnd, LedgerError>> + Send;

    /// When each `data_available_end` of an account's report type was first seen.
    fn availability(
        &self,
        account: &AccountId,
        report_type: &str,
    ) -> impl Future<Output = Result<Availability, LedgerError>> + Send;

    /// Records a sighting of `data_available_end` at `now` (the first one is kept).
    fn record_availability(
        &self,
        account: &AccountId,
        report_type: &str,
        data_available_end: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// An account's runs that are `pending` or `succeeded`, read without
    /// visiting the finished ones (their number grows with history; these
    /// stay few) or other accounts' runs.
    fn unfinished_runs(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<Vec<RunRecord>, LedgerError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("queue unavailable: {0}")]
pub struct QueueError(pub String);

/// The download queue: runs to store.
pub trait DownloadQueue: Send + Sync {
    fn enqueue_download(
        &self,
        account: &AccountId,
        run_id: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The conversion queue: stored runs whose table file is to be written;
/// `again` (a backfill) converts even a run whose table file is recorded.
pub trait ConversionQueue: Send + Sync {
    fn enqueue_conversion(
        &self,
        account: &AccountId,
        run_id: &str,
        again: bool,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// An optional queue: `None` (no `CONVERSION_QUEUE_URL`) sends nothing.
impl<Q: ConversionQueue> ConversionQueue for Option<Q> {
    async fn enqueue_conversion(
        &self,
        account: &AccountId,
        run_id: &str,
        again: bool,
    ) -> Result<(), QueueError> {
        match self {
            Some(queue) => queue.enqueue_conversion(account, run_id, again).await,
            None => Ok(()),
        }
    }
}

/// No conversion queue: a deployment or a test without tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConversions;

impl ConversionQueue for NoConversions {
    async fn enqueue_conversion(&self, _: &AccountId, _: &str, _: bool) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The schedule queue: report types with new data.
pub trait ScheduleQueue: Send + Sync {
    fn enqueue_schedule(
        &self,
        account: &AccountId,
        report_type: &str,
        data_available_end: i64,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The Stripe API of each account: a client that sends that account's key
/// and no other, for that account's objects.
pub trait StripeByAccount: Send + Sync {
    type Api: StripeApi;
    fn for_account(&self, account: &AccountId) -> Self::Api;
}

/// The Stripe reporting API, as the use cases need it.
pub trait StripeApi: Send + Sync {
    fn report_type(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<crate::stripe::ReportType, crate::stripe::StripeError>> + Send;

    fn create_report_run(
        &self,
        request: &crate::stripe::CreateReportRun,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<crate::stripe::ReportRun, crate::stripe::StripeError>> + Send;

    fn report_run(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<crate::stripe::ReportRun, crate::stripe::StripeError>> + Send;

    fn report_runs_created_since(
        &self,
        created_gte: i64,
    ) -> impl Future<Output = Result<Vec<crate::stripe::ReportRun>, crate::stripe::StripeError>> + Send;

    /// The file at a run's `result.url`, as a stream (allow-listed hosts only).
    fn download_file(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<crate::stripe::FileDownload, crate::stripe::StripeError>> + Send;
}

#[cfg(feature = "http")]
impl StripeApi for crate::stripe::StripeClient {
    async fn report_type(
        &self,
        id: &str,
    ) -> Result<crate::stripe::ReportType, crate::stripe::StripeError> {
        crate::stripe::StripeClient::report_type(self, id).await
    }

    async fn create_report_run(
        &self,
        request: &crate::stripe::CreateReportRun,
        idempotency_key: &str,
    ) -> Result<crate::stripe::ReportRun, crate::stripe::StripeError> {
        crate::stripe::StripeClient::create_report_run(self, request, idempotency_key).await
    }

    async fn report_run(
        &self,
        id: &str,
    ) -> Result<crate::stripe::ReportRun, crate::stripe::StripeError> {
        crate::stripe::StripeClient::report_run(self, id).await
    }

    async fn report_runs_created_since(
        &self,
        created_gte: i64,
    ) -> Result<Vec<crate::stripe::ReportRun>, crate::stripe::StripeError> {
        crate::stripe::StripeClient::report_runs_created_since(self, created_gte).await
    }

    async fn download_file(
        &self,
        url: &str,
    ) -> Result<crate::stripe::FileDownload, crate::stripe::StripeError> {
        crate::stripe::StripeClient::download_file(self, url).await
    }
}
