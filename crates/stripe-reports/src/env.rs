//! What every function loads once per cold start: configuration, the AWS SDK
//! configuration and the Stripe credentials.

use crate::aws;
use crate::domain::config::{Config, ConfigError, StripeSecrets};

pub struct Environment {
    pub config: Config,
    pub sdk: aws_config::SdkConfig,
    pub secrets: StripeSecrets,
}

impl Environment {
    /// Reads the environment, loads the SDK configuration and the secrets.
    /// Fails with one line naming the variable and the problem.
    pub async fn load() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws::load_sdk_config().await;
        let secrets = aws::secrets::load_stripe_secrets(&sdk, &config.secrets).await?;
        Ok(Self {
            config,
            sdk,
            secrets,
        })
    }
}
