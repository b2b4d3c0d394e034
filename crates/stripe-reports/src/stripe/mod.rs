//! The Stripe adapter: the reporting API over HTTPS (reqwest + rustls), its
//! wire types, retries as Stripe's libraries do them, and file downloads that
//! send the API key only to allow-listed hosts.
//!
//! The wire types and errors build without the HTTP client (feature `http`),
//! so the fuzz targets and other domain-only users stay light.

#[cfg(feature = "http")]
pub mod client;
pub mod error;
#[cfg(feature = "http")]
pub mod tls;
pub mod types;

#[cfg(feature = "http")]
pub use client::{ApiKey, RetryPolicy, StripeClient, StripeClientConfig};
pub use error::{ApiError, StripeError};
pub use types::*;

/// The body of a file being downloaded, as a stream of chunks.
pub struct FileDownload {
    /// The `Content-Length` the file host announced, if any.
    pub content_length: Option<u64>,
    pub body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, StripeError>> + Send>,
    >,
}
