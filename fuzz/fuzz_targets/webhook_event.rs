//! A verified body can still be anything Stripe (or a leaked secret's holder)
//! signs: the event parser and the route decision must answer for any bytes,
//! never panic, and a refused event must change nothing.
//!
//! The body is signed with the configured secret so that every input reaches
//! the parser; the ledger and queues are counting fakes (this is a fuzz test
//! of the domain; the DynamoDB and SQS adapters have their own tests on moto).
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::ledger::StoredObject;
use stripe_reports::domain::request_key::RequestKey;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature;
use stripe_reports::ports::{
    ClaimEnd, ClaimToken, DownloadLease, DownloadQueue, EventClaim, Ledger, LedgerError,
    QueueError, Recorded, RunFacts, RunRecord, ScheduleQueue, TableFile, Transition,
};
use stripe_reports::webhook::{WebhookAnswer, WebhookService, parse_event};

const NOW: i64 = 1_796_000_000;
const SECRET: &str = "whsec_fuzz";
const ACCOUNT: &str = "acct_1Fuzz";

/// Counts every write; answers as an empty ledger would.
#[derive(Default)]
struct CountingLedger {
    writes: AtomicUsize,
}

impl CountingLedger {
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

impl Ledger for CountingLedger {
    async fn requested_run(&self, _: &RequestKey) -> Result<Option<String>, LedgerError> {
        Ok(None)
    }
    async fn record_requested(
        &self,
        _: &RequestKey,
        _: &RunFacts,
        _: i64,
    ) -> Result<Recorded, LedgerError> {
        self.write();
        Ok(Recorded::New)
    }
    async fn run(&self, _: &str) -> Result<Option<RunRecord>, LedgerError> {
        Ok(None)
    }
    async fn mark_succeeded(&self, _: &RunFacts, _: i64) -> Result<Transition, LedgerError> {
        self.write();
        Ok(Transition::Applied)
    }
    async fn mark_failed(&self, _: &RunFacts, _: &str, _: i64) -> Result<Transition, LedgerError> {
        self.write();
        Ok(Transition::Applied)
    }
    async fn mark_retired(&self, _: &RunFacts, _: &str, _: i64) -> Result<Transition, LedgerError> {
        self.write();
        Ok(Transition::Applied)
    }
    async fn lease_download(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<DownloadLease, LedgerError> {
        self.write();
        Ok(DownloadLease::Acquired)
    }
    async fn release_download(&self, _: &str, _: &str) -> Result<(), LedgerError> {
        self.write();
        Ok(())
    }
    async fn mark_stored(
        &self,
        _: &RunFacts,
        _: &StoredObject,
        _: i64,
    ) -> Result<Transition, LedgerError> {
        self.write();
        Ok(Transition::Applied)
    }
    async fn mark_tabled(
        &self,
        _: &AccountId,
        _: &str,
        _: &TableFile,
        _: i64,
    ) -> Result<Transition, LedgerError> {
        self.write();
        Ok(Transition::Applied)
    }
    async fn claim_event(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<EventClaim, LedgerError> {
        self.write();
        Ok(EventClaim::Claimed(ClaimToken("fuzz".into())))
    }
    async fn finish_event(&self, _: &str, _: &ClaimToken, _: i64) -> Result<ClaimEnd, LedgerError> {
        self.write();
        Ok(ClaimEnd::Owned)
    }
    async fn release_event(&self, _: &str, _: &ClaimToken) -> Result<ClaimEnd, LedgerError> {
        // Undoes the claim: a refused event leaves the ledger as it was.
        self.writes.fetch_sub(1, Ordering::Relaxed);
        Ok(ClaimEnd::Owned)
    }
    async fn availability(
        &self,
        _: &AccountId,
        _: &str,
    ) -> Result<stripe_reports::domain::due::Availability, LedgerError> {
        Ok(Default::default())
    }
    async fn record_availability(
        &self,
        _: &AccountId,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<(), LedgerError> {
        self.write();
        Ok(())
    }
    async fn unfinished_runs(&self, _: &AccountId) -> Result<Vec<RunRecord>, LedgerError> {
        Ok(Vec::new())
    }
}

#[derive(Default)]
struct CountingQueue {
    sent: AtomicUsize,
}

impl DownloadQueue for CountingQueue {
    async fn enqueue_download(&self, _: &AccountId, _: &str) -> Result<(), QueueError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl ScheduleQueue for CountingQueue {
    async fn enqueue_schedule(&self, _: &AccountId, _: &str, _: i64) -> Result<(), QueueError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A fresh service over counting fakes.
fn service() -> WebhookService<CountingLedger, CountingQueue, CountingQueue> {
    WebhookService::new(
        CountingLedger::default(),
        CountingQueue::default(),
        CountingQueue::default(),
        AccountId::parse(ACCOUNT).expect("account id"),
        vec![SecretString::new(SECRET)],
        ["balance.summary.1".to_owned()],
    )
}

/// What every answer must keep: a refusal changes nothing and never echoes
/// the input; an event is received only if the parser reads it; fakes never fail.
fn check(
    answer: &WebhookAnswer,
    service: &WebhookService<CountingLedger, CountingQueue, CountingQueue>,
    input: &[u8],
    parsed_ok: bool,
) {
    let writes = service.ledger.writes.load(Ordering::Relaxed);
    let sent = service.downloads.sent.load(Ordering::Relaxed)
        + service.schedules.sent.load(Ordering::Relaxed);
    match answer {
        WebhookAnswer::Rejected(reason) => {
            assert_eq!((writes, sent), (0, 0), "a refused event changed something");
            // The reason never echoes the input (it may carry customer data);
            // shorter inputs can be substrings of the fixed messages themselves.
            assert!(
                input.len() < 100 || !reason.as_bytes().windows(input.len()).any(|w| w == input)
            );
        }
        WebhookAnswer::Received(_) => {
            assert!(parsed_ok, "received an event the parser refuses")
        }
        WebhookAnswer::Failed(reason) => panic!("fakes never fail, yet: {reason}"),
    }
}

fuzz_target!(|body: &[u8]| {
    let parsed = parse_event(body);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");

    // A signed webhook delivery.
    let webhook = service();
    let header = signature::signature_header(&[SecretString::new(SECRET)], NOW, body);
    let answer = runtime.block_on(webhook.handle(body, Some(&header), NOW));
    check(&answer, &webhook, body, parsed.is_ok());

    // The same bytes as EventBridge's `detail` (spliced in as they are, so
    // the envelope itself is malformed whenever they are not JSON), and as
    // a whole EventBridge event.
    let detail_type = parsed
        .as_ref()
        .map(|event| event.event_type.to_string())
        .unwrap_or_default();
    let mut envelope = format!(
        r#"{{"version":"0","id":"fuzz","detail-type":{},"source":"aws.partner/stripe.com/ed_fuzz","detail":"#,
        serde_json::Value::String(detail_type)
    )
    .into_bytes();
    envelope.extend_from_slice(body);
    envelope.push(b'}');
    for input in [envelope.as_slice(), body] {
        let bridged = service();
        let answer = runtime.block_on(bridged.handle_eventbridge(input, NOW));
        let parsed_ok = stripe_reports::eventbridge::parse_bridged(input).is_ok();
        check(&answer, &bridged, body, parsed_ok);
    }
});
