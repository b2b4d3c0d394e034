//! The report files a conversion reads and writes, as a port
//! ([`ReportFiles`]) and its S3 adapter ([`S3ReportFiles`]).

use std::future::Future;
use std::pin::Pin;

use aws_sdk_s3::Client;
use bytes::Bytes;
use futures_util::Stream;
use stripe_reports::aws::s3::{ObjectSpec, S3Sink};
use tokio::io::AsyncRead;
use tokio::time::Instant;

/// A CSV being read.
pub type CsvBody = Pin<Box<dyn AsyncRead + Send>>;
/// The bytes of a table file being written; an `Err` item means the
/// conversion failed and nothing may be kept.
pub type TableBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("the stored CSV {key} is not there")]
    Missing { key: String },
    #[error("S3 {operation} failed: {reason}")]
    S3 {
        operation: &'static str,
        reason: String,
    },
}

/// Where stored CSVs are read and table files written (the reports bucket).
pub trait ReportFiles: Send + Sync {
    /// Streams the object at `key`.
    fn open(&self, key: &str) -> impl Future<Output = Result<CsvBody, FilesError>> + Send;

    /// Writes `body` at `key` (a table file), or nothing at all when the body
    /// ends in an error, S3 fails or `deadline` passes; returns its bytes.
    fn write_table(
        &self,
        key: &str,
        metadata: Vec<(String, String)>,
        body: TableBody,
        deadline: Instant,
    ) -> impl Future<Output = Result<u64, FilesError>> + Send;

    /// The keys under `prefix` (a backfill's listing), in S3's order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, FilesError>> + Send;
}

/// The reports bucket. Writes go through the downloader's [`S3Sink`]: a
/// multipart upload in bounded memory, aborted on any error.
pub struct S3ReportFiles {
    client: Client,
    bucket: String,
    sink: S3Sink,
}

impl S3ReportFiles {
    /// `part_size` and `parts_in_flight` bound the upload's memory.
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        part_size: usize,
        parts_in_flight: usize,
    ) -> Self {
        let bucket = bucket.into();
        let sink =
            S3Sink::new(client.clone(), bucket.clone()).with_parts(part_size, parts_in_flight);
        Self {
            client,
            bucket,
            sink,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

impl ReportFiles for S3ReportFiles {
    async fn open(&self, key: &str) -> Result<CsvBody, FilesError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| {
                if err.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                    FilesError::Missing {
                        key: key.to_owned(),
                    }
                } else {
                    FilesError::S3 {
                        operation: "GetObject",
                        reason: stripe_reports::aws::sdk_message(&err),
                    }
                }
            })?;
        Ok(Box::pin(object.body.into_async_read()))
    }

    async fn write_table(
        &self,
        key: &str,
        metadata: Vec<(String, String)>,
        body: TableBody,
        deadline: Instant,
    ) -> Result<u64, FilesError> {
        let object = ObjectSpec {
            key: key.to_owned(),
            content_type: "application/vnd.apache.parquet".into(),
            metadata: metadata.into_iter().collect(),
            expected_size: None,
        };
        self.sink
            .store(&object, body, deadline)
            .await
            .map(|written| written.bytes)
            .map_err(|err| FilesError::S3 {
                operation: "PutObject/UploadPart",
                reason: err.to_string(),
            })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, FilesError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| FilesError::S3 {
                operation: "ListObjectsV2",
                reason: stripe_reports::aws::sdk_message(&err),
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }
}
