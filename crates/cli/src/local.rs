//! `stripe-reports local`: the functions' handlers in one process with their event
//! sources — a scheduler tick at start and every `--schedule-every`, an HTTP
//! server turning `POST /webhooks/stripe` into API Gateway v2 events, and
//! long-polling of the download, schedule and conversion queues with SQS batch semantics
//! (a message is deleted only when the handler did not report it failed).
//! With `EVENTBRIDGE_QUEUE_URL`, the EventBridge path too: `POST
//! /eventbridge/events` stands for the EventBridge rule and its SQS target
//! (the body, an EventBridge event, goes on that queue unchanged), and that
//! queue is long-polled for the `eventbridge` function's handler, as its
//! event source mapping does.
//! The services are built from one [`Environment`], as each function
//! builds its own at cold start: the configuration and the accounts (every
//! key checked with Stripe once) are loaded once for all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use stripe_reports::env::Environment;
use tracing::{info, warn};

pub struct LocalOptions {
    pub listen: SocketAddr,
    pub schedule_every: Duration,
}

struct Runner {
    webhook: webhook::Service,
    scheduler: scheduler::Service,
    downloader: downloader::Deps<
        stripe_reports::aws::DynamoLedger,
        stripe_reports::accounts::AccountClients,
        Option<stripe_reports::aws::SqsQueue>,
    >,
    /// With `CONVERSION_QUEUE_URL` (and `GLUE_DATABASE`): the fourth
    /// function, turning each stored CSV into its table file.
    converter: Option<converter::Service>,
    /// With `EVENTBRIDGE_QUEUE_URL`: the `eventbridge` function and the
    /// queue standing for its rule's SQS target.
    eventbridge: Option<(eventbridge::Service, String)>,
    sqs: aws_sdk_sqs::Client,
    download_queue: String,
    schedule_queue: String,
}

/// The same environment for another service: one configuration, one SDK
/// configuration, one set of accounts (one check of each key) for all of them.
fn share(env: &Environment) -> Environment {
    Environment {
        config: env.config.clone(),
        sdk: env.sdk.clone(),
        accounts: env.accounts.clone(),
        stripe: env.stripe.clone(),
    }
}

pub async fn run(options: LocalOptions) -> Result<(), String> {
    let env = Environment::load().await.map_err(|e| e.to_string())?;
    let webhook = webhook::service_from(share(&env))
        .await
        .map_err(|e| e.to_string())?;
    let scheduler = scheduler::service_from(share(&env))
        .await
        .map_err(|e| e.to_string())?;
    let download_queue = env
        .config
        .require_download_queue_url()
        .map_err(|e| e.to_string())?
        .to_owned();
    let schedule_queue = env
        .config
        .require_schedule_queue_url()
        .map_err(|e| e.to_string())?
        .to_owned();
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let converter = match env.config.conversion_queue_url {
        Some(_) => Some(converter::deps_from(&env.config, &env.sdk).map_err(|e| e.to_string())?),
        None => None,
    };
    // As the function's cold start: with several accounts, one at least
    // must name its event destination, or no event could be attributed.
    let eventbridge = match env.config.eventbridge_queue_url.clone() {
        Some(url) => Some((
            eventbridge::service_from(share(&env)).await.map_err(|e| {
                format!(
                    "{e} (EVENTBRIDGE_QUEUE_URL is set: the eventbridge function runs too; \
                     unset it to run without)"
                )
            })?,
            url,
        )),
        None => None,
    };
    // (An account whose key could not be checked was logged by the load.)
    for account in env.accounts.ready().await {
        info!(account = %account, "Stripe account ready");
    }
    let downloader = downloader::deps_from(env)
        .await
        .map_err(|e| e.to_string())?;
    let runner = Arc::new(Runner {
        webhook,
        scheduler,
        downloader,
        converter,
        eventbridge,
        sqs,
        download_queue,
        schedule_queue,
    });

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", options.listen))?;
    let mut app = Router::new().route("/webhooks/stripe", post(webhook_route));
    if runner.eventbridge.is_some() {
        app = app.route("/eventbridge/events", post(eventbridge_route));
    }
    let app = app.with_state(runner.clone());
    info!(listen = %options.listen, "webhook endpoint: POST http://{}/webhooks/stripe", options.listen);

    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let ticks = tokio::spawn(schedule_ticks(runner.clone(), options.schedule_every));
    let downloads = tokio::spawn(poll(runner.clone(), Queue::Download));
    let schedules = tokio::spawn(poll(runner.clone(), Queue::Schedule));
    let conversions = runner.converter.as_ref().map(|_| {
        info!("table files: each stored CSV is converted (conversion queue)");
        tokio::spawn(poll(runner.clone(), Queue::Conversion))
    });
    let events = runner.eventbridge.as_ref().map(|(_, url)| {
        info!(
            queue = %url,
            "EventBridge target: POST http://{}/eventbridge/events (onto the event queue, polled for the eventbridge function)",
            options.listen
        );
        tokio::spawn(poll(runner.clone(), Queue::EventBridge))
    });

    shutdown_signal().await;
    info!("stopping");
    for task in [ticks, downloads, schedules]
        .into_iter()
        .chain(conversions)
        .chain(events)
    {
        task.abort();
    }
    server.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The API Gateway HTTP API (payload v2) event for a request, as AWS would send it.
fn api_gateway_event(headers: &HeaderMap, body: &[u8]) -> Value {
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // HTTP API joins repeated headers with commas.
        match header_map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                header_map.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/stripe",
        "rawPath": "/webhooks/stripe",
        "rawQueryString": "",
        "headers": header_map,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": "localhost", "domainPrefix": "local",
            "http": {"method": "POST", "path": "/webhooks/stripe", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""},
            "requestId": "local", "routeKey": "POST /webhooks/stripe", "stage": "$default",
            "time": "", "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": encoded,
    })
}

async fn webhook_route(
    State(runner): State<Arc<Runner>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let event = api_gateway_event(&headers, &body);
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("{{\"error\":\"cannot build the API Gateway event: {err}\"}}"),
            )
                .into_response();
        }
    };
    let now = scheduler::unix_now();
    let response = webhook::handle_at(&runner.webhook, request, now).await;
    let status = StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.body().as_ref().to_vec();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// What the stack's EventBridge rule and its SQS target do with an event
/// from Stripe's partner source: the event, as it came, on the event queue
/// (`EVENTBRIDGE_QUEUE_URL`). Answered 200 once it is on the queue, 500 if
/// the queue could not be written (the sender retries, as EventBridge
/// retries a target), 400 for a body that is not a JSON object (EventBridge
/// never delivers one).
async fn eventbridge_route(State(runner): State<Arc<Runner>>, body: Bytes) -> impl IntoResponse {
    let json = |status: StatusCode, value: Value| {
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
    };
    let Some((_, url)) = &runner.eventbridge else {
        return json(
            StatusCode::NOT_FOUND,
            json!({"error": "no EVENTBRIDGE_QUEUE_URL"}),
        );
    };
    let text = match std::str::from_utf8(&body) {
        Ok(text) if matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_))) => text,
        _ => {
            return json(
                StatusCode::BAD_REQUEST,
                json!({"error": "not an EventBridge event (a JSON object)"}),
            );
        }
    };
    match runner
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(text)
        .send()
        .await
    {
        Ok(sent) => json(
            StatusCode::OK,
            json!({"message_id": sent.message_id().unwrap_or_default()}),
        ),
        Err(err) => {
            let error = stripe_reports::aws::sdk_message(&err);
            warn!(queue = %url, error = %error, "cannot put the EventBridge event on its queue");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "the event queue could not be written"}),
            )
        }
    }
}

async fn schedule_ticks(runner: Arc<Runner>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        let event = json!({"source": "stripe-reports.local", "detail-type": "Scheduled Event"});
        match scheduler::handle_at(&runner.scheduler, event, scheduler::unix_now()).await {
            Ok(summary) => info!(summary = %summary, "scheduler tick"),
            Err(err) => warn!(error = %err, "scheduler tick had errors (the next tick retries)"),
        }
    }
}

#[derive(Clone, Copy)]
enum Queue {
    Download,
    Schedule,
    Conversion,
    EventBridge,
}

/// Long-polls one queue and hands each batch to its handler, deleting only
/// the messages the handler did not report failed.
async fn poll(runner: Arc<Runner>, queue: Queue) {
    let url = match queue {
        Queue::Download => runner.download_queue.clone(),
        Queue::Schedule => runner.schedule_queue.clone(),
        Queue::Conversion => runner
            .converter
            .as_ref()
            .and_then(|_| runner.downloader.downloader.conversions.as_ref())
            .map(|queue| queue.url().to_owned())
            .unwrap_or_default(),
        Queue::EventBridge => runner
            .eventbridge
            .as_ref()
            .map(|(_, url)| url.clone())
            .unwrap_or_default(),
    };
    loop {
        let received = runner
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(err) => {
                warn!(queue = %url, error = %stripe_reports::aws::sdk_message(&err), "cannot receive messages; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .cloned()
                    .unwrap_or_else(|| "1".to_owned());
                if receive_count != "1" {
                    info!(
                        queue = %url,
                        message_id = %m.message_id().unwrap_or_default(),
                        receive_count = %receive_count,
                        "message delivered again"
                    );
                }
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": {"ApproximateReceiveCount": receive_count},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": url,
                })
            })
            .collect();
        let batch = json!({"Records": records});
        let failed: Vec<String> = match queue {
            Queue::Download => match serde_json::from_value(batch) {
                Ok(event) => {
                    // No Lambda deadline here: the same budget as an invocation without one.
                    let deadline = stripe_reports::downloader::work_deadline(0, 0);
                    downloader::handle_batch(
                        &runner.downloader,
                        event,
                        scheduler::unix_now(),
                        deadline,
                    )
                    .await
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect()
                }
                // Unreadable as a batch: keep every message for redelivery.
                Err(_) => messages
                    .iter()
                    .filter_map(|m| m.message_id().map(str::to_owned))
                    .collect(),
            },
            Queue::Conversion => {
                let answer = match &runner.converter {
                    Some(converter) => {
                        let deadline = converter::work_deadline(0, 0);
                        converter::handle_at(converter, batch, scheduler::unix_now(), deadline)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    None => Err("no converter".to_owned()),
                };
                match answer {
                    Ok(response) => failed_ids(&response),
                    Err(_) => messages
                        .iter()
                        .filter_map(|m| m.message_id().map(str::to_owned))
                        .collect(),
                }
            }
            Queue::EventBridge => match (&runner.eventbridge, serde_json::from_value(batch)) {
                (Some((service, _)), Ok(event)) => {
                    eventbridge::handle_batch(service, event, scheduler::unix_now())
                        .await
                        .batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect()
                }
                // Unreadable as a batch: keep every message for redelivery.
                _ => messages
                    .iter()
                    .filter_map(|m| m.message_id().map(str::to_owned))
                    .collect(),
            },
            Queue::Schedule => {
                match scheduler::handle_at(&runner.scheduler, batch, scheduler::unix_now()).await {
                    Ok(response) => failed_ids(&response),
                    Err(_) => messages
                        .iter()
                        .filter_map(|m| m.message_id().map(str::to_owned))
                        .collect(),
                }
            }
        };
        for message in &messages {
            let id = message.message_id().unwrap_or_default();
            if failed.iter().any(|f| f == id) {
                continue; // visible again after the visibility timeout
            }
            if let Some(handle) = message.receipt_handle()
                && let Err(err) = runner
                    .sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .send()
                    .await
            {
                warn!(message_id = id, error = %stripe_reports::aws::sdk_message(&err), "cannot delete message");
            }
        }
    }
}

/// The message ids of a handler's `batchItemFailures` answer.
fn failed_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
