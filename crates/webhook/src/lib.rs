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
use stripe_reports::webhook::{WebhookAnswer, WebhookService};

/// The service with its real adapters.
pub type Service = WebhookService<DynamoLedger, SqsQueue, SqsQueue>;

/// Builds the service once per cold start.
pub async fn service_from_env() -> Result<Service, ConfigError> {
    service_from(Environment::load().await?).await
}

/// Builds the service from a loaded environment (tests pass one with their
/// own configuration and clock).
pub async fn service_from(env: Environment) -> Result<Service, ConfigError> {
    env.accounts.require_signing_secrets().await?;
    env.event_service()
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
        metrics::emit(
            "webhook",
            &answer_metrics(&WebhookAnswer::Rejected("only POST is accepted".into())),
        );
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
    metrics::emit("webhook", &answer_metrics(&answer));
    let status =
        StatusCode::from_u16(answer.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, answer.body())
}

/// The metrics of one delivery (namespace `StripeReports`, dimension
/// `Function=webhook`): `WebhookAccepted` (a 200), `WebhookRejected` (a 400)
/// and `WebhookFailed` (a 500) are each 1 or 0 on every delivery, so an alarm
/// can take the share of refused or failed deliveries; `FailedRuns` is 1 when
/// this delivery recorded a failed run (each failure is counted once, by
/// whichever function recorded it) and absent otherwise.
pub fn answer_metrics(answer: &WebhookAnswer) -> Vec<Metric<'static>> {
    answer.metrics([
        "WebhookAccepted",
        "WebhookRejected",
        "WebhookFailed",
        "FailedRuns",
    ])
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

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_reports::webhook::Outcome;

    fn values(answer: WebhookAnswer) -> Vec<(&'static str, f64)> {
        answer_metrics(&answer)
            .iter()
            .map(|m| (m.name, m.value))
            .collect()
    }

    #[test]
    fn every_delivery_counts_one_answer_and_zero_for_the_others() {
        assert_eq!(
            values(WebhookAnswer::Received(Outcome::Enqueued)),
            [
                ("WebhookAccepted", 1.0),
                ("WebhookRejected", 0.0),
                ("WebhookFailed", 0.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Received(Outcome::Duplicate)),
            [
                ("WebhookAccepted", 1.0),
                ("WebhookRejected", 0.0),
                ("WebhookFailed", 0.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Rejected("bad signature".into())),
            [
                ("WebhookAccepted", 0.0),
                ("WebhookRejected", 1.0),
                ("WebhookFailed", 0.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Failed("ledger unavailable".into())),
            [
                ("WebhookAccepted", 0.0),
                ("WebhookRejected", 0.0),
                ("WebhookFailed", 1.0)
            ]
        );
        assert_eq!(
            values(WebhookAnswer::Received(Outcome::RecordedFailure)),
            [
                ("WebhookAccepted", 1.0),
                ("WebhookRejected", 0.0),
                ("WebhookFailed", 0.0),
                ("FailedRuns", 1.0)
            ]
        );
        // One EMF document in the namespace the alarms read.
        let line = metrics::emf_line(
            "webhook",
            &answer_metrics(&WebhookAnswer::Failed("x".into())),
        );
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "StripeReports"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function"]])
        );
        assert_eq!(
            (doc["Function"].as_str(), doc["WebhookFailed"].as_f64()),
            (Some("webhook"), Some(1.0))
        );
    }
}
