//! Reads the Stripe credentials from Secrets Manager: at cold start, and again
//! through [`crate::secrets::SecretsCache`] when they are stale.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_secretsmanager::Client;

use crate::domain::config::{ConfigError, SecretSource, StripeAccounts};
use crate::secrets::{Clock, SecretReader, SecretsCache};

/// `GetSecretValue` of the secret `STRIPE_SECRET_ARN` names.
#[derive(Debug, Clone)]
pub struct SecretsManagerReader {
    client: Client,
    arn: String,
}

impl SecretsManagerReader {
    pub fn new(sdk: &aws_config::SdkConfig, arn: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            arn: arn.into(),
        }
    }

    async fn read_secret(&self) -> Result<StripeAccounts, ConfigError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .map_err(|err| {
                ConfigError::new(
                    "STRIPE_SECRET_ARN",
                    format!("cannot read the secret: {}", super::sdk_message(&err)),
                )
            })?;
        let json = output.secret_string().ok_or_else(|| {
            ConfigError::new("STRIPE_SECRET_ARN", "the secret has no string value")
        })?;
        StripeAccounts::from_secret_json(json)
    }
}

impl SecretReader for SecretsManagerReader {
    fn read(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<StripeAccounts, ConfigError>> + Send + '_>> {
        Box::pin(self.read_secret())
    }
}

/// The credentials named by the configuration, once: read from Secrets
/// Manager when `STRIPE_SECRET_ARN` is set, else the values given directly.
pub async fn load_stripe_secrets(
    sdk: &aws_config::SdkConfig,
    source: &SecretSource,
) -> Result<StripeAccounts, ConfigError> {
    match source {
        SecretSource::Direct(secrets) => Ok(secrets.clone()),
        SecretSource::SecretsManager { arn } => {
            SecretsManagerReader::new(sdk, arn).read_secret().await
        }
    }
}

/// The cache a warm function reads its credentials from: values given
/// directly are fixed; a secret is read now (its failure stops the cold
/// start) and re-read when stale.
pub async fn secrets_cache(
    sdk: &aws_config::SdkConfig,
    source: &SecretSource,
    clock: Arc<dyn Clock>,
) -> Result<SecretsCache, ConfigError> {
    match source {
        SecretSource::Direct(secrets) => Ok(SecretsCache::fixed(secrets.clone())),
        SecretSource::SecretsManager { arn } => {
            SecretsCache::load(Arc::new(SecretsManagerReader::new(sdk, arn)), clock).await
        }
    }
}
