//! Shared helpers of the integration tests: the emulator, clients, local AWS.
#![allow(dead_code)]

use std::path::PathBuf;

use stripe_emulator::{Emulator, EmulatorConfig};
use stripe_reports::stripe::{RetryPolicy, StripeClient};
#[allow(unused_imports)] // each test binary uses part of these
pub use test_support::{local_aws, quick_retries, unique};

pub const API_KEY: &str = "sk_test_integration_5f2c";

pub async fn emulator(config: EmulatorConfig) -> Emulator {
    test_support::emulator_with(EmulatorConfig {
        api_key: API_KEY.to_owned(),
        ..config
    })
    .await
}

pub fn client_for(emulator: &Emulator, retry: RetryPolicy) -> StripeClient {
    test_support::stripe_client(emulator, API_KEY, &emulator.addr().ip().to_string(), retry)
}

/// Test fixtures copied from `shared/stripe/` (checked equal when shared/ is beside the repo).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub use test_support::python;

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
