//! The Stripe credentials while a function is warm (SPEC "Secrets"): read at
//! cold start, kept at most [`MAX_AGE`], re-read before use when older. A
//! webhook whose signature fails, or a use that finds the template's
//! placeholder, may ask for a re-read now ([`SecretsCache::reread_now`]), at
//! most once per [`REREAD_EVERY`] across every caller. A read that fails
//! after the first success keeps the last good values and logs a warning
//! (the error, never a value). Values given directly (`STRIPE_API_KEY`,
//! `STRIPE_WEBHOOK_SECRET`) are never re-read.
//!
//! The reader (Secrets Manager, in `aws::secrets`) and the clock are
//! injected, so tests move time on by hand.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::domain::config::{ConfigError, StripeAccounts};

/// Values older than this are re-read before use.
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// Re-reads asked for by a failed signature or a placeholder, at most one per
/// this, across every caller (a flood of forged deliveries costs one
/// `GetSecretValue` a minute); also the wait after a failed read.
pub const REREAD_EVERY: Duration = Duration::from_secs(60);

/// Reads the credentials from where they live.
pub trait SecretReader: Send + Sync {
    /// One read. The error is one line naming the variable, never a value.
    fn read(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<StripeAccounts, ConfigError>> + Send + '_>>;
}

/// A monotonic clock: the time since some fixed origin.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

struct State {
    values: StripeAccounts,
    /// When the values were last read successfully.
    read_at: Duration,
    /// No re-read for staleness before this (set after a failed read, so an
    /// outage costs one attempt a minute, not one per request).
    retry_at: Duration,
    /// When a re-read was last asked for ([`SecretsCache::reread_now`]).
    forced_at: Option<Duration>,
}

struct Inner {
    /// `None`: values given directly, never re-read.
    reader: Option<Arc<dyn SecretReader>>,
    clock: Arc<dyn Clock>,
    /// Held across a read, so concurrent callers wait for one read.
    state: tokio::sync::Mutex<State>,
}

/// The credentials of a warm function. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct SecretsCache(Arc<Inner>);

impl std::fmt::Debug for SecretsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsCache")
            .field("rereads", &self.0.reader.is_some())
            .finish_non_exhaustive()
    }
}

impl From<StripeAccounts> for SecretsCache {
    fn from(values: StripeAccounts) -> Self {
        Self::fixed(values)
    }
}

impl SecretsCache {
    /// Values given directly: never re-read.
    pub fn fixed(values: StripeAccounts) -> Self {
        Self(Arc::new(Inner {
            reader: None,
            clock: Arc::new(SystemClock::new()),
            state: tokio::sync::Mutex::new(State {
                values,
                read_at: Duration::ZERO,
                retry_at: Duration::ZERO,
                forced_at: None,
            }),
        }))
    }

    /// The first read, at cold start: its failure stops the function with
    /// the reader's one line.
    pub async fn load(
        reader: Arc<dyn SecretReader>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let values = reader.read().await?;
        let now = clock.now();
        Ok(Self(Arc::new(Inner {
            reader: Some(reader),
            clock,
            state: tokio::sync::Mutex::new(State {
                values,
                read_at: now,
                retry_at: now,
                forced_at: None,
            }),
        })))
    }

    /// Whether the values can change while the function is warm.
    pub fn rereads(&self) -> bool {
        self.0.reader.is_some()
    }

    /// The values to use now: re-read first when older than [`MAX_AGE`].
    pub async fn current(&self) -> StripeAccounts {
        let mut state = self.0.state.lock().await;
        if let Some(reader) = &self.0.reader {
            let now = self.0.clock.now();
            if now.saturating_sub(state.read_at) >= MAX_AGE && now >= state.retry_at {
                self.read_into(reader.as_ref(), &mut state, now).await;
            }
        }
        state.values.clone()
    }

    /// Re-reads now, unless a re-read was asked for less than
    /// [`REREAD_EVERY`] ago (by anyone) or the values never change. `Some`
    /// with the values when a read succeeded.
    pub async fn reread_now(&self) -> Option<StripeAccounts> {
        let reader = self.0.reader.as_ref()?;
        let mut state = self.0.state.lock().await;
        let now = self.0.clock.now();
        if state
            .forced_at
            .is_some_and(|at| now.saturating_sub(at) < REREAD_EVERY)
        {
            return None;
        }
        state.forced_at = Some(now);
        self.read_into(reader.as_ref(), &mut state, now)
            .await
            .then(|| state.values.clone())
    }

    /// One read into `state`; whether it succeeded. A failure keeps the last
    /// good values and waits [`REREAD_EVERY`] before the next attempt.
    async fn read_into(&self, reader: &dyn SecretReader, state: &mut State, now: Duration) -> bool {
        match reader.read().await {
            Ok(values) => {
                let now = self.0.clock.now().max(now);
                state.values = values;
                state.read_at = now;
                state.retry_at = now;
                true
            }
            Err(err) => {
                state.retry_at = now + REREAD_EVERY;
                warn!(
                    error = %err,
                    age_secs = now.saturating_sub(state.read_at).as_secs(),
                    "cannot re-read the Stripe secret: keeping the values read before"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::StripeSecrets;
    use crate::domain::secret::SecretString;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Hand(Mutex<Duration>);
    impl Clock for Hand {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }
    impl Hand {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    /// Answers the JSON it holds, or fails while it holds `None`.
    #[derive(Default)]
    struct Scripted {
        json: Mutex<Option<String>>,
        reads: AtomicUsize,
    }
    impl Scripted {
        fn set(&self, json: Option<&str>) {
            *self.json.lock().unwrap() = json.map(str::to_owned);
        }
    }
    impl SecretReader for Scripted {
        fn read(
            &self,
        ) -> Pin<Box<dyn Future<Output = Result<StripeAccounts, ConfigError>> + Send + '_>>
        {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let json = self.json.lock().unwrap().clone();
            Box::pin(async move {
                match json {
                    Some(json) => StripeAccounts::from_secret_json(&json),
                    None => Err(ConfigError::new(
                        "STRIPE_SECRET_ARN",
                        "cannot read the secret",
                    )),
                }
            })
        }
    }

    /// The key the cache holds now (the one-account shape).
    async fn api_key(cache: &SecretsCache) -> String {
        let values = cache.current().await;
        values.entries()[0]
            .require_api_key()
            .map(|key| key.expose().to_owned())
            .unwrap_or_default()
    }

    fn key(n: u32) -> String {
        format!(r#"{{"api_key":"sk_test_{n}","webhook_secret":"whsec_{n}"}}"#)
    }

    async fn cache() -> (SecretsCache, Arc<Scripted>, Arc<Hand>) {
        let reader = Arc::new(Scripted::default());
        reader.set(Some(&key(1)));
        let clock = Arc::new(Hand::default());
        let cache = SecretsCache::load(reader.clone(), clock.clone())
            .await
            .unwrap();
        (cache, reader, clock)
    }

    #[tokio::test]
    async fn values_are_kept_five_minutes_then_read_again() {
        let (cache, reader, clock) = cache().await;
        reader.set(Some(&key(2)));
        clock.advance(MAX_AGE - Duration::from_secs(1));
        assert_eq!(api_key(&cache).await, "sk_test_1");
        clock.advance(Duration::from_secs(1));
        assert_eq!(api_key(&cache).await, "sk_test_2");
        assert_eq!(reader.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_keeps_the_last_good_values_and_waits_a_minute() {
        let (cache, reader, clock) = cache().await;
        reader.set(None);
        clock.advance(MAX_AGE);
        assert_eq!(api_key(&cache).await, "sk_test_1");
        assert_eq!(api_key(&cache).await, "sk_test_1");
        assert_eq!(
            reader.reads.load(Ordering::SeqCst),
            2,
            "one attempt, not one per use"
        );
        reader.set(Some(&key(3)));
        clock.advance(REREAD_EVERY);
        assert_eq!(api_key(&cache).await, "sk_test_3");
    }

    #[tokio::test]
    async fn rereads_asked_for_happen_at_most_once_a_minute() {
        let (cache, reader, clock) = cache().await;
        reader.set(Some(&key(2)));
        assert!(cache.reread_now().await.is_some());
        assert!(cache.reread_now().await.is_none());
        clock.advance(REREAD_EVERY - Duration::from_secs(1));
        assert!(cache.reread_now().await.is_none());
        clock.advance(Duration::from_secs(1));
        assert!(cache.reread_now().await.is_some());
        assert_eq!(reader.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn values_given_directly_are_never_read_again() {
        let cache = SecretsCache::fixed(StripeAccounts::one(StripeSecrets::given(
            Some(SecretString::new("sk_test_direct")),
            vec![],
        )));
        assert!(!cache.rereads());
        assert!(cache.reread_now().await.is_none());
        assert_eq!(api_key(&cache).await, "sk_test_direct");
    }
}
