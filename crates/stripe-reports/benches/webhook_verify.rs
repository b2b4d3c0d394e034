//! Webhook verify + parse per event, ours against stripe-python's
//! `construct_event` on the same payloads and secret, measured in the same
//! run (ratios, not absolute numbers, are what to read). Run with
//! `make bench-webhook` (release build, the venv's Python).

use std::hint::black_box;
use std::time::Instant;

use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::{signature_header, verify};
use stripe_reports::webhook::parse_event;

const SECRET: &str = "whsec_bench_secret";

fn payload(target: usize) -> String {
    let mut note = String::new();
    loop {
        let event = serde_json::json!({
            "id": "evt_1BenchEventForWebhooks00", "object": "event", "api_version": "2026-07-29.dahlia",
            "created": 1796000000, "livemode": false, "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null}, "type": "reporting.report_run.succeeded",
            "data": {"object": {
                "id": "frr_1BenchRunForWebhooks0000", "object": "reporting.report_run", "created": 1795999000,
                "error": null, "livemode": false, "report_type": "balance.summary.1", "status": "succeeded",
                "succeeded_at": 1795999900,
                "parameters": {"interval_start": 1795910400, "interval_end": 1795996800, "timezone": "Etc/UTC", "columns": [note]},
                "result": {"id": "file_1Bench", "object": "file", "created": 1795999900, "purpose": "finance_report_run",
                           "size": 4096, "type": "csv", "url": "https://files.stripe.com/v1/files/file_1Bench/contents"}
            }}
        })
        .to_string();
        if event.len() >= target {
            return event;
        }
        note.push_str(&"x".repeat((target - event.len()).min(256)));
    }
}

/// Median nanoseconds per verify + parse over 5 batches.
fn ours(body: &str, header: &str, now: i64) -> f64 {
    let secrets = vec![SecretString::new(SECRET)];
    let iterations = 20_000;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..iterations {
            let ok = verify(
                black_box(body.as_bytes()),
                Some(black_box(header)),
                &secrets,
                now,
                Some(300),
            )
            .is_ok();
            let event = parse_event(black_box(body.as_bytes()));
            black_box((ok, event.map(|e| e.id.len()).ok()));
        }
        samples.push(started.elapsed().as_nanos() as f64 / iterations as f64);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[2]
}

fn python(body: &str, header: &str) -> Option<f64> {
    let python =
        std::env::var("STRIPE_REPORTS_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let script = r#"
import sys, time, timeit, stripe
body, header, secret = sys.stdin.read(), sys.argv[1], sys.argv[2]
n = 5000
runs = sorted(timeit.repeat(lambda: stripe.Webhook.construct_event(body, header, secret, tolerance=None), number=n, repeat=5))
print(runs[2] / n * 1e9)
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script, header, SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child.stdin.take()?.write_all(body.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn main() {
    println!(
        "| payload | ours (verify + parse) µs/event | stripe-python construct_event µs/event | python / ours |"
    );
    println!("|---|---|---|---|");
    for (label, size) in [("2 KB", 2_000), ("20 KB", 20_000)] {
        let body = payload(size);
        let now = 1_796_000_000;
        let header = signature_header(&[SecretString::new(SECRET)], now, body.as_bytes());
        let ours_ns = ours(&body, &header, now);
        match python(&body, &header) {
            Some(py_ns) => println!(
                "| {label} ({} B) | {:.2} | {:.2} | {:.1} |",
                body.len(),
                ours_ns / 1000.0,
                py_ns / 1000.0,
                py_ns / ours_ns
            ),
            None => println!(
                "| {label} ({} B) | {:.2} | (python unavailable) | – |",
                body.len(),
                ours_ns / 1000.0
            ),
        }
    }
}
