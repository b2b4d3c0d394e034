//! Stores one report run through the real downloader (same configuration as
//! the Lambda function) and prints one JSON line: bytes, seconds, MiB/s and
//! the process's peak resident memory. Used by `make bench` (`bench/run.py`).
//!
//! usage: download_one RUN_ID [ACCOUNT] [--after RUN_ID] (default: the only configured account)
//!        download_one --floor URL [ACCOUNT] [--sink HOST:PORT] [--after URL]
//!
//! `--after` first stores (or fetches) another file in the same process, as
//! a warm function has done before its next file; the JSON line is then the
//! second file's, its `cpu_seconds` and `minor_faults` counted from the
//! moment it started. Without it they count the whole process.
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

/// CPU time (user + system, every thread's, those that ended too) and
/// minor page faults (a fresh page touched for the first time, e.g. a new
/// part buffer's) of this process so far.
fn process_usage() -> (f64, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        eprintln!(
            "download_one: getrusage: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
        usage.ru_minflt as u64,
    )
}

/// The JSON line printed for the measured file. Its `cpu_seconds` and
/// `minor_faults` count from `start` (a `process_usage()` reading; `None`:
/// the process's start).
fn file_line(
    run_id: Option<&str>,
    bytes: u64,
    seconds: f64,
    sha256: &str,
    start: Option<(f64, u64)>,
) -> serde_json::Value {
    let (cpu_now, faults_now) = process_usage();
    let (cpu, faults) = start.unwrap_or((0.0, 0));
    serde_json::json!({
        "run_id": run_id,
        "bytes": bytes,
        "seconds": seconds,
        "mib_per_s": bytes as f64 / 1_048_576.0 / seconds,
        "peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
        "sha256": sha256,
        "cpu_seconds": cpu_now - cpu,
        "minor_faults": faults_now.saturating_sub(faults),
    })
}

/// Removes `name VALUE` from `args`: the value, if given.
fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let at = args.iter().position(|arg| arg == name)?;
    if at + 1 >= args.len() {
        return None;
    }
    let value = args.remove(at + 1);
    args.remove(at);
    Some(value)
}

#[tokio::main]
async fn main() {
    let floor = std::env::args().nth(1).as_deref() == Some("--floor");
    let mut args: Vec<String> = std::env::args().skip(if floor { 2 } else { 1 }).collect();
    let sink = take_option(&mut args, "--sink");
    let after = take_option(&mut args, "--after");
    let Some(run_id) = args.first().cloned() else {
        eprintln!(
            "usage: download_one RUN_ID [ACCOUNT] [--after RUN_ID] | download_one --floor URL [ACCOUNT] [--sink HOST:PORT] [--after URL]"
        );
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
        let mut sink = match sink {
            Some(address) => match tokio::net::TcpStream::connect(&address).await {
                Ok(stream) => Some(stream),
                Err(err) => {
                    eprintln!("download_one --floor: sink {address}: {err}");
                    std::process::exit(1);
                }
            },
            None => None,
        };
        // One part buffer for the process, as the downloader's pool is.
        let mut part = Vec::with_capacity(stripe_reports::aws::s3::DEFAULT_PART_SIZE);
        let start = match after {
            Some(first) => {
                fetch_floor(&env, &account, &first, &mut sink, &mut part).await;
                Some(process_usage())
            }
            None => None,
        };
        let started = std::time::Instant::now();
        let (bytes, sha256) = fetch_floor(&env, &account, &run_id, &mut sink, &mut part).await;
        let seconds = started.elapsed().as_secs_f64();
        println!("{}", file_line(None, bytes, seconds, &sha256, start));
        return;
    }
    let deps = match downloader::deps_from(env).await {
        Ok(deps) => deps,
        Err(err) => {
            eprintln!("download_one: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let deadline = stripe_reports::downloader::work_deadline(0, 0);
    let start = match after {
        Some(first) => {
            match deps
                .downloader
                .store_run(&account, &first, now, deadline)
                .await
            {
                Ok(stripe_reports::downloader::Stored::Now(_)) => {}
                other => {
                    eprintln!("download_one: --after {first}: nothing stored: {other:?}");
                    std::process::exit(1);
                }
            }
            Some(process_usage())
        }
        None => None,
    };
    let started = std::time::Instant::now();
    match deps
        .downloader
        .store_run(&account, &run_id, now, deadline)
        .await
    {
        Ok(stripe_reports::downloader::Stored::Now(report)) => {
            let stored = report.object;
            let seconds = started.elapsed().as_secs_f64();
            let line = file_line(Some(&run_id), stored.bytes, seconds, &stored.sha256, start);
            println!("{line}");
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
/// part buffer (`part`, reused: no allocation per part or per file) and, with
/// a sink, send each part. The bytes and their SHA-256.
async fn fetch_floor(
    env: &stripe_reports::env::Environment,
    account: &stripe_reports::domain::account::AccountId,
    url: &str,
    sink: &mut Option<tokio::net::TcpStream>,
    part: &mut Vec<u8>,
) -> (u64, String) {
    use futures_util::StreamExt;
    use sha2::Digest;
    use stripe_reports::ports::StripeByAccount;

    let client = env.account_clients().for_account(account);
    let mut file = match client.download_file(url).await {
        Ok(file) => file,
        Err(err) => {
            eprintln!("download_one --floor: {err}");
            std::process::exit(1);
        }
    };
    let part_size = stripe_reports::aws::s3::DEFAULT_PART_SIZE;
    part.clear();
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
                send(sink, part).await;
                part.clear();
            }
        }
    }
    send(sink, part).await;
    part.clear();
    (bytes, hex::encode(hasher.finalize()))
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
