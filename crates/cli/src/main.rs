//! `stripe-reports`: the command line. Reads the same environment as the
//! Lambda functions (SPEC "Configuration"); `types` and `fetch` to a folder
//! need only `STRIPE_API_KEY` (or `STRIPE_ACCOUNTS`).

mod accounts;
mod fetch;
mod invoke;
mod local;
mod status;
mod tables;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use accounts::{Refused, parse_accounts};
use clap::{Parser, Subcommand};
use jiff::civil::Date;
use stripe_reports::Config;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::spec::{Frequency, ReportSpec, read_specs};
use stripe_reports::ports::StripeByAccount;

#[derive(Parser, Debug)]
#[command(
    name = "stripe-reports",
    version,
    about = "Run Stripe's financial reports and land every file in S3 (or a folder)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum TablesCommand {
    /// Convert the stored CSVs whose date is in a range again (CSVs stored
    /// before table files existed, or after the type mapping changed):
    /// queues them for the deployed converter; idempotent. Needs
    /// REPORTS_BUCKET, RUNS_TABLE, CONVERSION_QUEUE_URL and GLUE_DATABASE
    /// (the stack's outputs). Same as invoking the converter with
    /// events/converter-backfill.json.
    Backfill {
        /// First date (YYYY-MM-DD, the `date=` of the keys), included.
        #[arg(long)]
        from: Date,
        /// Last date (YYYY-MM-DD), included.
        #[arg(long)]
        to: Date,
        /// Only this account (repeat or comma-separate; default: every account).
        #[arg(long = "account", value_name = "ACCT", value_delimiter = ',')]
        accounts: Vec<String>,
        /// Only this report type (repeat for several; default: every type).
        #[arg(long = "report-type")]
        report_types: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List each account's report types and how far their data reaches.
    Types {
        /// Print Stripe's JSON (each report type with its `account`) instead of a table.
        #[arg(long)]
        json: bool,
        /// An account to list (repeat, or separate with commas; default: every configured account).
        #[arg(long = "account", value_name = "ACCT", value_delimiter = ',')]
        accounts: Vec<String>,
    },
    /// Where every report spec stands: last stored, not stored (pending,
    /// failed, overdue) with ages, recent freshness. Reads the ledger only.
    /// Exit code 1 when anything is overdue or failed.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Intervals ending in the last N days (default: LOOKBACK_DAYS).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3660))]
        days: Option<u32>,
        /// An account to report on (repeat, or separate with commas; default:
        /// every configured account). Named here, no Stripe key is needed.
        #[arg(long = "account", value_name = "ACCT", value_delimiter = ',')]
        accounts: Vec<String>,
    },
    /// Run the scheduler, webhook and downloader locally, with their event sources
    /// (needs the whole SPEC environment: Stripe, table, bucket, queues); the
    /// converter too with CONVERSION_QUEUE_URL and GLUE_DATABASE, and the
    /// eventbridge function with EVENTBRIDGE_QUEUE_URL (POST /eventbridge/events
    /// puts an EventBridge event on that queue, as the stack's rule does).
    Local {
        /// Where the webhook endpoint listens (POST /webhooks/stripe), and the
        /// EventBridge target (POST /eventbridge/events).
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// How often the scheduler runs, e.g. 1h, 15m, 30s (it also runs at start).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        schedule_every: Duration,
    },
    /// Table files (typed Parquet, SPEC "Tables"): `tables backfill` queues
    /// the stored CSVs of a date range for conversion again.
    Tables {
        #[command(subcommand)]
        command: TablesCommand,
    },
    /// Invoke one function's handler once, here, and print its answer as JSON
    /// (same environment and event shapes as on Lambda; see events/).
    Invoke {
        function: invoke::Function,
        /// The event as a JSON file, or - for stdin (default for the scheduler: a scheduled run).
        #[arg(long)]
        event: Option<String>,
    },
    /// Run reports now and save their files (in a folder by default), as
    /// CSV, as typed Parquet tables, or both.
    Fetch {
        /// The report type, e.g. balance.summary.1 (see `stripe-reports types`).
        #[arg(long)]
        report_type: String,
        /// The interval containing this date (YYYY-MM-DD).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        date: Option<Date>,
        /// First date of a range (YYYY-MM-DD, included); needs --to.
        #[arg(long, requires = "to")]
        from: Option<Date>,
        /// Last date of a range (YYYY-MM-DD, included); needs --from.
        #[arg(long, requires = "from")]
        to: Option<Date>,
        /// Length of each interval.
        #[arg(long, default_value = "daily", value_parser = ["daily", "weekly", "monthly"])]
        frequency: String,
        /// IANA timezone the intervals are whole days in.
        #[arg(long, default_value = "Etc/UTC")]
        timezone: String,
        /// A column to include (repeat for several; default: the report type's columns).
        #[arg(long = "column")]
        columns: Vec<String>,
        /// A three-letter currency to filter on.
        #[arg(long)]
        currency: Option<String>,
        /// A folder, or s3://bucket/prefix (same key layout as the Lambda functions).
        #[arg(long, default_value = "./reports")]
        out: String,
        /// What to write for each file: csv, parquet (a typed table file) or
        /// both (in a folder; with s3:// only csv).
        ///
        /// A CSV that does not convert is one line naming the run, the line
        /// and the column, and no table file; the other runs are still
        /// fetched, and the exit code is 1.
        #[arg(long, value_enum, default_value_t = fetch::Format::Csv)]
        format: fetch::Format,
        /// The account whose reports to fetch: the key's own (STRIPE_API_KEY; a
        /// key of another account is refused), or one of STRIPE_ACCOUNTS.
        #[arg(long, value_name = "ACCT")]
        account: Option<String>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 15m or 1h"))?;
    let seconds = match unit {
        "s" | "" => value,
        "m" => value * 60,
        "h" => value * 3600,
        _ => return Err(format!("{text:?} is not a duration like 30s, 15m or 1h")),
    };
    if seconds == 0 {
        return Err("the interval must be longer than zero".into());
    }
    Ok(Duration::from_secs(seconds))
}

fn utc(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// `types`: every selected account's report types, each key checked with
/// Stripe first as the functions do at cold start. An account that cannot
/// be listed is one line on stderr and exit code 1; the others are listed.
async fn types(config: Config, requested: &[AccountId], json: bool) -> Result<(), Refused> {
    // AWS only for a key in Secrets Manager: with STRIPE_API_KEY or
    // STRIPE_ACCOUNTS, no AWS configuration is read (no region lookup).
    let sdk = match &config.secrets {
        stripe_reports::domain::config::SecretSource::SecretsManager { .. } => {
            stripe_reports::aws::load_sdk_config().await
        }
        stripe_reports::domain::config::SecretSource::Direct(_) => aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build(),
    };
    let env = stripe_reports::env::Environment::with(
        config,
        sdk,
        std::sync::Arc::new(stripe_reports::secrets::SystemClock::new()),
    )
    .await
    .map_err(|err| Refused::Usage(err.to_string()))?;
    let selected = accounts::select(&env.accounts.states().await, requested)?;
    let clients = env.account_clients();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for account in selected {
        let account = match account {
            Ok(account) => account,
            Err((name, reason)) => {
                failures.push(format!("{name}: {reason}"));
                continue;
            }
        };
        match clients.for_account(&account).report_types().await {
            Ok(mut types) => {
                types.sort_by(|a, b| a.id.cmp(&b.id));
                rows.extend(types.into_iter().map(|kind| (account.clone(), kind)));
            }
            Err(err) => failures.push(format!("{account}: {err}")),
        }
    }
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(account, kind)| {
                let mut value = serde_json::to_value(kind).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("account".into(), account.as_str().into());
                }
                value
            })
            .collect();
        let text =
            serde_json::to_string_pretty(&list).map_err(|err| Refused::Failed(err.to_string()))?;
        println!("{text}");
    } else {
        let account_width = rows
            .iter()
            .map(|(account, _)| account.as_str().len())
            .max()
            .unwrap_or(0)
            .max(7);
        let width = rows
            .iter()
            .map(|(_, kind)| kind.id.len())
            .max()
            .unwrap_or(0)
            .max(11);
        println!(
            "{:<account_width$}  {:<width$}  {:<20}  {:<20}",
            "account", "report type", "data available start", "data available end"
        );
        for (account, kind) in &rows {
            println!(
                "{:<account_width$}  {:<width$}  {:<20}  {:<20}",
                account.as_str(),
                kind.id,
                utc(kind.data_available_start),
                utc(kind.data_available_end)
            );
        }
    }
    match failures.len() {
        0 => Ok(()),
        _ => Err(Refused::Failed(failures.join("; "))),
    }
}

/// Exit code 2 with one line: a usage error.
fn usage(message: &str) -> ExitCode {
    eprintln!("stripe-reports: {message}");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => match err.kind() {
            // Help and version go to stdout with exit code 0, as usual.
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
            // Anything else: one line, exit code 2 (`--help` has the details).
            _ => {
                let rendered = err.render().to_string();
                // clap's message, without the usage and hint that follow it,
                // folded onto one line.
                let message = rendered
                    .split("\n\n")
                    .take_while(|part| !part.starts_with("Usage:") && !part.starts_with("For more"))
                    .flat_map(str::split_whitespace)
                    .collect::<Vec<_>>()
                    .join(" ");
                return usage(message.trim_start_matches("error: "));
            }
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour for a terminal only: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return usage(&err.to_string()),
    };
    let outcome = match cli.command {
        Command::Types { json, accounts } => {
            let accounts = match parse_accounts(&accounts) {
                Ok(accounts) => accounts,
                Err(err) => return usage(&err),
            };
            match types(config, &accounts, json).await {
                Err(Refused::Usage(err)) => return usage(&err),
                Err(Refused::Failed(err)) => Err(err),
                Ok(()) => Ok(()),
            }
        }
        Command::Status {
            json,
            days,
            accounts,
        } => {
            let accounts = match parse_accounts(&accounts) {
                Ok(accounts) => accounts,
                Err(err) => return usage(&err),
            };
            let now = jiff::Timestamp::now().as_second();
            let options = status::StatusOptions {
                json,
                days,
                accounts,
            };
            return match status::run(&config, options, now).await {
                Ok(true) => ExitCode::SUCCESS,
                // Something is overdue or failed: the table or JSON says what.
                Ok(false) => ExitCode::FAILURE,
                Err(Refused::Usage(err)) => usage(&err),
                Err(Refused::Failed(err)) => {
                    eprintln!("stripe-reports: status: {err}");
                    ExitCode::from(3)
                }
            };
        }
        Command::Local {
            listen,
            schedule_every,
        } => {
            local::run(local::LocalOptions {
                listen,
                schedule_every,
            })
            .await
        }
        Command::Tables {
            command:
                TablesCommand::Backfill {
                    from,
                    to,
                    accounts,
                    report_types,
                },
        } => match parse_accounts(&accounts) {
            Ok(accounts) => tables::backfill(from, to, accounts, report_types)
                .await
                .map(|summary| println!("{summary}")),
            Err(err) => Err(err),
        },
        Command::Invoke { function, event } => invoke::run(function, event.as_deref())
            .await
            .map(|answer| println!("{answer}")),
        Command::Fetch {
            report_type,
            date,
            from,
            to,
            frequency,
            timezone,
            columns,
            currency,
            out,
            format,
            account,
        } => {
            let account = match parse_accounts(account.as_slice()) {
                Ok(mut accounts) => accounts.pop(),
                Err(err) => return usage(&err),
            };
            let mut spec = ReportSpec::new(report_type);
            spec.frequency = frequency.parse::<Frequency>().unwrap_or_default();
            spec.timezone = timezone;
            spec.columns = (!columns.is_empty()).then_some(columns);
            spec.currency = currency;
            let spec = match read_specs(vec![spec]) {
                Ok(mut specs) => specs.remove(0),
                Err(err) => return usage(&err.to_string()),
            };
            let dates = match (date, from, to) {
                (Some(date), _, _) => fetch::Dates::One(date),
                (None, Some(from), Some(to)) if from <= to => fetch::Dates::Range { from, to },
                (None, Some(from), Some(to)) => {
                    return usage(&format!("--from {from} is after --to {to}"));
                }
                _ => return usage("give --date YYYY-MM-DD, or --from and --to"),
            };
            let destination = match fetch::Destination::parse(&out) {
                Ok(destination) => destination,
                Err(err) => return usage(&err),
            };
            if matches!(destination, fetch::Destination::S3 { .. }) && format != fetch::Format::Csv
            {
                // The bucket's table files are the stack's converter's
                // (from its ledger); fetch writes them to a folder only.
                return usage(
                    "--format parquet and both write to a folder only: with --out s3://… use --format csv",
                );
            }
            match accounts::for_fetch(&config, account.as_ref()).await {
                Err(Refused::Usage(err)) => return usage(&err),
                Err(Refused::Failed(err)) => Err(err),
                Ok(clients) => {
                    let s3 = match &destination {
                        fetch::Destination::S3 { bucket, .. } => {
                            let sdk = stripe_reports::aws::load_sdk_config().await;
                            Some(stripe_reports::aws::S3Sink::new(
                                stripe_reports::aws::s3_client(
                                    &sdk,
                                    config.aws_endpoint_url.is_some(),
                                ),
                                bucket,
                            ))
                        }
                        fetch::Destination::Folder(_) => None,
                    };
                    let fetch = fetch::Fetch {
                        spec,
                        dates,
                        destination,
                        format,
                    };
                    // Account by account: each account's files under its own
                    // `account=`; the first failure stops with its line. A
                    // file that does not convert stops nothing: its line is
                    // printed, and the exit code says so at the end.
                    let mut outcome = Ok(());
                    let mut not_converted = 0;
                    for (account, client) in &clients {
                        match fetch::run(client, account, fetch.clone(), s3.clone()).await {
                            Ok(fetched) => not_converted += fetched.not_converted,
                            Err(err) => {
                                outcome = Err(err);
                                break;
                            }
                        }
                    }
                    if outcome.is_ok() && not_converted > 0 {
                        return ExitCode::FAILURE;
                    }
                    outcome
                }
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stripe-reports: {err}");
            ExitCode::FAILURE
        }
    }
}
