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
