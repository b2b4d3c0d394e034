//! Webhook cost per event: verify the signature, parse the event, decide the
//! route (`decide`), for a 2 KB and a 20 KB `reporting.report_run.succeeded`,
//! beside its floor in the same run: a bare HMAC-SHA256 of the same signed
//! payload (`"<t>.<body>"`) with the same secret and the same crates
//! (`webhook/bare_hmac/<2KB|20KB>`). Criterion; `make bench` runs it and
//! times Stripe's official Python and Node libraries on the same payloads,
//! header and secret, which this bench writes to `$WEBHOOK_BENCH_PAYLOADS`
//! (default `target/bench-webhook/`).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::secret::SecretString;
use stripe_reports::domain::signature::{signature_header, verify};
use stripe_reports::webhook::{Decision, decide, parse_event};

const SECRET: &str = "whsec_bench_secret";
const NOW: i64 = 1_796_000_000;

/// A succeeded-run event of at least `target` bytes (the padding is in a
/// column name, where a real event's size also varies).
fn payload(target: usize) -> String {
    let mut note = String::new();
    loop {
        let event = serde_json::json!({
            "id": "evt_1BenchEventForWebhooks00", "object": "event", "api_version": "2026-07-29.dahlia",
            "created": NOW, "livemode": false, "pending_webhooks": 1,
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

/// The handler's work up to the first write: verify, parse, decide.
fn verify_parse_decide(
    body: &[u8],
    header: &str,
    secrets: &[SecretString],
    account: &AccountId,
) -> bool {
    verify(body, Some(header), secrets, NOW, Some(300)).is_ok()
        && parse_event(body)
            .ok()
            .and_then(|event| decide(&event, account, configured).ok())
            .is_some_and(|decision| matches!(decision, Decision::Run { .. }))
}

fn configured(report_type: &str) -> bool {
    report_type == "balance.summary.1"
}

/// The floor: the one HMAC-SHA256 pass any verifier of this body must make,
/// keyed with the secret, over the timestamp prefix and the body.
fn bare_hmac(prefix: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(prefix);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn payload_dir() -> PathBuf {
    std::env::var_os("WEBHOOK_BENCH_PAYLOADS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-webhook")
        })
}

fn webhook(c: &mut Criterion) {
    let secrets = vec![SecretString::new(SECRET)];
    let account = AccountId::parse("acct_1BenchAccount00").expect("account id");
    let dir = payload_dir();
    let _ = std::fs::create_dir_all(&dir);
    let mut group = c.benchmark_group("webhook");
    for (label, size) in [("2KB", 2_000), ("20KB", 20_000)] {
        let body = payload(size);
        let header = signature_header(&secrets, NOW, body.as_bytes());
        assert!(verify_parse_decide(
            body.as_bytes(),
            &header,
            &secrets,
            &account,
        ));
        // The same bytes for the peers in other languages.
        let case =
            serde_json::json!({"body": body, "header": header, "secret": SECRET, "now": NOW});
        let _ = std::fs::write(dir.join(format!("{label}.json")), case.to_string());
        group.throughput(Throughput::Bytes(body.len() as u64));
        let prefix = format!("{NOW}.");
        group.bench_with_input(
            BenchmarkId::new("bare_hmac", label),
            body.as_bytes(),
            |b, body| b.iter(|| bare_hmac(black_box(prefix.as_bytes()), black_box(body))),
        );
        group.bench_with_input(
            BenchmarkId::new("verify_parse_decide", label),
            &(body, header),
            |b, (body, header)| {
                b.iter(|| {
                    verify_parse_decide(
                        black_box(body.as_bytes()),
                        black_box(header),
                        &secrets,
                        &account,
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, webhook);
criterion_main!(benches);
