//! The bodies of the messages the functions pass each other on SQS.

use serde::{Deserialize, Serialize};

/// A message on the download queue: a run the downloader should store.
/// The downloader re-reads the run from Stripe; nothing else is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadMessage {
    pub run_id: String,
}

/// A message on the schedule queue: Stripe has new data for a report type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleMessage {
    pub report_type: String,
    pub data_available_end: i64,
}
