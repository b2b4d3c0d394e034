//! The emulator's in-memory accounts (report types, runs, files, events,
//! idempotency keys, rate windows) and what they share (faults, counters, logs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::config::{
    AccountConfig, DAY, EventBridgeDelivery, Faults, ReportTypeConfig, Stats, WebhookDelivery,
};
use crate::csv::FileSpec;
use crate::report_columns;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The last UTC midnight at least 12 hours before `now`: Stripe publishes a
/// day's data about 12 hours after the day closes.
pub fn default_available_end(now: i64) -> i64 {
    let published = now - 12 * 3600;
    published - published.rem_euclid(DAY)
}

/// The requests admitted during the last second: a sliding window, so that
/// no second (not only each calendar second) holds more than the limit, as
/// a client spacing its requests evenly must achieve.
#[derive(Debug, Default)]
pub struct RateWindow(VecDeque<Instant>);

impl RateWindow {
    /// Whether one more request at `at` stays within `limit` per second.
    pub fn has_room(&mut self, at: Instant, limit: u32) -> bool {
        while self
            .0
            .front()
            .is_some_and(|&admitted| at.duration_since(admitted) >= Duration::from_secs(1))
        {
            self.0.pop_front();
        }
        self.0.len() < limit as usize
    }

    pub fn admit(&mut self, at: Instant) {
        self.0.push_back(at);
    }
}

pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{tail}")
}

#[derive(Debug, Clone)]
pub struct ReportTypeState {
    pub config: ReportTypeConfig,
    pub data_available_start: i64,
    pub data_available_end: i64,
    pub updated: i64,
    pub runs_created: u32,
}

impl ReportTypeState {
    pub fn new(config: ReportTypeConfig, now: i64) -> Self {
        let end = config
            .data_available_end
            .unwrap_or_else(|| default_available_end(now));
        let start = config.data_available_start.unwrap_or(end - 365 * DAY);
        Self {
            config,
            data_available_start: start,
            data_available_end: end,
            updated: now,
            runs_created: 0,
        }
    }

    /// The columns of a run without `columns`.
    pub fn default_columns(&self) -> Vec<String> {
        report_columns::default_columns(&self.config.id, self.config.default_columns.as_deref())
    }

    pub fn to_json(&self, livemode: bool) -> Value {
        json!({
            "data_available_end": self.data_available_end,
            "data_available_start": self.data_available_start,
            "default_columns": self.default_columns(),
            "id": self.config.id,
            "livemode": livemode,
            "name": self.config.name.clone().unwrap_or_else(|| self.config.id.clone()),
            "object": "reporting.report_type",
            "updated": self.updated,
            "version": self.config.id.rsplit('.').next().and_then(|v| v.parse::<i64>().ok()).unwrap_or(1),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
pub struct RunState {
    pub id: String,
    pub created: i64,
    pub report_type: String,
    pub parameters: Value,
    pub status: RunStatus,
    pub will_fail: bool,
    pub error: Option<String>,
    pub succeeded_at: Option<i64>,
    pub file_id: String,
    pub file_size: u64,
    /// What the file is made from (its size is `file_size`).
    pub file: FileSpec,
}

impl RunState {
    pub fn file_json(&self, files_base: &str) -> Value {
        json!({
            "created": self.succeeded_at.unwrap_or(self.created),
            "expires_at": self.succeeded_at.unwrap_or(self.created) + 365 * DAY,
            "filename": format!("{}.csv", self.id),
            "id": self.file_id,
            "links": null,
            "object": "file",
            "purpose": "finance_report_run",
            "size": self.file_size,
            "title": format!("{} {}", self.report_type, self.id),
            "type": "csv",
            "url": format!("{}/v1/files/{}/contents", files_base.trim_end_matches('/'), self.file_id),
        })
    }

    pub fn to_json(&self, livemode: bool, files_base: &str) -> Value {
        let (status, result) = match self.status {
            RunStatus::Pending => ("pending", Value::Null),
            RunStatus::Succeeded => ("succeeded", self.file_json(files_base)),
            RunStatus::Failed => ("failed", Value::Null),
        };
        json!({
            "created": self.created,
            "error": self.error,
            "id": self.id,
            "livemode": livemode,
            "object": "reporting.report_run",
            "parameters": self.parameters,
            "report_type": self.report_type,
            "result": result,
            "status": status,
            "succeeded_at": self.succeeded_at,
        })
    }
}

/// The kinds of object an API path can name, for telling whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    ReportRun,
    ReportType,
    File,
    Event,
}

/// One account's objects: what its key sees, and all that it sees.
pub struct AccountState {
    /// `acct_...`.
    pub id: String,
    /// When the emulator started: the account's `created`.
    pub created: i64,
    pub report_types: BTreeMap<String, ReportTypeState>,
    /// In creation order; lists show them newest first.
    pub runs: Vec<RunState>,
    pub run_index: HashMap<String, usize>,
    pub file_index: HashMap<String, usize>,
    /// Idempotency-Key → (request fingerprint, run id). Scoped to the
    /// account, as at Stripe: another account may use the same key.
    pub idempotency: HashMap<String, (String, String)>,
    /// Events in creation order.
    pub events: Vec<Value>,
    pub event_index: HashMap<String, usize>,
    /// When each request of the last second was admitted, for the
    /// account's rate limit, and for each of its endpoints'.
    pub rate_window: RateWindow,
    pub endpoint_windows: HashMap<String, RateWindow>,
}

impl AccountState {
    pub fn new(id: &str, report_types: &[ReportTypeConfig], now: i64) -> Self {
        Self {
            id: id.to_owned(),
            created: now,
            report_types: report_types
                .iter()
                .map(|c| (c.id.clone(), ReportTypeState::new(c.clone(), now)))
                .collect(),
            runs: Vec::new(),
            run_index: HashMap::new(),
            file_index: HashMap::new(),
            idempotency: HashMap::new(),
            events: Vec::new(),
            event_index: HashMap::new(),
            rate_window: RateWindow::default(),
            endpoint_windows: HashMap::new(),
        }
    }

    pub fn run(&self, id: &str) -> Option<&RunState> {
        self.run_index.get(id).map(|&i| &self.runs[i])
    }

    pub fn run_mut(&mut self, id: &str) -> Option<&mut RunState> {
        self.run_index.get(id).copied().map(|i| &mut self.runs[i])
    }

    /// The run whose file this is, succeeded or not.
    pub fn run_of_file(&self, file_id: &str) -> Option<&RunState> {
        self.file_index.get(file_id).map(|&i| &self.runs[i])
    }

    pub fn event(&self, id: &str) -> Option<&Value> {
        self.event_index.get(id).map(|&i| &self.events[i])
    }

    /// Whether this account has the object `kind`/`id`.
    pub fn owns(&self, kind: ObjectKind, id: &str) -> bool {
        match kind {
            ObjectKind::ReportRun => self.run_index.contains_key(id),
            ObjectKind::ReportType => self.report_types.contains_key(id),
            ObjectKind::File => self.file_index.contains_key(id),
            ObjectKind::Event => self.event_index.contains_key(id),
        }
    }

    /// Stripe's Account object, as `GET /v1/account` shows it: the fields a
    /// client reads to learn whose key it holds, not the Connect settings.
    /// The business profile's always-present fields are all unset (null).
    pub fn to_json(&self) -> Value {
        json!({
            "business_profile": {
                "mcc": null,
                "name": null,
                "support_address": null,
                "support_email": null,
                "support_phone": null,
                "support_url": null,
                "url": null,
            },
            "charges_enabled": true,
            "country": "US",
            "created": self.created,
            "default_currency": "usd",
            "details_submitted": true,
            "email": null,
            "id": self.id,
            "object": "account",
            "payouts_enabled": true,
            "type": "standard",
        })
    }

    /// Records an event of this account and returns it. Like Stripe's events
    /// about the account's own objects, it has no `account` field (that is
    /// for Connect events about connected accounts).
    pub fn push_event(&mut self, event_type: &str, object: Value, livemode: bool) -> Value {
        let event = json!({
            "api_version": crate::API_VERSION,
            "created": now(),
            "data": {"object": object},
            "id": new_id("evt"),
            "livemode": livemode,
            "object": "event",
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": event_type,
        });
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        self.event_index.insert(id, self.events.len());
        self.events.push(event.clone());
        event
    }
}

/// Everything the emulator holds, behind one lock.
pub struct State {
    /// In the order of [`crate::EmulatorConfig::accounts`]: an account is
    /// referred to by its index here.
    pub accounts: Vec<AccountState>,
    /// Counted over all accounts.
    pub stats: Stats,
    pub faults: Faults,
    pub storm_until: Option<Instant>,
    /// Every API and file request, for checks of where the key was sent.
    pub requests: Vec<RequestRecord>,
    /// Every webhook delivery attempt and its answer, oldest first.
    pub webhook_log: Vec<WebhookDelivery>,
    /// Every EventBridge delivery attempt and its answer, oldest first.
    pub eventbridge_log: Vec<EventBridgeDelivery>,
    /// The random decisions (error-storm draws, webhook and EventBridge
    /// shuffle delays, EventBridge event ids);
    /// seeded from the configuration or the faults, else from the OS.
    pub rng: StdRng,
}

/// One request as the emulator received it (the admin routes are not recorded).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// The address of the listener it arrived on.
    pub listener: String,
    /// The `Host` header the client sent.
    pub host: String,
    pub method: String,
    /// Without the query.
    pub path: String,
    /// Whether an `Authorization` header came with it.
    pub authorization: bool,
    /// The account whose key was presented (`None`: no key, or an unknown one).
    pub account: Option<String>,
    /// The account owning the object the path names (a report run, report
    /// type, file, file contents or event), if any does. A report type
    /// several accounts have is the presenting account's when it has it.
    pub object_account: Option<String>,
}

/// Older records are dropped beyond this (a fan-out test makes thousands).
pub const MAX_REQUEST_RECORDS: usize = 200_000;

/// A random generator from `seed`, or from the OS when there is none.
pub fn rng_for(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

impl State {
    pub fn new(accounts: &[AccountConfig], seed: Option<u64>) -> Self {
        let now = now();
        Self {
            accounts: accounts
                .iter()
                .map(|account| {
                    AccountState::new(
                        &account.id,
                        account.report_types.as_deref().unwrap_or_default(),
                        now,
                    )
                })
                .collect(),
            stats: Stats::default(),
            faults: Faults::default(),
            storm_until: None,
            requests: Vec::new(),
            webhook_log: Vec::new(),
            eventbridge_log: Vec::new(),
            rng: rng_for(seed),
        }
    }

    /// The account owning the object `kind`/`id` (see [`AccountState::owns`]),
    /// trying `presenting` first.
    pub fn owner_of(&self, kind: ObjectKind, id: &str, presenting: Option<usize>) -> Option<&str> {
        presenting
            .and_then(|index| self.accounts.get(index))
            .filter(|account| account.owns(kind, id))
            .or_else(|| self.accounts.iter().find(|account| account.owns(kind, id)))
            .map(|account| account.id.as_str())
    }

    /// Records an event of `account` and returns it.
    pub fn push_event(
        &mut self,
        account: usize,
        event_type: &str,
        object: Value,
        livemode: bool,
    ) -> Value {
        self.stats.events += 1;
        self.accounts[account].push_event(event_type, object, livemode)
    }
}
