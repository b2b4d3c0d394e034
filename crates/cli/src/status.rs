//! `stripe-reports status`: where every report spec of every account stands
//! — the last stored interval, what is pending, failed or overdue and for
//! how long, and how fresh the recent reports were — from the ledger alone
//! (availability is what the scheduler recorded; no Stripe key is needed
//! when the accounts are named, by `--account` or `STRIPE_ACCOUNTS`). A
//! table on a terminal, `--json` for scripts; exit code 1 when anything is
//! overdue or failed, so it drops into any monitoring.

use std::fmt::Write as _;

use serde_json::json;
use stripe_reports::Config;
use stripe_reports::aws::DynamoLedger;
use stripe_reports::domain::account::AccountId;
use stripe_reports::domain::spec::ReportSpec;
use stripe_reports::status::{IntervalStatus, SpecStatus, status};

use crate::accounts::Refused;

/// Point reads in flight at once.
const CONCURRENCY: usize = 32;

pub struct StatusOptions {
    pub json: bool,
    pub days: Option<u32>,
    /// `--account`: empty for every configured account.
    pub accounts: Vec<AccountId>,
}

/// Prints the status; `Ok(true)` when nothing needs attention.
/// `Refused::Failed` when the ledger cannot be read.
pub async fn run(config: &Config, options: StatusOptions, now: i64) -> Result<bool, Refused> {
    let table = config
        .require_runs_table()
        .map_err(|err| Refused::Failed(err.to_string()))?;
    let sdk = stripe_reports::aws::load_sdk_config().await;
    let accounts = crate::accounts::for_status(config, &sdk, &options.accounts).await?;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let days = options.days.unwrap_or(config.lookback_days);
    let grace = i64::from(config.overdue_after_minutes) * 60;
    let specs = status(
        &ledger,
        &accounts,
        &config.reports,
        days,
        now,
        grace,
        CONCURRENCY,
    )
    .await
    .map_err(|err| Refused::Failed(err.to_string()))?;
    let healthy = !specs.iter().any(SpecStatus::needs_attention);
    if options.json {
        println!(
            "{}",
            json!({"now": now, "days": days, "overdue_after_secs": grace,
                   "accounts": accounts, "healthy": healthy, "specs": specs})
        );
    } else {
        print!("{}", table_text(&specs, days));
    }
    Ok(healthy)
}

/// `3d4h`, `2h05m`, `7m`, `40s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

fn spec_name(spec: &ReportSpec) -> String {
    let mut name = format!("{} {}", spec.report_type, spec.frequency.as_str());
    if spec.timezone != stripe_reports::domain::spec::DEFAULT_TIMEZONE {
        let _ = write!(name, " {}", spec.timezone);
    }
    for (label, value) in [
        ("currency", &spec.currency),
        ("category", &spec.reporting_category),
        ("connected", &spec.connected_account),
    ] {
        if let Some(value) = value {
            let _ = write!(name, " {label}={value}");
        }
    }
    name
}

fn line(interval: &IntervalStatus) -> String {
    let mut text = format!("{}: {}", interval.date, interval.state_words());
    if let Some(age) = interval.age_secs {
        let _ = write!(text, " for {}", duration(age));
    }
    if let Some(run) = &interval.run_id {
        let _ = write!(text, " (run {run})");
    }
    if let Some(late) = interval.overdue_secs {
        let _ = write!(text, ", OVERDUE by {}", duration(late));
    }
    if let Some(error) = &interval.error {
        let _ = write!(text, ": {error}");
    }
    text
}

trait StateWords {
    fn state_words(&self) -> &'static str;
}

impl StateWords for IntervalStatus {
    fn state_words(&self) -> &'static str {
        self.state.why_not_stored().unwrap_or("stored")
    }
}

/// The table: one row per (account, spec), then one line per interval not stored.
pub fn table_text(specs: &[SpecStatus], days: u32) -> String {
    let rows: Vec<[String; 7]> = specs
        .iter()
        .map(|spec| {
            let freshness: Vec<String> = spec
                .recent_freshness_secs
                .iter()
                .take(3)
                .map(|secs| duration(*secs))
                .collect();
            [
                spec.account.to_string(),
                spec_name(&spec.spec),
                spec.last_stored
                    .as_ref()
                    .map_or_else(|| format!("none in {days} d"), |i| i.date.clone()),
                spec.not_stored
                    .iter()
                    .filter(|i| {
                        !matches!(
                            i.state,
                            stripe_reports::domain::due::IntervalState::Failed
                                | stripe_reports::domain::due::IntervalState::Retired
                        )
                    })
                    .count()
                    .to_string(),
                spec.failed().count().to_string(),
                spec.overdue().count().to_string(),
                if freshness.is_empty() {
                    "-".into()
                } else {
                    freshness.join(", ")
                },
            ]
        })
        .collect();
    let header = [
        "account",
        "report spec",
        "last stored",
        "not stored",
        "failed",
        "overdue",
        "freshness (newest first)",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut write_row = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    write_row(&header);
    for row in &rows {
        write_row(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let details: Vec<String> = specs
        .iter()
        .flat_map(|spec| {
            spec.not_stored.iter().map(move |interval| {
                format!(
                    "  {} {} {}",
                    spec.account,
                    spec.spec.report_type,
                    line(interval)
                )
            })
        })
        .collect();
    if !details.is_empty() {
        let _ = writeln!(out, "\nnot stored:");
        for detail in details {
            let _ = writeln!(out, "{detail}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(40), "40s");
        assert_eq!(duration(7 * 60 + 3), "7m");
        assert_eq!(duration(2 * 3600 + 5 * 60), "2h05m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 59), "3d4h");
        assert_eq!(duration(-5), "0s");
    }
}
