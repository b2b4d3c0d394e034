//! Stripe account ids (SPEC "Accounts"). One deployment serves several
//! accounts; an account's id names its ledger items, its request keys, its
//! queue messages and its `account=` segment in S3, so it is checked once,
//! here, and never built from unchecked text elsewhere.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Stripe's ids are short; anything longer is not one (and would make keys
/// and idempotency keys too long).
const MAX_LEN: usize = 64;

/// A Stripe account id: `acct_` followed by letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Stripe account id (acct_ followed by letters and digits)")]
pub struct NotAnAccountId(pub String);

impl AccountId {
    pub fn parse(text: &str) -> Result<Self, NotAnAccountId> {
        let text = text.trim();
        let well_formed = text.len() <= MAX_LEN
            && text.strip_prefix("acct_").is_some_and(|tail| {
                !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            // Only a short prefix of what was given: it could be a key pasted
            // into the wrong field.
            Err(NotAnAccountId(text.chars().take(8).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        AccountId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stripe_shaped_ids_are_accepted() {
        assert_eq!(
            AccountId::parse(" acct_1Nv0FGQ9RKHgCVdK ")
                .unwrap()
                .as_str(),
            "acct_1Nv0FGQ9RKHgCVdK"
        );
        for bad in [
            "",
            "acct_",
            "acct_a#b",
            "acct_a/b",
            "sk_live_secret",
            "ACCT_1",
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
        let err = AccountId::parse("sk_live_abcdefghijkl")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("abcdefghijkl"), "{err}");
        assert!(AccountId::parse(&format!("acct_{}", "a".repeat(60))).is_err());
        let parsed: AccountId = serde_json::from_str(r#""acct_9""#).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#""acct_9""#);
        assert!(serde_json::from_str::<AccountId>(r#""acct_9#x""#).is_err());
    }
}
