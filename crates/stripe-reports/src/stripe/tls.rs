//! The TLS configuration of the Stripe clients.
//!
//! Stripe's API and file hosts are trusted through Mozilla's root
//! certificates compiled into the binary (`webpki-roots`), as Stripe's own
//! server libraries do (stripe-python, -ruby and -php ship their own CA
//! bundle rather than trusting the machine's). The AWS SDK keeps the
//! system's store, loaded once per process from disk: a Lambda image's store
//! is the one AWS keeps current for its own endpoints.
//!
//! Reading the system's store a second time, as reqwest does by default (its
//! platform verifier reads and parses every system certificate once per
//! `Client` built: twice per cold start here), costs more than the whole
//! rest of a function's start; the compiled-in roots cost nothing at start
//! and one configuration serves both clients.

use std::sync::Arc;

/// A rustls client configuration for Stripe: TLS 1.2 and 1.3 with aws-lc,
/// Mozilla's roots, HTTP/2 offered first (as reqwest offers it by itself).
pub fn stripe_tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusts_mozillas_roots_and_offers_http2_first() {
        let config = stripe_tls_config().unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }
}
