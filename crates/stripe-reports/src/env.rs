//! What every function loads once per cold start: configuration, the AWS SDK
//! configuration, the Stripe credentials (cached, re-read when stale: see
//! [`crate::secrets`]) and the accounts they are for (each key checked with
//! Stripe: see [`crate::accounts`]).

use std::sync::Arc;

use crate::accounts::{AccountClients, Accounts};
use crate::aws;
use crate::domain::config::{Config, ConfigError};
use crate::secrets::{Clock, SystemClock};
use crate::stripe::{ApiKey, StripeClient, StripeClientConfig};

pub struct Environment {
    pub config: Config,
    pub sdk: aws_config::SdkConfig,
    pub accounts: Arc<Accounts>,
    /// A client without a key of its own; [`Environment::stripe_for`] gives
    /// each account its own, sharing its connections.
    pub stripe: StripeClient,
}

impl Environment {
    /// Reads the environment, loads the SDK configuration, the secrets and
    /// the accounts. Fails with one line naming the variable and the problem.
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
        let stripe = StripeClient::new(StripeClientConfig::from_config(&config, ApiKey::None))
            .map_err(|err| ConfigError::new("STRIPE_API_BASE", err.to_string()))?;
        let accounts = Arc::new(Accounts::load(secrets, Arc::new(stripe.clone())).await?);
        check_spec_accounts(&config, &accounts).await?;
        Ok(Self {
            config,
            sdk,
            accounts,
            stripe,
        })
    }

    /// The use case of Stripe's events (the webhook's and the `eventbridge`
    /// function's) with its real adapters: the ledger and both queues.
    pub fn event_service(
        &self,
    ) -> Result<
        crate::webhook::WebhookService<aws::DynamoLedger, aws::SqsQueue, aws::SqsQueue>,
        ConfigError,
    > {
        let ledger = aws::DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            self.config.require_runs_table()?,
        );
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let downloads = aws::SqsQueue::new(sqs.clone(), self.config.require_download_queue_url()?);
        let schedules = aws::SqsQueue::new(sqs, self.config.require_schedule_queue_url()?);
        Ok(crate::webhook::WebhookService::with_accounts(
            ledger,
            downloads,
            schedules,
            self.accounts.clone(),
            self.config.reports.clone(),
        ))
    }

    /// Each account's Stripe client: it sends only that account's key.
    pub fn account_clients(&self) -> AccountClients {
        AccountClients::new(self.stripe.clone(), self.accounts.clone())
    }
}

/// A report spec for an account that is not configured would never run.
async fn check_spec_accounts(config: &Config, accounts: &Accounts) -> Result<(), ConfigError> {
    let Some(configured) = accounts.configured().await else {
        return Ok(());
    };
    for (index, spec) in config.reports.iter().enumerate() {
        if let Some(account) = &spec.account
            && !configured.contains(account)
        {
            return Err(ConfigError::new(
                "REPORTS",
                format!(
                    "report spec {index} ({}) is for {account}, which is not a configured account",
                    spec.report_type
                ),
            ));
        }
    }
    Ok(())
}
