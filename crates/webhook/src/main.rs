//! The `webhook` Lambda function behind API Gateway (`POST /webhooks/stripe`).

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let service = match webhook::service_from_env().await {
        Ok(service) => service,
        Err(err) => {
            eprintln!("webhook: configuration error: {err}");
            std::process::exit(1);
        }
    };
    run(service_fn(|request: Request| {
        webhook::handle(&service, request)
    }))
    .await
}
