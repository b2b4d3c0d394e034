//! Configuration from the environment (SPEC "Configuration"). Every function,
//! the local runner and the CLI read the same names. A bad value stops the
//! function at cold start with one line naming the variable and the problem;
//! secret values are never part of that line.

use std::net::IpAddr;

use serde::Deserialize;
use url::Url;

use super::account::AccountId;
use super::secret::SecretString;
use super::spec::{ReportSpec, read_specs};

/// The Stripe API version this code is built and tested against
/// (the version of `shared/stripe/stripe-reporting-openapi.json`).
pub const PINNED_STRIPE_API_VERSION: &str = "2026-07-29.dahlia";
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
pub const DEFAULT_FILE_HOSTS: &str = "files.stripe.com";
pub const DEFAULT_REPORTS: &str = r#"[{"report_type":"balance.summary.1"}]"#;
pub const DEFAULT_LOOKBACK_DAYS: u32 = 7;
pub const DEFAULT_REPORTS_PREFIX: &str = "stripe/";
/// Stripe keeps report data for years, but a lookback beyond a year is almost
/// certainly a typo (days vs. hours); backfills use the explicit backfill event.
pub const MAX_LOOKBACK_DAYS: u32 = 366;

/// A bad or missing configuration value. Displays as one line:
/// `REPORTS: report spec 0: unknown IANA timezone "Mars/Olympus"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }

    fn missing(variable: &'static str) -> Self {
        Self::new(variable, "is not set")
    }
}

/// Where the Stripe API keys and webhook secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A Secrets Manager secret holding one account,
    /// `{"api_key": …, "webhook_secret": …}`, or several, `{"accounts": [...]}`.
    SecretsManager { arn: String },
    /// `STRIPE_ACCOUNTS`, or `STRIPE_API_KEY` / `STRIPE_WEBHOOK_SECRET`,
    /// given directly (local use).
    Direct(StripeAccounts),
}

/// The values `template.yaml` writes into the secret it creates (resource
/// `StripeSecret`) until the user puts the real keys there. Refused wherever
/// secrets are read, and never sent to Stripe or used as an HMAC key (the
/// placeholder is public: a signature made with it proves nothing). A test
/// reads the template and checks it still writes exactly these.
pub const PLACEHOLDER_API_KEY: &str = "sk_live_replace_me";
pub const PLACEHOLDER_WEBHOOK_SECRET: &str = "whsec_replace_me";

/// One Stripe account's credentials. `Debug` never shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSecrets {
    /// The account id given with the credentials (the `accounts` shape);
    /// `None` in the one-account shape, where it is learned from the key.
    pub account: Option<AccountId>,
    pub api_key: Option<SecretString>,
    /// Every accepted endpoint secret: several while a secret is rolled, or
    /// for test and live endpoints pointing at the same function.
    pub webhook_secrets: Vec<SecretString>,
    /// The ids (`ed_…`) of the account's Amazon EventBridge event
    /// destinations: an event whose partner event source names one of them
    /// is this account's (SPEC "Stripe events through Amazon EventBridge").
    /// Not secret; kept beside the account's other values so one entry says
    /// everything about one account.
    pub event_destinations: Vec<String>,
    /// Fields that still hold the template's placeholder. Their values are
    /// not kept (`api_key` is `None`, `webhook_secrets` empty), and
    /// `require_*` refuses them with one line saying what to do.
    placeholder_api_key: bool,
    placeholder_webhook_secret: bool,
    /// Where the values came from (the variable an error names).
    sources: (&'static str, &'static str),
}

impl StripeSecrets {
    /// Credentials given as values (tests, the fuzz targets): no format
    /// checks, but a placeholder is still refused.
    pub fn given(api_key: Option<SecretString>, webhook_secrets: Vec<SecretString>) -> Self {
        let placeholder_api_key = api_key
            .as_ref()
            .is_some_and(|key| key.expose() == PLACEHOLDER_API_KEY);
        let placeholder_webhook_secret = webhook_secrets
            .iter()
            .any(|secret| secret.expose() == PLACEHOLDER_WEBHOOK_SECRET);
        Self {
            account: None,
            api_key: api_key.filter(|_| !placeholder_api_key),
            webhook_secrets: if placeholder_webhook_secret {
                Vec::new()
            } else {
                webhook_secrets
            },
            event_destinations: Vec::new(),
            placeholder_api_key,
            placeholder_webhook_secret,
            sources: ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"),
        }
    }

    /// The same with the account's EventBridge event destinations, from
    /// `"ed_…[,ed_…]"` as written in `source`.
    pub fn with_event_destinations(
        mut self,
        list: Option<&str>,
        source: &'static str,
    ) -> Result<Self, ConfigError> {
        self.event_destinations = match list {
            None => Vec::new(),
            Some(list) => parse_event_destinations(list, source)?,
        };
        Ok(self)
    }

    /// Builds the credentials from the two raw values; the sources name where
    /// each came from, for the error message.
    pub fn from_values(
        api_key: Option<&str>,
        webhook_secret: Option<&str>,
        (key_source, webhook_source): (&'static str, &'static str),
    ) -> Result<Self, ConfigError> {
        let source = key_source;
        let placeholder_api_key = api_key.map(str::trim) == Some(PLACEHOLDER_API_KEY);
        // While rolling, the placeholder may sit beside a real secret: the
        // field is still refused as a whole, so the mistake is seen at once.
        let placeholder_webhook_secret = webhook_secret.is_some_and(|list| {
            list.split(',')
                .any(|item| item.trim() == PLACEHOLDER_WEBHOOK_SECRET)
        });
        let api_key = match api_key.map(str::trim) {
            None | Some("") => None,
            Some(_) if placeholder_api_key => None,
            Some(key) if key.chars().any(char::is_whitespace) => {
                return Err(ConfigError::new(source, "api_key contains whitespace"));
            }
            Some(key) if !(key.starts_with("sk_") || key.starts_with("rk_")) => {
                return Err(ConfigError::new(
                    source,
                    "api_key is not a Stripe secret or restricted key (expected sk_… or rk_…)",
                ));
            }
            Some(key) => Some(SecretString::new(key)),
        };
        let webhook_secrets = match webhook_secret {
            None => Vec::new(),
            Some(_) if placeholder_webhook_secret => Vec::new(),
            Some(list) => parse_webhook_secrets(list, webhook_source)?,
        };
        Ok(Self {
            account: None,
            api_key,
            webhook_secrets,
            event_destinations: Vec::new(),
            placeholder_api_key,
            placeholder_webhook_secret,
            sources: (key_source, webhook_source),
        })
    }

    /// Parses the Secrets Manager JSON `{"api_key": "...", "webhook_secret": "whsec_...[,whsec_...]"}`.
    pub fn from_secret_json(json: &str) -> Result<Self, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            api_key: Option<String>,
            webhook_secret: Option<String>,
            event_destination: Option<DestinationList>,
        }
        // serde's message could quote part of the secret: keep only its category.
        let raw: Raw = serde_json::from_str(json).map_err(|err| {
            ConfigError::new(
                "STRIPE_SECRET_ARN",
                format!(
                    "the secret is not JSON of the form {{\"api_key\": …, \"webhook_secret\": …}} ({:?} error at line {}, column {})",
                    err.classify(),
                    err.line(),
                    err.column()
                ),
            )
        })?;
        Self::from_values(
            raw.api_key.as_deref(),
            raw.webhook_secret.as_deref(),
            ("STRIPE_SECRET_ARN", "STRIPE_SECRET_ARN"),
        )?
        .with_event_destinations(
            raw.event_destination
                .map(DestinationList::joined)
                .as_deref(),
            "STRIPE_SECRET_ARN",
        )
    }

    /// Whether the API key is the template's placeholder (refused when needed).
    pub fn api_key_is_placeholder(&self) -> bool {
        self.placeholder_api_key
    }

    /// Whether the webhook secret is the template's placeholder (refused when needed).
    pub fn webhook_secret_is_placeholder(&self) -> bool {
        self.placeholder_webhook_secret
    }

    /// The API key, or a clear error for a function that needs it.
    pub fn require_api_key(&self) -> Result<&SecretString, ConfigError> {
        if self.placeholder_api_key {
            return Err(placeholder_error(self.sources.0, "api_key"));
        }
        self.api_key
            .as_ref()
            .ok_or_else(|| ConfigError::new("STRIPE_API_KEY", "no Stripe API key is configured (set STRIPE_SECRET_ARN, or STRIPE_API_KEY for local use)"))
    }

    /// The webhook secrets, or a clear error for the webhook function.
    pub fn require_webhook_secrets(&self) -> Result<&[SecretString], ConfigError> {
        if self.placeholder_webhook_secret {
            return Err(placeholder_error(self.sources.1, "webhook_secret"));
        }
        if self.webhook_secrets.is_empty() {
            return Err(ConfigError::new(
                "STRIPE_WEBHOOK_SECRET",
                "no webhook secret is configured (set STRIPE_SECRET_ARN, or STRIPE_WEBHOOK_SECRET for local use)",
            ));
        }
        Ok(&self.webhook_secrets)
    }
}

/// Every configured account's credentials, in the order configured: one
/// entry for the one-account shapes, one per element of `accounts` (the
/// secret) or `STRIPE_ACCOUNTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeAccounts(Vec<StripeSecrets>);

/// One element of `accounts`, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    account: Option<String>,
    api_key: Option<String>,
    webhook_secret: Option<String>,
    event_destination: Option<DestinationList>,
}

/// `event_destination` as written: `"ed_…[,ed_…]"` or `["ed_…", …]`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum DestinationList {
    One(String),
    Many(Vec<String>),
}

impl DestinationList {
    fn joined(self) -> String {
        match self {
            DestinationList::One(list) => list,
            DestinationList::Many(items) => items.join(","),
        }
    }
}

impl StripeAccounts {
    /// One account's credentials (the one-account shapes, tests).
    pub fn one(secrets: StripeSecrets) -> Self {
        Self(vec![secrets])
    }

    pub fn entries(&self) -> &[StripeSecrets] {
        &self.0
    }

    /// Parses the secret's JSON, either shape: one account,
    /// `{"api_key", "webhook_secret"}`, or several, `{"accounts": [...]}`.
    pub fn from_secret_json(json: &str) -> Result<Self, ConfigError> {
        const VARIABLE: &str = "STRIPE_SECRET_ARN";
        // serde's messages could quote part of the secret: keep only their category.
        let value: serde_json::Value = serde_json::from_str(json).map_err(|err| {
            ConfigError::new(
                VARIABLE,
                format!(
                    "the secret is not JSON ({:?} error at line {}, column {})",
                    err.classify(),
                    err.line(),
                    err.column()
                ),
            )
        })?;
        match value.get("accounts") {
            None => StripeSecrets::from_secret_json(json).map(Self::one),
            Some(accounts) => {
                let accounts = Vec::<RawAccount>::deserialize(accounts).map_err(|err| {
                    ConfigError::new(
                        VARIABLE,
                        format!(
                            "accounts is not a list of {{\"account\": \"acct_…\", \"api_key\": …, \"webhook_secret\": …}} ({:?} error)",
                            err.classify()
                        ),
                    )
                })?;
                Self::from_raw(accounts, VARIABLE)
            }
        }
    }

    /// `STRIPE_ACCOUNTS`: the JSON array of the secret's `accounts`.
    pub fn from_accounts_json(json: &str) -> Result<Self, ConfigError> {
        const VARIABLE: &str = "STRIPE_ACCOUNTS";
        let accounts: Vec<RawAccount> = serde_json::from_str(json).map_err(|err| {
            ConfigError::new(
                VARIABLE,
                format!(
                    "is not a JSON array of {{\"account\": \"acct_…\", \"api_key\": …, \"webhook_secret\": …}} \
                     ({:?} error at line {}, column {})",
                    err.classify(),
                    err.line(),
                    err.column()
                ),
            )
        })?;
        Self::from_raw(accounts, VARIABLE)
    }

    /// Checks every element: an `account` id (the name its data is kept
    /// under, so a key rotated into the wrong element cannot move it), a
    /// key, no id, key or webhook secret given twice (a secret shared by two
    /// accounts could not say which account a delivery is for).
    fn from_raw(raw: Vec<RawAccount>, variable: &'static str) -> Result<Self, ConfigError> {
        if raw.is_empty() {
            return Err(ConfigError::new(variable, "accounts is an empty list"));
        }
        let mut entries: Vec<StripeSecrets> = Vec::with_capacity(raw.len());
        for (index, element) in raw.into_iter().enumerate() {
            let at = |problem: &dyn std::fmt::Display, account: Option<&str>| {
                let name = account.map(|a| format!(" ({a})")).unwrap_or_default();
                ConfigError::new(variable, format!("accounts[{index}]{name}: {problem}"))
            };
            let account = match element.account.as_deref() {
                None => return Err(at(&"has no \"account\" (the acct_… id of its key)", None)),
                Some(text) => AccountId::parse(text).map_err(|err| at(&err, None))?,
            };
            let mut secrets = StripeSecrets::from_values(
                element.api_key.as_deref(),
                element.webhook_secret.as_deref(),
                (variable, variable),
            )
            .and_then(|secrets| {
                secrets.with_event_destinations(
                    element
                        .event_destination
                        .map(DestinationList::joined)
                        .as_deref(),
                    variable,
                )
            })
            .map_err(|err| at(&err.problem, Some(account.as_str())))?;
            if secrets.api_key.is_none() && !secrets.placeholder_api_key {
                return Err(at(&"has no api_key", Some(account.as_str())));
            }
            let given_before = entries.iter().find_map(|earlier| {
                let earlier_id = earlier.account.as_ref()?;
                if *earlier_id == account {
                    Some("is given twice")
                } else if earlier.api_key.is_some() && earlier.api_key == secrets.api_key {
                    Some("has the same api_key as another account")
                } else if secrets
                    .webhook_secrets
                    .iter()
                    .any(|secret| earlier.webhook_secrets.contains(secret))
                {
                    Some("has a webhook_secret of another account")
                } else if secrets
                    .event_destinations
                    .iter()
                    .any(|destination| earlier.event_destinations.contains(destination))
                {
                    // An event from it could not say which account it is for.
                    Some("has an event_destination of another account")
                } else {
                    None
                }
            });
            if let Some(problem) = given_before {
                return Err(at(&problem, Some(account.as_str())));
            }
            secrets.account = Some(account);
            entries.push(secrets);
        }
        Ok(Self(entries))
    }
}

/// The one line for a placeholder value: which variable, which field, what
/// to do. Never the value.
fn placeholder_error(source: &'static str, field: &str) -> ConfigError {
    if source == "STRIPE_SECRET_ARN" {
        ConfigError::new(
            source,
            format!(
                "{field} in the secret is still the placeholder the template wrote: put your Stripe keys in the secret \
                 (aws secretsmanager put-secret-value --secret-id <STRIPE_SECRET_ARN> --secret-string \
                 '{{\"api_key\":\"sk_live_…\",\"webhook_secret\":\"whsec_…\"}}'); it is read again within 5 minutes"
            ),
        )
    } else {
        ConfigError::new(
            source,
            "is the placeholder from template.yaml, not a Stripe value: set your own",
        )
    }
}

/// `ed_…[,ed_…]`: the ids of Stripe event destinations (not secret, so
/// quoted in errors).
fn parse_event_destinations(list: &str, source: &'static str) -> Result<Vec<String>, ConfigError> {
    let mut destinations = Vec::new();
    for item in list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        // The partner event source's whole name is what AWS shows: take its id.
        let item = item.strip_prefix("aws.partner/stripe.com/").unwrap_or(item);
        let valid = item.starts_with("ed_")
            && item.len() <= 255
            && item.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ConfigError::new(
                source,
                format!(
                    "event_destination {item:?} is not the id of a Stripe event destination (ed_…)"
                ),
            ));
        }
        if !destinations.iter().any(|known| known == item) {
            destinations.push(item.to_owned());
        }
    }
    Ok(destinations)
}

fn parse_webhook_secrets(
    list: &str,
    source: &'static str,
) -> Result<Vec<SecretString>, ConfigError> {
    let mut secrets = Vec::new();
    for (index, item) in list.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(ConfigError::new(
                source,
                format!("webhook secret {index} of the comma-separated list is empty"),
            ));
        }
        if !item.starts_with("whsec_") {
            return Err(ConfigError::new(
                source,
                format!("webhook secret {index} does not start with whsec_"),
            ));
        }
        secrets.push(SecretString::new(item));
    }
    Ok(secrets)
}

/// The hosts the API key may be sent to when downloading a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHosts(Vec<String>);

/// Why a file URL was refused before any byte was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileUrlError {
    #[error("file URL is not a valid URL")]
    Invalid,
    #[error("file URL scheme {0:?} is not allowed (https only; http only for loopback hosts)")]
    Scheme(String),
    #[error("file host {0:?} is not in STRIPE_FILE_HOSTS")]
    HostNotAllowed(String),
    #[error("file URL carries user credentials")]
    Credentials,
}

impl FileHosts {
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut hosts = Vec::new();
        for item in list.split(',') {
            let host = item.trim().to_ascii_lowercase();
            if host.is_empty() {
                continue;
            }
            if host.contains('/') || host.contains('@') || host.contains(' ') {
                return Err(ConfigError::new(
                    "STRIPE_FILE_HOSTS",
                    format!(
                        "{host:?} is not a host name (give hosts like files.stripe.com, no scheme or path)"
                    ),
                ));
            }
            hosts.push(host);
        }
        if hosts.is_empty() {
            return Err(ConfigError::new("STRIPE_FILE_HOSTS", "lists no host"));
        }
        Ok(Self(hosts))
    }

    pub fn hosts(&self) -> &[String] {
        &self.0
    }

    /// Whether the API key may be sent to `url`. An allow-listed host may be
    /// given with or without its port.
    pub fn check(&self, url: &Url) -> Result<(), FileUrlError> {
        let host = url
            .host_str()
            .ok_or(FileUrlError::Invalid)?
            .to_ascii_lowercase();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FileUrlError::Credentials);
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) => {}
            other => return Err(FileUrlError::Scheme(other.to_owned())),
        }
        let with_port = url.port().map(|port| format!("{host}:{port}"));
        let allowed = self
            .0
            .iter()
            .any(|entry| *entry == host || Some(entry) == with_port.as_ref());
        if allowed {
            Ok(())
        } else {
            Err(FileUrlError::HostNotAllowed(host))
        }
    }
}

/// Loopback hosts may be reached over plain http (the emulator).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Everything the functions read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub secrets: SecretSource,
    pub stripe_api_base: Url,
    pub file_hosts: FileHosts,
    pub stripe_api_version: String,
    pub reports: Vec<ReportSpec>,
    pub lookback_days: u32,
    pub runs_table: Option<String>,
    pub reports_bucket: Option<String>,
    pub reports_prefix: String,
    pub download_queue_url: Option<String>,
    pub schedule_queue_url: Option<String>,
    /// `CONVERSION_QUEUE_URL`: where the downloader sends each stored run to
    /// become a table file (SPEC "Tables"); unset, no table files are made.
    pub conversion_queue_url: Option<String>,
    /// `EVENTBRIDGE_QUEUE_URL` (local runner only): the queue standing in
    /// for the EventBridge rule's SQS target; in AWS the rule fills it and
    /// its event source feeds the `eventbridge` function.
    pub eventbridge_queue_url: Option<String>,
    /// `GLUE_DATABASE`: the Glue database holding one table per report type.
    pub glue_database: Option<String>,
    pub aws_endpoint_url: Option<String>,
    /// `STUCK_AFTER_HOURS` (default 6): a run pending longer is reported stuck.
    pub stuck_after_hours: u32,
    /// `OVERDUE_AFTER_MINUTES` (default 120): an interval due (its data
    /// available) this long and not stored is overdue.
    pub overdue_after_minutes: u32,
    /// `STRIPE_MAX_RPS` and `STRIPE_MAX_RPS_PER_ENDPOINT`: the scheduler's
    /// request rates per account; unset, they follow each key's mode.
    pub stripe_rates: RateSettings,
    /// `DOWNLOAD_PART_SIZE_MIB` (default 5, S3's smallest part: the least
    /// memory per part, and `make bench` measured no CPU cost per GiB for the
    /// extra parts): multipart part size.
    pub download_part_size_mib: u32,
    /// `DOWNLOAD_PARTS_IN_FLIGHT` (default 2): parts uploaded at once per file.
    pub download_parts_in_flight: u32,
    /// `DOWNLOAD_CONCURRENCY` (default 2): messages of a batch handled at once.
    /// Peak memory ≈ concurrency × (parts in flight + 1) × part size.
    pub download_concurrency: u32,
}

/// Stripe's request limits per second of one account (docs.stripe.com/rate-limits):
/// in test mode (sandboxes too)...
pub const STRIPE_TEST_MODE_RPS: f64 = 25.0;
/// ...in live mode...
pub const STRIPE_LIVE_MODE_RPS: f64 = 100.0;
/// ...and of each endpoint (a named operation, such as creating a report
/// run), in either mode, "unless otherwise noted" (the reporting endpoints
/// have no note). An endpoint's requests count towards the account's too.
pub const STRIPE_ENDPOINT_RPS: f64 = 25.0;
/// The share of Stripe's limits the scheduler takes by default. Stripe
/// counts every request of the account: the rest is left to the downloader
/// (two requests per finished run), to the account's own integration, and
/// to the jitter of requests in flight; what still goes over is answered
/// 429 and retried (docs/design-choices.md, "Stripe's rate limits").
pub const RATE_SHARE: f64 = 0.9;
/// The largest rate `STRIPE_MAX_RPS*` accept: Stripe raises an account's
/// limits on request, but not beyond what one function's requests need.
pub const MAX_CONFIGURED_RPS: f64 = 1000.0;

/// `STRIPE_MAX_RPS` (an account's requests per second) and
/// `STRIPE_MAX_RPS_PER_ENDPOINT` (its requests per second to each
/// endpoint), for every account of the deployment; each unset one follows
/// the account's key: [`RATE_SHARE`] of Stripe's limit for its mode.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateSettings {
    pub account: Option<f64>,
    pub endpoint: Option<f64>,
}

/// The requests per second one account is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRates {
    /// All of its requests.
    pub account: f64,
    /// Its requests to any one endpoint (never above `account`).
    pub endpoint: f64,
}

impl RequestRates {
    /// The scheduler's pace: the endpoint's rate, since nearly every
    /// request of a fan-out goes to one endpoint (creating report runs),
    /// and never above the account's.
    pub fn pace(&self) -> f64 {
        self.endpoint.min(self.account)
    }
}

impl RateSettings {
    /// The same rate for the account and each endpoint, whatever the mode
    /// (tests against the emulator).
    pub fn fixed(per_second: f64) -> Self {
        Self {
            account: Some(per_second),
            endpoint: Some(per_second),
        }
    }

    /// The rates of an account whose key is a live-mode key (`Some(true)`),
    /// a test-mode key (`Some(false)`), or of no known mode (`None`: test
    /// mode's, the lower, so an unknown key is never pushed past its limit).
    pub fn rates_for(&self, livemode: Option<bool>) -> RequestRates {
        let stripe_limit = if livemode == Some(true) {
            STRIPE_LIVE_MODE_RPS
        } else {
            STRIPE_TEST_MODE_RPS
        };
        let account = self.account.unwrap_or(stripe_limit * RATE_SHARE);
        let endpoint = self
            .endpoint
            .unwrap_or(STRIPE_ENDPOINT_RPS * RATE_SHARE)
            .min(account);
        RequestRates { account, endpoint }
    }
}

/// Parses a request rate (a positive number, decimals allowed, up to
/// [`MAX_CONFIGURED_RPS`]), or names the variable and what it takes.
fn parse_rate(name: &'static str, text: Option<String>) -> Result<Option<f64>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= MAX_CONFIGURED_RPS => Ok(Some(rate)),
        _ => Err(ConfigError::new(
            name,
            format!(
                "{text:?} is not a number of requests per second above 0 and at most {MAX_CONFIGURED_RPS}"
            ),
        )),
    }
}

/// Parses a whole number in `range`, or names the variable and the range.
fn parse_bounded(
    name: &'static str,
    text: Option<String>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "{text:?} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    /// Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());

        let secrets = match get("STRIPE_SECRET_ARN") {
            Some(arn) => {
                if !arn.starts_with("arn:") {
                    return Err(ConfigError::new(
                        "STRIPE_SECRET_ARN",
                        "is not an ARN (expected arn:aws:secretsmanager:…)",
                    ));
                }
                SecretSource::SecretsManager { arn }
            }
            None => match get("STRIPE_ACCOUNTS") {
                Some(json) => {
                    if get("STRIPE_API_KEY").is_some()
                        || get("STRIPE_WEBHOOK_SECRET").is_some()
                        || get("STRIPE_EVENT_DESTINATION").is_some()
                    {
                        return Err(ConfigError::new(
                            "STRIPE_ACCOUNTS",
                            "is set together with STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET or STRIPE_EVENT_DESTINATION: give every account in STRIPE_ACCOUNTS",
                        ));
                    }
                    SecretSource::Direct(StripeAccounts::from_accounts_json(&json)?)
                }
                None => SecretSource::Direct(StripeAccounts::one(
                    StripeSecrets::from_values(
                        get("STRIPE_API_KEY").as_deref(),
                        get("STRIPE_WEBHOOK_SECRET").as_deref(),
                        ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"),
                    )?
                    .with_event_destinations(
                        get("STRIPE_EVENT_DESTINATION").as_deref(),
                        "STRIPE_EVENT_DESTINATION",
                    )?,
                )),
            },
        };

        let stripe_api_base = parse_api_base(
            get("STRIPE_API_BASE")
                .as_deref()
                .unwrap_or(DEFAULT_STRIPE_API_BASE),
        )?;
        let file_hosts = FileHosts::parse(
            get("STRIPE_FILE_HOSTS")
                .as_deref()
                .unwrap_or(DEFAULT_FILE_HOSTS),
        )?;
        let stripe_api_version = match get("STRIPE_API_VERSION") {
            None => PINNED_STRIPE_API_VERSION.to_owned(),
            Some(version) => {
                let version = version.trim().to_owned();
                let well_formed = version.len() >= 10
                    && version.as_bytes()[..10].iter().enumerate().all(|(i, b)| {
                        if i == 4 || i == 7 {
                            *b == b'-'
                        } else {
                            b.is_ascii_digit()
                        }
                    })
                    && version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !well_formed {
                    return Err(ConfigError::new(
                        "STRIPE_API_VERSION",
                        format!(
                            "{version:?} is not a Stripe API version (like {PINNED_STRIPE_API_VERSION})"
                        ),
                    ));
                }
                version
            }
        };

        let reports_json = get("REPORTS").unwrap_or_else(|| DEFAULT_REPORTS.to_owned());
        let reports: Vec<ReportSpec> = serde_json::from_str(&reports_json).map_err(|err| {
            ConfigError::new(
                "REPORTS",
                format!("not a JSON array of report specs: {err}"),
            )
        })?;
        if reports.is_empty() {
            return Err(ConfigError::new("REPORTS", "is an empty list"));
        }
        let reports =
            read_specs(reports).map_err(|err| ConfigError::new("REPORTS", err.to_string()))?;

        let lookback_days = match get("LOOKBACK_DAYS") {
            None => DEFAULT_LOOKBACK_DAYS,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(days) if (1..=MAX_LOOKBACK_DAYS).contains(&days) => days,
                _ => {
                    return Err(ConfigError::new(
                        "LOOKBACK_DAYS",
                        format!(
                            "{text:?} is not a whole number of days from 1 to {MAX_LOOKBACK_DAYS}"
                        ),
                    ));
                }
            },
        };

        let reports_prefix = match get("REPORTS_PREFIX") {
            None => DEFAULT_REPORTS_PREFIX.to_owned(),
            Some(prefix) => {
                let prefix = prefix.trim().trim_start_matches('/').to_owned();
                if prefix.is_empty() {
                    String::new()
                } else if prefix.ends_with('/') {
                    prefix
                } else {
                    format!("{prefix}/")
                }
            }
        };

        let queue_url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match get(name) {
                None => Ok(None),
                Some(text) => match Url::parse(text.trim()) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => {
                        Ok(Some(text.trim().to_owned()))
                    }
                    _ => Err(ConfigError::new(
                        name,
                        format!("{text:?} is not an SQS queue URL"),
                    )),
                },
            }
        };
        let download_queue_url = queue_url("DOWNLOAD_QUEUE_URL")?;
        let schedule_queue_url = queue_url("SCHEDULE_QUEUE_URL")?;
        let conversion_queue_url = queue_url("CONVERSION_QUEUE_URL")?;
        let eventbridge_queue_url = queue_url("EVENTBRIDGE_QUEUE_URL")?;
        let glue_database = match get("GLUE_DATABASE").as_deref().map(str::trim) {
            None => None,
            // Glue and Athena names: lower-case letters, digits, underscores.
            Some(name)
                if !name.is_empty()
                    && name.len() <= 255
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Some(name.to_owned())
            }
            Some(name) => {
                return Err(ConfigError::new(
                    "GLUE_DATABASE",
                    format!(
                        "{name:?} is not a Glue database name (lower-case letters, digits and _ only)"
                    ),
                ));
            }
        };

        let aws_endpoint_url = match get("AWS_ENDPOINT_URL") {
            None => None,
            Some(text) => match Url::parse(text.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(text.trim().to_owned()),
                _ => {
                    return Err(ConfigError::new(
                        "AWS_ENDPOINT_URL",
                        format!("{text:?} is not an http(s) URL"),
                    ));
                }
            },
        };

        Ok(Self {
            secrets,
            stripe_api_base,
            file_hosts,
            stripe_api_version,
            reports,
            lookback_days,
            runs_table: get("RUNS_TABLE").map(|t| t.trim().to_owned()),
            reports_bucket: get("REPORTS_BUCKET").map(|b| b.trim().to_owned()),
            reports_prefix,
            download_queue_url,
            schedule_queue_url,
            conversion_queue_url,
            eventbridge_queue_url,
            glue_database,
            aws_endpoint_url,
            stuck_after_hours: parse_bounded(
                "STUCK_AFTER_HOURS",
                get("STUCK_AFTER_HOURS"),
                6,
                1..=720,
            )?,
            overdue_after_minutes: parse_bounded(
                "OVERDUE_AFTER_MINUTES",
                get("OVERDUE_AFTER_MINUTES"),
                super::due::DEFAULT_OVERDUE_AFTER_MINUTES,
                0..=10_080,
            )?,
            stripe_rates: RateSettings {
                account: parse_rate("STRIPE_MAX_RPS", get("STRIPE_MAX_RPS"))?,
                endpoint: parse_rate(
                    "STRIPE_MAX_RPS_PER_ENDPOINT",
                    get("STRIPE_MAX_RPS_PER_ENDPOINT"),
                )?,
            },
            download_part_size_mib: parse_bounded(
                "DOWNLOAD_PART_SIZE_MIB",
                get("DOWNLOAD_PART_SIZE_MIB"),
                5,
                5..=512,
            )?,
            download_parts_in_flight: parse_bounded(
                "DOWNLOAD_PARTS_IN_FLIGHT",
                get("DOWNLOAD_PARTS_IN_FLIGHT"),
                2,
                1..=16,
            )?,
            download_concurrency: parse_bounded(
                "DOWNLOAD_CONCURRENCY",
                get("DOWNLOAD_CONCURRENCY"),
                2,
                1..=10,
            )?,
        })
    }

    pub fn require_runs_table(&self) -> Result<&str, ConfigError> {
        self.runs_table
            .as_deref()
            .ok_or_else(|| ConfigError::missing("RUNS_TABLE"))
    }

    pub fn require_reports_bucket(&self) -> Result<&str, ConfigError> {
        self.reports_bucket
            .as_deref()
            .ok_or_else(|| ConfigError::missing("REPORTS_BUCKET"))
    }

    pub fn require_download_queue_url(&self) -> Result<&str, ConfigError> {
        self.download_queue_url
            .as_deref()
            .ok_or_else(|| ConfigError::missing("DOWNLOAD_QUEUE_URL"))
    }

    pub fn require_conversion_queue_url(&self) -> Result<&str, ConfigError> {
        self.conversion_queue_url
            .as_deref()
            .ok_or_else(|| ConfigError::missing("CONVERSION_QUEUE_URL"))
    }

    pub fn require_glue_database(&self) -> Result<&str, ConfigError> {
        self.glue_database
            .as_deref()
            .ok_or_else(|| ConfigError::missing("GLUE_DATABASE"))
    }

    pub fn require_schedule_queue_url(&self) -> Result<&str, ConfigError> {
        self.schedule_queue_url
            .as_deref()
            .ok_or_else(|| ConfigError::missing("SCHEDULE_QUEUE_URL"))
    }

    /// The report specs for one report type (the schedule queue names a type).
    pub fn specs_for(&self, report_type: &str) -> impl Iterator<Item = &ReportSpec> {
        self.reports
            .iter()
            .filter(move |spec| spec.report_type == report_type)
    }
}

fn parse_api_base(text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim()).map_err(|err| {
        ConfigError::new("STRIPE_API_BASE", format!("{text:?} is not a URL: {err}"))
    })?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        _ => {
            return Err(ConfigError::new(
                "STRIPE_API_BASE",
                format!(
                    "{text:?} must be https (http only for loopback hosts), since the API key is sent to it"
                ),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(ConfigError::new(
            "STRIPE_API_BASE",
            "must be a plain base URL without credentials or query",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.stripe_api_base.as_str(), "https://api.stripe.com/");
        assert_eq!(c.file_hosts.hosts(), ["files.stripe.com"]);
        assert_eq!(c.stripe_api_version, PINNED_STRIPE_API_VERSION);
        assert_eq!(c.reports, vec![ReportSpec::new("balance.summary.1")]);
        assert_eq!(c.lookback_days, 7);
        assert_eq!(c.reports_prefix, "stripe/");
        assert_eq!(c.runs_table, None);
        assert_eq!(
            c.require_runs_table().unwrap_err().to_string(),
            "RUNS_TABLE: is not set"
        );
    }

    #[test]
    fn request_rates_follow_the_keys_mode_unless_set() {
        let unset = config(&[]).unwrap().stripe_rates;
        let rates = |livemode| {
            let r = unset.rates_for(livemode);
            (r.account, r.endpoint)
        };
        // 90 % of Stripe's limits: 25/s in test mode, 100/s in live mode,
        // 25/s per endpoint in either.
        assert_eq!(rates(Some(false)), (22.5, 22.5));
        assert_eq!(rates(Some(true)), (90.0, 22.5));
        assert_eq!(
            rates(None),
            (22.5, 22.5),
            "an unknown mode gets test mode's"
        );
        let set = config(&[("STRIPE_MAX_RPS", "10")]).unwrap().stripe_rates;
        let test = set.rates_for(Some(false));
        assert_eq!((test.account, test.endpoint), (10.0, 10.0));
        assert_eq!(
            set.rates_for(Some(true)),
            test,
            "the override is per deployment"
        );
        let raised = config(&[("STRIPE_MAX_RPS_PER_ENDPOINT", "80.5")])
            .unwrap()
            .stripe_rates
            .rates_for(Some(true));
        assert_eq!((raised.account, raised.endpoint), (90.0, 80.5));
    }

    #[test]
    fn direct_secrets_are_read_and_split() {
        let c = config(&[
            ("STRIPE_API_KEY", "sk_test_abc"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new"),
        ])
        .unwrap();
        let SecretSource::Direct(accounts) = c.secrets else {
            panic!("expected direct secrets")
        };
        let secrets = &accounts.entries()[0];
        assert_eq!(secrets.require_api_key().unwrap().expose(), "sk_test_abc");
        let webhook: Vec<_> = secrets
            .webhook_secrets
            .iter()
            .map(SecretString::expose)
            .collect();
        assert_eq!(webhook, ["whsec_old", "whsec_new"]);
    }

    #[test]
    fn secret_arn_wins_over_direct_values() {
        let c = config(&[
            (
                "STRIPE_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:123:secret:stripe",
            ),
            ("STRIPE_API_KEY", "not even checked"),
        ])
        .unwrap();
        assert!(matches!(c.secrets, SecretSource::SecretsManager { .. }));
    }

    #[test]
    fn each_bad_value_names_its_variable_and_hides_secrets() {
        let cases: &[(&str, &str, &str)] = &[
            ("STRIPE_API_KEY", "pk_test_publishable", "STRIPE_API_KEY"),
            (
                "STRIPE_WEBHOOK_SECRET",
                "whsec_a,,whsec_b",
                "STRIPE_WEBHOOK_SECRET",
            ),
            (
                "STRIPE_WEBHOOK_SECRET",
                "secret_without_prefix",
                "STRIPE_WEBHOOK_SECRET",
            ),
            ("STRIPE_SECRET_ARN", "my-secret", "STRIPE_SECRET_ARN"),
            (
                "STRIPE_API_BASE",
                "http://api.example.com",
                "STRIPE_API_BASE",
            ),
            ("STRIPE_API_BASE", "not a url", "STRIPE_API_BASE"),
            (
                "STRIPE_FILE_HOSTS",
                "https://files.stripe.com/",
                "STRIPE_FILE_HOSTS",
            ),
            ("STRIPE_FILE_HOSTS", " , ", "STRIPE_FILE_HOSTS"),
            ("STRIPE_API_VERSION", "latest", "STRIPE_API_VERSION"),
            ("REPORTS", "{}", "REPORTS"),
            ("REPORTS", "[]", "REPORTS"),
            (
                "REPORTS",
                r#"[{"report_type":"a","timezone":"Nowhere/City"}]"#,
                "REPORTS",
            ),
            ("LOOKBACK_DAYS", "0", "LOOKBACK_DAYS"),
            ("LOOKBACK_DAYS", "seven", "LOOKBACK_DAYS"),
            ("DOWNLOAD_QUEUE_URL", "queue", "DOWNLOAD_QUEUE_URL"),
            ("CONVERSION_QUEUE_URL", "queue", "CONVERSION_QUEUE_URL"),
            ("GLUE_DATABASE", "Stripe-Reports", "GLUE_DATABASE"),
            ("AWS_ENDPOINT_URL", "localhost:5000", "AWS_ENDPOINT_URL"),
            ("STUCK_AFTER_HOURS", "0", "STUCK_AFTER_HOURS"),
            ("STRIPE_MAX_RPS", "0", "STRIPE_MAX_RPS"),
            ("STRIPE_MAX_RPS", "1001", "STRIPE_MAX_RPS"),
            ("STRIPE_MAX_RPS", "NaN", "STRIPE_MAX_RPS"),
            (
                "STRIPE_MAX_RPS_PER_ENDPOINT",
                "fast",
                "STRIPE_MAX_RPS_PER_ENDPOINT",
            ),
            ("DOWNLOAD_PART_SIZE_MIB", "4", "DOWNLOAD_PART_SIZE_MIB"),
            ("DOWNLOAD_CONCURRENCY", "0", "DOWNLOAD_CONCURRENCY"),
        ];
        for (name, value, variable) in cases {
            let err = config(&[(name, value)]).unwrap_err();
            let line = err.to_string();
            assert!(line.starts_with(variable), "{name}={value}: {line}");
            assert!(!line.contains('\n'), "{line}");
            if name.starts_with("STRIPE_API_KEY") || name.starts_with("STRIPE_WEBHOOK") {
                assert!(!line.contains(value), "secret leaked: {line}");
            }
        }
    }

    #[test]
    fn secret_json_errors_do_not_quote_the_secret() {
        let err = StripeSecrets::from_secret_json(r#"{"api_key": sk_live_oops}"#).unwrap_err();
        assert!(!err.to_string().contains("sk_live_oops"), "{err}");
        let ok = StripeSecrets::from_secret_json(
            r#"{"api_key":"sk_live_1","webhook_secret":"whsec_1,whsec_2"}"#,
        )
        .unwrap();
        assert_eq!(ok.webhook_secrets.len(), 2);
    }

    #[test]
    fn the_template_placeholder_is_refused_with_one_line_naming_the_secret() {
        let secrets = StripeSecrets::from_secret_json(&format!(
            r#"{{"api_key":"{PLACEHOLDER_API_KEY}","webhook_secret":"{PLACEHOLDER_WEBHOOK_SECRET}"}}"#
        ))
        .unwrap();
        assert_eq!(
            (secrets.api_key.as_ref(), secrets.webhook_secrets.len()),
            (None, 0)
        );
        for err in [
            secrets.require_api_key().unwrap_err(),
            secrets.require_webhook_secrets().unwrap_err(),
        ] {
            let line = err.to_string();
            assert!(line.starts_with("STRIPE_SECRET_ARN: "), "{line}");
            assert!(
                line.contains("put your Stripe keys in the secret"),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
            assert!(
                !line.contains(PLACEHOLDER_API_KEY) && !line.contains(PLACEHOLDER_WEBHOOK_SECRET),
                "{line}"
            );
        }
        // One field filled, the other not: only the placeholder is refused.
        let half = StripeSecrets::from_secret_json(&format!(
            r#"{{"api_key":"sk_live_real","webhook_secret":"whsec_a, {PLACEHOLDER_WEBHOOK_SECRET}"}}"#
        ))
        .unwrap();
        assert_eq!(half.require_api_key().unwrap().expose(), "sk_live_real");
        assert!(half.require_webhook_secrets().is_err());
        // Given directly, the variable is named.
        let err = config(&[("STRIPE_API_KEY", PLACEHOLDER_API_KEY)])
            .map(|c| match c.secrets {
                SecretSource::Direct(s) => s.entries()[0].require_api_key().map(|_| ()),
                _ => Ok(()),
            })
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().starts_with("STRIPE_API_KEY: "), "{err}");
        // Given as values (tests, fuzzing): refused all the same.
        let given = StripeSecrets::given(None, vec![SecretString::new(PLACEHOLDER_WEBHOOK_SECRET)]);
        assert!(given.webhook_secrets.is_empty() && given.require_webhook_secrets().is_err());
    }

    /// The placeholder lives in one place in Rust; the template must write
    /// exactly it, or a fresh stack would send its placeholder to Stripe.
    #[test]
    fn template_writes_the_placeholder_the_code_refuses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let template = std::fs::read_to_string(path).expect("template.yaml beside the workspace");
        let resource = template
            .split("\n  StripeSecret:\n")
            .nth(1)
            .expect("template.yaml has no StripeSecret resource");
        // The resource's own lines (up to the next resource at the same indent).
        let block: String = resource
            .lines()
            .take_while(|line| line.is_empty() || line.starts_with("   "))
            .collect::<Vec<_>>()
            .join("\n");
        let value = block
            .lines()
            .find_map(|line| line.trim().strip_prefix("SecretString:"))
            .expect("StripeSecret has no SecretString")
            .trim()
            .trim_matches('\'');
        let json: serde_json::Value =
            serde_json::from_str(value).expect("StripeSecret's SecretString is JSON");
        assert_eq!(json["api_key"], PLACEHOLDER_API_KEY, "{value}");
        assert_eq!(
            json["webhook_secret"], PLACEHOLDER_WEBHOOK_SECRET,
            "{value}"
        );
        let secrets = StripeSecrets::from_secret_json(value).unwrap();
        assert!(secrets.require_api_key().is_err() && secrets.require_webhook_secrets().is_err());
    }

    #[test]
    fn several_accounts_are_read_from_the_secret_or_stripe_accounts() {
        let json = r#"{"accounts":[
            {"account":"acct_A","api_key":"sk_test_a","webhook_secret":"whsec_a"},
            {"account":"acct_B","api_key":"rk_test_b","webhook_secret":"whsec_b1,whsec_b2"}]}"#;
        let accounts = StripeAccounts::from_secret_json(json).unwrap();
        let ids: Vec<_> = accounts
            .entries()
            .iter()
            .map(|e| e.account.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["acct_A", "acct_B"]);
        assert_eq!(accounts.entries()[1].webhook_secrets.len(), 2);
        // The one-account shape still reads, without an id (learned later).
        let one = StripeAccounts::from_secret_json(&secret_json_one()).unwrap();
        assert_eq!(one.entries().len(), 1);
        assert_eq!(one.entries()[0].account, None);
        // STRIPE_ACCOUNTS is the list itself.
        let direct = config(&[(
            "STRIPE_ACCOUNTS",
            r#"[{"account":"acct_A","api_key":"sk_test_a","webhook_secret":"whsec_a"}]"#,
        )])
        .unwrap();
        let SecretSource::Direct(direct) = direct.secrets else {
            panic!("direct")
        };
        assert_eq!(
            direct.entries()[0].account.as_ref().unwrap().as_str(),
            "acct_A"
        );
    }

    #[test]
    fn event_destinations_are_read_with_each_account_and_checked() {
        let json = r#"{"accounts":[
            {"account":"acct_A","api_key":"sk_test_a","event_destination":"ed_test_61A, ed_61Alive"},
            {"account":"acct_B","api_key":"sk_test_b","webhook_secret":"whsec_b"}]}"#;
        let accounts = StripeAccounts::from_secret_json(json).unwrap();
        assert_eq!(
            accounts.entries()[0].event_destinations,
            ["ed_test_61A", "ed_61Alive"]
        );
        assert!(accounts.entries()[1].event_destinations.is_empty());
        // The one-account secret and the direct variables.
        let one = StripeAccounts::from_secret_json(
            r#"{"api_key":"sk_test_1","event_destination":"ed_test_61One"}"#,
        )
        .unwrap();
        assert_eq!(one.entries()[0].event_destinations, ["ed_test_61One"]);
        let direct = config(&[
            ("STRIPE_API_KEY", "sk_test_1"),
            ("STRIPE_EVENT_DESTINATION", "ed_test_61Direct"),
        ])
        .unwrap();
        let SecretSource::Direct(direct) = direct.secrets else {
            panic!("direct")
        };
        assert_eq!(direct.entries()[0].event_destinations, ["ed_test_61Direct"]);
        // Refused, each in one line naming the account and the value (not secret).
        let shared = StripeAccounts::from_accounts_json(
            r#"[{"account":"acct_A","api_key":"sk_test_a","event_destination":"ed_test_61S"},
                {"account":"acct_B","api_key":"sk_test_b","event_destination":"ed_test_61S"}]"#,
        )
        .unwrap_err();
        assert_eq!(
            shared.to_string(),
            "STRIPE_ACCOUNTS: accounts[1] (acct_B): has an event_destination of another account"
        );
        let not_an_id = StripeAccounts::from_accounts_json(
            r#"[{"account":"acct_A","api_key":"sk_test_a","event_destination":"aws.partner/other.com/ed_1"}]"#,
        )
        .unwrap_err();
        assert!(
            not_an_id
                .to_string()
                .contains("is not the id of a Stripe event destination (ed_…)"),
            "{not_an_id}"
        );
        // The source's whole name, and a JSON array, are read as ids.
        let forms = StripeAccounts::from_accounts_json(
            r#"[{"account":"acct_A","api_key":"sk_test_a","event_destination":["aws.partner/stripe.com/ed_test_61X","ed_61Y"]}]"#,
        )
        .unwrap();
        assert_eq!(
            forms.entries()[0].event_destinations,
            ["ed_test_61X", "ed_61Y"]
        );
        let with_accounts = config(&[
            (
                "STRIPE_ACCOUNTS",
                r#"[{"account":"acct_A","api_key":"sk_test_a"}]"#,
            ),
            ("STRIPE_EVENT_DESTINATION", "ed_test_61Direct"),
        ])
        .unwrap_err();
        assert_eq!(with_accounts.variable, "STRIPE_ACCOUNTS");
    }

    fn secret_json_one() -> String {
        r#"{"api_key":"sk_test_1","webhook_secret":"whsec_1"}"#.to_owned()
    }

    #[test]
    fn bad_accounts_are_refused_in_one_line_naming_the_account_never_a_key() {
        let cases: &[(&str, &str)] = &[
            (r#"[]"#, "accounts is an empty list"),
            (
                r#"[{"api_key":"sk_test_secretvalue"}]"#,
                "accounts[0]: has no \"account\"",
            ),
            (
                r#"[{"account":"sk_test_secretvalue","api_key":"sk_test_x"}]"#,
                "accounts[0]: \"sk_test_\" is not a Stripe account id",
            ),
            (
                r#"[{"account":"acct_A"}]"#,
                "accounts[0] (acct_A): has no api_key",
            ),
            (
                r#"[{"account":"acct_A","api_key":"pk_test_secretvalue"}]"#,
                "accounts[0] (acct_A): api_key is not a Stripe secret or restricted key",
            ),
            (
                r#"[{"account":"acct_A","api_key":"sk_test_secretvalue"},{"account":"acct_A","api_key":"sk_test_other"}]"#,
                "accounts[1] (acct_A): is given twice",
            ),
            (
                r#"[{"account":"acct_A","api_key":"sk_test_secretvalue"},{"account":"acct_B","api_key":"sk_test_secretvalue"}]"#,
                "accounts[1] (acct_B): has the same api_key as another account",
            ),
            (
                r#"[{"account":"acct_A","api_key":"sk_test_a","webhook_secret":"whsec_secretvalue"},{"account":"acct_B","api_key":"sk_test_b","webhook_secret":"whsec_secretvalue"}]"#,
                "accounts[1] (acct_B): has a webhook_secret of another account",
            ),
            (
                r#"[{"account":"acct_A","api_key":"sk_test_a","apikey":"sk_test_secretvalue"}]"#,
                "is not a JSON array",
            ),
        ];
        for (json, expected) in cases {
            let line = StripeAccounts::from_accounts_json(json)
                .unwrap_err()
                .to_string();
            assert!(line.starts_with("STRIPE_ACCOUNTS: "), "{line}");
            assert!(line.contains(expected), "{json}: {line}");
            assert!(
                !line.contains("secretvalue") && !line.contains('\n'),
                "{line}"
            );
            let secret = format!(r#"{{"accounts":{json}}}"#);
            let line = StripeAccounts::from_secret_json(&secret)
                .unwrap_err()
                .to_string();
            assert!(line.starts_with("STRIPE_SECRET_ARN: "), "{line}");
            assert!(!line.contains("secretvalue"), "{line}");
        }
        let both = config(&[
            (
                "STRIPE_ACCOUNTS",
                r#"[{"account":"acct_A","api_key":"sk_test_a"}]"#,
            ),
            ("STRIPE_API_KEY", "sk_test_b"),
        ])
        .unwrap_err();
        assert!(both.to_string().starts_with("STRIPE_ACCOUNTS: "), "{both}");
    }

    #[test]
    fn prefix_is_normalised_to_end_with_a_slash() {
        assert_eq!(
            config(&[("REPORTS_PREFIX", "finance")])
                .unwrap()
                .reports_prefix,
            "finance/"
        );
        assert_eq!(
            config(&[("REPORTS_PREFIX", "/a/b/")])
                .unwrap()
                .reports_prefix,
            "a/b/"
        );
    }

    #[test]
    fn file_hosts_allow_only_listed_https_hosts_and_loopback_http() {
        let hosts = FileHosts::parse("files.stripe.com,127.0.0.1:12111").unwrap();
        let check = |u: &str| hosts.check(&Url::parse(u).unwrap());
        assert!(check("https://files.stripe.com/v1/files/file_1/contents").is_ok());
        assert!(check("https://FILES.stripe.com/x").is_ok());
        assert!(check("http://127.0.0.1:12111/v1/files/f/contents").is_ok());
        assert!(matches!(
            check("http://files.stripe.com/x"),
            Err(FileUrlError::Scheme(_))
        ));
        assert!(matches!(
            check("https://127.0.0.1:9999/x"),
            Err(FileUrlError::HostNotAllowed(_))
        ));
        assert!(matches!(
            check("https://evil.example/x"),
            Err(FileUrlError::HostNotAllowed(_))
        ));
        assert!(matches!(
            check("https://files.stripe.com.evil.example/x"),
            Err(FileUrlError::HostNotAllowed(_))
        ));
        assert!(matches!(
            check("https://user@files.stripe.com/x"),
            Err(FileUrlError::Credentials)
        ));
        assert!(matches!(
            check("ftp://files.stripe.com/x"),
            Err(FileUrlError::Scheme(_))
        ));
    }
}
