//! Reads the Stripe credentials once per cold start.

use aws_sdk_secretsmanager::Client;

use crate::domain::config::{ConfigError, SecretSource, StripeSecrets};

/// The credentials named by the configuration: read from Secrets Manager when
/// `STRIPE_SECRET_ARN` is set, else the values given directly.
pub async fn load_stripe_secrets(
    sdk: &aws_config::SdkConfig,
    source: &SecretSource,
) -> Result<StripeSecrets, ConfigError> {
    match source {
        SecretSource::Direct(secrets) => Ok(secrets.clone()),
        SecretSource::SecretsManager { arn } => {
            let client = Client::new(sdk);
            let output = client
                .get_secret_value()
                .secret_id(arn)
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
            StripeSecrets::from_secret_json(json)
        }
    }
}
