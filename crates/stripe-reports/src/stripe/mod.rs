//! The Stripe adapter: the reporting API over HTTPS (reqwest + rustls), its
//! wire types, retries as Stripe's libraries do them, and file downloads that
//! send the API key only to allow-listed hosts.

pub mod client;
pub mod error;
pub mod types;

pub use client::{FileDownload, RetryPolicy, StripeClient, StripeClientConfig};
pub use error::{ApiError, StripeError};
pub use types::*;
