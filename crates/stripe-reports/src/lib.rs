//! stripe-reports: the domain (no I/O) and the adapters (Stripe HTTP, AWS)
//! shared by the scheduler, webhook and downloader Lambda functions.
//!
//! `domain` answers "what should happen" (configuration, report specs,
//! intervals, ledger states, webhook signatures); `stripe` and `aws` are the
//! adapters that make it happen.

pub mod aws;
pub mod domain;
pub mod downloader;
pub mod env;
pub mod metrics;
pub mod ports;
pub mod rate;
pub mod scheduler;
pub mod stripe;
pub mod webhook;

pub use domain::config::{Config, ConfigError};
