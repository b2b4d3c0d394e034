//! The `scheduler` Lambda function: EventBridge schedule, schedule queue, backfills.
// Every account's invocation nested in the runtime's future is deeper than
// the compiler's default layout query limit.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let service = match scheduler::service_from_env().await {
        Ok(service) => service,
        Err(err) => {
            eprintln!("scheduler: configuration error: {err}");
            std::process::exit(1);
        }
    };
    run(service_fn(|event: LambdaEvent<Value>| {
        scheduler::handle(&service, event)
    }))
    .await
}
