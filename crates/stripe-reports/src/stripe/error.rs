//! Errors of the Stripe adapter. They carry Stripe's error object and the
//! request id, never the API key (it only ever lives in a sensitive header).

use serde::{Deserialize, Serialize};

use crate::domain::config::FileUrlError;

/// Stripe's `error` object (`api_errors` in the OpenAPI description).
/// `Debug` shows the message as `Display` does, without any part of a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApiError {
    #[serde(rename = "type")]
    pub error_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiError")
            .field("error_type", &self.error_type)
            .field("code", &self.code)
            .field("param", &self.param)
            .field("message", &self.message.as_deref().map(redact_keys))
            .field("doc_url", &self.doc_url)
            .finish()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error_type)?;
        if let Some(code) = &self.code {
            write!(f, "/{code}")?;
        }
        if let Some(param) = &self.param {
            write!(f, " (param {param})")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {}", redact_keys(message))?;
        }
        Ok(())
    }
}

/// Stripe's messages can quote a key, masked but for its last characters
/// ("Invalid API Key provided: sk_live_****…abcd"): no part of a key goes
/// into a log line or an error of ours.
pub fn redact_keys(message: &str) -> std::borrow::Cow<'_, str> {
    const PREFIXES: [&str; 6] = [
        "sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_",
    ];
    if !PREFIXES.iter().any(|prefix| message.contains(prefix)) {
        return std::borrow::Cow::Borrowed(message);
    }
    let redacted: Vec<&str> = message
        .split(' ')
        .map(|word| {
            if PREFIXES.iter().any(|prefix| word.contains(prefix)) {
                "[redacted key]"
            } else {
                word
            }
        })
        .collect();
    std::borrow::Cow::Owned(redacted.join(" "))
}

/// The JSON body of a Stripe error response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error status (after any retries).
    #[error("Stripe answered {status} {error}{}", request_id.as_deref().map(|id| format!(" [request {id}]")).unwrap_or_default())]
    Api {
        status: u16,
        /// Boxed: the error object is large and errors travel by value.
        error: Box<ApiError>,
        request_id: Option<String>,
    },
    /// No answer: connection refused, reset, timed out (after any retries).
    #[error("could not reach Stripe: {0}")]
    Transport(String),
    /// An answer that is not what the API describes.
    #[error("unexpected answer from Stripe (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
    /// A file URL the API key must not be sent to; nothing was sent.
    #[error("refused to download: {0}")]
    FileUrl(#[from] FileUrlError),
    /// The client could not be built.
    #[error("Stripe client configuration: {0}")]
    Config(String),
    /// No usable API key (the template's placeholder, or none): nothing was
    /// sent. The configuration's one line, naming the variable.
    #[error("{0}")]
    NoApiKey(String),
}

impl StripeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Api { status, .. } | StripeError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Stripe error object, when Stripe sent one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            StripeError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Stripe's own answer that the object does not exist for this key
    /// (`404` with `resource_missing`), as opposed to a 404 from something
    /// that is not Stripe (a wrong API base, a proxy).
    pub fn is_resource_missing(&self) -> bool {
        matches!(self, StripeError::Api { status: 404, error, .. }
            if error.code.as_deref() == Some("resource_missing"))
    }

    /// Whether a later attempt may succeed (after the client's own retries ran out).
    pub fn is_transient(&self) -> bool {
        match self {
            StripeError::Transport(_) => true,
            StripeError::Api { status, .. } | StripeError::Decode { status, .. } => {
                *status == 409 || *status == 429 || *status >= 500
            }
            StripeError::FileUrl(_) | StripeError::Config(_) | StripeError::NoApiKey(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_part_of_a_key_quoted_by_stripe_is_shown() {
        let error = ApiError {
            error_type: "invalid_request_error".into(),
            message: Some("Invalid API Key provided: sk_live_****************abcd".into()),
            ..ApiError::default()
        };
        let shown = error.to_string();
        assert_eq!(
            shown,
            "invalid_request_error: Invalid API Key provided: [redacted key]"
        );
        assert_eq!(
            redact_keys("No such report run: 'frr_1'"),
            "No such report run: 'frr_1'"
        );
    }
}
