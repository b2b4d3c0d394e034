//! The request key: the idempotent identity of one requested report run.
//!
//! `request#<account>#<report_type>#<interval_start>#<interval_end>#<hash>`
//! where the hash covers every other parameter of the run (columns, currency,
//! timezone, …) and the attempt number. The account comes first: the same
//! spec requested for two accounts is two requests (and Stripe scopes
//! idempotency keys per account anyway). It is both the ledger item's key and the Stripe
//! `Idempotency-Key`, so a retried create returns the run already created.

use sha2::{Digest, Sha256};

use super::account::AccountId;
use super::calendar::Interval;
use super::spec::ReportSpec;

/// Stripe limits idempotency keys to 255 characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey(String);

impl RequestKey {
    /// The key of `spec` over `interval` for `account`. `attempt` 0 is the
    /// first request; a run that failed at Stripe is requested again with
    /// attempt 1, and so on. The spec's own `account` (which accounts it
    /// applies to) is not part of the request.
    pub fn new(account: &AccountId, spec: &ReportSpec, interval: Interval, attempt: u32) -> Self {
        let mut hasher = Sha256::new();
        // A length-prefixed encoding, so no two parameter sets hash alike.
        let mut field = |name: &str, value: &str| {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        };
        field("timezone", &spec.timezone);
        if let Some(columns) = &spec.columns {
            field("columns", &columns.len().to_string());
            for column in columns {
                field("column", column);
            }
        }
        // Specs are normalized when read (`spec::read_specs`): the currency
        // here is the one sent to Stripe.
        if let Some(currency) = &spec.currency {
            field("currency", currency);
        }
        if let Some(category) = &spec.reporting_category {
            field("reporting_category", category);
        }
        if let Some(account) = &spec.connected_account {
            field("connected_account", account);
        }
        if attempt > 0 {
            field("attempt", &attempt.to_string());
        }
        let digest = hex::encode(hasher.finalize());
        let mut key = format!(
            "request#{account}#{}#{}#{}#{}",
            spec.report_type,
            interval.start,
            interval.end,
            &digest[..16]
        );
        if attempt > 0 {
            key.push_str(&format!("#a{attempt}"));
        }
        key.truncate(MAX_IDEMPOTENCY_KEY_LEN);
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: std::sync::LazyLock<AccountId> =
        std::sync::LazyLock::new(|| AccountId::parse("acct_A").unwrap());

    const DAY: Interval = Interval {
        start: 1_772_323_200,
        end: 1_772_409_600,
    };

    #[test]
    fn same_request_same_key() {
        let spec = ReportSpec::new("balance.summary.1");
        let key = RequestKey::new(&A, &spec, DAY, 0);
        assert_eq!(key, RequestKey::new(&A, &spec.clone(), DAY, 0));
        assert!(
            key.as_str()
                .starts_with("request#acct_A#balance.summary.1#1772323200#1772409600#")
        );
        let other = AccountId::parse("acct_B").unwrap();
        assert_ne!(key, RequestKey::new(&other, &spec, DAY, 0));
        // Which accounts a spec applies to is not a parameter of the run.
        let mut only_a = spec.clone();
        only_a.account = Some(A.clone());
        assert_eq!(key, RequestKey::new(&A, &only_a, DAY, 0));
    }

    #[test]
    fn other_parameters_or_attempts_change_the_key() {
        let spec = ReportSpec::new("balance.summary.1");
        let base = RequestKey::new(&A, &spec, DAY, 0);
        let mut usd = spec.clone();
        usd.currency = Some("usd".into());
        let mut columns = spec.clone();
        columns.columns = Some(vec!["a".into(), "b".into()]);
        let mut joined = spec.clone();
        joined.columns = Some(vec!["a\u{1f}b".into()]);
        assert_ne!(base, RequestKey::new(&A, &usd, DAY, 0));
        assert_ne!(base, RequestKey::new(&A, &columns, DAY, 0));
        assert_ne!(base, RequestKey::new(&A, &spec, DAY, 1));
        assert_ne!(
            RequestKey::new(&A, &spec, DAY, 1),
            RequestKey::new(&A, &spec, DAY, 2)
        );
        assert_ne!(
            RequestKey::new(&A, &columns, DAY, 0),
            RequestKey::new(&A, &joined, DAY, 0)
        );
    }

    #[test]
    fn keys_fit_stripe_idempotency_limit() {
        let spec = ReportSpec::new("x".repeat(400));
        assert!(RequestKey::new(&A, &spec, DAY, 3).as_str().len() <= MAX_IDEMPOTENCY_KEY_LEN);
    }
}
