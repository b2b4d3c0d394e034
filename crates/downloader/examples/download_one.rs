//! Stores one report run through the real downloader (same configuration as
//! the Lambda function) and prints one JSON line: bytes, seconds, MiB/s and
//! the process's peak resident memory. Used by `make bench` (`bench/run.py`).
//!
//! usage: download_one RUN_ID [ACCOUNT] (default: the only configured account)
//!        download_one --floor URL [ACCOUNT] [--sink HOST:PORT]
//!
//! `--floor` is the downloader's floor on the same bytes, for its CPU-seconds
//! to be read against: the file fetched by the same Stripe client, one
//! SHA-256 pass and one copy into a part-sized buffer; with `--sink`, each
//! full part is then written to one plain TCP connection (the least any
//! upload must do to send the bytes), else nothing is sent.

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
    let floor = std::env::args().nth(1).as_deref() == Some("--floor");
    let mut args: Vec<String> = std::env::args().skip(if floor { 2 } else { 1 }).collect();
    let sink = match args.iter().position(|arg| arg == "--sink") {
        Some(at) if at + 1 < args.len() => {
            let address = args.remove(at + 1);
            args.remove(at);
            Some(address)
        }
        _ => None,
    };
    let Some(run_id) = args.first().cloned() else {
        eprintln!("usage: download_one RUN_ID [ACCOUNT] | download_one --floor URL [ACCOUNT]");
        std::process::exit(2);
    };
    let env = match stripe_reports::env::Environment::load().await {
        Ok(env) => env,
        Err(err) => {
            eprintln!("download_one: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let account = match args.get(1) {
        Some(text) => stripe_reports::domain::account::AccountId::parse(text).ok(),
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
    if floor {
        return fetch_floor(&env, &account, &run_id, sink.as_deref()).await;
    }
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

/// Fetches `url` with the account's Stripe client and does only what any
/// downloader must do to the bytes: hash them once, copy them once into a
/// part buffer (reused: no allocation per part).
async fn fetch_floor(
    env: &stripe_reports::env::Environment,
    account: &stripe_reports::domain::account::AccountId,
    url: &str,
    sink: Option<&str>,
) {
    use futures_util::StreamExt;
    use sha2::Digest;
    use stripe_reports::ports::StripeByAccount;

    let mut sink = match sink {
        Some(address) => match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => Some(stream),
            Err(err) => {
                eprintln!("download_one --floor: sink {address}: {err}");
                std::process::exit(1);
            }
        },
        None => None,
    };
    let started = std::time::Instant::now();
    let client = env.account_clients().for_account(account);
    let mut file = match client.download_file(url).await {
        Ok(file) => file,
        Err(err) => {
            eprintln!("download_one --floor: {err}");
            std::process::exit(1);
        }
    };
    let part_size = stripe_reports::aws::s3::DEFAULT_PART_SIZE;
    let mut part: Vec<u8> = Vec::with_capacity(part_size);
    let mut hasher = sha2::Sha256::new();
    let mut bytes: u64 = 0;
    while let Some(chunk) = file.body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                eprintln!("download_one --floor: {err}");
                std::process::exit(1);
            }
        };
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let take = rest.len().min(part_size - part.len());
            part.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if part.len() == part_size {
                send(&mut sink, &part).await;
                part.clear();
            }
        }
    }
    send(&mut sink, &part).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "run_id": null,
            "bytes": bytes,
            "seconds": seconds,
            "mib_per_s": bytes as f64 / 1_048_576.0 / seconds,
            "peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
            "sha256": hex::encode(hasher.finalize()),
        })
    );
}

async fn send(sink: &mut Option<tokio::net::TcpStream>, part: &[u8]) {
    use tokio::io::AsyncWriteExt;
    match sink {
        Some(stream) => {
            if let Err(err) = stream.write_all(part).await {
                eprintln!("download_one --floor: sink: {err}");
                std::process::exit(1);
            }
        }
        None => {
            std::hint::black_box(part);
        }
    }
}
