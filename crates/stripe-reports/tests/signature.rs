//! Webhook signature verification against Stripe's recorded vectors and,
//! differentially, against Stripe's official Python library.

mod support;

use serde_json::Value;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::{
    DEFAULT_TOLERANCE_SECS, SignatureError, compute_signature, signature_header, verify,
};
use support::*;

fn vectors() -> Value {
    let text = std::fs::read_to_string(fixture("webhook-vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn secrets(values: &[&str]) -> Vec<SecretString> {
    values.iter().map(|v| SecretString::new(*v)).collect()
}

#[test]
fn every_fixed_vector_gives_stripes_signature_and_verdict() {
    let vectors = vectors();
    let fixed = vectors["fixed_vectors"].as_array().unwrap();
    assert_eq!(fixed.len(), 5);
    for vector in fixed {
        let id = vector["id"].as_str().unwrap();
        let secret = vector["secret"].as_str().unwrap();
        let payload = vector["payload"].as_str().unwrap().as_bytes();
        let timestamp = vector["timestamp"].as_i64().unwrap();
        let header = vector["header"].as_str().unwrap();
        assert_eq!(
            compute_signature(secret, timestamp, payload),
            vector["expected_v1_signature"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            signature_header(&secrets(&[secret]), timestamp, payload),
            header,
            "{id}"
        );
        // receivedAt (ms) when the vector has one; else "now" is far in the future
        // and only the no-tolerance vectors are checked.
        let now = vector["receivedAt_ms"]
            .as_i64()
            .map(|ms| ms / 1000)
            .unwrap_or(1_800_000_000);
        let tolerance = vector["tolerance_seconds"].as_i64();
        let outcome = verify(payload, Some(header), &secrets(&[secret]), now, tolerance);
        let expected = vector["expected_outcome"].as_str().unwrap();
        if expected.starts_with("valid") {
            assert_eq!(outcome, Ok(timestamp), "{id}");
        } else {
            assert!(
                matches!(outcome, Err(SignatureError::Stale { age_secs: 15 })),
                "{id}: {outcome:?}"
            );
        }
    }
}

#[test]
fn relative_time_cases_follow_the_tolerance() {
    let vectors = vectors();
    let payload = vectors["fixed_vectors"][0]["payload"]
        .as_str()
        .unwrap()
        .as_bytes();
    let s = secrets(&["whsec_test_secret"]);
    let now = 1_790_000_000;
    let at = |t: i64| signature_header(&s, t, payload);
    // python/node: now - 15 with tolerance 10 refused; now with tolerance 10 accepted.
    assert!(matches!(
        verify(payload, Some(&at(now - 15)), &s, now, Some(10)),
        Err(SignatureError::Stale { .. })
    ));
    assert!(verify(payload, Some(&at(now)), &s, now, Some(10)).is_ok());
    // go: now - 15 with tolerance 20 accepted.
    assert!(verify(payload, Some(&at(now - 15)), &s, now, Some(20)).is_ok());
    // go default boundary: now - 300 + 1 valid, older than 300 refused.
    assert!(
        verify(
            payload,
            Some(&at(now - 299)),
            &s,
            now,
            Some(DEFAULT_TOLERANCE_SECS)
        )
        .is_ok()
    );
    assert!(
        verify(
            payload,
            Some(&at(now - 301)),
            &s,
            now,
            Some(DEFAULT_TOLERANCE_SECS)
        )
        .is_err()
    );
    assert_eq!(vectors["relative_time_cases"].as_array().unwrap().len(), 6);
}

#[test]
fn header_cases_match_the_sdks() {
    let vectors = vectors();
    let payload = vectors["fixed_vectors"][0]["payload"]
        .as_str()
        .unwrap()
        .as_bytes();
    let s = secrets(&["whsec_test_secret"]);
    let now = 1_790_000_000;
    let good = signature_header(&s, now, payload);
    let sig = good.split("v1=").nth(1).unwrap();
    let check =
        |h: Option<&str>, secrets: &[SecretString]| verify(payload, h, secrets, now, Some(300));
    assert_eq!(
        check(Some("i'm not even a real signature header"), &s),
        Err(SignatureError::MalformedHeader)
    );
    assert_eq!(check(None, &s), Err(SignatureError::MissingHeader));
    assert!(check(Some(""), &s).is_err());
    assert_eq!(
        check(Some(&format!("t={now},v0={sig}")), &s),
        Err(SignatureError::NoV1Signature)
    );
    assert_eq!(
        check(Some(&format!("t={now},v1=bad_signature")), &s),
        Err(SignatureError::NoMatchingSignature)
    );
    assert!(check(Some(&format!("{good},v1=bad_signature")), &s).is_ok());
    assert!(check(Some(&format!("{good},v1=potato")), &s).is_ok());
    // Rotation: a header with v1 for two secrets verifies with either.
    let rolled = secrets(&["whsec_test_secret_rolled_key"]);
    let both = format!(
        "{good},v1={}",
        compute_signature("whsec_test_secret_rolled_key", now, payload)
    );
    assert!(check(Some(&both), &s).is_ok());
    assert!(check(Some(&both), &rolled).is_ok());
    assert_eq!(
        check(Some("v1,t=1"), &s),
        Err(SignatureError::MalformedHeader)
    );
    assert_eq!(check(Some("t="), &s), Err(SignatureError::MalformedHeader));
    // A secret with whitespace simply does not match.
    assert!(check(Some(&good), &secrets(&["whsec_test_secret "])).is_err());
}

#[test]
fn same_verdicts_as_stripe_python_on_a_generated_corpus() {
    let corpus: Vec<Value> =
        serde_json::from_str(&run_python("signature_corpus.py", &["240"])).unwrap();
    assert!(corpus.len() >= 240);
    let mut disagreements = Vec::new();
    let mut valid = 0;
    for case in &corpus {
        let payload = case["payload"].as_str().unwrap().as_bytes();
        let header = case["header"].as_str();
        let case_secrets: Vec<SecretString> = case["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| SecretString::new(s.as_str().unwrap()))
            .collect();
        let now = case["now"].as_i64().unwrap();
        let ours = verify(
            payload,
            header,
            &case_secrets,
            now,
            Some(DEFAULT_TOLERANCE_SECS),
        );
        let theirs = case["valid"].as_bool().unwrap();
        valid += usize::from(theirs);
        if ours.is_ok() != theirs {
            disagreements.push(format!(
                "{}: python {} ({}), ours {:?}",
                case["name"], theirs, case["reason"], ours
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    // The corpus exercises both verdicts in earnest.
    assert!(
        valid > 50 && valid < corpus.len() - 50,
        "{valid} valid of {}",
        corpus.len()
    );
}

#[test]
fn fixtures_are_the_ones_in_shared_when_shared_is_present() {
    let shared =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/stripe");
    if !shared.exists() {
        return; // a clone without shared/ beside it: the copies stand alone
    }
    for name in [
        "webhook-vectors.json",
        "stripe-reporting-openapi.json",
        "stripe-reporting-fixtures.json",
    ] {
        let ours = std::fs::read(fixture(name)).unwrap();
        let theirs = std::fs::read(shared.join(name)).unwrap();
        assert!(
            ours == theirs,
            "tests/fixtures/{name} differs from shared/stripe/{name}: copy it again"
        );
    }
}
