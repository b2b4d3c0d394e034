//! Stripe webhook signature verification, with the semantics of Stripe's
//! official libraries (stripe-python's `WebhookSignature.verify_header`,
//! which `Webhook.construct_event` calls with a 300 s tolerance):
//!
//! - the header is `t=<unix>,v1=<hex>[,v1=<hex>...]`, split on `,` then on `=`;
//!   the first `t` wins; every `v1` is a candidate, other schemes are ignored;
//! - the signed payload is `"<t>.<raw body>"`, HMAC-SHA256 keyed with the whole
//!   secret string (including `whsec_`), compared as lowercase hex in constant time;
//! - the timestamp is checked after the signature, and only a too-old one is refused.
//!
//! The verdicts are tested against `../shared/stripe/webhook-vectors.json` and
//! differentially against stripe-python.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::secret::SecretString;

/// Stripe's default tolerance for the age of a signed timestamp.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// The only scheme Stripe's libraries accept.
const EXPECTED_SCHEME: &str = "v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    MissingHeader,
    #[error("unable to extract timestamp and signatures from the Stripe-Signature header")]
    MalformedHeader,
    #[error("no signatures found with expected scheme v1")]
    NoV1Signature,
    #[error("no signatures found matching the expected signature for payload")]
    NoMatchingSignature,
    #[error("timestamp outside the tolerance zone (signed {age_secs} s ago)")]
    Stale { age_secs: i64 },
    #[error("no webhook secret is configured")]
    NoSecret,
}

/// A parsed `Stripe-Signature` header: its timestamp, and its `v1`
/// signatures read from the header text on demand (no list is built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    pub timestamp: i64,
    /// Whether any item is a `v1` signature.
    pub has_v1: bool,
    header: &'a str,
}

impl<'a> SignatureHeader<'a> {
    /// Every `v1` candidate, in header order.
    pub fn v1_signatures(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        items(self.header)
            .filter(|(key, _)| *key == EXPECTED_SCHEME)
            .filter_map(|(_, value)| value)
    }
}

/// The header's items as stripe-python reads them: split on `,`, each item
/// split on `=`, the value being the text between the first and a second `=`.
fn items(header: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    // Byte loops rather than `splitn`: the items are a few bytes long, and
    // this runs on every delivery (`=` is ASCII, so the cuts are on char
    // boundaries).
    header
        .split(',')
        .map(|item| match item.bytes().position(|byte| byte == b'=') {
            None => (item, None),
            Some(first) => {
                let rest = &item[first + 1..];
                let end = rest
                    .bytes()
                    .position(|byte| byte == b'=')
                    .unwrap_or(rest.len());
                (&item[..first], Some(&rest[..end]))
            }
        })
}

/// Parses the header as stripe-python does: items split on `,`, each item split
/// on `=` (the value is the text between the first and a second `=`), keys
/// compared exactly (no trimming), the first `t` parsed as a Python `int()`.
pub fn parse_header(header: &str) -> Result<SignatureHeader<'_>, SignatureError> {
    let mut timestamp = None;
    let mut has_v1 = false;
    for (key, value) in items(header) {
        if key == "t" {
            // Python reads `i[1]` of every `t` item but converts only the first.
            let value = value.ok_or(SignatureError::MalformedHeader)?;
            if timestamp.is_none() {
                timestamp = Some(parse_python_int(value).ok_or(SignatureError::MalformedHeader)?);
            }
        } else if key == EXPECTED_SCHEME {
            if value.is_none() {
                return Err(SignatureError::MalformedHeader);
            }
            has_v1 = true;
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader)?;
    Ok(SignatureHeader {
        timestamp,
        has_v1,
        header,
    })
}

/// Python's `int(str)` for ASCII input: surrounding whitespace, an optional
/// sign, decimal digits with single underscores between them.
fn parse_python_int(text: &str) -> Option<i64> {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    let (negative, digits) = match trimmed.as_bytes().first()? {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for byte in digits.bytes() {
        match byte {
            b'_' => {}
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(i64::from(byte - b'0'))?;
            }
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// `value` in decimal as Python's `%d` writes it, into `buffer` (20 bytes
/// hold any i64): the signed payload's prefix without a heap string.
fn decimal(value: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    let mut rest = value.unsigned_abs();
    loop {
        start -= 1;
        buffer[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buffer[start] = b'-';
    }
    &buffer[start..]
}

/// HMAC-SHA256 of `"<timestamp>.<payload>"` keyed with `secret`, as lowercase
/// hex in a stack buffer. One pass over the payload, fed to the MAC in place
/// (the signed string is never assembled).
fn signature_hex(secret: &str, timestamp: i64, payload: &[u8]) -> [u8; 64] {
    // A key of any length is valid for HMAC, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(decimal(timestamp, &mut [0; 20]));
    mac.update(b".");
    mac.update(payload);
    let mut hex = [0; 64];
    hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex)
        .unwrap_or_else(|_| unreachable!("32 bytes are 64 hex digits"));
    hex
}

/// HMAC-SHA256 of `"<timestamp>.<payload>"` keyed with `secret`, lowercase hex.
pub fn compute_signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    signature_hex(secret, timestamp, payload)
        .iter()
        .map(|&digit| char::from(digit))
        .collect()
}

/// A `Stripe-Signature` header value signing `payload` at `timestamp` with each secret.
pub fn signature_header(secrets: &[SecretString], timestamp: i64, payload: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&compute_signature(secret.expose(), timestamp, payload));
    }
    header
}

/// Verifies a webhook delivery: `Ok(timestamp)` when any `v1` signature matches
/// any of `secrets` and the timestamp is at most `tolerance_secs` old at `now`.
/// `tolerance_secs = None` skips the age check (as `verify_header` does by default).
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
    now: i64,
    tolerance_secs: Option<i64>,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::MissingHeader)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let parsed = parse_header(header)?;
    if !parsed.has_v1 {
        return Err(SignatureError::NoV1Signature);
    }
    let matched = secrets.iter().any(|secret| {
        let expected = signature_hex(secret.expose(), parsed.timestamp, payload);
        // Check every candidate (no early exit) so timing reveals nothing
        // about which candidate or how much of it matched.
        parsed.v1_signatures().fold(false, |found, candidate| {
            found | bool::from(expected.as_slice().ct_eq(candidate.as_bytes()))
        })
    });
    if !matched {
        return Err(SignatureError::NoMatchingSignature);
    }
    if let Some(tolerance) = tolerance_secs
        && tolerance > 0
        && parsed.timestamp < now.saturating_sub(tolerance)
    {
        return Err(SignatureError::Stale {
            age_secs: now.saturating_sub(parsed.timestamp),
        });
    }
    Ok(parsed.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values.iter().map(|v| SecretString::new(*v)).collect()
    }

    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    #[test]
    fn a_signed_header_verifies() {
        let s = secrets(&["whsec_a"]);
        let header = signature_header(&s, 1000, BODY);
        assert_eq!(verify(BODY, Some(&header), &s, 1000, Some(300)), Ok(1000));
    }

    #[test]
    fn one_byte_changed_in_the_body_is_refused() {
        let s = secrets(&["whsec_a"]);
        let header = signature_header(&s, 1000, BODY);
        let mut tampered = BODY.to_vec();
        tampered[3] ^= 1;
        assert_eq!(
            verify(&tampered, Some(&header), &s, 1000, Some(300)),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_older_than_the_tolerance_are_refused_newer_accepted() {
        let s = secrets(&["whsec_a"]);
        let at = |t| signature_header(&s, t, BODY);
        assert!(verify(BODY, Some(&at(700)), &s, 1000, Some(300)).is_ok());
        assert_eq!(
            verify(BODY, Some(&at(699)), &s, 1000, Some(300)),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        // Stripe's libraries do not refuse timestamps from the future.
        assert!(verify(BODY, Some(&at(5000)), &s, 1000, Some(300)).is_ok());
        // No tolerance: no age check at all.
        assert!(verify(BODY, Some(&at(1)), &s, 1000, None).is_ok());
    }

    #[test]
    fn any_secret_and_any_v1_may_match() {
        let old = secrets(&["whsec_old"]);
        let new = secrets(&["whsec_new"]);
        let header = format!("{},v1=potato,v0=abc", signature_header(&old, 1000, BODY));
        assert!(
            verify(
                BODY,
                Some(&header),
                &secrets(&["whsec_new", "whsec_old"]),
                1000,
                Some(300)
            )
            .is_ok()
        );
        assert_eq!(
            verify(BODY, Some(&header), &new, 1000, Some(300)),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart() {
        let s = secrets(&["whsec_a"]);
        let check = |h: &str| verify(BODY, Some(h), &s, 1000, Some(300));
        assert_eq!(
            verify(BODY, None, &s, 1000, Some(300)),
            Err(SignatureError::MissingHeader)
        );
        assert_eq!(check(""), Err(SignatureError::MalformedHeader));
        assert_eq!(
            check("i'm not even a real signature header"),
            Err(SignatureError::MalformedHeader)
        );
        assert_eq!(check("t=abc,v1=00"), Err(SignatureError::MalformedHeader));
        assert_eq!(check("t=1000,v0=00"), Err(SignatureError::NoV1Signature));
        assert_eq!(check("t=1000,v1"), Err(SignatureError::MalformedHeader));
        assert_eq!(check("v1=00"), Err(SignatureError::MalformedHeader));
    }

    #[test]
    fn timestamps_parse_like_python_int() {
        assert_eq!(parse_python_int(" 12 "), Some(12));
        assert_eq!(parse_python_int("+1_000"), Some(1000));
        assert_eq!(parse_python_int("-5"), Some(-5));
        assert_eq!(parse_python_int("1__0"), None);
        assert_eq!(parse_python_int("_1"), None);
        assert_eq!(parse_python_int("0x10"), None);
        assert_eq!(parse_python_int(""), None);
        assert_eq!(parse_python_int("99999999999999999999"), None);
    }

    #[test]
    fn timestamps_are_signed_as_python_formats_them() {
        for value in [0, 7, -7, 1_796_000_000, i64::MAX, i64::MIN] {
            assert_eq!(decimal(value, &mut [0; 20]), value.to_string().as_bytes());
        }
    }

    #[test]
    fn the_signed_timestamp_is_the_normalised_integer() {
        // Python formats the parsed int back with %d, so "t=0012" signs "12.".
        let s = secrets(&["whsec_a"]);
        let sig = compute_signature("whsec_a", 12, BODY);
        let header = format!("t=0012,v1={sig}");
        assert_eq!(verify(BODY, Some(&header), &s, 12, Some(300)), Ok(12));
    }
}
