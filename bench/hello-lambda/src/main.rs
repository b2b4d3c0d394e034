//! The cold-start floor of a function that needs its secret: load the AWS
//! configuration, read the secret `STRIPE_SECRET_ARN` names (one
//! `GetSecretValue`), then ask the runtime for events and echo them.
//! `make bench` reads each function's start-up against it.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = stripe_reports::aws::load_sdk_config().await;
    let arn = std::env::var("STRIPE_SECRET_ARN")?;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await?;
    // Read, as a function reads it; never printed.
    let _ = secret
        .secret_string()
        .ok_or("the secret has no string value")?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
