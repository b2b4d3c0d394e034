//! What every function loads once per cold start: configuration, the AWS SDK
//! configuration, the Stripe credentials (cached, re-read when stale: see
//! [`crate::secrets`]) and the accounts they are for (each key checked with
//! Stripe: see [`crate::accounts`]; a Lambda function has it checked while
//! it asks the runtime for its first event).

use std::sync::Arc;

use crate::accounts::{AccountClients, Accounts};
use crate::aws;
use crate::domain::config::{Config, ConfigError};
use crate::domain::spec::ReportSpec;
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
    /// the accounts, every key checked with Stripe. Fails with one line
    /// naming the variable and the problem.
    pub async fn load() -> Result<Self, ConfigError> {
        let env = Self::load_unchecked().await?;
        env.check_accounts().await?;
        Ok(env)
    }

    /// The same without asking Stripe about the keys yet: a Lambda
    /// function's cold start asks while the runtime waits for the first
    /// event ([`Environment::check_accounts_in_background`]).
    pub async fn load_unchecked() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws::load_sdk_config().await;
        Self::unchecked(config, sdk, Arc::new(SystemClock::new())).await
    }

    /// [`Environment::load`] from given parts: tests pass their own
    /// configuration and a clock they move by hand.
    pub async fn with(
        config: Config,
        sdk: aws_config::SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let env = Self::unchecked(config, sdk, clock).await?;
        env.check_accounts().await?;
        Ok(env)
    }

    async fn unchecked(
        config: Config,
        sdk: aws_config::SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let secrets = aws::secrets::secrets_cache(&sdk, &config.secrets, clock).await?;
        let stripe = StripeClient::new(StripeClientConfig::from_config(&config, ApiKey::None))
            .map_err(|err| ConfigError::new("STRIPE_API_BASE", err.to_string()))?;
        let accounts = Arc::new(Accounts::unchecked(secrets, Arc::new(stripe.clone())));
        Ok(Self {
            config,
            sdk,
            accounts,
            stripe,
        })
    }

    /// The cold start's question to Stripe: whose key each key is (`GET
    /// /v1/account`, all at once). A configured id that is not its key's,
    /// two entries of one account, or a report spec for an account that is
    /// not configured is the one line that stops the function.
    pub async fn check_accounts(&self) -> Result<(), ConfigError> {
        check_accounts(&self.accounts, &self.config.reports).await
    }

    /// [`Environment::check_accounts`] while the function goes on to ask the
    /// runtime for its first event: Stripe's answer is a round trip that
    /// nothing before the first event needs. `stop` gets the error line (and
    /// ends the process). Each invocation waits for the answer first
    /// ([`AccountsChecked::wait`]), so no event is handled before it.
    pub fn check_accounts_in_background(&self, stop: fn(ConfigError) -> !) -> AccountsChecked {
        let (done, checked) = tokio::sync::watch::channel(false);
        let accounts = self.accounts.clone();
        let reports = self.config.reports.clone();
        tokio::spawn(async move {
            match check_accounts(&accounts, &reports).await {
                // No receiver left: nothing waits for it any more.
                Ok(()) => _ = done.send(true),
                Err(err) => stop(err),
            }
        });
        AccountsChecked(checked)
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

/// Whether the cold start's check of the keys is done (see
/// [`Environment::check_accounts_in_background`]).
#[derive(Debug, Clone)]
pub struct AccountsChecked(tokio::sync::watch::Receiver<bool>);

impl AccountsChecked {
    /// Returns once Stripe answered for every key (or could not: the
    /// account is then failing, and checked again at its next use).
    pub async fn wait(&self) {
        let mut checked = self.0.clone();
        // Err: the check ended without an answer, and `stop` ended the
        // process (or a test's `stop` panicked): nothing left to wait for.
        _ = checked.wait_for(|done| *done).await;
    }
}

async fn check_accounts(accounts: &Accounts, reports: &[ReportSpec]) -> Result<(), ConfigError> {
    accounts.check_keys().await?;
    check_spec_accounts(reports, accounts).await
}

/// A report spec for an account that is not configured would never run.
async fn check_spec_accounts(
    reports: &[ReportSpec],
    accounts: &Accounts,
) -> Result<(), ConfigError> {
    let Some(configured) = accounts.configured().await else {
        return Ok(());
    };
    for (index, spec) in reports.iter().enumerate() {
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
