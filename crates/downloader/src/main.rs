//! The `downloader` Lambda function, fed by the download queue.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use stripe_reports::domain::config::ConfigError;
use stripe_reports::env::Environment;

/// A configuration error stops the cold start with this one line.
fn stop(err: ConfigError) -> ! {
    eprintln!("downloader: configuration error: {err}");
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
    let deps = downloader::deps_from(env)
        .await
        .unwrap_or_else(|err| stop(err));
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let checked = checked.clone();
        async move {
            checked.wait().await;
            downloader::handle(deps, event).await
        }
    }))
    .await
}
