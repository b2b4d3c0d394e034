//! Stores one report run through the real downloader (same configuration as
//! the Lambda function) and prints one JSON line: bytes, seconds, MiB/s and
//! the process's peak resident memory. Used by `make bench` (`bench/run.py`).
//!
//! usage: download_one RUN_ID [ACCOUNT] (default: the only configured account)

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let Some(run_id) = std::env::args().nth(1) else {
        eprintln!("usage: download_one RUN_ID [ACCOUNT]");
        std::process::exit(2);
    };
    let env = match stripe_reports::env::Environment::load().await {
        Ok(env) => env,
        Err(err) => {
            eprintln!("download_one: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let account = match std::env::args().nth(2) {
        Some(text) => stripe_reports::domain::account::AccountId::parse(&text).ok(),
        None => match env.accounts.ready().await.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        },
    };
    let Some(account) = account else {
        eprintln!(
            "download_one: give the run's account (acct_…): not exactly one account is ready"
        );
        std::process::exit(2);
    };
    let deps = match downloader::deps_from(env).await {
        Ok(deps) => deps,
        Err(err) => {
            eprintln!("download_one: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let deadline = stripe_reports::downloader::work_deadline(0, 0);
    match deps
        .downloader
        .store_run(&account, &run_id, now, deadline)
        .await
    {
        Ok(stripe_reports::downloader::Stored::Now(report)) => {
            let stored = report.object;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "run_id": run_id,
                    "bytes": stored.bytes,
                    "seconds": seconds,
                    "mib_per_s": stored.bytes as f64 / 1_048_576.0 / seconds,
                    "peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
                    "sha256": stored.sha256,
                })
            );
        }
        Ok(other) => {
            eprintln!("download_one: nothing stored: {other:?}");
            std::process::exit(1);
        }
        Err(err) => {
            eprintln!("download_one: {err}");
            std::process::exit(1);
        }
    }
}
