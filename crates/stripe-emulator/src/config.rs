//! What the emulator serves and how it misbehaves.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// The longest error storm; a longer (or infinite) `seconds` is cut to this.
pub const MAX_STORM: Duration = Duration::from_secs(7 * 86_400);

/// `seconds` as a [`Duration`] without panicking: negative or NaN is zero,
/// anything above `cap` (infinity included) is `cap`.
pub fn duration_from_secs(seconds: f64, cap: Duration) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).map_or(cap, |d| d.min(cap))
}

/// One report type the emulator knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportTypeConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Defaults to `data_available_end - 365 days`.
    #[serde(default)]
    pub data_available_start: Option<i64>,
    /// Defaults to the last UTC midnight at least 12 hours ago (as Stripe publishes).
    #[serde(default)]
    pub data_available_end: Option<i64>,
    /// The columns of a run without `columns`, and the type's
    /// `default_columns`; by default every column Stripe documents for the
    /// type ([`crate::report_columns`]).
    #[serde(default)]
    pub default_columns: Option<Vec<String>>,
    /// Size in bytes of each run's file (default 4 KiB): exact, whatever
    /// the columns (see [`crate::csv`] for how).
    #[serde(default)]
    pub file_size: Option<u64>,
    /// Every run of this type fails.
    #[serde(default)]
    pub fail: bool,
    /// The first N runs of this type fail, later ones succeed.
    #[serde(default)]
    pub fail_first_runs: u32,
}

impl ReportTypeConfig {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            data_available_start: None,
            data_available_end: None,
            default_columns: None,
            file_size: None,
            fail: false,
            fail_first_runs: 0,
        }
    }
}

/// The report types served when none are configured.
pub fn default_report_types() -> Vec<ReportTypeConfig> {
    [
        "balance.summary.1",
        "balance_change_from_activity.itemized.3",
        "payouts.itemized.3",
    ]
    .into_iter()
    .map(ReportTypeConfig::new)
    .collect()
}

/// Where and how signed webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// Each delivery carries one `v1` per secret (several while rolling).
    pub secrets: Vec<String>,
    /// Deliveries answered with a non-2xx status are retried this many times.
    pub max_attempts: u32,
    pub retry_delay: Duration,
}

/// Where and how events in Amazon EventBridge's shape are delivered
/// ([`crate::eventbridge`]).
#[derive(Debug, Clone)]
pub struct EventBridgeConfig {
    /// The local target each event is POSTed to (one EventBridge event per request).
    pub url: String,
    /// Deliveries answered with a non-2xx status are retried this many times.
    pub max_attempts: u32,
    pub retry_delay: Duration,
}

/// One Stripe account the emulator serves: its API key selects it, and it has
/// its own report types, runs, files, events, idempotency keys and rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Stripe's account id, `acct_...`, as `GET /v1/account` answers it.
    pub id: String,
    pub api_key: String,
    /// Its webhooks are signed with these (one `v1` per secret); empty means
    /// the [`WebhookConfig::secrets`].
    #[serde(default)]
    pub webhook_secrets: Vec<String>,
    /// `None` means [`EmulatorConfig::report_types`].
    #[serde(default)]
    pub report_types: Option<Vec<ReportTypeConfig>>,
    /// The id of its Stripe event destination (`ed_...`) sending to Amazon
    /// EventBridge: its events' `source` is `aws.partner/stripe.com/<id>`.
    /// `None` means [`AccountConfig::event_destination_id`]'s default.
    #[serde(default)]
    pub event_destination: Option<String>,
}

impl AccountConfig {
    /// An account with the emulator's shared webhook secrets and report types.
    pub fn new(id: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            api_key: api_key.into(),
            webhook_secrets: Vec::new(),
            report_types: None,
            event_destination: None,
        }
    }

    /// The id of the account's event destination: [`AccountConfig::event_destination`]
    /// when set, else `ed_test_` (`ed_` in live mode) followed by the account
    /// id without `acct_`, e.g. `ed_test_1EmulatorDefault00` for
    /// `acct_1EmulatorDefault00`.
    pub fn event_destination_id(&self, livemode: bool) -> String {
        if let Some(id) = &self.event_destination {
            return id.clone();
        }
        let mode = if livemode { "ed_" } else { "ed_test_" };
        let tail = self.id.strip_prefix("acct_").unwrap_or(&self.id);
        format!("{mode}{tail}")
    }
}

/// The id of the one account served when [`EmulatorConfig::accounts`] is empty.
pub const DEFAULT_ACCOUNT_ID: &str = "acct_1EmulatorDefault00";

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The key of the one account served when `accounts` is empty.
    pub api_key: String,
    /// The id of the one account served when `accounts` is empty.
    pub account_id: String,
    /// The accounts served; when empty, one account made of `account_id`,
    /// `api_key`, the webhook's secrets and `report_types`.
    pub accounts: Vec<AccountConfig>,
    /// The report types of every account that does not list its own.
    pub report_types: Vec<ReportTypeConfig>,
    /// How long a run stays `pending`.
    pub run_delay: Duration,
    pub webhook: Option<WebhookConfig>,
    /// Where events also go in Amazon EventBridge's shape (none when `None`),
    /// independently of the webhook.
    pub eventbridge: Option<EventBridgeConfig>,
    /// Base URL of file contents in `result.url`; defaults to the emulator's own address.
    pub files_base_url: Option<String>,
    pub livemode: bool,
    /// Seeds the emulator's random decisions (error-storm draws, webhook
    /// and EventBridge shuffle delays, EventBridge event ids): the same seed
    /// makes the same decisions. Unseeded (from the OS) when `None`. Stripe
    /// object ids stay random either way.
    pub seed: Option<u64>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            api_key: "sk_test_emulator".to_owned(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            accounts: Vec::new(),
            report_types: default_report_types(),
            run_delay: Duration::from_millis(500),
            webhook: None,
            eventbridge: None,
            files_base_url: None,
            livemode: false,
            seed: None,
        }
    }
}

impl EmulatorConfig {
    /// The accounts served, first the default one (the one [`crate::Emulator::api_key`]
    /// and the admin routes without `?account=` act on), with their webhook
    /// secrets and report types filled in from the shared settings.
    pub fn accounts(&self) -> Vec<AccountConfig> {
        let configured = if self.accounts.is_empty() {
            vec![AccountConfig::new(&self.account_id, &self.api_key)]
        } else {
            self.accounts.clone()
        };
        configured
            .into_iter()
            .map(|mut account| {
                if account.webhook_secrets.is_empty()
                    && let Some(webhook) = &self.webhook
                {
                    account.webhook_secrets = webhook.secrets.clone();
                }
                account
                    .report_types
                    .get_or_insert_with(|| self.report_types.clone());
                account
            })
            .collect()
    }
}

/// A response injected for matching API requests, `times` times.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Injection {
    /// Requests whose path starts with this (e.g. `/v1/reporting/report_runs`).
    pub path_prefix: String,
    #[serde(default)]
    pub method: Option<String>,
    pub status: u16,
    /// Sent as `Stripe-Should-Retry` when set.
    #[serde(default)]
    pub should_retry: Option<bool>,
    #[serde(default = "one")]
    pub times: u32,
    /// Sent as `Retry-After` when set, verbatim (any text, absurd values too).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Answer with this body (as JSON) instead of Stripe's error object: a
    /// `200` with missing fields or wrong types, or a body that is not JSON.
    #[serde(default)]
    pub body: Option<String>,
    /// Only requests made with this account's key (`acct_...`) match; any
    /// account's when `None`.
    #[serde(default)]
    pub account: Option<String>,
}

/// A single `500` to the next API request of any account: set the fields that matter.
impl Default for Injection {
    fn default() -> Self {
        Self {
            path_prefix: String::new(),
            method: None,
            status: 500,
            should_retry: None,
            times: one(),
            retry_after: None,
            body: None,
            account: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// A random share of API requests answered with an error until a deadline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorStorm {
    pub status: u16,
    /// 0.0–1.0.
    pub fraction: f64,
    #[serde(default)]
    pub should_retry: Option<bool>,
    /// Seconds the storm lasts from when it is set (at most [`MAX_STORM`];
    /// a negative or NaN value is no storm).
    pub seconds: f64,
    /// Only requests made with this account's key (`acct_...`) are drawn
    /// from; any account's when `None`.
    #[serde(default)]
    pub account: Option<String>,
}

/// `500` to every request of any account, for no time yet: set `seconds`.
impl Default for ErrorStorm {
    fn default() -> Self {
        Self {
            status: 500,
            fraction: 1.0,
            should_retry: None,
            seconds: 0.0,
            account: None,
        }
    }
}

/// Fault knobs, replaced as a whole by `POST /_emulator/faults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub inject: Vec<Injection>,
    #[serde(default)]
    pub storm: Option<ErrorStorm>,
    /// API requests per second of each account above which Stripe's 429
    /// `rate_limit` is answered (each account's key has its own budget, as at
    /// Stripe), counted over the last second: Stripe's test mode allows 25.
    #[serde(default)]
    pub rate_limit_rps: Option<u32>,
    /// The same for a request made with a live-mode key (`sk_live_`,
    /// `rk_live_`), when set (else `rate_limit_rps`): Stripe's live mode allows 100.
    #[serde(default)]
    pub live_rate_limit_rps: Option<u32>,
    /// API requests per second of each endpoint of each account (a method
    /// and a path without its ids: `POST /v1/reporting/report_runs`,
    /// `GET /v1/reporting/report_runs/{id}`), counted as well as the
    /// account's: Stripe's default is 25 in either mode ("individual API
    /// endpoints (unless otherwise noted)", docs.stripe.com/rate-limits).
    #[serde(default)]
    pub endpoint_rate_limit_rps: Option<u32>,
    /// Every API answer (not file contents) comes this many milliseconds
    /// after its request: Stripe's answer time, for measuring how many
    /// requests a client must keep in flight to hold its pace.
    #[serde(default)]
    pub api_latency_ms: u64,
    /// The next N file downloads are cut after half of the bytes.
    #[serde(default)]
    pub truncate_files: u32,
    /// File bodies are sent at this rate.
    #[serde(default)]
    pub file_bytes_per_sec: Option<u64>,
    /// Files of runs created while set start with a UTF-8 byte order mark
    /// (Stripe's behaviour there is undocumented; readers must cope). The
    /// mark counts in the file's `size`.
    #[serde(default)]
    pub files_byte_order_mark: bool,
    /// Files of runs created while set end their lines with CRLF instead of LF.
    #[serde(default)]
    pub files_crlf: bool,
    #[serde(default = "yes")]
    pub webhooks_enabled: bool,
    /// Events are delivered to the EventBridge target
    /// ([`EmulatorConfig::eventbridge`]), when one is configured.
    #[serde(default = "yes")]
    pub eventbridge_enabled: bool,
    /// Each event is delivered this many extra times (as a webhook, and to
    /// EventBridge as that many more EventBridge events with new ids).
    #[serde(default)]
    pub webhook_duplicates: u32,
    /// Each delivery (webhook or EventBridge) waits a random 0..N ms first,
    /// so deliveries arrive out of order.
    #[serde(default)]
    pub webhook_shuffle_ms: u64,
    /// File contents answer `302` to this base URL (same path), once per download.
    #[serde(default)]
    pub file_redirect_base: Option<String>,
    /// Replaces the default (first) account's webhook signing secrets
    /// (secret rolling).
    #[serde(default)]
    pub webhook_secrets: Option<Vec<String>>,
    /// Replaces these accounts' webhook signing secrets, by account id; for
    /// the default account this wins over `webhook_secrets`.
    #[serde(default)]
    pub account_webhook_secrets: Option<BTreeMap<String, Vec<String>>>,
    /// Every request with these accounts' keys is answered Stripe's 401 for
    /// an expired (revoked) key.
    #[serde(default)]
    pub revoked_accounts: Vec<String>,
    /// Reseeds the random decisions (error-storm draws, shuffle delays,
    /// EventBridge event ids) when these faults are applied, so that the same seed makes
    /// the same decisions from here on. `None` keeps the current generator.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            inject: Vec::new(),
            storm: None,
            rate_limit_rps: None,
            live_rate_limit_rps: None,
            endpoint_rate_limit_rps: None,
            api_latency_ms: 0,
            truncate_files: 0,
            file_bytes_per_sec: None,
            files_byte_order_mark: false,
            files_crlf: false,
            webhooks_enabled: true,
            eventbridge_enabled: true,
            webhook_duplicates: 0,
            webhook_shuffle_ms: 0,
            file_redirect_base: None,
            webhook_secrets: None,
            account_webhook_secrets: None,
            revoked_accounts: Vec::new(),
            seed: None,
        }
    }
}

/// Counters a test reads to check what happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub api_requests: u64,
    pub runs_created: u64,
    pub idempotent_replays: u64,
    pub rate_limited: u64,
    pub injected_errors: u64,
    pub unauthorized: u64,
    pub file_downloads: u64,
    pub files_truncated: u64,
    pub webhook_deliveries: u64,
    pub webhook_failures: u64,
    pub events: u64,
    /// Attempts to deliver to the EventBridge target, and those not answered 2xx.
    pub eventbridge_deliveries: u64,
    pub eventbridge_failures: u64,
}

/// One webhook delivery attempt and how the endpoint answered it
/// (`GET /_emulator/webhooks`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The account whose event it is (and whose secrets signed it).
    pub account: String,
    /// The event's id and type.
    pub event: String,
    pub event_type: String,
    /// Which copy of the event (0 is the original, then the duplicates).
    pub copy: u32,
    /// 1 for the first attempt of this copy, then each retry.
    pub attempt: u32,
    /// The HTTP status the endpoint answered, or `None` when no answer came.
    pub status: Option<u16>,
    /// Why no answer came (connection refused, timeout).
    pub error: Option<String>,
}

/// One attempt to deliver an event to the EventBridge target and how it
/// answered (`GET /_emulator/eventbridge`): a webhook delivery's fields
/// (flattened into the same JSON object) and the EventBridge event's `id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventBridgeDelivery {
    /// The account (whose event destination sent it), the Stripe event, the
    /// copy and attempt, and how the target answered.
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// The EventBridge event's `id`: new for each copy, the same for each
    /// attempt of one copy.
    pub eventbridge_id: String,
}
