//! The `downloader` Lambda function, fed by the download queue.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = match downloader::deps_from_env().await {
        Ok(deps) => deps,
        Err(err) => {
            eprintln!("downloader: configuration error: {err}");
            std::process::exit(1);
        }
    };
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        downloader::handle(&deps, event)
    }))
    .await
}
