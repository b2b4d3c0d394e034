//! Which Stripe accounts a command works on (SPEC "Accounts"): the ones
//! named with `--account`, else every configured account. Each command
//! learns them as cheaply as it can: `status` reads the ledger only, so it
//! asks Stripe nothing when the configuration names its accounts; `types`
//! checks every key as the functions do at cold start; `fetch` uses one key
//! and asks Stripe whose it is.

use std::sync::Arc;

use stripe_reports::Config;
use stripe_reports::accounts::AccountState;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::config::SecretSource;
use stripe_reports::domain::config::StripeSecrets;
use stripe_reports::secrets::SystemClock;
use stripe_reports::stripe::{ApiKey, StripeClient, StripeClientConfig};

/// Why a command stops before doing its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The command line or the configuration is wrong: exit code 2.
    Usage(String),
    /// Something outside could not be done (Stripe, AWS): the command's own
    /// failure code.
    Failed(String),
}

/// `--account` values: account ids, checked as the functions check them.
/// (Not a clap value parser: clap would repeat the whole value in its
/// message, and a key pasted into the wrong option would be printed.)
pub fn parse_accounts(texts: &[String]) -> Result<Vec<AccountId>, String> {
    texts
        .iter()
        .map(|text| AccountId::parse(text).map_err(|err| format!("--account: {err}")))
        .collect()
}

/// A client that sends no key of its own (keys are given per call or per account).
pub fn keyless_client(config: &Config) -> Result<StripeClient, Refused> {
    StripeClient::new(StripeClientConfig::from_config(config, ApiKey::None))
        .map_err(|err| Refused::Usage(format!("STRIPE_API_BASE: {err}")))
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}

/// The accounts `status` reports on: `requested` as given (no key needed:
/// the ledger is read under their ids), else the configured ones. When the
/// configuration names every account (`STRIPE_ACCOUNTS`, or a secret in the
/// `accounts` shape) nothing is sent to Stripe; a one-account configuration
/// has its id learned from its key (`GET /v1/account`).
pub async fn for_status(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    requested: &[AccountId],
) -> Result<Vec<AccountId>, Refused> {
    if !requested.is_empty() {
        return Ok(dedup(requested.to_vec()));
    }
    let secrets = stripe_reports::aws::secrets::secrets_cache(
        sdk,
        &config.secrets,
        Arc::new(SystemClock::new()),
    )
    .await
    .map_err(|err| Refused::Usage(err.to_string()))?;
    // The configured ids as they are; an entry without one (the one-account
    // shape) is its key's account, asked of Stripe.
    let mut ids = Vec::new();
    for entry in secrets.current().await.entries() {
        if let Some(id) = &entry.account {
            ids.push(id.clone());
            continue;
        }
        let key = entry.require_api_key().map_err(|err| {
            Refused::Usage(format!(
                "status: which account to report on is not known ({}): give --account acct_…, or STRIPE_ACCOUNTS",
                err.problem
            ))
        })?;
        let id = keyless_client(config)?
            .account_of(key)
            .await
            .map_err(|err| {
                Refused::Failed(format!(
                    "the account of the configured key cannot be learned from Stripe (GET /v1/account: {err}): give --account acct_…"
                ))
            })?;
        ids.push(id);
    }
    Ok(dedup(ids))
}

/// What a command does for one account: its id and whether it can be
/// worked (else the id or name, and why not).
pub type Selected = Result<AccountId, (String, String)>;

/// The accounts `types` works on: every configured one, or those
/// `requested`; a requested account that is not configured is a usage error.
pub fn select(states: &[AccountState], requested: &[AccountId]) -> Result<Vec<Selected>, Refused> {
    let of = |state: &AccountState| -> Selected {
        match state {
            AccountState::Ready(id) => Ok(id.clone()),
            AccountState::Failing { account, reason } => Err((account.clone(), reason.clone())),
        }
    };
    if requested.is_empty() {
        return Ok(states.iter().map(of).collect());
    }
    let mut selected = Vec::new();
    for wanted in dedup(requested.to_vec()) {
        let found = states.iter().find(|state| match state {
            AccountState::Ready(id) => *id == wanted,
            AccountState::Failing { account, .. } => account == wanted.as_str(),
        });
        match found {
            Some(state) => selected.push(of(state)),
            None => {
                let configured: Vec<String> = states
                    .iter()
                    .map(|state| match state {
                        AccountState::Ready(id) => id.to_string(),
                        AccountState::Failing { account, .. } => account.clone(),
                    })
                    .collect();
                return Err(Refused::Usage(format!(
                    "--account {wanted} is not a configured account (configured: {})",
                    list(&configured)
                )));
            }
        }
    }
    Ok(selected)
}

/// The accounts `fetch` works for, each with a client sending only its key:
/// the key of `STRIPE_API_KEY`, or every entry of `STRIPE_ACCOUNTS` (the one
/// `requested` names, when given), each checked with Stripe
/// (`GET /v1/account`). `requested` must be a key's account: a key of
/// another is refused.
pub async fn for_fetch(
    config: &Config,
    requested: Option<&AccountId>,
) -> Result<Vec<(AccountId, StripeClient)>, Refused> {
    let SecretSource::Direct(configured) = &config.secrets else {
        return Err(Refused::Failed(
            "fetch reads STRIPE_API_KEY (or STRIPE_ACCOUNTS); STRIPE_SECRET_ARN is for the Lambda functions"
                .into(),
        ));
    };
    let entries = configured.entries();
    let named: Vec<String> = entries
        .iter()
        .filter_map(|entry| entry.account.as_ref().map(ToString::to_string))
        .collect();
    let chosen: Vec<&StripeSecrets> = match (requested, entries) {
        // STRIPE_API_KEY: one key, whose account is learned below.
        (_, [only]) if only.account.is_none() => vec![only],
        (Some(wanted), _) => vec![
            entries
                .iter()
                .find(|entry| entry.account.as_ref() == Some(wanted))
                .ok_or_else(|| {
                    Refused::Usage(format!(
                        "--account {wanted} is not in STRIPE_ACCOUNTS (configured: {})",
                        list(&named)
                    ))
                })?,
        ],
        (None, all) => all.iter().collect(),
    };
    let client = keyless_client(config)?;
    let mut clients = Vec::with_capacity(chosen.len());
    for entry in chosen {
        clients.push(checked_client(&client, entry, requested).await?);
    }
    Ok(clients)
}

/// One entry's account, as Stripe names it for the entry's key, and a
/// client sending that key.
async fn checked_client(
    client: &StripeClient,
    entry: &StripeSecrets,
    requested: Option<&AccountId>,
) -> Result<(AccountId, StripeClient), Refused> {
    let variable = if entry.account.is_some() {
        "STRIPE_ACCOUNTS"
    } else {
        "STRIPE_API_KEY"
    };
    let key = entry
        .require_api_key()
        .map_err(|err| Refused::Usage(err.to_string()))?;
    let owner = client.account_of(key).await.map_err(|err| {
        Refused::Failed(format!(
            "{variable}: its key cannot be checked with Stripe (GET /v1/account): {err}"
        ))
    })?;
    if let Some(configured) = &entry.account
        && *configured != owner
    {
        return Err(Refused::Usage(format!(
            "STRIPE_ACCOUNTS: {configured}: its api_key is the key of {owner}, not {configured}"
        )));
    }
    if let Some(wanted) = requested
        && *wanted != owner
    {
        return Err(Refused::Usage(format!(
            "--account {wanted}: {variable} is the key of {owner}, not {wanted}"
        )));
    }
    Ok((owner, client.with_api_key(ApiKey::Fixed(key.clone()))))
}

fn dedup(mut ids: Vec<AccountId>) -> Vec<AccountId> {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> AccountId {
        AccountId::parse(text).unwrap()
    }

    #[test]
    fn every_configured_account_unless_some_are_named() {
        let states = vec![
            AccountState::Ready(id("acct_A")),
            AccountState::Failing {
                account: "acct_B".into(),
                reason: "401".into(),
            },
            AccountState::Ready(id("acct_C")),
        ];
        assert_eq!(
            select(&states, &[]).unwrap(),
            vec![
                Ok(id("acct_A")),
                Err(("acct_B".into(), "401".into())),
                Ok(id("acct_C"))
            ]
        );
        assert_eq!(
            select(&states, &[id("acct_C"), id("acct_B"), id("acct_C")]).unwrap(),
            vec![Ok(id("acct_C")), Err(("acct_B".into(), "401".into()))]
        );
        let Err(Refused::Usage(line)) = select(&states, &[id("acct_D")]) else {
            panic!("an account not configured is a usage error")
        };
        assert_eq!(
            line,
            "--account acct_D is not a configured account (configured: acct_A, acct_B, acct_C)"
        );
    }
}
