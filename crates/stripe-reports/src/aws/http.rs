//! One HTTPS client for every SDK client of a process.
//!
//! Left to itself, each SDK client (Secrets Manager, DynamoDB, SQS, S3…)
//! makes its own copy of the SDK's default HTTPS client: its own connection
//! pool, and its own TLS configuration, built once when the SDK client is
//! built (only to check that it can be, then dropped) and again at its first
//! request, each time parsing every root certificate of the system's store.
//! Here the SDK's default client is made once and shared, and its TLS
//! configuration is built once, at the first request of any SDK client.
//! Everything else is the SDK's default: hyper 1, rustls with aws-lc, the
//! system's root certificates, proxies from the environment.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;

/// The SDK's default HTTPS client, shared: give it to the SDK configuration.
pub fn shared_https_client() -> SharedHttpClient {
    // What the SDK builds for each client by itself (aws-smithy-runtime's
    // `default_https_client`), built here once.
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            Connector::builder().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    TlsAtFirstRequest(client).into_shared()
}

/// The client, without building a connector when an SDK client is built:
/// the first request builds it (and the cache keeps it).
#[derive(Debug)]
struct TlsAtFirstRequest(SharedHttpClient);

impl HttpClient for TlsAtFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}
