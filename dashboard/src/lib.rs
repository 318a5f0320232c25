//! # vigil-dashboard: what clinicians look at all shift
//!
//! A web server (axum) that shows each clinician their assigned patients live: seizure
//! probability, heart rate, display-filtered EEG and alerts, with acknowledgement.
//!
//! - [`feed`]: one consumer group per process on `vigil.eeg.prob`, `vigil.alerts`,
//!   `vigil.hr.raw`, `vigil.eeg.trace`, `vigil.eeg.trends` feeding the [`live::LiveHub`].
//! - [`trends`]: the qEEG trends' JSON and the bucketing of long spans.
//! - [`live`]: per patient, a recent ring and the subscribed browsers; snapshot + live
//!   updates with per-patient sequence numbers, taken under one lock so reconnecting
//!   browsers get neither a gap nor a duplicate; bounded per-browser queues (a slow browser
//!   is disconnected, never waited for).
//! - [`ws`]: `GET /api/live?patients=..`, the WebSocket the page subscribes with.
//! - [`http`]: login/logout/session, assigned patients, history scroll-back from storage,
//!   alert acknowledgement (published as an `AlertEvent` to `vigil.alerts`, CSRF-protected).
//! - [`session`]: signed `HttpOnly`, `SameSite=Strict` session cookies and CSRF tokens.
//! - [`directory`]: the narrow traits the dashboard needs from the clinical database
//!   (users, assignments, audit log, history), implemented for `vigil_storage::Store`.
//! - [`assets`]: the page, embedded at build time, and the security headers.
//! - Ops: `/healthz`, `/readyz`, `/metrics` with `vigil_dashboard_push_latency_seconds`.
//!
//! See `docs/DASHBOARD.md`.

pub mod assets;
pub mod directory;
pub mod error;
pub mod events;
pub mod feed;
pub mod http;
pub mod live;
pub mod session;
pub mod storage;
pub mod trends;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::bus::{Bus, BusError};
use vigil_core::config::{DashboardConfig, VigilConfig};
use vigil_core::telemetry::Readiness;

pub use directory::{ClinicalDirectory, HistorySource, Role, StaffUser};
pub use error::{DashboardError, Problem};
pub use live::LiveHub;

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bus could not be reached.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The clinical database could not be opened.
    #[error("clinical database: {0}")]
    Directory(#[from] directory::DirectoryError),
    /// The listener could not be bound or the server failed.
    #[error("listen on {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

struct Inner {
    bus: Bus,
    hub: LiveHub,
    directory: Arc<dyn ClinicalDirectory>,
    history: Arc<dyn HistorySource>,
    sessions: session::SessionKeys,
    config: DashboardConfig,
    readiness: Readiness,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
}

/// Shared state of the dashboard (cheap to clone).
#[derive(Clone)]
pub struct DashboardState {
    inner: Arc<Inner>,
}

impl DashboardState {
    /// State over a connected bus and the clinical database.
    pub fn new<S>(bus: Bus, store: Arc<S>, config: &DashboardConfig) -> Self
    where
        S: ClinicalDirectory + HistorySource,
    {
        let (sessions, generated) = session::SessionKeys::from_secret(&config.session_key);
        if generated {
            tracing::warn!(
                "dashboard.session_key is empty: using a random key for this process; logins \
                 end when it restarts and replicas do not share sessions (set \
                 VIGIL__DASHBOARD__SESSION_KEY)"
            );
        }
        Self {
            inner: Arc::new(Inner {
                bus,
                hub: LiveHub::new(config.history_window_s, config.max_recent_items),
                directory: store.clone(),
                history: store,
                sessions,
                config: config.clone(),
                readiness: Readiness::default(),
                metrics: vigil_core::telemetry::metrics_handle(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The live hub.
    pub fn hub(&self) -> &LiveHub {
        &self.inner.hub
    }

    /// Session signing (tests issue cookies with it).
    pub fn sessions(&self) -> &session::SessionKeys {
        &self.inner.sessions
    }

    /// Readiness checks (`/readyz`).
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The configuration.
    pub fn config(&self) -> &DashboardConfig {
        &self.inner.config
    }

    /// The bus feed of this dashboard, with a consumer group unique to this process.
    pub fn feed(&self) -> feed::Feed {
        feed::Feed {
            bus: self.inner.bus.clone(),
            group: format!(
                "{}-{}",
                self.inner.config.group_prefix,
                uuid::Uuid::new_v4().simple()
            ),
            hub: self.inner.hub.clone(),
            window: Duration::from_secs_f64(self.inner.config.history_window_s),
            readiness: self.inner.readiness.clone(),
        }
    }
}

/// The dashboard's router: page, API, WebSocket and ops endpoints, all with security headers.
pub fn app(state: DashboardState) -> Router {
    let ops = vigil_core::telemetry::ops_router(
        state.inner.readiness.clone(),
        state.inner.metrics.clone(),
    );
    let hsts = state.inner.config.cookie_secure;
    http::routes(state)
        .merge(ops)
        .layer(axum::middleware::map_response(
            move |mut response: axum::response::Response| async move {
                assets::security_headers(&mut response, hsts);
                response
            },
        ))
}

/// A running dashboard.
pub struct RunningDashboard {
    /// Address it listens on.
    pub addr: SocketAddr,
    server: JoinHandle<std::io::Result<()>>,
    feed: JoinHandle<()>,
}

impl RunningDashboard {
    /// Waits until it stopped (after the shutdown token fired).
    pub async fn wait(self) -> Result<(), StartError> {
        let addr = self.addr;
        let served = self.server.await;
        let _ = self.feed.await;
        match served {
            Ok(result) => result.map_err(|source| StartError::Io { addr, source }),
            Err(err) => Err(StartError::Io {
                addr,
                source: std::io::Error::other(err),
            }),
        }
    }
}

/// Joins the bus (the feed is live when this returns), then serves on `listener` until
/// `shutdown`: open WebSockets are closed with 1001 "going away".
pub async fn start(
    state: DashboardState,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<RunningDashboard, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Io {
        addr: state.inner.config.listen,
        source,
    })?;
    let feed = state.feed();
    let runner = feed.subscribe().await?;
    let feed = tokio::spawn(feed.run(runner, shutdown.clone()));
    {
        let (sessions_stop, shutdown) = (state.inner.shutdown.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            sessions_stop.cancel();
        });
    }
    let router = app(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    tracing::info!(%addr, "dashboard listening");
    Ok(RunningDashboard { addr, server, feed })
}

/// `vigil dashboard`: connects the bus and the clinical database (`dashboard.database_url`,
/// migrated by storage) and serves until `shutdown`.
pub async fn serve(config: &VigilConfig, shutdown: CancellationToken) -> Result<(), StartError> {
    let bus = Bus::connect(&config.bus).await?;
    if config.bus.url.starts_with("memory://") {
        bus.create_vigil_topics().await?;
    }
    let store = vigil_storage::Store::connect(&config.dashboard.database_url)
        .await
        .map_err(|e| StartError::Directory(directory::DirectoryError(e.to_string())))?;
    serve_with(bus, Arc::new(store), &config.dashboard, shutdown).await
}

/// Binds `config.listen` and runs the dashboard over `store` until `shutdown`.
pub async fn serve_with<S>(
    bus: Bus,
    store: Arc<S>,
    config: &DashboardConfig,
    shutdown: CancellationToken,
) -> Result<(), StartError>
where
    S: ClinicalDirectory + HistorySource,
{
    let state = DashboardState::new(bus, store, config);
    state.readiness().set("database", true, "connected");
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Io { addr, source })?;
    start(state, listener, shutdown).await?.wait().await
}
