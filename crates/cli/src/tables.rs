//! `stripe-reports tables backfill`: queues the stored CSVs of a date range
//! for conversion again — CSVs stored before table files existed, or after
//! the type mapping changed. The same use case as the converter function's
//! `{"backfill": {...}}` invocation (events/converter-backfill.json), run
//! here with the deployment's environment (REPORTS_BUCKET, RUNS_TABLE,
//! CONVERSION_QUEUE_URL, GLUE_DATABASE); the deployed converter then does
//! the work. Idempotent: each queued run is converted again into the same
//! key, so running it twice gives the same files.

use jiff::civil::Date;
use stripe_reports::domain::account::AccountId;
use tables::conversion::TableBackfill;

pub async fn backfill(
    from: Date,
    to: Date,
    accounts: Vec<AccountId>,
    report_types: Vec<String>,
) -> Result<String, String> {
    if from > to {
        return Err(format!("--from {from} is after --to {to}"));
    }
    let converter = converter::deps_from_env()
        .await
        .map_err(|e| e.to_string())?;
    let backfill = TableBackfill {
        from,
        to,
        accounts: (!accounts.is_empty()).then_some(accounts),
        report_types: (!report_types.is_empty()).then_some(report_types),
    };
    let summary = converter
        .queue_backfill(&backfill)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = format!(
        "{} stored report(s) from {from} to {to} queued for conversion to table files",
        summary.queued
    );
    if summary.not_in_ledger > 0 {
        answer.push_str(&format!(
            "; {} CSV(s) the ledger holds no stored run for, not queued",
            summary.not_in_ledger
        ));
    }
    Ok(answer)
}
