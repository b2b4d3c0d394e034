//! The `converter` Lambda function, fed by the conversion queue (and invoked
//! by hand with `{"backfill": {...}}`).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = match converter::deps_from_env().await {
        Ok(deps) => deps,
        Err(err) => {
            eprintln!("converter: configuration error: {err}");
            std::process::exit(1);
        }
    };
    run(service_fn(|event: LambdaEvent<Value>| {
        converter::handle(&deps, event)
    }))
    .await
}
