//! The `webhook` Lambda function behind API Gateway (`POST /webhooks/stripe`).

use lambda_http::{Error, Request, run, service_fn};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::env::Environment;

/// A configuration error stops the cold start with this one line.
fn stop(err: ConfigError) -> ! {
    eprintln!("webhook: configuration error: {err}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let env = Environment::load_unchecked()
        .await
        .unwrap_or_else(|err| stop(err));
    // Stripe answers for the keys while the runtime is asked for the first event.
    let checked = env.check_accounts_in_background(stop);
    let service = webhook::service_from(env)
        .await
        .unwrap_or_else(|err| stop(err));
    let service = &service;
    run(service_fn(move |request: Request| {
        let checked = checked.clone();
        async move {
            checked.wait().await;
            webhook::handle(service, request).await
        }
    }))
    .await
}
