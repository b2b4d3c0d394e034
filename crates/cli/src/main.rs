//! `stripe-reports`: the command line. Reads the same environment as the
//! Lambda functions (SPEC "Configuration"); needs only `STRIPE_API_KEY` for
//! Stripe-only commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stripe_reports::Config;
use stripe_reports::domain::config::SecretSource;
use stripe_reports::stripe::{StripeClient, StripeClientConfig};

#[derive(Parser, Debug)]
#[command(
    name = "stripe-reports",
    version,
    about = "Run Stripe's financial reports and land every file in S3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the account's report types and how far their data reaches.
    Types {
        /// Print Stripe's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn stripe_client(config: &Config) -> Result<StripeClient, String> {
    let SecretSource::Direct(secrets) = &config.secrets else {
        return Err(
            "the CLI reads STRIPE_API_KEY; STRIPE_SECRET_ARN is for the Lambda functions".into(),
        );
    };
    let key = secrets.require_api_key().map_err(|e| e.to_string())?;
    StripeClient::new(StripeClientConfig::from_config(config, key.clone()))
        .map_err(|e| e.to_string())
}

fn utc(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

async fn types(config: &Config, json: bool) -> Result<(), String> {
    let client = stripe_client(config)?;
    let mut types = client.report_types().await.map_err(|e| e.to_string())?;
    types.sort_by(|a, b| a.id.cmp(&b.id));
    if json {
        let text = serde_json::to_string_pretty(&types).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    let width = types.iter().map(|t| t.id.len()).max().unwrap_or(4).max(11);
    println!(
        "{:<width$}  {:<20}  {:<20}",
        "report type", "data available start", "data available end"
    );
    for kind in &types {
        println!(
            "{:<width$}  {:<20}  {:<20}",
            kind.id,
            utc(kind.data_available_start),
            utc(kind.data_available_end)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("stripe-reports: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Types { json } => types(&config, json).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stripe-reports: {err}");
            ExitCode::FAILURE
        }
    }
}
