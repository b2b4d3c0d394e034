//! The Stripe HTTP client.
//!
//! Retries follow Stripe's official libraries: a `Stripe-Should-Retry` header
//! decides first; otherwise 409, 429, 5xx and connection errors are retried
//! with exponential backoff and jitter, a bounded number of times, honouring a
//! short `Retry-After`. Every POST carries an `Idempotency-Key`, kept across
//! retries, so a retried create never makes a second run.

use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::FileDownload;
use super::error::{ErrorBody, StripeError};
use super::types::{CreateReportRun, List, ReportRun, ReportType};
use crate::domain::config::{Config, FileHosts, PINNED_STRIPE_API_VERSION};
use crate::domain::secret::SecretString;
use std::sync::Arc;

use crate::accounts::{AccountLookup, Accounts};
use crate::domain::account::AccountId;

/// Stripe's largest page.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Redirects followed for one file download.
const MAX_FILE_REDIRECTS: usize = 5;
/// How long the check of a key's account may take.
pub const ACCOUNT_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// A `Retry-After` longer than this is not waited for (as Stripe's libraries do).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (1-based): doubling from the
    /// initial delay up to the maximum, then 50–100 % of it (jitter, so that
    /// many clients do not retry in step), never less than `Retry-After`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let base = self
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let jittered = base.mul_f64(0.5 + rand::rng().random::<f64>() * 0.5);
        match retry_after {
            Some(wait) if wait <= MAX_RETRY_AFTER => jittered.max(wait),
            _ => jittered,
        }
    }
}

/// Where the client takes the API key from, before each request.
#[derive(Debug, Clone)]
pub enum ApiKey {
    /// One key for the client's life (the CLI, tests).
    Fixed(SecretString),
    /// One configured account's key, from the warm function's accounts: a
    /// key filled or rotated in Secrets Manager is used within 5 minutes,
    /// without a cold start, and only once Stripe said it is this account's.
    Account {
        accounts: Arc<Accounts>,
        account: AccountId,
    },
    /// No key: the client is only used with keys given per call
    /// ([`StripeClient::account_of`]).
    None,
}

impl From<SecretString> for ApiKey {
    fn from(key: SecretString) -> Self {
        ApiKey::Fixed(key)
    }
}

impl ApiKey {
    async fn current(&self) -> Result<SecretString, StripeError> {
        match self {
            ApiKey::Fixed(key) => Ok(key.clone()),
            ApiKey::Account { accounts, account } => accounts
                .api_key(account)
                .await
                .map_err(|err| StripeError::NoApiKey(err.to_string())),
            ApiKey::None => Err(StripeError::NoApiKey(
                "this client has no API key of its own".into(),
            )),
        }
    }
}

/// Everything the client needs; built from [`Config`] by the functions.
#[derive(Debug, Clone)]
pub struct StripeClientConfig {
    pub api_base: Url,
    pub api_key: ApiKey,
    pub api_version: String,
    pub file_hosts: FileHosts,
    pub retry: RetryPolicy,
    /// Per request (connect + answer headers) timeout for API calls.
    pub request_timeout: Duration,
}

impl StripeClientConfig {
    pub fn new(api_base: Url, api_key: impl Into<ApiKey>, file_hosts: FileHosts) -> Self {
        Self {
            api_base,
            api_key: api_key.into(),
            api_version: PINNED_STRIPE_API_VERSION.to_owned(),
            file_hosts,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
        }
    }

    pub fn from_config(config: &Config, api_key: impl Into<ApiKey>) -> Self {
        Self {
            api_version: config.stripe_api_version.clone(),
            ..Self::new(
                config.stripe_api_base.clone(),
                api_key,
                config.file_hosts.clone(),
            )
        }
    }
}

/// A client for Stripe's reporting API. Cheap to clone; build it once per cold start.
#[derive(Clone)]
pub struct StripeClient {
    api: reqwest::Client,
    files: reqwest::Client,
    config: StripeClientConfig,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("api_base", &self.config.api_base.as_str())
            .field("api_version", &self.config.api_version)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    pub fn new(config: StripeClientConfig) -> Result<Self, StripeError> {
        let mut headers = HeaderMap::new();
        let version = HeaderValue::from_str(&config.api_version)
            .map_err(|_| StripeError::Config("API version is not a valid header value".into()))?;
        headers.insert("Stripe-Version", version);
        let user_agent = concat!("stripe-reports/", env!("CARGO_PKG_VERSION"));
        // One TLS configuration for both clients (see super::tls).
        let tls = super::tls::stripe_tls_config()
            .map_err(|err| StripeError::Config(format!("TLS configuration: {err}")))?;
        // The API never redirects; a redirect would be a misconfiguration, and
        // following it could carry the key elsewhere.
        let api = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .user_agent(user_agent)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout)
            .build()
            .map_err(|err| StripeError::Config(err.to_string()))?;
        // File redirects are followed by hand (download_file), so each target
        // is checked against the allow-list before the key goes out.
        let files = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            // No overall timeout: a large file takes as long as it takes; a
            // stalled body is caught by the read timeout.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|err| StripeError::Config(err.to_string()))?;
        Ok(Self { api, files, config })
    }

    pub fn config(&self) -> &StripeClientConfig {
        &self.config
    }

    /// The same client (sharing its connections) with another key source:
    /// one per account.
    pub fn with_api_key(&self, api_key: ApiKey) -> Self {
        let mut client = self.clone();
        client.config.api_key = api_key;
        client
    }

    /// `GET /v1/account` with `key`: the id of the account the key belongs to.
    /// Bounded by [`ACCOUNT_CHECK_TIMEOUT`] as a whole, retries included: it
    /// runs at every cold start (the webhook's too), and a key that cannot
    /// be checked now is checked again later rather than waited for. A 429,
    /// a 5xx or no answer is tried again within that time, so one refused
    /// request does not take an account out.
    pub async fn account_of(&self, key: &SecretString) -> Result<AccountId, StripeError> {
        #[derive(serde::Deserialize)]
        struct Account {
            id: String,
        }
        let url = self.endpoint("/v1/account")?;
        let deadline = tokio::time::Instant::now() + ACCOUNT_CHECK_TIMEOUT;
        let mut wait = Duration::from_millis(100);
        let response = loop {
            let attempt = tokio::time::timeout_at(
                deadline,
                self.api.get(url.clone()).bearer_auth(key.expose()).send(),
            )
            .await;
            let (retryable, retry_after, error) = match attempt {
                Err(_) => {
                    return Err(StripeError::Transport(format!(
                        "no answer within {} s",
                        ACCOUNT_CHECK_TIMEOUT.as_secs()
                    )));
                }
                Ok(Ok(response)) if response.status().is_success() => break response,
                Ok(Ok(response)) => {
                    let retryable = retry_decision(response.status(), response.headers());
                    let after = retry_after(response.headers());
                    (retryable, after, error_from_response(response).await)
                }
                Ok(Err(err)) => (
                    err.is_connect() || err.is_timeout() || err.is_request(),
                    None,
                    StripeError::Transport(transport_message(&err)),
                ),
            };
            let pause = retry_after.unwrap_or(wait).max(wait);
            if !retryable || tokio::time::Instant::now() + pause >= deadline {
                return Err(error);
            }
            tokio::time::sleep(pause).await;
            wait = wait.saturating_mul(2);
        };
        let account: Account = decode_json(response).await?;
        AccountId::parse(&account.id).map_err(|err| StripeError::Decode {
            status: 200,
            detail: err.to_string(),
        })
    }

    fn endpoint(&self, path: &str) -> Result<Url, StripeError> {
        self.config
            .api_base
            .join(path)
            .map_err(|err| StripeError::Config(format!("bad API path {path}: {err}")))
    }

    /// `GET /v1/reporting/report_types/{id}`.
    pub async fn report_type(&self, id: &str) -> Result<ReportType, StripeError> {
        let url = self.endpoint(&format!("/v1/reporting/report_types/{}", encode_path(id)))?;
        self.get_json(url, &[]).await
    }

    /// `GET /v1/reporting/report_types` (Stripe returns them all in one page).
    pub async fn report_types(&self) -> Result<Vec<ReportType>, StripeError> {
        let url = self.endpoint("/v1/reporting/report_types")?;
        let list: List<ReportType> = self.get_json(url, &[]).await?;
        Ok(list.data)
    }

    /// `POST /v1/reporting/report_runs` with `idempotency_key` as the `Idempotency-Key`.
    pub async fn create_report_run(
        &self,
        request: &CreateReportRun,
        idempotency_key: &str,
    ) -> Result<ReportRun, StripeError> {
        let url = self.endpoint("/v1/reporting/report_runs")?;
        let form = request.form_fields();
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            StripeError::Config("idempotency key is not a valid header value".into())
        })?;
        let api_key = self.config.api_key.current().await?;
        let response = self
            .send_with_retries(|| {
                self.api
                    .request(Method::POST, url.clone())
                    .bearer_auth(api_key.expose())
                    .header("Idempotency-Key", key.clone())
                    .form(&form)
            })
            .await?;
        decode_json(response).await
    }

    /// `GET /v1/reporting/report_runs/{id}`.
    pub async fn report_run(&self, id: &str) -> Result<ReportRun, StripeError> {
        let url = self.endpoint(&format!("/v1/reporting/report_runs/{}", encode_path(id)))?;
        self.get_json(url, &[]).await
    }

    /// One page of `GET /v1/reporting/report_runs`, newest first.
    pub async fn report_runs_page(
        &self,
        created_gte: Option<i64>,
        limit: u32,
        starting_after: Option<&str>,
    ) -> Result<List<ReportRun>, StripeError> {
        let url = self.endpoint("/v1/reporting/report_runs")?;
        let mut query = vec![("limit", limit.clamp(1, MAX_PAGE_SIZE).to_string())];
        if let Some(gte) = created_gte {
            query.push(("created[gte]", gte.to_string()));
        }
        if let Some(after) = starting_after {
            query.push(("starting_after", after.to_owned()));
        }
        self.get_json(url, &query).await
    }

    /// Every report run created at or after `created_gte`, following `has_more`.
    pub async fn report_runs_created_since(
        &self,
        created_gte: i64,
    ) -> Result<Vec<ReportRun>, StripeError> {
        let mut runs: Vec<ReportRun> = Vec::new();
        loop {
            let after = runs.last().map(|run| run.id.clone());
            let page = self
                .report_runs_page(Some(created_gte), MAX_PAGE_SIZE, after.as_deref())
                .await?;
            let more = page.has_more && !page.data.is_empty();
            runs.extend(page.data);
            if !more {
                return Ok(runs);
            }
        }
    }

    /// Opens the file at `url` (a run's `result.url`) as a stream, sending the
    /// API key (HTTP Basic, key as user, empty password) only to hosts in
    /// `STRIPE_FILE_HOSTS`: the URL and every redirect target are checked
    /// before a request is made, so nothing at all is sent to any other host.
    /// Failures before the body starts are retried like API calls; a body cut
    /// mid-way surfaces as an error item of the stream, for the caller to
    /// retry the whole file.
    pub async fn download_file(&self, url: &str) -> Result<FileDownload, StripeError> {
        let mut url = Url::parse(url).map_err(|_| crate::domain::config::FileUrlError::Invalid)?;
        let api_key = self.config.api_key.current().await?;
        for _ in 0..=MAX_FILE_REDIRECTS {
            self.config.file_hosts.check(&url)?;
            let response = self
                .send_with_retries(|| {
                    self.files
                        .get(url.clone())
                        .basic_auth(api_key.expose(), Some(""))
                })
                .await?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| StripeError::Decode {
                        status: response.status().as_u16(),
                        detail: "redirect without a Location".into(),
                    })?;
                url = url
                    .join(location)
                    .map_err(|_| crate::domain::config::FileUrlError::Invalid)?;
                continue;
            }
            let content_length = response.content_length();
            let body = response
                .bytes_stream()
                .map(|chunk| chunk.map_err(|err| StripeError::Transport(transport_message(&err))));
            return Ok(FileDownload {
                content_length,
                body: Box::pin(body),
            });
        }
        Err(StripeError::Decode {
            status: 302,
            detail: format!("more than {MAX_FILE_REDIRECTS} redirects"),
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        query: &[(&str, String)],
    ) -> Result<T, StripeError> {
        let api_key = self.config.api_key.current().await?;
        let response = self
            .send_with_retries(|| {
                self.api
                    .get(url.clone())
                    .bearer_auth(api_key.expose())
                    .query(query)
            })
            .await?;
        decode_json(response).await
    }

    /// Sends the request built by `build` until it succeeds, a non-retryable
    /// answer comes, or the retries run out. Returns the successful response.
    async fn send_with_retries(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, StripeError> {
        let policy = self.config.retry;
        let mut retry = 0;
        loop {
            let outcome = build().send().await;
            let (should_retry, retry_after, error) = match outcome {
                // Redirects are answers too: only the file download follows them.
                Ok(response)
                    if response.status().is_success() || response.status().is_redirection() =>
                {
                    return Ok(response);
                }
                Ok(response) => {
                    let decision = retry_decision(response.status(), response.headers());
                    let retry_after = retry_after(response.headers());
                    (decision, retry_after, error_from_response(response).await)
                }
                Err(err) => {
                    // No answer at all: safe to repeat (GETs are reads, POSTs
                    // carry an Idempotency-Key).
                    let retryable = err.is_connect() || err.is_timeout() || err.is_request();
                    (
                        retryable,
                        None,
                        StripeError::Transport(transport_message(&err)),
                    )
                }
            };
            if !should_retry || retry >= policy.max_retries {
                return Err(error);
            }
            retry += 1;
            let wait = policy.delay(retry, retry_after);
            tracing::warn!(retry, wait_ms = wait.as_millis() as u64, error = %error, "retrying Stripe request");
            tokio::time::sleep(wait).await;
        }
    }
}

impl AccountLookup for StripeClient {
    fn account_of<'a>(
        &'a self,
        key: &'a SecretString,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<AccountId, StripeError>> + Send + 'a>,
    > {
        Box::pin(StripeClient::account_of(self, key))
    }
}

/// Stripe-Should-Retry decides when present; otherwise 409, 429 and 5xx are retried.
pub fn retry_decision(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers
        .get("Stripe-Should-Retry")
        .and_then(|value| value.to_str().ok())
    {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` in seconds, from the network: any value parses without a
/// panic path (`Duration::from_secs_f64` panics past u64 seconds, and release
/// builds abort on panic), and absurd values are capped, so they read as
/// "longer than worth waiting for" (see [`RetryPolicy::delay`]).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    /// Far above [`MAX_RETRY_AFTER`], far below what a Duration can hold.
    const CAP_SECS: f64 = 86_400.0;
    let secs = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs >= 0.0)?;
    Duration::try_from_secs_f64(secs.min(CAP_SECS)).ok()
}

async fn error_from_response(response: Response) -> StripeError {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("Request-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match response.bytes().await {
        Ok(body) => match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(parsed) => StripeError::Api {
                status,
                error: Box::new(parsed.error),
                request_id,
            },
            Err(_) => StripeError::Decode {
                status,
                detail: format!(
                    "error body is not a Stripe error object: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            },
        },
        Err(err) => StripeError::Transport(transport_message(&err)),
    }
}

async fn decode_json<T: DeserializeOwned>(response: Response) -> Result<T, StripeError> {
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|err| StripeError::Transport(transport_message(&err)))?;
    serde_json::from_slice(&body).map_err(|err| StripeError::Decode {
        status,
        detail: err.to_string(),
    })
}

/// Report type ids contain dots; run ids are alphanumeric. Anything else is
/// percent-encoded so an id can never change the path.
fn encode_path(id: &str) -> String {
    // "." and ".." would be resolved away by URL joining.
    let only_dots = id.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'_' | b'-')
            || (byte == b'.' && !only_dots)
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// reqwest's message, with the URL's query dropped (it never carries the
/// key, but a pre-signed file URL could carry a token).
fn transport_message(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "body interrupted"
    } else {
        "request failed"
    };
    let mut message = kind.to_owned();
    if let Some(url) = err.url() {
        let mut url = url.clone();
        url.set_query(None);
        message.push_str(&format!(" ({url})"));
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_retry_header_decides_first() {
        let mut headers = HeaderMap::new();
        headers.insert("Stripe-Should-Retry", HeaderValue::from_static("false"));
        assert!(!retry_decision(StatusCode::SERVICE_UNAVAILABLE, &headers));
        headers.insert("Stripe-Should-Retry", HeaderValue::from_static("true"));
        assert!(retry_decision(StatusCode::BAD_REQUEST, &headers));
    }

    #[test]
    fn without_the_header_409_429_and_5xx_are_retried() {
        let none = HeaderMap::new();
        for status in [409, 429, 500, 502, 503] {
            assert!(
                retry_decision(StatusCode::from_u16(status).unwrap(), &none),
                "{status}"
            );
        }
        for status in [400, 401, 402, 403, 404] {
            assert!(
                !retry_decision(StatusCode::from_u16(status).unwrap(), &none),
                "{status}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.delay(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(3, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.delay(10, None);
            assert!(late <= Duration::from_millis(1000));
        }
        assert!(policy.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert!(policy.delay(1, Some(Duration::from_secs(600))) <= Duration::from_millis(100));
    }

    #[test]
    fn any_retry_after_from_the_network_parses_without_a_panic() {
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(value).unwrap(),
            );
            retry_after(&headers)
        };
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0.5 "), Some(Duration::from_millis(500)));
        // Past u64 seconds, where Duration::from_secs_f64 panics: capped.
        for absurd in [
            "1e300",
            "18446744073709551616",
            "1.8e19",
            "99999999999999999999999",
        ] {
            let wait = parse(absurd).unwrap();
            assert_eq!(wait, Duration::from_secs(86_400), "{absurd}");
            // ...and too long to wait for: the backoff decides.
            let policy = RetryPolicy::default();
            assert!(policy.delay(1, Some(wait)) <= policy.initial_delay);
        }
        for junk in [
            "-1",
            "NaN",
            "inf",
            "-inf",
            "Wed, 21 Oct 2026 07:28:00 GMT",
            "",
        ] {
            assert_eq!(parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert_eq!(encode_path("balance.summary.1"), "balance.summary.1");
        assert_eq!(encode_path("../x?y"), "..%2Fx%3Fy");
        assert_eq!(encode_path(".."), "%2E%2E");
    }
}
