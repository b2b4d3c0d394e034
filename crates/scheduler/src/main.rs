//! The `scheduler` Lambda function: EventBridge schedule, schedule queue, backfills.
// Every account's invocation nested in the runtime's future is deeper than
// the compiler's default layout query limit.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use stripe_reports::domain::config::ConfigError;
use stripe_reports::env::Environment;

/// A configuration error stops the cold start with this one line.
fn stop(err: ConfigError) -> ! {
    eprintln!("scheduler: configuration error: {err}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let env = Environment::load_unchecked()
        .await
        .unwrap_or_else(|err| stop(err));
    // Stripe answers for the keys while the runtime is asked for the first event.
    let checked = env.check_accounts_in_background(stop);
    let service = scheduler::service_from(env)
        .await
        .unwrap_or_else(|err| stop(err));
    let service = &service;
    run(service_fn(move |event: LambdaEvent<Value>| {
        let checked = checked.clone();
        async move {
            checked.wait().await;
            scheduler::handle(service, event).await
        }
    }))
    .await
}
