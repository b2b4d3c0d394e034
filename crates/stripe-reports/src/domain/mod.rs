//! Everything here is pure: no network, no clock reads (time is passed in).

pub mod account;
pub mod calendar;
pub mod config;
pub mod due;
pub mod ledger;
pub mod messages;
pub mod request_key;
pub mod secret;
pub mod signature;
pub mod spec;
