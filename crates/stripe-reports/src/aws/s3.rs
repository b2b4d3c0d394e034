//! Streams a report file into S3 in bounded memory: a single PutObject for a
//! file smaller than one part, else a multipart upload with a bounded number
//! of parts in flight. SHA-256 and byte count are computed on the way; a
//! byte count other than the expected size, a cut stream or an S3 error
//! aborts the upload, so no partial object is ever kept.
//!
//! Peak memory ≈ (parts in flight + 1) × part size, whatever the file size:
//! a chunk that crosses a part boundary is split there and its tail carried
//! into the next part, so no part buffer ever grows past the part size, and
//! a part's buffer goes back to a pool once S3 has it, so the same few
//! buffers carry the whole file (no allocation, and no fresh pages for the
//! kernel to fault in, per part). The
//! upload is bounded by a deadline; when it passes, the multipart upload is
//! aborted before the error is returned (never left open by a dropped future).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
pub const DEFAULT_PART_SIZE: usize = MIN_PART_SIZE;
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 2;

/// One object to write.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    pub key: String,
    pub content_type: String,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: HashMap<String, String>,
    /// The byte count the object must have; anything else is not kept.
    /// `None` for a file this system writes itself (a table file), whose
    /// size is known only at its end.
    pub expected_size: Option<u64>,
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
    #[error("the invocation's time ran out after {bytes} bytes; the upload was aborted")]
    Deadline { bytes: u64 },
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
    /// Shared by every upload of this sink and its clones, for the life of
    /// the process: a part buffer is a fresh 5 MiB of pages the first time
    /// (about 1,400 page faults, the downloader's main cost beyond the floor
    /// on a small file), so a warm function fills the buffers its earlier
    /// files used. It holds at most as many buffers as were ever in use at
    /// once (concurrent uploads × (parts in flight + 1)).
    pool: PartPool,
}

impl S3Sink {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            pool: PartPool::default(),
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

    /// Part buffers kept for the next parts (for tests and diagnostics).
    pub fn pooled_part_buffers(&self) -> usize {
        self.pool.0.lock().map_or(0, |free| free.len())
    }

    fn part_reader<S, E>(&self, body: S) -> PartReader<S>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        PartReader::new(body, self.part_size, self.pool.clone())
    }

    /// Writes `body` to `object.key`, or nothing at all: a source error, a
    /// size other than the expected one, an S3 error or the `deadline`
    /// passing aborts the multipart upload before the error is returned.
    pub async fn store<S, E>(
        &self,
        object: &ObjectSpec,
        body: S,
        deadline: Instant,
    ) -> Result<Written, SinkError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut reader = self.part_reader(body);
        let out_of_time = |reader: &PartReader<S>| SinkError::Deadline {
            bytes: reader.received,
        };
        // The first part; a file that ends before it is full is one PutObject
        // (a PutObject cut short stores nothing, so there is nothing to abort).
        let first = match tokio::time::timeout_at(deadline, reader.next_part()).await {
            Ok(first) => first?,
            Err(_) => return Err(out_of_time(&reader)),
        };
        if first.len() < self.part_size {
            check_size(object, reader.received)?;
            match tokio::time::timeout_at(deadline, self.put_single(object, first.clone())).await {
                Ok(put) => put?,
                Err(_) => return Err(out_of_time(&reader)),
            }
            // S3 has it and the SDK dropped its copy: the buffer is the next
            // file's (most reports are a single part).
            reader.pool.give_back(first);
            return Ok(Written {
                bytes: reader.received,
                sha256: reader.sha256(),
                parts: 0,
            });
        }
        let upload_id = match tokio::time::timeout_at(deadline, self.start_multipart(object)).await
        {
            Ok(started) => started?,
            // If S3 created it after all, the next attempt's cleanup (or the
            // lifecycle rule) aborts it.
            Err(_) => return Err(out_of_time(&reader)),
        };
        let uploaded = tokio::time::timeout_at(deadline, async {
            let parts = self
                .upload_parts(object, &upload_id, &mut reader, first)
                .await?;
            let count = parts.len();
            self.complete(object, &upload_id, parts).await?;
            Ok::<_, SinkError>(count)
        })
        .await;
        match uploaded {
            Ok(Ok(parts)) => Ok(Written {
                bytes: reader.received,
                sha256: reader.sha256(),
                parts,
            }),
            Ok(Err(err)) => {
                self.abort(object, &upload_id).await;
                Err(err)
            }
            Err(_) => {
                // The parts in flight are cancelled with their JoinSet; the
                // upload itself is aborted here, not left to the lifecycle rule.
                self.abort(object, &upload_id).await;
                Err(out_of_time(&reader))
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
            // No payload hash in the signature: see `send_part`.
            .customize()
            .disable_payload_signing()
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
        reader: &mut PartReader<S>,
        first: Bytes,
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
                part,
                &reader.pool,
            )
            .await?;
            number += 1;
            let next = reader.next_part().await?;
            if next.len() == self.part_size {
                part = next;
                continue;
            }
            // The body ended: the rest (possibly nothing) is the last part.
            check_size(object, reader.received)?;
            if !next.is_empty() {
                self.send_part(
                    &mut in_flight,
                    &mut done,
                    object,
                    upload_id,
                    number,
                    next,
                    &reader.pool,
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

    /// Starts uploading one part once fewer than `parts_in_flight` are under
    /// way; its buffer goes back to `pool` once the part is uploaded.
    #[allow(clippy::too_many_arguments)]
    async fn send_part(
        &self,
        in_flight: &mut JoinSet<Result<CompletedPart, SinkError>>,
        done: &mut Vec<CompletedPart>,
        object: &ObjectSpec,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
        pool: &PartPool,
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
            .body(ByteStream::from(bytes.clone()))
            // SigV4 would hash every part with SHA-256 to sign it (on HTTPS
            // too): a second pass over the bytes beside our own SHA-256 of
            // the file. The part's CRC32 checksum, which S3 verifies, and TLS
            // keep it intact; the signature still covers the headers.
            .customize()
            .disable_payload_signing();
        let pool = pool.clone();
        in_flight.spawn(async move {
            let uploaded = request.send().await.map_err(s3_error("UploadPart"))?;
            pool.give_back(bytes);
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
        let mut failed: Vec<String> = Vec::new();
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
                // One abort that fails does not keep the others open.
                match self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await
                {
                    Ok(_) => aborted += 1,
                    Err(err) => failed.push(super::sdk_message(&err)),
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        match failed.first() {
            None => Ok(aborted),
            Some(first) => Err(SinkError::S3 {
                operation: "AbortMultipartUpload",
                reason: format!(
                    "{} of {} leftover uploads not aborted; first: {first}",
                    failed.len(),
                    failed.len() + aborted
                ),
            }),
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
    match object.expected_size {
        Some(expected) if received != expected => {
            Err(SinkError::SizeMismatch { expected, received })
        }
        _ => Ok(()),
    }
}

/// Cuts a byte stream into parts of exactly `part_size` bytes (the last one
/// shorter), hashing and counting the bytes as they arrive. A chunk that
/// crosses a part boundary is split there and its tail carried (without a
/// copy) into the next part, so a part's buffer is allocated once at the part
/// size and never grows.
/// The part buffers S3 is done with, for the next parts to fill.
#[derive(Debug, Clone, Default)]
struct PartPool(Arc<Mutex<Vec<BytesMut>>>);

impl PartPool {
    /// Keeps `part`'s buffer if nothing else holds it any more (the SDK
    /// drops its request, body included, when the call returns).
    fn give_back(&self, part: Bytes) {
        if let Ok(buffer) = part.try_into_mut() {
            self.keep(buffer);
        }
    }

    fn keep(&self, mut buffer: BytesMut) {
        buffer.clear();
        if let Ok(mut free) = self.0.lock() {
            free.push(buffer);
        }
    }

    fn take(&self, capacity: usize) -> BytesMut {
        self.0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .filter(|buffer| buffer.capacity() >= capacity)
            .unwrap_or_else(|| BytesMut::with_capacity(capacity))
    }
}

struct PartReader<S> {
    body: S,
    part_size: usize,
    pool: PartPool,
    hasher: Sha256,
    received: u64,
    carry: Bytes,
    ended: bool,
}

impl<S, E> PartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    fn new(body: S, part_size: usize, pool: PartPool) -> Self {
        Self {
            body,
            part_size,
            pool,
            hasher: Sha256::new(),
            received: 0,
            carry: Bytes::new(),
            ended: false,
        }
    }

    /// The next part: `part_size` bytes, or fewer (possibly none) once the
    /// body has ended.
    async fn next_part(&mut self) -> Result<Bytes, SinkError> {
        let mut part = self.pool.take(self.part_size);
        loop {
            if !self.carry.is_empty() {
                let take = self.carry.len().min(self.part_size - part.len());
                part.extend_from_slice(&self.carry.split_to(take));
            }
            if part.len() == self.part_size {
                return Ok(part.freeze());
            }
            if self.ended {
                if part.is_empty() {
                    // A file of whole parts: the buffer taken for a part
                    // that never came stays in the pool for the next file.
                    self.pool.keep(part);
                    return Ok(Bytes::new());
                }
                return Ok(part.freeze());
            }
            match self.body.next().await {
                None => self.ended = true,
                Some(Err(err)) => {
                    return Err(SinkError::Source {
                        bytes: self.received,
                        reason: err.to_string(),
                    });
                }
                Some(Ok(chunk)) => {
                    self.hasher.update(&chunk);
                    self.received += chunk.len() as u64;
                    self.carry = chunk;
                }
            }
        }
    }

    fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let mut next = 0u8;
        let chunks: Vec<Result<Bytes, String>> = sizes
            .iter()
            .map(|size| {
                let chunk: Vec<u8> = (0..*size)
                    .map(|_| {
                        next = next.wrapping_add(1);
                        next
                    })
                    .collect();
                Ok(Bytes::from(chunk))
            })
            .collect();
        futures_util::stream::iter(chunks)
    }

    #[tokio::test]
    async fn parts_are_cut_at_the_part_size_and_their_buffers_never_grow() {
        // Chunks of 7 bytes into parts of 10: every chunk boundary misses.
        let mut reader = PartReader::new(chunks(&[7; 5]), 10, PartPool::default());
        let mut all = Vec::new();
        let mut lengths = Vec::new();
        loop {
            let part = reader.next_part().await.unwrap();
            lengths.push(part.len());
            all.extend_from_slice(&part);
            if part.len() < 10 {
                break;
            }
        }
        assert_eq!(lengths, vec![10, 10, 10, 5]);
        assert_eq!(reader.received, 35);
        let expected: Vec<u8> = (1..=35).collect();
        assert_eq!(all, expected, "bytes in order, none lost or repeated");
        assert_eq!(reader.sha256(), hex::encode(Sha256::digest(&expected)));
    }

    #[tokio::test]
    async fn a_part_s3_is_done_with_carries_the_next_part_and_a_held_one_does_not() {
        let pool = PartPool::default();
        let mut reader = PartReader::new(chunks(&[10, 10, 10, 4]), 10, pool.clone());
        let first = reader.next_part().await.unwrap();
        let address = first.as_ptr();
        pool.give_back(first);
        let second = reader.next_part().await.unwrap();
        assert_eq!(
            second.as_ptr(),
            address,
            "the returned buffer is filled again"
        );
        assert_eq!(second, (11..=20).collect::<Vec<u8>>());
        // A part something still holds (a retry's body) is never reused.
        let held = second.clone();
        pool.give_back(second);
        let third = reader.next_part().await.unwrap();
        assert_ne!(third.as_ptr(), held.as_ptr());
        assert_eq!(
            held,
            (11..=20).collect::<Vec<u8>>(),
            "the held part is intact"
        );
        assert_eq!(third, (21..=30).collect::<Vec<u8>>());
    }

    #[tokio::test]
    async fn a_later_file_fills_the_buffers_an_earlier_one_gave_back() {
        // No request is sent: the client only has to exist.
        let client = Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        let sink = S3Sink::new(client, "reports").with_parts(MIN_PART_SIZE, 2);
        let mut first_file = sink.part_reader(chunks(&[MIN_PART_SIZE]));
        let part = first_file.next_part().await.unwrap();
        let address = part.as_ptr();
        // What `send_part` does once S3 has the part.
        first_file.pool.give_back(part);
        // A clone is what each invocation's handler holds: the same pool.
        let mut second_file = sink.clone().part_reader(chunks(&[MIN_PART_SIZE]));
        assert_eq!(
            second_file.next_part().await.unwrap().as_ptr(),
            address,
            "the second file's first part is the first file's buffer, not fresh pages"
        );
    }

    #[tokio::test]
    async fn the_buffer_taken_for_a_part_that_never_came_stays_in_the_pool() {
        let pool = PartPool::default();
        let mut reader = PartReader::new(chunks(&[10, 10]), 10, pool.clone());
        let (first, second) = (
            reader.next_part().await.unwrap(),
            reader.next_part().await.unwrap(),
        );
        assert_eq!((first.len(), second.len()), (10, 10));
        // The body ends exactly at a part boundary: no third part.
        assert!(reader.next_part().await.unwrap().is_empty());
        assert_eq!(pool.0.lock().unwrap().len(), 1, "the empty part's buffer");
        assert!(pool.0.lock().unwrap()[0].capacity() >= 10);
    }

    #[tokio::test]
    async fn a_chunk_larger_than_a_part_spans_several_parts() {
        let mut reader = PartReader::new(chunks(&[25, 3]), 10, PartPool::default());
        let mut lengths = Vec::new();
        loop {
            let part = reader.next_part().await.unwrap();
            // Allocated at the part size, and never more.
            assert!(part.len() <= 10);
            lengths.push(part.len());
            if part.len() < 10 {
                break;
            }
        }
        assert_eq!(lengths, vec![10, 10, 8]);
        // A body of exactly whole parts ends with an empty part.
        let mut exact = PartReader::new(chunks(&[10, 10]), 10, PartPool::default());
        assert_eq!(exact.next_part().await.unwrap().len(), 10);
        assert_eq!(exact.next_part().await.unwrap().len(), 10);
        assert_eq!(exact.next_part().await.unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_source_error_names_the_bytes_received() {
        let body = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_owned()),
        ]);
        let mut reader = PartReader::new(body, 10, PartPool::default());
        let err = reader.next_part().await.unwrap_err().to_string();
        assert!(
            err.contains("after 3 bytes") && err.contains("connection reset"),
            "{err}"
        );
    }
}
