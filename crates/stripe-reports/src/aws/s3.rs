//! Streams a report file into S3 in bounded memory: a single PutObject for a
//! file smaller than one part, else a multipart upload with a bounded number
//! of parts in flight. SHA-256 and byte count are computed on the way; a
//! byte count other than the expected size, a cut stream or an S3 error
//! aborts the upload, so no partial object is ever kept.
//!
//! Peak memory ≈ (parts in flight + 1) × part size, whatever the file size.

use std::collections::HashMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 2;

/// One object to write.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    pub key: String,
    pub content_type: String,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: HashMap<String, String>,
    /// The byte count the object must have; anything else is not kept.
    pub expected_size: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
    /// Parts of the multipart upload; 0 for a single PutObject.
    pub parts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("download interrupted after {bytes} bytes: {reason}")]
    Source { bytes: u64, reason: String },
    #[error("size mismatch: the file should have {expected} bytes, {received} arrived")]
    SizeMismatch { expected: u64, received: u64 },
    #[error("S3 {operation} failed: {reason}")]
    S3 {
        operation: &'static str,
        reason: String,
    },
}

fn s3_error<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> SinkError {
    move |err| SinkError::S3 {
        operation,
        reason: super::sdk_message(&err),
    }
}

#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
    part_size: usize,
    parts_in_flight: usize,
}

impl S3Sink {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
        }
    }

    /// Part size (at least 5 MiB, S3's minimum) and parts uploaded at once (at least 1).
    pub fn with_parts(mut self, part_size: usize, parts_in_flight: usize) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self.parts_in_flight = parts_in_flight.max(1);
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes `body` to `object.key`, or nothing at all.
    pub async fn store<S, E>(&self, object: &ObjectSpec, body: S) -> Result<Written, SinkError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut body = body;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut buffer =
            BytesMut::with_capacity(self.part_size.min(object.expected_size as usize + 1));
        // Fill the first part; a file that ends before is one PutObject.
        let first_complete = fill(
            &mut body,
            &mut buffer,
            self.part_size,
            &mut hasher,
            &mut received,
        )
        .await?;
        if !first_complete {
            check_size(object, received)?;
            self.put_single(object, buffer.freeze()).await?;
            return Ok(Written {
                bytes: received,
                sha256: hex::encode(hasher.finalize()),
                parts: 0,
            });
        }
        let upload_id = self.start_multipart(object).await?;
        match self
            .upload_parts(
                object,
                &upload_id,
                &mut body,
                buffer,
                &mut hasher,
                &mut received,
            )
            .await
        {
            Ok(parts) => {
                let written = Written {
                    bytes: received,
                    sha256: hex::encode(hasher.finalize()),
                    parts: parts.len(),
                };
                if let Err(err) = self.complete(object, &upload_id, parts).await {
                    self.abort(object, &upload_id).await;
                    return Err(err);
                }
                Ok(written)
            }
            Err(err) => {
                self.abort(object, &upload_id).await;
                Err(err)
            }
        }
    }

    async fn put_single(&self, object: &ObjectSpec, bytes: Bytes) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .content_type(&object.content_type)
            .set_metadata(Some(object.metadata.clone()))
            .content_length(bytes.len() as i64)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_error("PutObject"))?;
        Ok(())
    }

    async fn start_multipart(&self, object: &ObjectSpec) -> Result<String, SinkError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object.key)
            .content_type(&object.content_type)
            .set_metadata(Some(object.metadata.clone()))
            .send()
            .await
            .map_err(s3_error("CreateMultipartUpload"))?;
        created.upload_id.ok_or_else(|| SinkError::S3 {
            operation: "CreateMultipartUpload",
            reason: "no upload id in the answer".into(),
        })
    }

    /// Uploads the first (full) part and every following one, at most
    /// `parts_in_flight` at once; returns the parts in order once the body
    /// ended with exactly the expected byte count.
    async fn upload_parts<S, E>(
        &self,
        object: &ObjectSpec,
        upload_id: &str,
        body: &mut S,
        first: BytesMut,
        hasher: &mut Sha256,
        received: &mut u64,
    ) -> Result<Vec<CompletedPart>, SinkError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut in_flight: JoinSet<Result<CompletedPart, SinkError>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut number: i32 = 1;
        let mut part = first;
        loop {
            self.send_part(
                &mut in_flight,
                &mut done,
                object,
                upload_id,
                number,
                part.freeze(),
            )
            .await?;
            number += 1;
            let mut next = BytesMut::with_capacity(self.part_size);
            if fill(body, &mut next, self.part_size, hasher, received).await? {
                part = next;
                continue;
            }
            // The body ended: the rest (possibly nothing) is the last part.
            check_size(object, *received)?;
            if !next.is_empty() {
                self.send_part(
                    &mut in_flight,
                    &mut done,
                    object,
                    upload_id,
                    number,
                    next.freeze(),
                )
                .await?;
            }
            break;
        }
        while !in_flight.is_empty() {
            done.push(join_next(&mut in_flight).await?);
        }
        done.sort_by_key(|part| part.part_number());
        Ok(done)
    }

    /// Starts uploading one part once fewer than `parts_in_flight` are under way.
    async fn send_part(
        &self,
        in_flight: &mut JoinSet<Result<CompletedPart, SinkError>>,
        done: &mut Vec<CompletedPart>,
        object: &ObjectSpec,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
    ) -> Result<(), SinkError> {
        while in_flight.len() >= self.parts_in_flight {
            done.push(join_next(in_flight).await?);
        }
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(bytes.len() as i64)
            .body(ByteStream::from(bytes));
        in_flight.spawn(async move {
            let uploaded = request.send().await.map_err(s3_error("UploadPart"))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag)
                .build())
        });
        Ok(())
    }

    async fn complete(
        &self,
        object: &ObjectSpec,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), SinkError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error("CompleteMultipartUpload"))?;
        Ok(())
    }

    /// Aborts every unfinished multipart upload of `key`: those left by an
    /// earlier attempt that could not abort its own (S3 unreachable, process
    /// killed). Called once the object is stored, so nothing of value is lost:
    /// a concurrent attempt on the same run loses its upload, and the
    /// downloader then finds the run stored and answers "already stored".
    /// Returns how many were aborted.
    pub async fn abort_leftover_uploads(&self, key: &str) -> Result<usize, SinkError> {
        let mut aborted = 0;
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(s3_error("ListMultipartUploads"))?;
            for upload in page.uploads() {
                let (Some(upload_key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                if upload_key != key {
                    continue; // a longer key with the same prefix
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await
                    .map_err(s3_error("AbortMultipartUpload"))?;
                aborted += 1;
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
    }

    /// Best effort: the bucket's lifecycle rule removes what this misses.
    async fn abort(&self, object: &ObjectSpec, upload_id: &str) {
        if let Err(err) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(key = %object.key, error = %super::sdk_message(&err), "could not abort multipart upload; the lifecycle rule will");
        }
    }
}

async fn join_next(
    set: &mut JoinSet<Result<CompletedPart, SinkError>>,
) -> Result<CompletedPart, SinkError> {
    match set.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(SinkError::S3 {
            operation: "UploadPart",
            reason: format!("upload task failed: {join}"),
        }),
        None => Err(SinkError::S3 {
            operation: "UploadPart",
            reason: "no part in flight".into(),
        }),
    }
}

fn check_size(object: &ObjectSpec, received: u64) -> Result<(), SinkError> {
    if received == object.expected_size {
        Ok(())
    } else {
        Err(SinkError::SizeMismatch {
            expected: object.expected_size,
            received,
        })
    }
}

/// Reads from `body` into `buffer` until it holds at least `part_size` bytes
/// (`true`; the last chunk may overshoot by less than one chunk) or the body
/// ends (`false`). Bytes are hashed and counted as they arrive.
async fn fill<S, E>(
    body: &mut S,
    buffer: &mut BytesMut,
    part_size: usize,
    hasher: &mut Sha256,
    received: &mut u64,
) -> Result<bool, SinkError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while buffer.len() < part_size {
        match body.next().await {
            None => return Ok(false),
            Some(Err(err)) => {
                return Err(SinkError::Source {
                    bytes: *received,
                    reason: err.to_string(),
                });
            }
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                *received += chunk.len() as u64;
                buffer.extend_from_slice(&chunk);
            }
        }
    }
    Ok(true)
}
