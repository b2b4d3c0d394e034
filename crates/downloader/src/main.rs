//! The `downloader` Lambda function. Its use case lands with issue #5; until then it
//! validates its configuration at cold start and refuses every invocation
//! with a clear error, so a premature deploy fails loudly instead of silently.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use stripe_reports::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    if let Err(err) = Config::from_env() {
        eprintln!("downloader: configuration error: {err}");
        std::process::exit(1);
    }
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Err::<Value, Error>("the downloader use case is not built yet (issue #5)".into())
    }))
    .await
}
