//! Shared helpers of the integration tests: the emulator, clients, local AWS.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use stripe_emulator::{Emulator, EmulatorConfig};
use stripe_reports::domain::config::FileHosts;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::stripe::{RetryPolicy, StripeClient, StripeClientConfig};

pub const API_KEY: &str = "sk_test_integration_5f2c";

pub async fn emulator(config: EmulatorConfig) -> Emulator {
    let config = EmulatorConfig {
        api_key: API_KEY.to_owned(),
        ..config
    };
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start emulator")
}

/// Fast retries, so fault tests take milliseconds.
pub fn quick_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

pub fn client_for(emulator: &Emulator, retry: RetryPolicy) -> StripeClient {
    let base = emulator.base_url().parse().unwrap();
    let mut config = StripeClientConfig::new(
        base,
        SecretString::new(API_KEY),
        FileHosts::parse(&emulator.addr().ip().to_string()).unwrap(),
    );
    config.retry = retry;
    StripeClient::new(config).unwrap()
}

/// Test fixtures copied from `shared/stripe/` (checked equal when shared/ is beside the repo).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The Python of the project's venv (stripe, moto, jsonschema installed).
pub fn python() -> PathBuf {
    if let Ok(path) = std::env::var("STRIPE_REPORTS_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv: run `make venv` (or set STRIPE_REPORTS_PYTHON) before these tests"
    );
    venv
}

/// Runs a Python script of `tests/python/` with `args`; returns its stdout.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let output = std::process::Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A unique suffix for AWS resource names, so tests sharing moto never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The shared SDK config; these tests need `AWS_ENDPOINT_URL` (moto's server).
pub async fn local_aws() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the tests with `make test` (it starts moto's server)"
    );
    stripe_reports::aws::load_sdk_config().await
}
