//! A string that must never be printed: the Stripe API key and webhook secrets.

use std::fmt;

/// Holds a secret value. `Debug` and `Display` print `[redacted]`, so a secret
/// formatted into a log line, an error or a panic message by mistake stays hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it (an HTTP header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let key = SecretString::new("sk_test_123456789");
        assert!(!format!("{key:?}").contains("sk_test"));
        assert!(!format!("{key}").contains("sk_test"));
        assert_eq!(key.expose(), "sk_test_123456789");
    }
}
