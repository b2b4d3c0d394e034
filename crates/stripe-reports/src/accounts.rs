//! The configured Stripe accounts of a warm function (SPEC "Accounts").
//!
//! An account's id is the one Stripe reports for its key (`GET /v1/account`),
//! asked once per key and remembered for the life of the function: at cold
//! start for every key, and again only for a key that changed (a rotation in
//! Secrets Manager) or could not be checked (then after [`RECHECK_EVERY`]
//! when Stripe refused it, [`RECHECK_TRANSIENT_AFTER`] when no answer came). A key is handed out only for the account Stripe says
//! it belongs to, so nothing of one account is ever sent with another's key.
//!
//! At cold start a configured id that differs from its key's, or two entries
//! of one account, stop the function with one line naming the account. A key
//! that cannot be checked (revoked, Stripe unreachable, still the
//! template's placeholder) stops nothing: its account is [`AccountState::Failing`],
//! reported and alarmed by the functions, and tried again; the other
//! accounts work on.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::warn;

use crate::domain::account::AccountId;
use crate::domain::config::{ConfigError, StripeAccounts, StripeSecrets};
use crate::domain::secret::SecretString;
use crate::secrets::SecretsCache;
use crate::stripe::StripeError;

/// A key Stripe refused (401, 403) is asked about again after this long.
pub const RECHECK_EVERY: Duration = Duration::from_secs(60);
/// A key whose check got no answer (a 429 storm, an outage) is asked about
/// again after this long: the account is likely fine, and waits little.
pub const RECHECK_TRANSIENT_AFTER: Duration = Duration::from_secs(5);

/// Asks Stripe whose key a key is.
pub trait AccountLookup: Send + Sync {
    /// The id of the account `key` belongs to (`GET /v1/account` with it).
    fn account_of<'a>(
        &'a self,
        key: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<AccountId, StripeError>> + Send + 'a>>;
}

/// Whether an account can be worked now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    /// Its key is Stripe's key for this account.
    Ready(AccountId),
    /// It cannot be worked now; `account` names it (its id when configured),
    /// `reason` says why in one line without any secret.
    Failing { account: String, reason: String },
}

impl AccountState {
    pub fn ready(&self) -> Option<&AccountId> {
        match self {
            AccountState::Ready(id) => Some(id),
            AccountState::Failing { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account {0} is not configured")]
    NotConfigured(AccountId),
    #[error("account {account} cannot be used now: {reason}")]
    Failing { account: String, reason: String },
    /// No configured account names this EventBridge event destination (and
    /// more than one account, or one naming others, is configured).
    #[error(
        "no configured account has event destination {0}: add \"event_destination\": \"{0}\" to the account it belongs to"
    )]
    UnknownDestination(String),
}

/// The endpoint secrets of one configured account, for the webhook.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    /// `None` while the id of a one-account configuration is not known
    /// (its key could not be checked): a delivery it signs cannot be
    /// attributed yet, and is answered 500 so Stripe delivers it again.
    pub account: Option<AccountId>,
    pub secrets: Vec<SecretString>,
}

type Fingerprint = [u8; 32];

#[derive(Debug, Clone)]
enum Check {
    Belongs(AccountId),
    /// The check failed at `at`; it is due again at `at + after`.
    Failed {
        reason: String,
        at: Instant,
        after: Duration,
    },
}

/// The configured accounts and what Stripe said of their keys.
pub struct Accounts {
    secrets: SecretsCache,
    /// `None`: configured ids are taken as they are (tests, fuzzing).
    lookup: Option<Arc<dyn AccountLookup>>,
    checks: tokio::sync::Mutex<HashMap<Fingerprint, Check>>,
    /// The id learned for the one-account shape (no configured id): a key
    /// rotated to another account's while warm is refused, not followed
    /// (its files would move to another `account=`, its runs be stranded).
    learned: std::sync::Mutex<Option<AccountId>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("checked", &self.lookup.is_some())
            .finish_non_exhaustive()
    }
}

fn fingerprint(key: &SecretString) -> Fingerprint {
    Sha256::digest(key.expose().as_bytes()).into()
}

/// How an entry is named in lines and errors: its configured id, or, in the
/// one-account shape, the account of the configured key.
fn entry_name(entry: &StripeSecrets) -> String {
    entry
        .account
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "the account of the configured key".to_owned())
}

impl Accounts {
    /// Cold start: checks every key with Stripe (all at once), see
    /// [`Accounts::check_keys`].
    pub async fn load(
        secrets: SecretsCache,
        lookup: Arc<dyn AccountLookup>,
    ) -> Result<Self, ConfigError> {
        let accounts = Self::unchecked(secrets, lookup);
        accounts.check_keys().await?;
        Ok(accounts)
    }

    /// The accounts before any key is checked: each is asked about at its
    /// first use, or all at once by [`Accounts::check_keys`].
    pub fn unchecked(secrets: SecretsCache, lookup: Arc<dyn AccountLookup>) -> Self {
        Self {
            secrets,
            lookup: Some(lookup),
            checks: Default::default(),
            learned: Default::default(),
        }
    }

    /// The cold start's check of every key with Stripe (all at once). A
    /// configured id that is not its key's, or two entries of one account,
    /// is the one line that stops the function; a key that cannot be checked
    /// is logged and checked again later.
    pub async fn check_keys(&self) -> Result<(), ConfigError> {
        let variable = self.variable().await;
        for state in self.states().await {
            if let AccountState::Failing { account, reason } = state {
                if reason.starts_with(MISMATCH) || reason.starts_with(DUPLICATE) {
                    return Err(ConfigError::new(variable, format!("{account}: {reason}")));
                }
                warn!(account = %account, reason = %reason, "Stripe account not usable now: its work waits, the others go on");
            }
        }
        Ok(())
    }

    /// Accounts whose configured ids are taken as they are, without asking
    /// Stripe (tests, fuzzing). An entry without an id is failing.
    pub fn trusted(secrets: impl Into<SecretsCache>) -> Self {
        Self {
            secrets: secrets.into(),
            lookup: None,
            checks: Default::default(),
            learned: Default::default(),
        }
    }

    pub fn secrets(&self) -> &SecretsCache {
        &self.secrets
    }

    /// The variable the configuration came from, for error lines.
    async fn variable(&self) -> &'static str {
        if self.secrets.rereads() {
            "STRIPE_SECRET_ARN"
        } else if self.secrets.current().await.entries().len() > 1
            || self.secrets.current().await.entries()[0].account.is_some()
        {
            "STRIPE_ACCOUNTS"
        } else {
            "STRIPE_API_KEY"
        }
    }

    /// The configured entries now; a re-read is asked for first when one of
    /// them has no usable key (the template's placeholder, filled since).
    pub async fn entries(&self) -> StripeAccounts {
        let values = self.secrets.current().await;
        let unusable = values
            .entries()
            .iter()
            .any(|entry| entry.require_api_key().is_err());
        if unusable && let Some(fresh) = self.secrets.reread_now().await {
            return fresh;
        }
        values
    }

    /// Every configured account and whether it can be worked now, in the
    /// order configured.
    pub async fn states(&self) -> Vec<AccountState> {
        let entries = self.entries().await;
        // Checked all at once: one slow or refused key does not hold up the others.
        let checked = futures_util::future::join_all(
            entries.entries().iter().map(|entry| self.state_of(entry)),
        )
        .await;
        let mut states: Vec<AccountState> = Vec::with_capacity(checked.len());
        for (entry, state) in entries.entries().iter().zip(checked) {
            // Two entries whose keys are one account's would work it twice.
            let state = match state {
                AccountState::Ready(id) if states.iter().any(|s| s.ready() == Some(&id)) => {
                    AccountState::Failing {
                        account: entry_name(entry),
                        reason: format!("{DUPLICATE} ({id})"),
                    }
                }
                other => other,
            };
            states.push(state);
        }
        states
    }

    /// The accounts that can be worked now.
    pub async fn ready(&self) -> Vec<AccountId> {
        self.states()
            .await
            .into_iter()
            .filter_map(|state| state.ready().cloned())
            .collect()
    }

    /// The ids of the configured accounts, whether they can be worked now
    /// or not; `None` while the id of a one-account configuration is not
    /// known (its key could not be checked yet).
    pub async fn configured(&self) -> Option<Vec<AccountId>> {
        let entries = self.entries().await;
        let mut ids = Vec::with_capacity(entries.entries().len());
        for entry in entries.entries() {
            match &entry.account {
                Some(id) => ids.push(id.clone()),
                None => ids.push(self.state_of(entry).await.ready()?.clone()),
            }
        }
        Some(ids)
    }

    /// The key to send for `account`'s objects: only a key Stripe said is
    /// this account's.
    pub async fn api_key(&self, account: &AccountId) -> Result<SecretString, AccountError> {
        let entries = self.entries().await;
        let mut failing = None;
        for entry in entries.entries() {
            if entry.account.as_ref().is_some_and(|id| id != account) {
                continue;
            }
            match self.state_of(entry).await {
                AccountState::Ready(id) if id == *account => {
                    if let Some(key) = &entry.api_key {
                        return Ok(key.clone());
                    }
                }
                AccountState::Ready(_) => {}
                AccountState::Failing { account, reason } => {
                    failing = Some(AccountError::Failing { account, reason })
                }
            }
        }
        Err(failing.unwrap_or_else(|| AccountError::NotConfigured(account.clone())))
    }

    /// The account an event from Stripe's EventBridge partner source
    /// `aws.partner/stripe.com/<destination>` is for: the one whose
    /// configuration lists `destination`, or the only account when it lists
    /// none. Anything else is [`AccountError::UnknownDestination`], never a
    /// guess; the secret is read again first (at most once a minute), so a
    /// destination added to the secret is used without a cold start.
    pub async fn account_of_destination(
        &self,
        destination: &str,
    ) -> Result<AccountId, AccountError> {
        let chosen = |values: &StripeAccounts| -> Option<StripeSecrets> {
            let entries = values.entries();
            entries
                .iter()
                .find(|entry| entry.event_destinations.iter().any(|d| d == destination))
                .or(match entries {
                    [only] if only.event_destinations.is_empty() => Some(only),
                    _ => None,
                })
                .cloned()
        };
        let mut entry = chosen(&self.secrets.current().await);
        if entry.is_none()
            && let Some(fresh) = self.secrets.reread_now().await
        {
            entry = chosen(&fresh);
        }
        let entry =
            entry.ok_or_else(|| AccountError::UnknownDestination(destination.to_owned()))?;
        match &entry.account {
            Some(id) => Ok(id.clone()),
            // The one-account shape: its id is what Stripe says of its key.
            None => match self.state_of(&entry).await {
                AccountState::Ready(id) => Ok(id),
                AccountState::Failing { account, reason } => {
                    Err(AccountError::Failing { account, reason })
                }
            },
        }
    }

    /// Whether `account`'s key is a live-mode key (`sk_live_`, `rk_live_`)
    /// or a test-mode one (`sk_test_`, `rk_test_`, sandboxes too); `None`
    /// when it has no key or another kind.
    pub async fn key_livemode(&self, account: &AccountId) -> Option<bool> {
        let values = self.secrets.current().await;
        let entries = values.entries();
        let entry = entries
            .iter()
            .find(|entry| entry.account.as_ref() == Some(account))
            .or(match entries {
                [only] if only.account.is_none() => Some(only),
                _ => None,
            })?;
        let key = entry.api_key.as_ref()?.expose();
        if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
            Some(true)
        } else if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
            Some(false)
        } else {
            None
        }
    }

    /// Cold start of the `eventbridge` function: with several accounts,
    /// events are told apart only by their destination, so at least one
    /// account must name its own.
    pub async fn require_event_destinations(&self) -> Result<(), ConfigError> {
        let values = self.secrets.current().await;
        let entries = values.entries();
        if entries.len() > 1 && entries.iter().all(|e| e.event_destinations.is_empty()) {
            return Err(ConfigError::new(
                self.variable().await,
                "several accounts are configured and none has an event_destination: an event from EventBridge \
                 could not be attributed (give each account that sends events through EventBridge \
                 \"event_destination\": \"ed_…\")",
            ));
        }
        Ok(())
    }

    /// Every account's webhook signing secrets with the account they sign
    /// for, and whether some account has none usable (no secret, or the
    /// template's placeholder): then a delivery that matches no secret may
    /// be that account's, and is answered 500 rather than 400.
    pub async fn signing_secrets(&self) -> (Vec<SigningSecrets>, bool) {
        let mut values = self.secrets.current().await;
        if values
            .entries()
            .iter()
            .any(|entry| entry.require_webhook_secrets().is_err())
            && let Some(fresh) = self.secrets.reread_now().await
        {
            values = fresh;
        }
        self.signing_secrets_of(&values).await
    }

    /// Cold start of the webhook: every account needs a signing secret. The
    /// template's placeholder is only logged (refused at each delivery
    /// until the secret is filled, then used without a cold start).
    pub async fn require_signing_secrets(&self) -> Result<(), ConfigError> {
        for entry in self.secrets.current().await.entries() {
            match entry.require_webhook_secrets() {
                Ok(_) => {}
                Err(err) if entry.webhook_secret_is_placeholder() && self.secrets.rereads() => {
                    warn!(error = %err, "Stripe webhook secret not set yet");
                }
                Err(err) => {
                    return Err(match &entry.account {
                        Some(id) => {
                            ConfigError::new(err.variable, format!("{id}: {}", err.problem))
                        }
                        None => err,
                    });
                }
            }
        }
        Ok(())
    }

    /// The same after a signature matched none of them: the secret is read
    /// again first (at most once a minute, see [`SecretsCache::reread_now`]);
    /// `None` when it was not.
    pub async fn signing_secrets_reread(&self) -> Option<(Vec<SigningSecrets>, bool)> {
        let fresh = self.secrets.reread_now().await?;
        Some(self.signing_secrets_of(&fresh).await)
    }

    async fn signing_secrets_of(&self, values: &StripeAccounts) -> (Vec<SigningSecrets>, bool) {
        let mut usable = Vec::new();
        let mut some_unusable = false;
        for entry in values.entries() {
            let Ok(secrets) = entry.require_webhook_secrets() else {
                some_unusable = true;
                continue;
            };
            let account = match &entry.account {
                Some(id) => Some(id.clone()),
                None => self.state_of(entry).await.ready().cloned(),
            };
            usable.push(SigningSecrets {
                account,
                secrets: secrets.to_vec(),
            });
        }
        (usable, some_unusable)
    }

    /// What Stripe says of one entry's key (asked now only when not known).
    /// Two entries of one account are told apart by [`Accounts::states`];
    /// a caller working entries one by one ([`Accounts::entries`]) must.
    pub async fn state_of(&self, entry: &StripeSecrets) -> AccountState {
        let failing = |reason: String| AccountState::Failing {
            account: entry_name(entry),
            reason,
        };
        let key = match entry.require_api_key() {
            Ok(key) => key,
            Err(err) => return failing(err.problem),
        };
        let Some(lookup) = &self.lookup else {
            return match &entry.account {
                Some(id) => AccountState::Ready(id.clone()),
                None => failing("no account id is configured and keys are not checked".into()),
            };
        };
        let print = fingerprint(key);
        let check = {
            let mut checks = self.checks.lock().await;
            match checks.get_mut(&print) {
                // Due again: this caller checks it; the others meanwhile
                // keep the last answer instead of asking Stripe too.
                Some(Check::Failed { at, after, .. }) if at.elapsed() >= *after => {
                    *at = Instant::now();
                    None
                }
                known => known.cloned(),
            }
        };
        let check = match check {
            Some(check) => check,
            None => {
                // Not holding the lock across the request: other entries
                // are checked at the same time.
                let check = match lookup.account_of(key).await {
                    Ok(id) => Check::Belongs(id),
                    Err(err) => Check::Failed {
                        reason: format!(
                            "its api_key cannot be checked with Stripe (GET /v1/account): {err}"
                        ),
                        at: Instant::now(),
                        // Refused for what it is (revoked, no permission): a
                        // minute; anything else may pass on the next use.
                        after: match err.status() {
                            Some(401 | 403) => RECHECK_EVERY,
                            _ => RECHECK_TRANSIENT_AFTER,
                        },
                    },
                };
                self.checks.lock().await.insert(print, check.clone());
                check
            }
        };
        match check {
            Check::Belongs(id) => match &entry.account {
                Some(configured) if *configured != id => {
                    failing(format!("{MISMATCH} {id}, not {configured}"))
                }
                Some(_) => AccountState::Ready(id),
                None => {
                    let mut learned = self
                        .learned
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    match learned.as_ref() {
                        Some(first) if *first != id => failing(format!(
                            "{MISMATCH} {id}, not {first}, the account this function started with \
                             (give the id with the accounts shape to move to another account)"
                        )),
                        _ => {
                            *learned = Some(id.clone());
                            AccountState::Ready(id)
                        }
                    }
                }
            },
            Check::Failed { reason, .. } => failing(reason),
        }
    }
}

/// Each account's Stripe client, sharing one client's connections: it sends
/// only the key Stripe said is that account's.
#[cfg(feature = "http")]
#[derive(Clone)]
pub struct AccountClients {
    base: crate::stripe::StripeClient,
    accounts: Arc<Accounts>,
}

#[cfg(feature = "http")]
impl AccountClients {
    /// `base` is a client whose own key is never used ([`crate::stripe::ApiKey::None`]).
    pub fn new(base: crate::stripe::StripeClient, accounts: Arc<Accounts>) -> Self {
        Self { base, accounts }
    }
}

#[cfg(feature = "http")]
impl crate::ports::StripeByAccount for AccountClients {
    type Api = crate::stripe::StripeClient;
    fn for_account(&self, account: &AccountId) -> Self::Api {
        self.base.with_api_key(crate::stripe::ApiKey::Account {
            accounts: self.accounts.clone(),
            account: account.clone(),
        })
    }
}

/// The start of the reasons that stop a cold start.
const MISMATCH: &str = "its api_key is the key of";
const DUPLICATE: &str = "is the same Stripe account as an entry before it";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::PLACEHOLDER_API_KEY;
    use crate::secrets::{Clock, SecretReader};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Stripe as far as `GET /v1/account` goes: keys it knows, and a count.
    #[derive(Default)]
    struct Keys {
        owners: Mutex<HashMap<String, String>>,
        asked: AtomicUsize,
    }
    impl Keys {
        fn with(pairs: &[(&str, &str)]) -> Arc<Self> {
            let keys = Self::default();
            for (key, account) in pairs {
                keys.owners
                    .lock()
                    .unwrap()
                    .insert((*key).to_owned(), (*account).to_owned());
            }
            Arc::new(keys)
        }
    }
    impl AccountLookup for Keys {
        fn account_of<'a>(
            &'a self,
            key: &'a SecretString,
        ) -> Pin<Box<dyn Future<Output = Result<AccountId, StripeError>> + Send + 'a>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let owner = self.owners.lock().unwrap().get(key.expose()).cloned();
            Box::pin(async move {
                match owner {
                    Some(id) => Ok(AccountId::parse(&id).unwrap()),
                    None => Err(StripeError::Transport(
                        "401 Invalid API Key provided".into(),
                    )),
                }
            })
        }
    }

    fn accounts_json(entries: &[(&str, &str, &str)]) -> StripeAccounts {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|(account, key, secret)| {
                serde_json::json!({"account": account, "api_key": key, "webhook_secret": secret})
            })
            .collect();
        StripeAccounts::from_accounts_json(&serde_json::Value::Array(list).to_string()).unwrap()
    }

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).unwrap()
    }

    #[tokio::test]
    async fn each_key_is_checked_once_and_handed_out_only_for_its_account() {
        let keys = Keys::with(&[("sk_test_a", "acct_A"), ("sk_test_b", "acct_B")]);
        let accounts = Accounts::load(
            SecretsCache::fixed(accounts_json(&[
                ("acct_A", "sk_test_a", "whsec_a"),
                ("acct_B", "sk_test_b", "whsec_b"),
            ])),
            keys.clone(),
        )
        .await
        .unwrap();
        assert_eq!(accounts.ready().await, [id("acct_A"), id("acct_B")]);
        assert_eq!(
            accounts.api_key(&id("acct_B")).await.unwrap().expose(),
            "sk_test_b"
        );
        assert_eq!(
            accounts.api_key(&id("acct_C")).await,
            Err(AccountError::NotConfigured(id("acct_C")))
        );
        assert_eq!(keys.asked.load(Ordering::SeqCst), 2, "once per key");
    }

    #[tokio::test]
    async fn a_key_of_another_account_or_a_second_entry_stops_the_cold_start() {
        let keys = Keys::with(&[("sk_test_a", "acct_A"), ("sk_test_b", "acct_A")]);
        let wrong = Accounts::load(
            SecretsCache::fixed(accounts_json(&[
                ("acct_A", "sk_test_a", "whsec_a"),
                ("acct_B", "sk_test_b", "whsec_b"),
            ])),
            keys.clone(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            wrong,
            "STRIPE_ACCOUNTS: acct_B: its api_key is the key of acct_A, not acct_B"
        );
        assert!(!wrong.contains("sk_test"), "{wrong}");
        // The one-account shape: the id is learned, and a second key of
        // the same account (through STRIPE_ACCOUNTS) is refused.
        let one = Accounts::load(
            SecretsCache::fixed(StripeAccounts::one(StripeSecrets::given(
                Some(SecretString::new("sk_test_a")),
                vec![],
            ))),
            keys,
        )
        .await
        .unwrap();
        assert_eq!(one.ready().await, [id("acct_A")]);
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_checked_fails_its_account_only_and_is_asked_again_later() {
        let keys = Keys::with(&[("sk_test_b", "acct_B")]);
        let accounts = Accounts::load(
            SecretsCache::fixed(accounts_json(&[
                ("acct_A", "sk_test_revoked", "whsec_a"),
                ("acct_B", "sk_test_b", "whsec_b"),
            ])),
            keys.clone(),
        )
        .await
        .unwrap();
        let states = accounts.states().await;
        assert_eq!(states[1], AccountState::Ready(id("acct_B")));
        let AccountState::Failing { account, reason } = &states[0] else {
            panic!("{states:?}")
        };
        assert_eq!(account, "acct_A");
        assert!(reason.contains("cannot be checked"), "{reason}");
        assert!(!reason.contains("sk_test"), "{reason}");
        assert!(matches!(
            accounts.api_key(&id("acct_A")).await,
            Err(AccountError::Failing { .. })
        ));
        let asked = keys.asked.load(Ordering::SeqCst);
        accounts.states().await;
        assert_eq!(
            keys.asked.load(Ordering::SeqCst),
            asked,
            "not again at once"
        );
    }

    #[derive(Default)]
    struct Hand(std::sync::atomic::AtomicU64);
    impl Clock for Hand {
        fn now(&self) -> Duration {
            Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }
    struct Scripted(Mutex<String>);
    impl SecretReader for Scripted {
        fn read(
            &self,
        ) -> Pin<Box<dyn Future<Output = Result<StripeAccounts, ConfigError>> + Send + '_>>
        {
            let json = self.0.lock().unwrap().clone();
            Box::pin(async move { StripeAccounts::from_secret_json(&json) })
        }
    }

    #[tokio::test]
    async fn a_one_account_key_rotated_to_another_accounts_key_is_refused_not_followed() {
        let reader = Arc::new(Scripted(Mutex::new(
            r#"{"api_key":"sk_test_a"}"#.to_owned(),
        )));
        let clock = Arc::new(Hand::default());
        let cache = SecretsCache::load(reader.clone(), clock.clone())
            .await
            .unwrap();
        let keys = Keys::with(&[
            ("sk_test_a", "acct_A"),
            ("sk_test_a2", "acct_A"),
            ("sk_test_b", "acct_B"),
        ]);
        let accounts = Accounts::load(cache, keys).await.unwrap();
        assert_eq!(accounts.ready().await, [id("acct_A")]);
        // A new key of the same account is followed...
        *reader.0.lock().unwrap() = r#"{"api_key":"sk_test_a2"}"#.into();
        clock
            .0
            .fetch_add(crate::secrets::MAX_AGE.as_secs(), Ordering::SeqCst);
        assert_eq!(
            accounts.api_key(&id("acct_A")).await.unwrap().expose(),
            "sk_test_a2"
        );
        // ...a key of another account is not: its files would move.
        *reader.0.lock().unwrap() = r#"{"api_key":"sk_test_b"}"#.into();
        clock
            .0
            .fetch_add(crate::secrets::MAX_AGE.as_secs(), Ordering::SeqCst);
        let AccountState::Failing { reason, .. } = &accounts.states().await[0] else {
            panic!("a key of another account must not be followed")
        };
        assert!(
            reason.contains("the account this function started with"),
            "{reason}"
        );
        assert!(accounts.api_key(&id("acct_B")).await.is_err());
        assert!(accounts.api_key(&id("acct_A")).await.is_err());
    }

    #[tokio::test]
    async fn a_placeholder_fails_its_account_and_a_filled_secret_is_used_at_once() {
        let reader = Arc::new(Scripted(Mutex::new(format!(
            r#"{{"api_key":"{PLACEHOLDER_API_KEY}"}}"#
        ))));
        let clock = Arc::new(Hand::default());
        let cache = SecretsCache::load(reader.clone(), clock.clone())
            .await
            .unwrap();
        let keys = Keys::with(&[("sk_test_real", "acct_A")]);
        let accounts = Accounts::load(cache, keys).await.unwrap();
        let AccountState::Failing { reason, .. } = &accounts.states().await[0] else {
            panic!("a placeholder is not a key")
        };
        assert!(reason.contains("placeholder"), "{reason}");
        // Filled in Secrets Manager: a use after the minute between forced
        // re-reads reads it, without waiting out the 5-minute cache.
        *reader.0.lock().unwrap() = r#"{"api_key":"sk_test_real"}"#.into();
        clock
            .0
            .fetch_add(crate::secrets::REREAD_EVERY.as_secs(), Ordering::SeqCst);
        assert_eq!(
            accounts.api_key(&id("acct_A")).await.unwrap().expose(),
            "sk_test_real"
        );
    }

    #[tokio::test]
    async fn an_event_destination_names_exactly_one_account_or_is_refused() {
        let two = StripeAccounts::from_accounts_json(
            r#"[{"account":"acct_A","api_key":"sk_test_a","event_destination":"ed_test_A1,ed_A2"},
                {"account":"acct_B","api_key":"sk_test_b","event_destination":"ed_test_B"},
                {"account":"acct_C","api_key":"sk_test_c"}]"#,
        )
        .unwrap();
        let accounts = Accounts::trusted(SecretsCache::fixed(two));
        assert_eq!(
            accounts.account_of_destination("ed_A2").await,
            Ok(id("acct_A"))
        );
        assert_eq!(
            accounts.account_of_destination("ed_test_B").await,
            Ok(id("acct_B"))
        );
        // C lists none, but is not the only account: never a guess.
        assert_eq!(
            accounts.account_of_destination("ed_test_C").await,
            Err(AccountError::UnknownDestination("ed_test_C".into()))
        );
        assert!(accounts.require_event_destinations().await.is_ok());
        assert_eq!(accounts.key_livemode(&id("acct_A")).await, Some(false));
        assert_eq!(accounts.key_livemode(&id("acct_Z")).await, None);

        // The one-account shape: every destination is its account's, whose
        // id is what Stripe says of its key.
        let keys = Keys::with(&[("sk_test_one", "acct_One")]);
        let one = Accounts::load(
            SecretsCache::fixed(StripeAccounts::one(
                StripeSecrets::from_values(Some("sk_test_one"), None, ("STRIPE_API_KEY", ""))
                    .unwrap(),
            )),
            keys,
        )
        .await
        .unwrap();
        assert_eq!(
            one.account_of_destination("ed_anything").await,
            Ok(id("acct_One"))
        );

        // Several accounts and no destination at all: refused at cold start.
        let none = Accounts::trusted(SecretsCache::fixed(accounts_json(&[
            ("acct_A", "sk_test_a", "whsec_a"),
            ("acct_B", "sk_test_b", "whsec_b"),
        ])));
        let err = none.require_event_destinations().await.unwrap_err();
        assert!(
            err.problem.contains("none has an event_destination"),
            "{err}"
        );
    }
}
