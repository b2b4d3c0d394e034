//! A local double of Stripe's reporting API for tests and the demo.
//!
//! It serves `/v1/reporting/report_types[/id]`, `/v1/reporting/report_runs[/id]`,
//! `/v1/events[/id]`, `/v1/files/{id}` and file contents at
//! `/v1/files/{id}/contents`, with objects shaped as in Stripe's OpenAPI
//! description (`shared/stripe/stripe-reporting-openapi.json`, checked by a
//! contract test). It checks the API key, honours `Idempotency-Key`, moves runs
//! from `pending` to `succeeded` (or `failed`) after a delay, and delivers
//! signed webhooks. Fault knobs (`/_emulator/faults`) inject 429s, 500s,
//! truncated or slow files, duplicated and reordered webhooks.
//!
//! Start it in-process with [`Emulator::start`], or as the `stripe-emulator` binary.

pub mod config;
pub mod csv;
mod server;
pub mod state;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use config::{
    EmulatorConfig, ErrorStorm, Faults, Injection, ReportTypeConfig, Stats, WebhookConfig,
};
use state::State;

/// The Stripe API version the emulator's objects follow.
pub const API_VERSION: &str = "2026-07-29.dahlia";

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub config: EmulatorConfig,
    pub files_base: String,
    pub http: reqwest::Client,
}

impl Shared {
    /// The state lock. A panic while holding it (a bug) must not wedge every
    /// later request, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Emulator {
    /// Binds `listen` (use port 0 for any free port) and serves in the background.
    pub async fn start(config: EmulatorConfig, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let files_base = config
            .files_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config.report_types.clone())),
            config,
            files_base,
            http,
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "emulator server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `STRIPE_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        server::apply_faults(&self.shared, faults);
    }

    /// Moves a report type's `data_available_end` and sends `reporting.report_type.updated`.
    pub fn set_data_available_end(&self, report_type: &str, end: i64) -> bool {
        server::update_report_type(&self.shared, report_type, None, Some(end)).is_some()
    }

    /// SHA-256 and size of a file the emulator serves.
    pub fn file_digest(&self, file_id: &str) -> Option<(String, u64)> {
        server::file_digest(&self.shared, file_id)
    }

    /// Every run, oldest first, as the API shows them.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let state = self.shared.lock();
        state
            .runs
            .iter()
            .map(|run| run.to_json(self.shared.config.livemode, &self.shared.files_base))
            .collect()
    }

    /// Stops serving and waits briefly for open connections.
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
