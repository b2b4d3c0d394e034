//! The bodies of the messages the functions pass each other on SQS.

use serde::{Deserialize, Serialize};

use super::account::AccountId;

/// A message on the download queue: a run the downloader should store, and
/// the account whose key reads it. The downloader re-reads the run from
/// Stripe with that key; nothing else is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadMessage {
    pub run_id: String,
    pub account: AccountId,
}

/// A message on the schedule queue: Stripe has new data for a report type
/// of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleMessage {
    pub report_type: String,
    pub data_available_end: i64,
    pub account: AccountId,
}

/// A message on the conversion queue: a stored run whose CSV becomes its
/// table file (SPEC "Tables"). The converter reads the run from the ledger
/// (which must hold it, stored, for this account) and the CSV from S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionMessage {
    pub run_id: String,
    pub account: AccountId,
    /// Convert even when the ledger already records a table file (a backfill
    /// after the type mapping changed). The result replaces the file at the
    /// same key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
}
