//! The fan-out at Stripe's limits: 1,000 report runs (50 specs × 20 days)
//! at the default rates against the emulator limiting as Stripe does (25
//! requests/s of a test-mode key, 25/s to each endpoint); two invocations
//! working one account at once, sharing its pace through the ledger table;
//! each key's mode choosing its rates. No errors, no duplicate
//! runs, no 429. Times are printed (run with --nocapture) and bounded
//! loosely: machines are noisy.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use scheduler::pace::DynamoPace;
use stripe_emulator::{Faults, ReportTypeConfig};
use stripe_reports::domain::config::{RateSettings, STRIPE_ENDPOINT_RPS, STRIPE_TEST_MODE_RPS};
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::scheduler::Summary;

/// Stripe's limits for a test-mode key, as the emulator answers them.
fn stripe_test_mode_limits() -> Faults {
    Faults {
        rate_limit_rps: Some(STRIPE_TEST_MODE_RPS as u32),
        live_rate_limit_rps: Some(100),
        endpoint_rate_limit_rps: Some(STRIPE_ENDPOINT_RPS as u32),
        ..Faults::default()
    }
}

fn types(clock: &Clock, prefix: &str, count: usize) -> Vec<ReportTypeConfig> {
    (0..count)
        .map(|i| report_type(clock, &format!("{prefix}.type_{i:02}.1")))
        .collect()
}

fn specs_of(types: &[ReportTypeConfig]) -> Vec<ReportSpec> {
    types
        .iter()
        .map(|t| ReportSpec::new(t.id.clone()))
        .collect()
}

fn shared_pace(aws: &Aws) -> Option<Arc<dyn stripe_reports::rate::SharedPace>> {
    Some(Arc::new(DynamoPace::new(
        aws.ledger.client().clone(),
        aws.ledger.table(),
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_are_created_once_each_at_test_modes_default_rate() {
    // Warnings (each failed request says why) go to the test output.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
    let clock = Clock::read();
    let types = types(&clock, "fanout", 50);
    let specs = specs_of(&types);
    let emulator = emulator(types).await;
    emulator.set_faults(stripe_test_mode_limits());
    let aws = aws().await;
    let mut service = scheduler(&aws, &emulator, specs, 20);
    service.rates = RateSettings::default();
    service.shared_pace = shared_pace(&aws);
    let rates = service.rates_of(&account()).await;
    assert_eq!((rates.account, rates.endpoint), (22.5, 22.5), "{API_KEY}");
    let started = Instant::now();
    let result: Summary = serde_json::from_value(
        scheduler::handle_at(&service, event_file("scheduler-scheduled.json"), clock.now)
            .await
            .unwrap(),
    )
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let stats = emulator.stats();
    let floor = 1000.0 / rates.pace();
    println!(
        "fan-out: created={} seconds={seconds:.1} rate={} requests={} rate_limited={} errors={} \
         runs_at_stripe={} (floor {floor:.1} s, ratio {:.2})",
        result.created,
        rates.pace(),
        stats.api_requests,
        stats.rate_limited,
        result.errors,
        stats.runs_created,
        seconds / floor
    );
    assert_eq!(result.planned, 1000);
    assert_eq!(result.created, 1000);
    assert_eq!(result.errors, 0);
    assert_eq!(stats.runs_created, 1000, "no duplicate runs");
    assert_eq!(stats.rate_limited, 0, "never past Stripe's limits");
    assert!(
        seconds >= 0.95 * floor,
        "{seconds} s: faster than the rate allows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invocations_working_one_account_share_its_pace() {
    const RATE: f64 = 20.0;
    let clock = Clock::read();
    // Each invocation plans its own 10 report types × 6 days.
    let first = types(&clock, "first", 10);
    let second = types(&clock, "second", 10);
    let emulator = emulator([first.clone(), second.clone()].concat()).await;
    // Stripe's limits over the scheduler's rate: each invocation alone keeps
    // well under them; both at once without the shared pace would not.
    emulator.set_faults(Faults {
        rate_limit_rps: Some(25),
        endpoint_rate_limit_rps: Some(25),
        ..Faults::default()
    });
    let aws = aws().await;
    let invocation = |types: &[ReportTypeConfig]| {
        let mut service = scheduler(&aws, &emulator, specs_of(types), 6);
        service.rates = RateSettings::fixed(RATE);
        service.shared_pace = shared_pace(&aws);
        service
    };
    let (a, b) = (invocation(&first), invocation(&second));
    let started = Instant::now();
    let (a, b) = tokio::join!(
        scheduler::handle_at(&a, event_file("scheduler-scheduled.json"), clock.now),
        scheduler::handle_at(&b, event_file("scheduler-scheduled.json"), clock.now)
    );
    let seconds = started.elapsed().as_secs_f64();
    let (a, b): (Summary, Summary) = (
        serde_json::from_value(a.unwrap()).unwrap(),
        serde_json::from_value(b.unwrap()).unwrap(),
    );
    let stats = emulator.stats();
    println!(
        "two invocations: seconds={seconds:.1} requests={} rate_limited={}",
        stats.api_requests, stats.rate_limited
    );
    assert_eq!((a.created, b.created, a.errors + b.errors), (60, 60, 0));
    assert_eq!(stats.runs_created, 120, "no duplicate runs");
    assert_eq!(stats.rate_limited, 0, "together within the account's limit");
    // Their requests at one rate together, not each at its own.
    let floor = stats.api_requests as f64 / RATE;
    assert!(
        seconds >= 0.9 * floor,
        "{seconds} s for {floor} s of requests"
    );
}

#[tokio::test]
async fn each_accounts_rates_follow_its_keys_mode() {
    let clock = Clock::read();
    let emulator = emulator(types(&clock, "mode", 1)).await;
    let aws = aws().await;
    let accounts = [
        ("acct_1TestModeAccount", "sk_test_mode_key"),
        ("acct_1LiveModeAccount", "rk_live_mode_key"),
    ];
    let mut service = schedulers(aws.ledger.clone(), &aws, &emulator, &accounts, vec![], 1);
    service.rates = RateSettings::default();
    let ids =
        accounts.map(|(id, _)| stripe_reports::domain::account::AccountId::parse(id).unwrap());
    let rates = async |service: &Service, i: usize| {
        let rates = service.rates_of(&ids[i]).await;
        (rates.account, rates.endpoint)
    };
    assert_eq!(rates(&service, 0).await, (22.5, 22.5));
    assert_eq!(rates(&service, 1).await, (90.0, 22.5));
    // An override is the deployment's, whatever each key's mode.
    service.rates = RateSettings {
        account: Some(40.0),
        endpoint: None,
    };
    assert_eq!(rates(&service, 0).await, (40.0, 22.5));
    assert_eq!(rates(&service, 1).await, (40.0, 22.5));
}
