//! The `Stripe-Signature` header and the payload are attacker-controlled:
//! parsing and verifying any bytes must answer, never panic, and never accept
//! a signature that is not the HMAC of this payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::{self, SignatureError};

const NOW: i64 = 1_796_000_000;

fuzz_target!(|data: &[u8]| {
    // First line: the header; the rest: the payload.
    let (header, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &[][..]),
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let _ = signature::parse_header(header);
    let secrets = [SecretString::new("whsec_fuzz")];
    for tolerance in [None, Some(300), Some(i64::MAX), Some(i64::MIN)] {
        match signature::verify(payload, Some(header), &secrets, NOW, tolerance) {
            Ok(timestamp) => {
                // Accepted only with the real signature of this payload at that timestamp.
                let expected = signature::compute_signature("whsec_fuzz", timestamp, payload);
                assert!(
                    header.contains(&expected),
                    "accepted a header without the payload's signature"
                );
            }
            Err(SignatureError::NoSecret | SignatureError::MissingHeader) => {
                unreachable!("a header and a secret were given")
            }
            Err(_) => {}
        }
    }
});
