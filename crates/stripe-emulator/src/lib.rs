//! A local double of Stripe's reporting API for tests and the demo.
//!
//! It serves `/v1/account`, `/v1/reporting/report_types[/id]`,
//! `/v1/reporting/report_runs[/id]`, `/v1/events[/id]`, `/v1/files/{id}` and
//! file contents at `/v1/files/{id}/contents`, with objects shaped as in
//! Stripe's OpenAPI description (`shared/stripe/stripe-reporting-openapi.json`,
//! checked by a contract test). It checks the API key, honours
//! `Idempotency-Key`, moves runs from `pending` to `succeeded` (or `failed`)
//! after a delay, and delivers signed webhooks and, to a local target, the
//! same events in Amazon EventBridge's shape ([`eventbridge`]).
//!
//! It serves several Stripe accounts ([`EmulatorConfig::accounts`]), one API
//! key each. As at Stripe, the key selects the account and sees only that
//! account's report types, runs, files, events and idempotency keys (another
//! account's object is a 404 `resource_missing`), each account has its own
//! rate limit, each account's webhooks are signed with its own secrets, and
//! its EventBridge events come from its own event destination.
//! Without accounts configured it serves one, made of [`EmulatorConfig::api_key`]
//! and [`EmulatorConfig::account_id`].
//!
//! Its files are report CSVs as Stripe sends them ([`csv`]): the columns
//! Stripe documents for the report type ([`report_columns`]) or the run's
//! `columns`, decimal amounts in the currency's own number of decimals,
//! timestamps in UTC and in the run's time zone, quoted free text, empty
//! fields; each exactly its File's `size`, the same bytes for the same run,
//! streamed however large. [`Emulator::file_totals`]
//! (`GET /_emulator/files/{id}/totals`) gives a file's row count and amount
//! sums, for checking a conversion against the source.
//!
//! Fault knobs (`/_emulator/faults`) inject 429s, 500s (for every account or
//! one), revoked keys, truncated or slow files, files with a byte order mark
//! and CRLF line ends, duplicated and reordered webhooks (and EventBridge
//! events); a seed
//! ([`EmulatorConfig::seed`], [`Faults::seed`]) makes their random draws
//! repeatable.
//!
//! Start it in-process with [`Emulator::start`], or as the `stripe-emulator` binary.

pub mod config;
pub mod csv;
mod delivery;
pub mod eventbridge;
pub mod report_columns;
mod server;
pub mod state;
mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use config::{
    AccountConfig, EmulatorConfig, ErrorStorm, EventBridgeConfig, EventBridgeDelivery, Faults,
    Injection, ReportTypeConfig, Stats, WebhookConfig, WebhookDelivery,
};
pub use csv::{FileSpec, FileTotals};
pub use state::RequestRecord;
use state::State;

/// The Stripe API version the emulator's objects follow.
pub const API_VERSION: &str = "2026-07-29.dahlia";

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub config: EmulatorConfig,
    /// [`EmulatorConfig::accounts`], in the order of `State::accounts`.
    pub accounts: Vec<AccountConfig>,
    /// API key → index into `accounts`.
    pub account_by_key: HashMap<String, usize>,
    pub files_base: String,
    pub http: reqwest::Client,
}

impl Shared {
    /// The index of the account whose API key is `key`.
    pub fn account_with_key(&self, key: &str) -> Option<usize> {
        self.account_by_key.get(key).copied()
    }

    /// The index of the account with id `id`.
    pub fn account_index(&self, id: &str) -> Option<usize> {
        self.accounts.iter().position(|account| account.id == id)
    }

    /// The state lock. A panic while holding it (a bug) must not wedge every
    /// later request, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Set to `true` to stop every listener.
    shutdown: tokio::sync::watch::Sender<bool>,
}

fn serve(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = server::router(shared, server::Listener(addr.to_string()));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "emulator server stopped");
        }
    });
}

/// API key → account index, refusing a configuration in which a key or an
/// id would not name exactly one account.
fn index_by_key(accounts: &[AccountConfig]) -> std::io::Result<HashMap<String, usize>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let mut by_key = HashMap::new();
    for (index, account) in accounts.iter().enumerate() {
        if accounts[..index].iter().any(|other| other.id == account.id) {
            return Err(invalid(format!(
                "account {} is configured twice",
                account.id
            )));
        }
        // Never the key itself in the message.
        if by_key.insert(account.api_key.clone(), index).is_some() {
            return Err(invalid(format!(
                "account {} has the API key of another account",
                account.id
            )));
        }
    }
    if by_key.is_empty() {
        return Err(invalid("no account configured".to_owned()));
    }
    Ok(by_key)
}

impl Emulator {
    /// Binds `listen` (use port 0 for any free port) and serves in the background.
    pub async fn start(config: EmulatorConfig, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let files_base = config
            .files_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let accounts = config.accounts();
        let account_by_key = index_by_key(&accounts)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&accounts, config.seed)),
            config,
            accounts,
            account_by_key,
            files_base,
            http,
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        serve(listener, addr, shared.clone(), rx);
        Ok(Self {
            addr,
            shared,
            shutdown: tx,
        })
    }

    /// Serves the same emulator on a second address too, e.g. `127.0.0.2:0`
    /// as a file host that is not on the client's allow-list. Requests are
    /// recorded with the listener they arrived on (`/_emulator/requests`).
    pub async fn also_listen(&self, listen: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        serve(
            listener,
            addr,
            self.shared.clone(),
            self.shutdown.subscribe(),
        );
        Ok(addr)
    }

    /// Every API and file request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `STRIPE_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The default (first) account's API key.
    pub fn api_key(&self) -> &str {
        &self.shared.accounts[0].api_key
    }

    /// Every account served, as (id, API key), the default one first.
    pub fn accounts(&self) -> Vec<(String, String)> {
        self.shared
            .accounts
            .iter()
            .map(|account| (account.id.clone(), account.api_key.clone()))
            .collect()
    }

    /// The API key of account `account` (`acct_...`).
    pub fn api_key_of(&self, account: &str) -> Option<&str> {
        let index = self.shared.account_index(account)?;
        Some(&self.shared.accounts[index].api_key)
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        server::apply_faults(&self.shared, faults);
    }

    /// Forgets every idempotency key, as if Stripe's 24-hour window had
    /// passed: a create with a key seen before makes a new run. Returns how
    /// many keys were forgotten (`POST /_emulator/idempotency/expire`).
    pub fn expire_idempotency_keys(&self) -> usize {
        server::expire_idempotency_keys(&self.shared)
    }

    /// Every webhook delivery attempt so far and its answer, oldest first.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.lock().webhook_log.clone()
    }

    /// Every EventBridge delivery attempt so far and its answer, oldest
    /// first (`GET /_emulator/eventbridge`).
    pub fn eventbridge_deliveries(&self) -> Vec<EventBridgeDelivery> {
        self.shared.lock().eventbridge_log.clone()
    }

    /// The id of account `account`'s event destination (`ed_...`), as its
    /// EventBridge events' `source` names it
    /// ([`AccountConfig::event_destination_id`]).
    pub fn event_destination_of(&self, account: &str) -> Option<String> {
        let index = self.shared.account_index(account)?;
        Some(self.shared.accounts[index].event_destination_id(self.shared.config.livemode))
    }

    /// Moves a report type's `data_available_end` in the default (first)
    /// account and sends `reporting.report_type.updated`.
    pub fn set_data_available_end(&self, report_type: &str, end: i64) -> bool {
        server::update_report_type(&self.shared, 0, report_type, None, Some(end)).is_some()
    }

    /// [`Emulator::set_data_available_end`] in account `account` (`acct_...`);
    /// `false` when the account or its report type does not exist.
    pub fn set_data_available_end_in(&self, account: &str, report_type: &str, end: i64) -> bool {
        self.shared.account_index(account).is_some_and(|index| {
            server::update_report_type(&self.shared, index, report_type, None, Some(end)).is_some()
        })
    }

    /// SHA-256 and size of a file the emulator serves, whichever account's.
    pub fn file_digest(&self, file_id: &str) -> Option<(String, u64)> {
        server::file_digest(&self.shared, file_id)
    }

    /// The expected totals of a file the emulator serves, whichever
    /// account's: its row count and the exact sum of each amount column per
    /// currency (`GET /_emulator/files/{id}/totals`), computed by generating
    /// the file, so that a test checks a conversion against the source.
    pub fn file_totals(&self, file_id: &str) -> Option<FileTotals> {
        server::file_totals(&self.shared, file_id)
    }

    /// Every run of the default (first) account, oldest first, as the API shows them.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        server::runs_json(&self.shared, 0)
    }

    /// Every run of account `account` (`acct_...`), oldest first, as its key
    /// sees them; none for an unknown account.
    pub fn runs_of(&self, account: &str) -> Vec<serde_json::Value> {
        self.shared
            .account_index(account)
            .map(|index| server::runs_json(&self.shared, index))
            .unwrap_or_default()
    }

    /// Stops serving and waits briefly for open connections.
    pub fn stop(self) {
        // Drop sends the signal.
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
