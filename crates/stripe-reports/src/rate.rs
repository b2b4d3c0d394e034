//! How fast the scheduler sends requests to one Stripe account: each request
//! takes a slot, and slots are spaced evenly at the account's pace, so a
//! burst of concurrent requests goes out smoothly, never in a clump Stripe
//! would count within one second (docs/design-choices.md, "Stripe's rate
//! limits").
//!
//! Two invocations working one account at once (the schedule and a
//! schedule-queue batch, or a backfill) run in separate Lambda processes,
//! so nothing in memory is shared. With a [`SharedPace`] the slots come
//! from one sequence per account that every invocation takes from (the
//! ledger table): together they keep the pace one invocation alone would.
//! An invocation takes up to [`MAX_SLOTS_TAKEN`] slots at once, as many as
//! requests are waiting, so a fan-out costs the table about one write per
//! that many requests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::domain::account::AccountId;

/// The shared sequence could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the shared request pace is unavailable: {0}")]
pub struct PaceError(pub String);

pub type SlotFuture<'a> = Pin<Box<dyn Future<Output = Result<u64, PaceError>> + Send + 'a>>;

/// The most slots an invocation takes from the shared sequence at once.
pub const MAX_SLOTS_TAKEN: u64 = 8;

/// One sequence of request slots per account, shared by every invocation
/// working it (a generic cell rate algorithm: the sequence is the time of
/// the account's next free slot).
pub trait SharedPace: Send + Sync {
    /// Takes `count` of `account`'s next free slots, the first no earlier
    /// than `now_us`, each `spacing_us` after the one before, and moves the
    /// next free slot past them. Times are microseconds since the Unix
    /// epoch; returns the first slot taken.
    fn take_slots<'a>(
        &'a self,
        account: &'a AccountId,
        now_us: u64,
        spacing_us: u64,
        count: u64,
    ) -> SlotFuture<'a>;
}

/// One account's request pacing (see the module's documentation).
pub struct RateLimiter {
    per_second: f64,
    spacing: Duration,
    /// The next free slot when this invocation paces itself alone.
    next_slot: std::sync::Mutex<Instant>,
    shared: Option<(Arc<dyn SharedPace>, AccountId)>,
    /// Slots taken from the shared sequence and not used yet.
    taken: std::sync::Mutex<BinaryHeap<Reverse<u64>>>,
    /// Requests waiting for a slot now (not those waiting for the time of
    /// the slot they have).
    waiting: AtomicUsize,
    /// Held while slots are being taken from the shared sequence.
    taking: tokio::sync::Mutex<()>,
    /// The wall clock read once, with the monotonic clock at that moment:
    /// slots are wall-clock times (the same in every process), waited for
    /// on the monotonic clock.
    epoch: (Instant, u64),
    /// Whether the last use of the shared pace failed (said once, not on
    /// every request).
    shared_failing: AtomicBool,
}

fn spacing(per_second: f64) -> Duration {
    // Above 0 and finite by construction (the configuration refuses
    // anything else); the guard keeps a bad value from panicking.
    if per_second.is_finite() && per_second > 0.0 {
        Duration::from_secs_f64(1.0 / per_second)
    } else {
        Duration::from_secs(1)
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

impl RateLimiter {
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            spacing: spacing(per_second),
            next_slot: std::sync::Mutex::new(Instant::now()),
            shared: None,
            taken: Default::default(),
            waiting: AtomicUsize::new(0),
            taking: tokio::sync::Mutex::new(()),
            epoch: (Instant::now(), unix_micros()),
            shared_failing: AtomicBool::new(false),
        }
    }

    /// Takes the slots from `account`'s sequence in `pace`, shared with
    /// every other invocation.
    pub fn with_shared_pace(mut self, pace: Arc<dyn SharedPace>, account: AccountId) -> Self {
        self.shared = Some((pace, account));
        self
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    fn now_us(&self) -> u64 {
        let (at, unix) = self.epoch;
        unix + Instant::now().duration_since(at).as_micros() as u64
    }

    /// When wall-clock time `unix_us` comes, on the monotonic clock.
    fn instant_of(&self, unix_us: u64) -> Instant {
        let (at, unix) = self.epoch;
        at + Duration::from_micros(unix_us.saturating_sub(unix))
    }

    /// The earliest slot taken earlier that is still usable: slots more
    /// than one spacing past are given up (sent now, a request would go out
    /// together with later slots, a clump; each request within one spacing
    /// of its slot keeps any second at most one over the pace).
    fn usable_slot(&self) -> Option<Instant> {
        let mut taken = self
            .taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(Reverse(slot)) = taken.pop() {
            let at = self.instant_of(slot);
            if Instant::now() <= at + self.spacing {
                return Some(at);
            }
            debug!(
                late_ms = Instant::now().duration_since(at).as_millis() as u64,
                "request slot given up: too late to use"
            );
        }
        None
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        if self.shared.is_some() {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let slot = self.shared_slot().await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            if let Some(at) = slot {
                tokio::time::sleep_until(at).await;
                return;
            }
        }
        let slot = {
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// A slot of the shared sequence; `None` when there is none (no shared
    /// pace, or it does not answer: this invocation paces itself).
    async fn shared_slot(&self) -> Option<Instant> {
        let (pace, account) = self.shared.as_ref()?;
        let spacing_us = (self.spacing.as_micros() as u64).max(1);
        loop {
            if let Some(at) = self.usable_slot() {
                return Some(at);
            }
            // One take at a time: the requests that come meanwhile use its
            // slots rather than each taking a batch of its own.
            let _taking = self.taking.lock().await;
            if let Some(at) = self.usable_slot() {
                return Some(at);
            }
            let unserved = self.waiting.load(Ordering::Relaxed) as u64;
            let count = unserved.clamp(1, MAX_SLOTS_TAKEN);
            match pace
                .take_slots(account, self.now_us(), spacing_us, count)
                .await
            {
                Ok(first) => {
                    self.shared_failing.store(false, Ordering::Relaxed);
                    let mut taken = self
                        .taken
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    taken.extend((0..count).map(|i| Reverse(first + i * spacing_us)));
                }
                Err(err) => {
                    // Only another invocation working the same account at
                    // this moment could now push it past its limit (Stripe's
                    // 429 is retried with backoff).
                    if !self.shared_failing.swap(true, Ordering::Relaxed) {
                        warn!(error = %err, "requests are paced by this invocation alone until the shared pace answers");
                    }
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    async fn all(limiter: &Arc<RateLimiter>, count: usize) -> Vec<Instant> {
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.unwrap());
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced() {
        let limiter = Arc::new(RateLimiter::new(10.0));
        let start = Instant::now();
        all(&limiter, 21).await;
        // 21 slots at 10/s: the last one 2 s after the first.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    /// Every invocation's sequence, as the DynamoDB adapter keeps it.
    #[derive(Default)]
    struct MemoryPace {
        next: std::sync::Mutex<HashMap<String, u64>>,
        calls: AtomicUsize,
    }

    impl SharedPace for MemoryPace {
        fn take_slots<'a>(
            &'a self,
            account: &'a AccountId,
            now_us: u64,
            spacing_us: u64,
            count: u64,
        ) -> SlotFuture<'a> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut next = self.next.lock().unwrap();
            let entry = next.entry(account.to_string()).or_default();
            let slot = (*entry).max(now_us);
            *entry = slot + count * spacing_us;
            Box::pin(async move {
                // A round trip to the table.
                tokio::time::sleep(Duration::from_millis(3)).await;
                Ok(slot)
            })
        }
    }

    /// The most requests within any one second of `sent`.
    fn busiest_second(sent: &mut [Instant]) -> usize {
        sent.sort();
        (0..sent.len())
            .map(|i| {
                sent[i..]
                    .iter()
                    .take_while(|&&t| t.duration_since(sent[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn two_invocations_share_one_accounts_pace() {
        let pace = Arc::new(MemoryPace::default());
        let account = AccountId::parse("acct_1Shared").unwrap();
        let invocation =
            || Arc::new(RateLimiter::new(20.0).with_shared_pace(pace.clone(), account.clone()));
        let (first, second) = (invocation(), invocation());
        let start = Instant::now();
        let (a, b) = tokio::join!(all(&first, 100), all(&second, 100));
        // 200 requests at 20/s together, not 40/s: 10 s, and no second
        // holds more than 20 (21 with the slot one second after the first
        // of them, each invocation turning wall-clock slots into its own
        // monotonic clock's microseconds).
        let took = start.elapsed().as_secs_f64();
        assert!((9.9..10.1).contains(&took), "{took}");
        let busiest = busiest_second(&mut [a, b].concat());
        assert!((20..=21).contains(&busiest), "{busiest}");
        // Slots taken several at a time: far fewer writes than requests.
        let calls = pace.calls.load(Ordering::Relaxed);
        assert!(calls <= 200 / 4, "{calls} takes for 200 requests");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_shared_pace_leaves_the_invocations_own() {
        struct Down;
        impl SharedPace for Down {
            fn take_slots<'a>(
                &'a self,
                _: &'a AccountId,
                _: u64,
                _: u64,
                _: u64,
            ) -> SlotFuture<'a> {
                Box::pin(async { Err(PaceError("throttled".into())) })
            }
        }
        let limiter = Arc::new(
            RateLimiter::new(10.0)
                .with_shared_pace(Arc::new(Down), AccountId::parse("acct_1Down").unwrap()),
        );
        let start = Instant::now();
        all(&limiter, 11).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
