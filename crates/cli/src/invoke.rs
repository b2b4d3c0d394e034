//! `stripe-reports invoke FUNCTION [--event FILE]`: one invocation of a
//! function's handler in this process, with the same environment and event
//! shapes as on Lambda (the files in `events/` work as they are), the answer
//! printed as JSON on stdout. For a manual run or backfill from a laptop, and
//! for tests that need "the scheduler, invoked now" (`sam local invoke`
//! without Docker).

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Function {
    Scheduler,
    Webhook,
    Eventbridge,
    Downloader,
    Converter,
}

/// The event to use when none is given: only the scheduler has one (the
/// EventBridge schedule); the others need a real request or message.
fn default_event(function: Function) -> Result<Value, String> {
    match function {
        Function::Scheduler => {
            Ok(json!({"source": "stripe-reports.invoke", "detail-type": "Scheduled Event"}))
        }
        Function::Webhook | Function::Eventbridge | Function::Downloader | Function::Converter => {
            Err(
                "--event FILE is required for the webhook, eventbridge, downloader and converter (see events/)"
                    .into(),
            )
        }
    }
}

fn read_event(path: &str) -> Result<Value, String> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("--event -: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("--event {path}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("--event {path}: not JSON: {e}"))
}

/// Runs the handler once; `Ok` carries what the function answered.
pub async fn run(function: Function, event: Option<&str>) -> Result<Value, String> {
    let event = match event {
        Some(path) => read_event(path)?,
        None => default_event(function)?,
    };
    let now = scheduler::unix_now();
    match function {
        Function::Scheduler => {
            let service = scheduler::service_from_env()
                .await
                .map_err(|e| e.to_string())?;
            scheduler::handle_at(&service, event, now)
                .await
                .map_err(|e| e.to_string())
        }
        Function::Downloader => {
            let batch = serde_json::from_value(event)
                .map_err(|e| format!("the downloader takes an SQS event: {e}"))?;
            let deps = downloader::deps_from_env()
                .await
                .map_err(|e| e.to_string())?;
            let deadline = stripe_reports::downloader::work_deadline(0, 0);
            let response = downloader::handle_batch(&deps, batch, now, deadline).await;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
        Function::Eventbridge => {
            let batch = serde_json::from_value(event).map_err(|e| {
                format!("the eventbridge function takes an SQS event (see events/eventbridge-sqs.json): {e}")
            })?;
            let service = eventbridge::service_from_env()
                .await
                .map_err(|e| e.to_string())?;
            let response = eventbridge::handle_batch(&service, batch, now).await;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
        Function::Converter => {
            let service = converter::deps_from_env()
                .await
                .map_err(|e| e.to_string())?;
            let deadline = converter::work_deadline(0, 0);
            converter::handle_at(&service, event, now, deadline)
                .await
                .map_err(|e| e.to_string())
        }
        Function::Webhook => {
            let request = lambda_http::request::from_str(&event.to_string())
                .map_err(|e| format!("the webhook takes an API Gateway event: {e}"))?;
            let service = webhook::service_from_env()
                .await
                .map_err(|e| e.to_string())?;
            let response = webhook::handle_at(&service, request, now).await;
            let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
            Ok(json!({
                "statusCode": response.status().as_u16(),
                "body": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)),
            }))
        }
    }
}
