//! The `eventbridge` Lambda function, fed by the queue the stack's
//! EventBridge rule fills with Stripe's events.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let service = match eventbridge::service_from_env().await {
        Ok(service) => service,
        Err(err) => {
            eprintln!("eventbridge: configuration error: {err}");
            std::process::exit(1);
        }
    };
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        eventbridge::handle(&service, event)
    }))
    .await
}
