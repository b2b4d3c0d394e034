//! The webhook function's edge: API Gateway requests (HTTP API v2 or REST v1
//! proxy, through lambda_http) in, JSON answers out. The use case itself is
//! `stripe_reports::webhook`.

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Error, Request, Response};
use stripe_reports::aws::{DynamoLedger, SqsQueue};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::env::Environment;
use stripe_reports::metrics::{self, Metric};
use stripe_reports::webhook::{Outcome, WebhookAnswer, WebhookService};

/// The service with its real adapters.
pub type Service = WebhookService<DynamoLedger, SqsQueue, SqsQueue>;

/// Builds the service once per cold start.
pub async fn service_from_env() -> Result<Service, ConfigError> {
    let env = Environment::load().await?;
    let secrets = env.secrets.require_webhook_secrets()?.to_vec();
    let ledger = DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(&env.sdk),
        env.config.require_runs_table()?,
    );
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let downloads = SqsQueue::new(sqs.clone(), env.config.require_download_queue_url()?);
    let schedules = SqsQueue::new(sqs, env.config.require_schedule_queue_url()?);
    let types = env
        .config
        .reports
        .iter()
        .map(|spec| spec.report_type.clone());
    Ok(WebhookService::new(
        ledger, downloads, schedules, secrets, types,
    ))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The Lambda handler.
pub async fn handle<L, D, S>(
    service: &WebhookService<L, D, S>,
    request: Request,
) -> Result<Response<Body>, Error>
where
    L: stripe_reports::ports::Ledger,
    D: stripe_reports::ports::DownloadQueue,
    S: stripe_reports::ports::ScheduleQueue,
{
    Ok(handle_at(service, request, unix_now()).await)
}

/// The handler with the clock given (tests replay signed events at their time).
pub async fn handle_at<L, D, S>(
    service: &WebhookService<L, D, S>,
    request: Request,
    now: i64,
) -> Response<Body>
where
    L: stripe_reports::ports::Ledger,
    D: stripe_reports::ports::DownloadQueue,
    S: stripe_reports::ports::ScheduleQueue,
{
    if request.method() != Method::POST {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"only POST is accepted"}"#.into(),
        );
    }
    // API Gateway joins repeated headers with commas (HTTP API) or keeps them
    // apart (REST multiValueHeaders); join them the same way. A value that is
    // not visible ASCII cannot be a Stripe signature: keep it as malformed.
    let values: Vec<&str> = request
        .headers()
        .get_all("stripe-signature")
        .iter()
        .map(|value| value.to_str().unwrap_or("\u{0}"))
        .collect();
    let signature = (!values.is_empty()).then(|| values.join(","));
    // lambda_http has already decoded a body the gateway marked base64.
    let body: &[u8] = request.body().as_ref();
    let answer = service.handle(body, signature.as_deref(), now).await;
    if answer == WebhookAnswer::Received(Outcome::RecordedFailure) {
        // Each failure is counted once, by whichever function recorded it.
        metrics::emit(
            "webhook",
            &[Metric {
                name: "FailedRuns",
                value: 1.0,
                unit: "Count",
            }],
        );
    }
    let status =
        StatusCode::from_u16(answer.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, answer.body())
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
