//! The AWS adapters: the DynamoDB ledger, the SQS queues, the Secrets Manager
//! credentials. Every client honours `AWS_ENDPOINT_URL` (the SDK reads it), so
//! the same code runs against moto's server locally.

pub mod http;
pub mod ledger;
pub mod queue;
pub mod s3;
pub mod secrets;

pub use ledger::DynamoLedger;
pub use queue::SqsQueue;
pub use s3::S3Sink;

/// The shared SDK configuration, loaded once per cold start, with one HTTPS
/// client for all the SDK clients built from it (see [`http`]).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http::shared_https_client())
        .load()
        .await
}

/// An SDK error with its whole chain of causes on one line (the SDK's own
/// `Display` says only "service error").
pub fn sdk_message<E: std::error::Error>(err: &E) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// An S3 client; path-style addressing when an endpoint override is set
/// (moto's server and other local S3s do not serve bucket subdomains).
pub fn s3_client(sdk: &aws_config::SdkConfig, endpoint_override: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(endpoint_override)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
