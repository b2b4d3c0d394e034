//! 1,000 report runs (50 specs × 20 days) against the emulator's test-mode
//! rate limit (25 requests/s), at the scheduler's default rate (20/s): no
//! errors, no duplicate runs. The time is printed (run with --nocapture),
//! not asserted: machines are noisy.

mod common;

use std::time::Instant;

use common::*;
use stripe_emulator::Faults;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::scheduler::{DEFAULT_MAX_RPS, Summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_are_created_once_each_under_the_rate_limit() {
    // Warnings (each failed request says why) go to the test output.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
    let clock = Clock::read();
    let types: Vec<_> = (0..50)
        .map(|i| report_type(&clock, &format!("fanout.type_{i:02}.1")))
        .collect();
    let specs: Vec<ReportSpec> = types
        .iter()
        .map(|t| ReportSpec::new(t.id.clone()))
        .collect();
    let emulator = emulator(types).await;
    emulator.set_faults(Faults {
        rate_limit_rps: Some(25),
        ..Faults::default()
    });
    let aws = aws().await;
    let mut service = scheduler(&aws, &emulator, specs, 20);
    service.max_rps = DEFAULT_MAX_RPS;
    let started = Instant::now();
    let result: Summary = serde_json::from_value(
        scheduler::handle_at(&service, event_file("scheduler-scheduled.json"), clock.now)
            .await
            .unwrap(),
    )
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let stats = emulator.stats();
    // One line, key=value, which `make bench` (bench/run.py) reads.
    println!(
        "fan-out: created={} seconds={seconds:.1} max_rps={DEFAULT_MAX_RPS} requests={} rate_limited={} \
         errors={} runs_at_stripe={} (floor at 25/s: 40 s, ratio {:.2})",
        result.created,
        stats.api_requests,
        stats.rate_limited,
        result.errors,
        stats.runs_created,
        seconds / 40.0
    );
    assert_eq!(result.planned, 1000);
    assert_eq!(result.created, 1000);
    assert_eq!(result.errors, 0);
    assert_eq!(stats.runs_created, 1000, "no duplicate runs");
}
