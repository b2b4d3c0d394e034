//! HTTP routing, authentication, faults and the reporting API itself.
// Handlers answer errors as ready HTTP responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use crate::Shared;
use crate::config::{Faults, MAX_STORM, duration_from_secs};
use crate::csv::{CsvGenerator, FileSpec, FileSpecError, FileTotals, seed_for};
use crate::delivery;
use crate::state::{
    MAX_REQUEST_RECORDS, ObjectKind, ReportTypeState, RequestRecord, RunState, RunStatus, State,
    new_id, now, rng_for,
};

/// The listener a request arrived on, so that the request log can tell an
/// allow-listed host from an off-list one served by the same emulator.
#[derive(Clone)]
pub struct Listener(pub String);

pub fn router(shared: Arc<Shared>, listener: Listener) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(axum::Extension(listener))
        .with_state(shared)
}

/// The object an API path names, if any (file contents name their file).
fn named_object<'a>(segments: &[&'a str]) -> Option<(ObjectKind, &'a str)> {
    match segments {
        ["v1", "reporting", "report_runs", id] => Some((ObjectKind::ReportRun, id)),
        ["v1", "reporting", "report_types", id] => Some((ObjectKind::ReportType, id)),
        ["v1", "files", id] | ["v1", "files", id, "contents"] => Some((ObjectKind::File, id)),
        ["v1", "events", id] => Some((ObjectKind::Event, id)),
        _ => None,
    }
}

/// Logs a request with the account whose key it presents (`account`) and
/// the account owning the object its path names.
fn record_request(
    shared: &Shared,
    listener: &Listener,
    method: &Method,
    uri: &Uri,
    segments: &[&str],
    headers: &HeaderMap,
    account: Option<usize>,
) {
    let mut state = shared.lock();
    let object_account = named_object(segments)
        .and_then(|(kind, id)| state.owner_of(kind, id, account))
        .map(str::to_owned);
    let record = RequestRecord {
        listener: listener.0.clone(),
        host: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: headers.contains_key(header::AUTHORIZATION),
        account: account.map(|index| shared.accounts[index].id.clone()),
        object_account,
    };
    if state.requests.len() >= MAX_REQUEST_RECORDS {
        state.requests.drain(..MAX_REQUEST_RECORDS / 2);
    }
    state.requests.push(record);
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let request_id = new_id("req");
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::HeaderName::from_static("request-id"), request_id),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Stripe's error shape: `{"error": {"type", "code"?, "param"?, "message"}}`.
fn stripe_error(
    status: StatusCode,
    error_type: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Response {
    let mut error = json!({"type": error_type, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json_response(status, json!({ "error": error }))
}

fn invalid(param: Option<&str>, message: &str) -> Response {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        param.map(|_| "parameter_invalid"),
        param,
        message,
    )
}

fn missing(param: &str, what: &str, id: &str) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        Some(param),
        &format!("No such {what}: '{id}'"),
    )
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The API key of a request: `Bearer <key>`, or Basic with the key as user.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or_default().to_owned())
}

/// A key as Stripe shows it in errors: its prefix (`sk_test_`), then stars,
/// then its last four characters if that still hides most of it.
fn masked_key(key: &str) -> String {
    let prefix_len = key.match_indices('_').nth(1).map_or(0, |(at, _)| at + 1);
    let (prefix, rest) = key.split_at(prefix_len);
    let rest: Vec<char> = rest.chars().collect();
    let shown = if rest.len() >= 12 { 4 } else { 0 };
    let hidden = "*".repeat(rest.len() - shown);
    let tail: String = rest[rest.len() - shown..].iter().collect();
    format!("{prefix}{hidden}{tail}")
}

/// The account a request's key selects, or Stripe's 401: no key, a key of
/// no account, or the key of an account revoked by the faults.
fn authenticate(shared: &Shared, key: Option<&str>) -> Result<usize, Response> {
    let account = key.and_then(|key| shared.account_with_key(key));
    let message = match (key, account) {
        (Some(key), Some(index)) => {
            let revoked = shared
                .lock()
                .faults
                .revoked_accounts
                .contains(&shared.accounts[index].id);
            if !revoked {
                return Ok(index);
            }
            format!("Expired API Key provided: {}", masked_key(key))
        }
        (Some(_), None) => "Invalid API Key provided.".to_owned(),
        (None, _) => "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth.".to_owned(),
    };
    shared.lock().stats.unauthorized += 1;
    Err(stripe_error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        None,
        None,
        &message,
    ))
}

/// Whether `key` is a live-mode key (Stripe's limits differ by mode).
fn is_live_key(key: Option<&str>) -> bool {
    key.is_some_and(|key| key.starts_with("sk_live_") || key.starts_with("rk_live_"))
}

/// The endpoint a request goes to, as Stripe counts them for its
/// per-endpoint limits: the method and the path, with the object's id left
/// out (`GET /v1/reporting/report_runs/{id}` for every run).
fn endpoint_of(method: &Method, segments: &[&str]) -> String {
    match segments {
        ["v1", "reporting", kind, _] => format!("{method} /v1/reporting/{kind}/{{id}}"),
        ["v1", kind, _] => format!("{method} /v1/{kind}/{{id}}"),
        _ => format!("{method} /{}", segments.join("/")),
    }
}

/// Whether a request of `account` to `endpoint` (made with a live-mode key
/// when `live`) is within the rate limits set by the faults; an admitted
/// request counts in the account's and the endpoint's windows.
fn within_rate_limits(state: &mut State, account: usize, live: bool, endpoint: &str) -> bool {
    let faults = &state.faults;
    let account_limit = if live {
        faults.live_rate_limit_rps.or(faults.rate_limit_rps)
    } else {
        faults.rate_limit_rps
    };
    let endpoint_limit = faults.endpoint_rate_limit_rps;
    if account_limit.is_none() && endpoint_limit.is_none() {
        return true;
    }
    let at = Instant::now();
    let account_state = &mut state.accounts[account];
    let account_room =
        account_limit.is_none_or(|limit| account_state.rate_window.has_room(at, limit));
    let endpoint_window = endpoint_limit.map(|limit| {
        let window = account_state
            .endpoint_windows
            .entry(endpoint.to_owned())
            .or_default();
        (window.has_room(at, limit), window)
    });
    let endpoint_room = endpoint_window.as_ref().is_none_or(|(room, _)| *room);
    if !(account_room && endpoint_room) {
        return false;
    }
    if let Some((_, window)) = endpoint_window {
        window.admit(at);
    }
    if account_limit.is_some() {
        account_state.rate_window.admit(at);
    }
    true
}

/// Rate limit, injected responses and error storms, in that order, for a
/// request to `endpoint` made with `account`'s key (a live-mode key when `live`).
fn fault_for(
    shared: &Shared,
    account: usize,
    live: bool,
    endpoint: &str,
    method: &Method,
    path: &str,
) -> Option<Response> {
    let account_id = shared.accounts[account].id.as_str();
    let applies = |scope: &Option<String>| scope.as_deref().is_none_or(|id| id == account_id);
    let mut guard = shared.lock();
    // Through a plain reference, so that the storm and the generator (two
    // fields) can be borrowed at once.
    let state = &mut *guard;
    if !within_rate_limits(state, account, live, endpoint) {
        state.stats.rate_limited += 1;
        return Some(stripe_error(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            None,
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        ));
    }
    let matching = state.faults.inject.iter().position(|injection| {
        injection.times > 0
            && applies(&injection.account)
            && path.starts_with(&injection.path_prefix)
            && injection
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
    });
    let mut chosen = None;
    if let Some(index) = matching {
        let injection = &mut state.faults.inject[index];
        injection.times -= 1;
        if let Some(body) = injection.body.clone() {
            let status = StatusCode::from_u16(injection.status).unwrap_or(StatusCode::OK);
            state.stats.injected_errors += 1;
            return Some(
                Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            );
        }
        chosen = Some((
            injection.status,
            injection.should_retry,
            injection.retry_after.clone(),
        ));
    }
    if chosen.is_none()
        && let (Some(storm), Some(until)) = (&state.faults.storm, state.storm_until)
        && Instant::now() < until
        && applies(&storm.account)
        && state.rng.random::<f64>() < storm.fraction
    {
        chosen = Some((storm.status, storm.should_retry, None));
    }
    let (status, should_retry, retry_after) = chosen?;
    state.stats.injected_errors += 1;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (error_type, code, message) = match status.as_u16() {
        429 => (
            "invalid_request_error",
            Some("rate_limit"),
            "Too many requests hit the API too quickly.",
        ),
        409 => (
            "invalid_request_error",
            Some("lock_timeout"),
            "This object cannot be accessed right now because another API request or Stripe process is accessing it.",
        ),
        s if s >= 500 => (
            "api_error",
            None,
            "An unknown error occurred (injected by the emulator).",
        ),
        _ => ("invalid_request_error", None, "Injected error."),
    };
    let mut response = stripe_error(status, error_type, code, None, message);
    if let Some(retry) = should_retry {
        response.headers_mut().insert(
            "stripe-should-retry",
            header::HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
    }
    if let Some(value) = retry_after.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

async fn dispatch(
    Extract(shared): Extract<Arc<Shared>>,
    axum::Extension(listener): axum::Extension<Listener>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.first() == Some(&"_emulator") {
        return admin(&shared, &method, &segments[1..], &uri, &body);
    }
    let key = presented_key(&headers);
    let presenting = key.as_deref().and_then(|key| shared.account_with_key(key));
    record_request(
        &shared, &listener, &method, &uri, &segments, &headers, presenting,
    );
    if let ["v1", "files", file_id, "contents"] = segments.as_slice() {
        if method != Method::GET {
            return invalid(None, "Unrecognized request URL.");
        }
        let account = match authenticate(&shared, key.as_deref()) {
            Ok(account) => account,
            Err(denied) => return denied,
        };
        let redirect = shared.lock().faults.file_redirect_base.clone();
        if let Some(base) =
            redirect.filter(|_| !uri.query().unwrap_or_default().contains("redirected=1"))
        {
            let location = format!(
                "{}/v1/files/{file_id}/contents?redirected=1",
                base.trim_end_matches('/')
            );
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        return file_contents(&shared, account, file_id);
    }
    let latency = {
        let mut state = shared.lock();
        state.stats.api_requests += 1;
        state.faults.api_latency_ms
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency.min(60_000))).await;
    }
    let account = match authenticate(&shared, key.as_deref()) {
        Ok(account) => account,
        Err(denied) => return denied,
    };
    let endpoint = endpoint_of(&method, &segments);
    let live = is_live_key(key.as_deref());
    if let Some(fault) = fault_for(&shared, account, live, &endpoint, &method, &path) {
        return fault;
    }
    let query = query_pairs(&uri);
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["v1", "account"]) => {
            let state = shared.lock();
            json_response(StatusCode::OK, state.accounts[account].to_json())
        }
        (Method::GET, ["v1", "reporting", "report_types"]) => list_report_types(&shared, account),
        (Method::GET, ["v1", "reporting", "report_types", id]) => {
            get_report_type(&shared, account, id)
        }
        (Method::POST, ["v1", "reporting", "report_runs"]) => {
            let idempotency_key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            create_report_run(&shared, account, idempotency_key, &body)
        }
        (Method::GET, ["v1", "reporting", "report_runs"]) => {
            list_report_runs(&shared, account, &query)
        }
        (Method::GET, ["v1", "reporting", "report_runs", id]) => {
            get_report_run(&shared, account, id)
        }
        (Method::GET, ["v1", "events"]) => list_events(&shared, account, &query),
        (Method::GET, ["v1", "events", id]) => get_event(&shared, account, id),
        (Method::GET, ["v1", "files", id]) => get_file(&shared, account, id),
        _ => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            None,
            &format!("Unrecognized request URL ({method}: {path})."),
        ),
    }
}

fn list_json(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "data": data, "has_more": has_more, "url": url})
}

fn list_report_types(shared: &Shared, account: usize) -> Response {
    let state = shared.lock();
    let data = state.accounts[account]
        .report_types
        .values()
        .map(|t| t.to_json(shared.config.livemode))
        .collect();
    json_response(
        StatusCode::OK,
        list_json("/v1/reporting/report_types", data, false),
    )
}

fn get_report_type(shared: &Shared, account: usize, id: &str) -> Response {
    let state = shared.lock();
    match state.accounts[account].report_types.get(id) {
        Some(t) => json_response(StatusCode::OK, t.to_json(shared.config.livemode)),
        None => missing("report_type", "report type", id),
    }
}

fn get_report_run(shared: &Shared, account: usize, id: &str) -> Response {
    let state = shared.lock();
    match state.accounts[account].run(id) {
        Some(run) => json_response(
            StatusCode::OK,
            run.to_json(shared.config.livemode, &shared.files_base),
        ),
        None => missing("report_run", "reporting.report_run", id),
    }
}

fn get_file(shared: &Shared, account: usize, id: &str) -> Response {
    let state = shared.lock();
    match state.accounts[account].run_of_file(id) {
        Some(run) if run.status == RunStatus::Succeeded => {
            json_response(StatusCode::OK, run.file_json(&shared.files_base))
        }
        _ => missing("file", "file", id),
    }
}

fn get_event(shared: &Shared, account: usize, id: &str) -> Response {
    let state = shared.lock();
    match state.accounts[account].event(id) {
        Some(event) => json_response(StatusCode::OK, event.clone()),
        None => missing("id", "event", id),
    }
}

/// `limit` (1–100, default 10), `starting_after`, `created[gte|gt|lte|lt]` or
/// `created=<n>`, over items listed newest first.
fn paginate(items: Vec<Value>, query: &[(String, String)], url: &str) -> Result<Value, Response> {
    let mut limit = 10usize;
    let mut starting_after = None;
    let mut filters: Vec<(&str, i64)> = Vec::new();
    for (name, value) in query {
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| invalid(Some(name), &format!("Invalid integer: {value}")))
        };
        match name.as_str() {
            "limit" => {
                let n = number()?;
                if !(1..=100).contains(&n) {
                    return Err(invalid(
                        Some("limit"),
                        "This value must be between 1 and 100.",
                    ));
                }
                limit = n as usize;
            }
            "starting_after" => starting_after = Some(value.clone()),
            "created" => filters.push(("eq", number()?)),
            "created[gte]" => filters.push(("gte", number()?)),
            "created[gt]" => filters.push(("gt", number()?)),
            "created[lte]" => filters.push(("lte", number()?)),
            "created[lt]" => filters.push(("lt", number()?)),
            "type" | "types[]" | "expand[]" => {}
            other if other.starts_with("types[") => {}
            other => {
                return Err(invalid(
                    Some(other),
                    &format!("Received unknown parameter: {other}"),
                ));
            }
        }
    }
    let kept: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            let created = item["created"].as_i64().unwrap_or_default();
            filters.iter().all(|(op, bound)| match *op {
                "eq" => created == *bound,
                "gte" => created >= *bound,
                "gt" => created > *bound,
                "lte" => created <= *bound,
                _ => created < *bound,
            })
        })
        .collect();
    let start = match starting_after {
        None => 0,
        Some(id) => match kept.iter().position(|item| item["id"] == id.as_str()) {
            Some(index) => index + 1,
            None => {
                return Err(missing("starting_after", "object", &id));
            }
        },
    };
    let page: Vec<Value> = kept.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < kept.len();
    Ok(list_json(url, page, has_more))
}

/// An account's runs, oldest first, as the API shows them.
pub fn runs_json(shared: &Shared, account: usize) -> Vec<Value> {
    let state = shared.lock();
    state.accounts[account]
        .runs
        .iter()
        .map(|run| run.to_json(shared.config.livemode, &shared.files_base))
        .collect()
}

fn list_report_runs(shared: &Shared, account: usize, query: &[(String, String)]) -> Response {
    let mut items = runs_json(shared, account);
    items.reverse();
    match paginate(items, query, "/v1/reporting/report_runs") {
        Ok(list) => json_response(StatusCode::OK, list),
        Err(response) => response,
    }
}

fn list_events(shared: &Shared, account: usize, query: &[(String, String)]) -> Response {
    let types: Vec<&str> = query
        .iter()
        .filter(|(name, _)| name == "type" || name.starts_with("types["))
        .map(|(_, value)| value.as_str())
        .collect();
    let items = {
        let state = shared.lock();
        state.accounts[account]
            .events
            .iter()
            .rev()
            .filter(|event| {
                types.is_empty()
                    || types.iter().any(|t| {
                        let wanted = event["type"].as_str().unwrap_or_default();
                        match t.strip_suffix('*') {
                            Some(prefix) => wanted.starts_with(prefix),
                            None => wanted == *t,
                        }
                    })
            })
            .cloned()
            .collect()
    };
    match paginate(items, query, "/v1/events") {
        Ok(list) => json_response(StatusCode::OK, list),
        Err(response) => response,
    }
}

const RUN_PARAMETERS: [&str; 8] = [
    "columns",
    "connected_account",
    "currency",
    "interval_end",
    "interval_start",
    "payout",
    "reporting_category",
    "timezone",
];

/// Parses the form body of a create into (report_type, parameters object).
fn parse_create(body: &[u8]) -> Result<(String, Value, String), Response> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut report_type = None;
    let mut parameters = serde_json::Map::new();
    let mut columns: BTreeMap<usize, String> = BTreeMap::new();
    let mut next_column = 0usize;
    for (name, value) in &pairs {
        if name == "report_type" {
            report_type = Some(value.clone());
            continue;
        }
        if name.starts_with("expand[") {
            continue;
        }
        let Some(inner) = name.strip_prefix("parameters[") else {
            return Err(invalid(
                Some(name),
                &format!("Received unknown parameter: {name}"),
            ));
        };
        if let Some(rest) = inner.strip_prefix("columns]") {
            let index = match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some("") => next_column,
                Some(n) => n
                    .parse()
                    .map_err(|_| invalid(Some(name), &format!("Invalid array index in {name}")))?,
                None => {
                    return Err(invalid(Some(name), "parameters[columns] must be an array"));
                }
            };
            next_column = index + 1;
            columns.insert(index, value.clone());
            continue;
        }
        let Some(field) = inner.strip_suffix(']') else {
            return Err(invalid(
                Some(name),
                &format!("Received unknown parameter: {name}"),
            ));
        };
        if !RUN_PARAMETERS.contains(&field) {
            return Err(invalid(
                Some(name),
                &format!("Received unknown parameter: parameters[{field}]"),
            ));
        }
        let parsed = if field.starts_with("interval_") {
            let n: i64 = value
                .parse()
                .map_err(|_| invalid(Some(name), &format!("Invalid integer: {value}")))?;
            json!(n)
        } else if field == "currency" {
            // Stripe stores and echoes currencies as lowercase ISO codes.
            json!(value.to_ascii_lowercase())
        } else {
            json!(value)
        };
        parameters.insert(field.to_owned(), parsed);
    }
    if !columns.is_empty() {
        parameters.insert(
            "columns".into(),
            json!(columns.into_values().collect::<Vec<_>>()),
        );
    }
    let report_type = report_type
        .ok_or_else(|| invalid(Some("report_type"), "Missing required param: report_type."))?;
    let mut sorted = pairs.clone();
    sorted.sort();
    let fingerprint = serde_json::to_string(&sorted).unwrap_or_default();
    Ok((report_type, Value::Object(parameters), fingerprint))
}

fn create_report_run(
    shared: &Arc<Shared>,
    account: usize,
    idempotency_key: Option<String>,
    body: &[u8],
) -> Response {
    let (report_type, parameters, fingerprint) = match parse_create(body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let mut guard = shared.lock();
    // Through a plain reference, so that the account and the counters (two
    // fields) can be borrowed at once.
    let state = &mut *guard;
    let owner = &mut state.accounts[account];
    if let Some(key) = &idempotency_key
        && let Some((seen, run_id)) = owner.idempotency.get(key).cloned()
    {
        if seen != fingerprint {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                None,
                &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            );
        }
        state.stats.idempotent_replays += 1;
        if let Some(run) = owner.run(&run_id) {
            let mut response = json_response(
                StatusCode::OK,
                run.to_json(shared.config.livemode, &shared.files_base),
            );
            response.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            return response;
        }
    }
    let Some(kind) = owner.report_types.get_mut(&report_type) else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            Some("report_type"),
            &format!("No such report type: '{report_type}'"),
        );
    };
    let start = parameters["interval_start"].as_i64();
    let end = parameters["interval_end"].as_i64();
    if let Some(start) = start
        && start < kind.data_available_start
    {
        return invalid(
            Some("parameters[interval_start]"),
            &format!(
                "parameters[interval_start] must be greater than or equal to the data_available_start of {report_type} ({}).",
                kind.data_available_start
            ),
        );
    }
    if let Some(end) = end
        && end > kind.data_available_end
    {
        return invalid(
            Some("parameters[interval_end]"),
            &format!(
                "parameters[interval_end] must be less than or equal to the data_available_end of {report_type} ({}).",
                kind.data_available_end
            ),
        );
    }
    if let (Some(start), Some(end)) = (start, end)
        && start >= end
    {
        return invalid(
            Some("parameters[interval_end]"),
            "parameters[interval_end] must be after parameters[interval_start].",
        );
    }
    let will_fail = kind.config.fail || kind.runs_created < kind.config.fail_first_runs;
    let file_size = kind.config.file_size.unwrap_or(4096);
    let created = now();
    let file_id = new_id("file");
    let file = match FileSpec::for_run(
        seed_for(&file_id),
        file_size,
        &report_type,
        &parameters,
        kind.default_columns(),
        created,
    ) {
        Ok(file) => FileSpec {
            byte_order_mark: state.faults.files_byte_order_mark,
            crlf: state.faults.files_crlf,
            ..file
        },
        Err(err @ FileSpecError::UnknownTimezone(_)) => {
            return invalid(Some("parameters[timezone]"), &err.to_string());
        }
    };
    kind.runs_created += 1;
    let id = new_id("frr");
    let run = RunState {
        id: id.clone(),
        created,
        report_type,
        parameters,
        status: RunStatus::Pending,
        will_fail,
        error: None,
        succeeded_at: None,
        file_id,
        file_size,
        file,
    };
    let json = run.to_json(shared.config.livemode, &shared.files_base);
    let index = owner.runs.len();
    owner.run_index.insert(id.clone(), index);
    owner.file_index.insert(run.file_id.clone(), index);
    owner.runs.push(run);
    if let Some(key) = idempotency_key {
        owner.idempotency.insert(key, (fingerprint, id.clone()));
    }
    state.stats.runs_created += 1;
    drop(guard);
    let shared = shared.clone();
    let delay = shared.config.run_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        finish_run(&shared, account, &id);
    });
    json_response(StatusCode::OK, json)
}

/// `pending → succeeded|failed`, with its event and webhook.
fn finish_run(shared: &Arc<Shared>, account: usize, id: &str) {
    let event = {
        let mut state = shared.lock();
        let Some(run) = state.accounts[account].run_mut(id) else {
            return;
        };
        if run.status != RunStatus::Pending {
            return;
        }
        let event_type = if run.will_fail {
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "Unable to generate {} for this interval (failure configured in the emulator).",
                run.report_type
            ));
            "reporting.report_run.failed"
        } else {
            run.status = RunStatus::Succeeded;
            run.succeeded_at = Some(now());
            "reporting.report_run.succeeded"
        };
        let object = run.to_json(shared.config.livemode, &shared.files_base);
        state.push_event(account, event_type, object, shared.config.livemode)
    };
    delivery::publish(shared, account, &event);
}

/// Changes a report type's availability in `account` and announces it.
pub fn update_report_type(
    shared: &Arc<Shared>,
    account: usize,
    id: &str,
    start: Option<i64>,
    end: Option<i64>,
) -> Option<Value> {
    let event = {
        let mut state = shared.lock();
        let kind: &mut ReportTypeState = state.accounts[account].report_types.get_mut(id)?;
        if let Some(start) = start {
            kind.data_available_start = start;
        }
        if let Some(end) = end {
            kind.data_available_end = end;
        }
        kind.updated = now();
        let object = kind.to_json(shared.config.livemode);
        state.push_event(
            account,
            "reporting.report_type.updated",
            object,
            shared.config.livemode,
        )
    };
    delivery::publish(shared, account, &event);
    Some(event)
}

/// What a file is made from, whichever account's it is.
fn file_spec(shared: &Shared, file_id: &str) -> Option<FileSpec> {
    let state = shared.lock();
    state
        .accounts
        .iter()
        .find_map(|account| account.run_of_file(file_id))
        .map(|run| run.file.clone())
}

/// SHA-256 and size of a file, whichever account's it is.
pub fn file_digest(shared: &Shared, file_id: &str) -> Option<(String, u64)> {
    let spec = file_spec(shared, file_id)?;
    let size = spec.size;
    Some((CsvGenerator::new(spec).sha256(), size))
}

/// Row count and amount sums of a file, whichever account's it is.
pub fn file_totals(shared: &Shared, file_id: &str) -> Option<FileTotals> {
    Some(CsvGenerator::new(file_spec(shared, file_id)?).totals())
}

/// A file's bytes, for the key of the account owning it only.
fn file_contents(shared: &Shared, account: usize, file_id: &str) -> Response {
    let (spec, truncate, rate) = {
        let mut state = shared.lock();
        let spec = match state.accounts[account].run_of_file(file_id) {
            Some(run) if run.status == RunStatus::Succeeded => run.file.clone(),
            _ => return missing("file", "file", file_id),
        };
        state.stats.file_downloads += 1;
        let truncate = state.faults.truncate_files > 0;
        if truncate {
            state.faults.truncate_files -= 1;
            state.stats.files_truncated += 1;
        }
        (spec, truncate, state.faults.file_bytes_per_sec)
    };
    let size = spec.size;
    let cut_at = if truncate { size / 2 } else { u64::MAX };
    let generator = CsvGenerator::new(spec);
    let stream = futures_util::stream::unfold(
        (generator, 0u64, false),
        move |(mut generator, sent, done)| async move {
            if done {
                return None;
            }
            let mut chunk = generator.next_chunk()?;
            let mut cut = false;
            if sent + chunk.len() as u64 >= cut_at {
                chunk.truncate((cut_at - sent) as usize);
                cut = true;
            }
            if let Some(rate) = rate.filter(|r| *r > 0) {
                let wait = duration_from_secs(chunk.len() as f64 / rate as f64, MAX_CHUNK_WAIT);
                tokio::time::sleep(wait).await;
            }
            let sent = sent + chunk.len() as u64;
            Some((Ok(Bytes::from(chunk)), (generator, sent, cut)))
        },
    );
    // After a truncated chunk the stream ends with an error, which makes hyper
    // abort the connection short of the announced Content-Length.
    let stream = futures_util::StreamExt::chain(
        stream,
        futures_util::stream::iter(truncate.then(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "truncated by the emulator",
            ))
        })),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/csv")
        .header(header::CONTENT_LENGTH, size)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename={file_id}.csv"),
        )
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The longest a slow file waits before one chunk (`file_bytes_per_sec`).
const MAX_CHUNK_WAIT: Duration = Duration::from_secs(3600);

pub fn apply_faults(shared: &Shared, faults: Faults) {
    let mut state = shared.lock();
    let now = Instant::now();
    state.storm_until = faults.storm.as_ref().map(|storm| {
        let lasts = duration_from_secs(storm.seconds, MAX_STORM);
        now.checked_add(lasts).unwrap_or(now)
    });
    if let Some(seed) = faults.seed {
        state.rng = rng_for(Some(seed));
    }
    state.faults = faults;
}

/// Forgets every account's idempotency keys (Stripe's 24-hour window moved forward).
pub fn expire_idempotency_keys(shared: &Shared) -> usize {
    let mut state = shared.lock();
    let forgotten = state
        .accounts
        .iter_mut()
        .map(|account| {
            let forgotten = account.idempotency.len();
            account.idempotency.clear();
            forgotten
        })
        .sum();
    tracing::info!(forgotten, "idempotency keys expired");
    forgotten
}

/// The account an admin route acts on: `?account=acct_...`, else the default (first) one.
fn admin_account(shared: &Shared, uri: &Uri) -> Result<usize, Response> {
    match query_pairs(uri)
        .into_iter()
        .find(|(name, _)| name == "account")
    {
        None => Ok(0),
        Some((_, id)) => shared
            .account_index(&id)
            .ok_or_else(|| missing("account", "account", &id)),
    }
}

fn admin(
    shared: &Arc<Shared>,
    method: &Method,
    segments: &[&str],
    uri: &Uri,
    body: &[u8],
) -> Response {
    let account = match admin_account(shared, uri) {
        Ok(account) => account,
        Err(unknown) => return unknown,
    };
    match (method.clone(), segments) {
        (Method::GET, ["stats"]) => {
            let stats = shared.lock().stats.clone();
            json_response(StatusCode::OK, json!(stats))
        }
        (Method::GET, ["requests"]) => {
            let requests = shared.lock().requests.clone();
            json_response(StatusCode::OK, json!(requests))
        }
        (Method::GET, ["webhooks"]) => {
            let deliveries = shared.lock().webhook_log.clone();
            json_response(StatusCode::OK, json!(deliveries))
        }
        (Method::GET, ["eventbridge"]) => {
            let deliveries = shared.lock().eventbridge_log.clone();
            json_response(StatusCode::OK, json!(deliveries))
        }
        (Method::POST, ["idempotency", "expire"]) => {
            let expired = expire_idempotency_keys(shared);
            json_response(StatusCode::OK, json!({ "expired": expired }))
        }
        (Method::GET, ["faults"]) => {
            let faults = shared.lock().faults.clone();
            json_response(StatusCode::OK, json!(faults))
        }
        (Method::POST, ["faults"]) => match serde_json::from_slice::<Faults>(body) {
            Ok(faults) => {
                apply_faults(shared, faults);
                json_response(StatusCode::OK, json!({"ok": true}))
            }
            Err(err) => invalid(None, &format!("bad faults: {err}")),
        },
        (Method::GET, ["runs"]) => json_response(StatusCode::OK, json!(runs_json(shared, account))),
        (Method::POST, ["report_types", id]) => {
            let update: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            match update_report_type(
                shared,
                account,
                id,
                update["data_available_start"].as_i64(),
                update["data_available_end"].as_i64(),
            ) {
                Some(event) => json_response(StatusCode::OK, event),
                None => missing("report_type", "report type", id),
            }
        }
        (Method::GET, ["files", id, "sha256"]) => match file_digest(shared, id) {
            Some((sha256, size)) => {
                json_response(StatusCode::OK, json!({"sha256": sha256, "size": size}))
            }
            None => missing("file", "file", id),
        },
        (Method::GET, ["files", id, "totals"]) => match file_totals(shared, id) {
            Some(totals) => json_response(StatusCode::OK, json!(totals)),
            None => missing("file", "file", id),
        },
        _ => invalid(None, "unknown emulator admin route"),
    }
}
