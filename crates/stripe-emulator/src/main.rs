//! `stripe-emulator`: serves the Stripe reporting API double on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use serde::de::DeserializeOwned;
use stripe_emulator::config::{DEFAULT_ACCOUNT_ID, default_report_types};
use stripe_emulator::{
    AccountConfig, Emulator, EmulatorConfig, EventBridgeConfig, ReportTypeConfig, WebhookConfig,
};

#[derive(Parser, Debug)]
#[command(
    name = "stripe-emulator",
    about = "A local double of Stripe's reporting API, files and webhooks"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EMULATOR_LISTEN", default_value = "127.0.0.1:12111")]
    listen: SocketAddr,
    /// A second address serving the same emulator, e.g. 127.0.0.2:12112: a
    /// file host off the client's allow-list, for redirect tests.
    #[arg(long, env = "EMULATOR_ALSO_LISTEN")]
    also_listen: Option<SocketAddr>,
    /// The API key of the one account served (unused with --accounts).
    #[arg(long, env = "EMULATOR_API_KEY", default_value = "sk_test_emulator")]
    api_key: String,
    /// The id of the one account served (unused with --accounts).
    #[arg(long, env = "EMULATOR_ACCOUNT_ID", default_value = DEFAULT_ACCOUNT_ID)]
    account_id: String,
    /// Several accounts, as a JSON array of {"id": "acct_...", "api_key",
    /// "webhook_secrets"?, "report_types"?, "event_destination"?}; without
    /// their own, accounts get --webhook-secret and --report-types (and the
    /// event destination ed_test_<id without acct_>). The first is the
    /// default account.
    #[arg(long, env = "EMULATOR_ACCOUNTS")]
    accounts: Option<String>,
    /// Where signed webhooks are POSTed (none when unset).
    #[arg(long, env = "EMULATOR_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Where the same events are also POSTed in Amazon EventBridge's shape,
    /// as from each account's Stripe event destination (none when unset).
    #[arg(long, env = "EMULATOR_EVENTBRIDGE_URL")]
    eventbridge_url: Option<String>,
    /// Signing secret(s), comma-separated; each delivery carries one v1 per secret.
    #[arg(
        long,
        env = "EMULATOR_WEBHOOK_SECRET",
        default_value = "whsec_emulator"
    )]
    webhook_secret: String,
    /// Report types as a JSON array of {"id", "data_available_start"?, "data_available_end"?, "default_columns"?, "file_size"?, "fail"?, "fail_first_runs"?}.
    #[arg(long, env = "EMULATOR_REPORT_TYPES")]
    report_types: Option<String>,
    /// How long runs stay pending, in milliseconds.
    #[arg(long, env = "EMULATOR_RUN_DELAY_MS", default_value_t = 500)]
    run_delay_ms: u64,
    /// Size of every report file, in bytes, unless a report type says otherwise.
    #[arg(long, env = "EMULATOR_FILE_SIZE")]
    file_size: Option<u64>,
    /// Base URL put into result.url (default: this emulator's own address).
    #[arg(long, env = "EMULATOR_FILES_BASE_URL")]
    files_base_url: Option<String>,
    /// Seed of the random decisions (error-storm draws, webhook and
    /// EventBridge shuffle delays, EventBridge event ids): the same seed makes
    /// the same decisions (default: from the OS).
    #[arg(long, env = "EMULATOR_SEED")]
    seed: Option<u64>,
}

/// Attempts per delivery (webhook or EventBridge), and the first wait between two.
const MAX_ATTEMPTS: u32 = 8;
const RETRY_DELAY: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut report_types = match &args.report_types {
        None => default_report_types(),
        Some(json) => parse_json::<Vec<ReportTypeConfig>>("--report-types", json),
    };
    let mut accounts = match &args.accounts {
        None => Vec::new(),
        Some(json) => parse_json::<Vec<AccountConfig>>("--accounts", json),
    };
    if let Some(size) = args.file_size {
        let own_types = accounts
            .iter_mut()
            .filter_map(|account| account.report_types.as_mut());
        for kind in std::iter::once(&mut report_types)
            .chain(own_types)
            .flatten()
        {
            kind.file_size.get_or_insert(size);
        }
    }
    let eventbridge_url = args.eventbridge_url.clone();
    let config = EmulatorConfig {
        api_key: args.api_key,
        account_id: args.account_id,
        accounts,
        report_types,
        run_delay: Duration::from_millis(args.run_delay_ms),
        webhook: args.webhook_url.map(|url| WebhookConfig {
            url,
            secrets: args
                .webhook_secret
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            max_attempts: MAX_ATTEMPTS,
            retry_delay: RETRY_DELAY,
        }),
        eventbridge: args.eventbridge_url.map(|url| EventBridgeConfig {
            url,
            max_attempts: MAX_ATTEMPTS,
            retry_delay: RETRY_DELAY,
        }),
        files_base_url: args.files_base_url,
        livemode: false,
        seed: args.seed,
    };
    let emulator = match Emulator::start(config, args.listen).await {
        Ok(emulator) => emulator,
        Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("stripe-emulator: {err}");
            std::process::exit(2);
        }
        Err(err) => {
            eprintln!("stripe-emulator: cannot listen on {}: {err}", args.listen);
            std::process::exit(1);
        }
    };
    println!("stripe-emulator listening on {}", emulator.base_url());
    let ids: Vec<String> = emulator.accounts().into_iter().map(|(id, _)| id).collect();
    println!("stripe-emulator serving accounts {}", ids.join(", "));
    if let Some(url) = &eventbridge_url {
        let sources: Vec<String> = ids
            .iter()
            .filter_map(|id| emulator.event_destination_of(id))
            .map(|destination| stripe_emulator::eventbridge::source(&destination))
            .collect();
        println!(
            "stripe-emulator sending EventBridge events to {url} from {}",
            sources.join(", ")
        );
    }
    if let Some(also) = args.also_listen {
        match emulator.also_listen(also).await {
            Ok(addr) => println!("stripe-emulator also listening on http://{addr}"),
            Err(err) => {
                eprintln!("stripe-emulator: cannot listen on {also}: {err}");
                std::process::exit(1);
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    emulator.stop();
}

/// The JSON value of `flag`, or exit with one line saying what is wrong with it.
fn parse_json<T: DeserializeOwned>(flag: &str, json: &str) -> T {
    serde_json::from_str(json).unwrap_or_else(|err| {
        eprintln!("stripe-emulator: {flag}: {err}");
        std::process::exit(2);
    })
}
