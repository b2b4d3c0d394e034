//! SQS queues: the download, schedule and conversion queues.

use aws_sdk_sqs::Client;
use serde::Serialize;

use crate::domain::account::AccountId;
use crate::domain::messages::{ConversionMessage, DownloadMessage, ScheduleMessage};
use crate::ports::{ConversionQueue, DownloadQueue, QueueError, ScheduleQueue};

/// One SQS queue, addressed by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `message` as a JSON body; returns the message id.
    pub async fn send_json(&self, message: &impl Serialize) -> Result<String, QueueError> {
        let body = serde_json::to_string(message)
            .map_err(|err| QueueError(format!("cannot encode message: {err}")))?;
        let output = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|err| QueueError(super::sdk_message(&err)))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }
}

impl DownloadQueue for SqsQueue {
    async fn enqueue_download(&self, account: &AccountId, run_id: &str) -> Result<(), QueueError> {
        self.send_json(&DownloadMessage {
            run_id: run_id.to_owned(),
            account: account.clone(),
        })
        .await
        .map(|_| ())
    }
}

impl ScheduleQueue for SqsQueue {
    async fn enqueue_schedule(
        &self,
        account: &AccountId,
        report_type: &str,
        data_available_end: i64,
    ) -> Result<(), QueueError> {
        self.send_json(&ScheduleMessage {
            report_type: report_type.to_owned(),
            data_available_end,
            account: account.clone(),
        })
        .await
        .map(|_| ())
    }
}

impl ConversionQueue for SqsQueue {
    async fn enqueue_conversion(
        &self,
        account: &AccountId,
        run_id: &str,
        again: bool,
    ) -> Result<(), QueueError> {
        self.send_json(&ConversionMessage {
            run_id: run_id.to_owned(),
            account: account.clone(),
            again,
        })
        .await
        .map(|_| ())
    }
}
