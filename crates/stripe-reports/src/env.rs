//! What every function loads once per cold start: configuration, the AWS SDK
//! configuration and the Stripe credentials (cached, re-read when stale: see
//! [`crate::secrets`]).

use std::sync::Arc;

use tracing::warn;

use crate::aws;
use crate::domain::config::{Config, ConfigError};
use crate::secrets::{Clock, SecretsCache, SystemClock};
use crate::stripe::client::ApiKey;

pub struct Environment {
    pub config: Config,
    pub sdk: aws_config::SdkConfig,
    pub secrets: SecretsCache,
}

impl Environment {
    /// Reads the environment, loads the SDK configuration and the secrets.
    /// Fails with one line naming the variable and the problem.
    pub async fn load() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws::load_sdk_config().await;
        Self::with(config, sdk, Arc::new(SystemClock::new())).await
    }

    /// The same from given parts: tests pass their own configuration and a
    /// clock they move by hand.
    pub async fn with(
        config: Config,
        sdk: aws_config::SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let secrets = aws::secrets::secrets_cache(&sdk, &config.secrets, clock).await?;
        Ok(Self {
            config,
            sdk,
            secrets,
        })
    }

    /// The API key for the Stripe client, read from the cache at each
    /// request. No key at all stops the cold start; the template's
    /// placeholder is logged here and refused at each use until the secret
    /// is filled (then used without a cold start).
    pub async fn api_key(&self) -> Result<ApiKey, ConfigError> {
        let values = self.secrets.current().await;
        if values.api_key_is_placeholder() && self.secrets.rereads() {
            if let Err(err) = values.require_api_key() {
                warn!(error = %err, "Stripe API key not set yet");
            }
        } else {
            values.require_api_key()?;
        }
        Ok(ApiKey::Cached(self.secrets.clone()))
    }

    /// The webhook secrets, as [`Environment::api_key`] treats the key.
    pub async fn webhook_secrets(&self) -> Result<SecretsCache, ConfigError> {
        let values = self.secrets.current().await;
        if values.webhook_secret_is_placeholder() && self.secrets.rereads() {
            if let Err(err) = values.require_webhook_secrets() {
                warn!(error = %err, "Stripe webhook secret not set yet");
            }
        } else {
            values.require_webhook_secrets()?;
        }
        Ok(self.secrets.clone())
    }
}
