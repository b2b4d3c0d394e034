//! stripe-reports: the domain (no I/O) and the adapters (Stripe HTTP, AWS)
//! shared by the scheduler, webhook and downloader Lambda functions.
//!
//! `domain` answers "what should happen" (configuration, report specs,
//! intervals, ledger states, webhook signatures); `stripe` and `aws` are the
//! adapters that make it happen. The adapters are features (`http`, `aws`,
//! both on by default) so the domain builds alone, for the fuzz targets.

pub mod accounts;
#[cfg(feature = "aws")]
pub mod aws;
pub mod domain;
#[cfg(feature = "aws")]
pub mod downloader;
#[cfg(feature = "aws")]
pub mod env;
pub mod eventbridge;
pub mod metrics;
pub mod ports;
pub mod rate;
pub mod scheduler;
pub mod secrets;
pub mod status;
pub mod stripe;
pub mod webhook;

pub use domain::config::{Config, ConfigError};
