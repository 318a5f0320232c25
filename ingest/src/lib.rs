//! # vigil-ingest: the device gateway
//!
//! Devices (EEG amplifiers, heart-rate sensors, the replay simulator) send records here; the
//! gateway checks who they are and what they send, and produces the records to the bus
//! (`vigil.eeg.raw`, `vigil.hr.raw`, keyed by patient id). Nothing is acknowledged before the
//! broker acknowledged it durably, and nothing is buffered: when the bus is slow or down the
//! device is told to retry (503 + `Retry-After`), so the device keeps the data until then.
//!
//! - HTTP ([`http`]): `POST /v1/eeg`, `POST /v1/hr`, one record per request, JSON or the binary
//!   codec by Content-Type, answered `202 {stream_id, seq, status, gap}`.
//! - WebSocket ([`ws`]): `GET /v1/stream`, a record per frame, an ack per frame, in order.
//! - Device auth ([`devices`]): `Authorization: Bearer <token>`; tokens are stored as SHA-256
//!   in the device directory (SQLite or MySQL) and bound to one patient, optionally to a
//!   sample rate and channel list.
//! - Sequence tracking ([`streams`]): late arrivals are produced (ack `late: true`),
//!   duplicates are acknowledged but not produced again, conflicting resends get 409, seqs
//!   below the window 422, gaps are reported. Device clock offsets are estimated per stream
//!   ([`clock`]).
//! - Limits: body size cap (413), per-device rate limit (429), bus timeout (503).
//! - Errors ([`error`]): one `IntoResponse` type, RFC 9457 `application/problem+json`.
//! - Ops: `/healthz`, `/readyz` (bus probe), `/metrics`, `/openapi.json`.
//! - [`client`]: the WebSocket client devices and simulators use (acks, reconnect, resend).
//!
//! See `docs/INGEST.md` for the API with examples.

pub mod client;
pub mod clock;
pub mod devices;
pub mod error;
pub mod events;
pub mod http;
pub mod pipeline;
pub mod rate_limit;
pub mod streams;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::bus::{Bus, BusError};
use vigil_core::codec::DecodeLimits;
use vigil_core::config::{IngestConfig, VigilConfig};
use vigil_core::telemetry::Readiness;

pub use devices::{
    CachedDirectory, DeviceDirectory, DeviceToken, NewDevice, RegisteredDevice, SqlDeviceDirectory,
};
pub use error::{IngestError, Problem};
pub use pipeline::{AckStatus, IngestAck, WireFormat};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bus could not be reached.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The device directory could not be opened.
    #[error(transparent)]
    Directory(#[from] devices::DirectoryError),
    /// The listener could not be bound or the server failed.
    #[error("listen on {addr}: {source}")]
    Io {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

struct Inner {
    bus: Bus,
    directory: CachedDirectory,
    limits: DecodeLimits,
    streams: streams::StreamTable,
    rate: rate_limit::RateLimiter,
    readiness: Readiness,
    metrics: PrometheusHandle,
    publish_timeout: Duration,
    retry_after: Duration,
    max_body_bytes: usize,
    correct_device_clock: bool,
}

/// Shared state of the gateway (cheap to clone).
#[derive(Clone)]
pub struct IngestState {
    inner: Arc<Inner>,
}

impl IngestState {
    /// State over a connected bus and a device directory. `publish_timeout` bounds how long a
    /// request waits for the broker's acknowledgement (use `bus.publish_timeout_ms`).
    pub fn new(
        bus: Bus,
        directory: Arc<dyn DeviceDirectory>,
        config: &IngestConfig,
        publish_timeout: Duration,
    ) -> Self {
        let max_body_bytes = config.max_body_bytes;
        let limits = DecodeLimits {
            max_record_bytes: max_body_bytes,
            ..DecodeLimits::default()
        };
        let window_ns =
            i64::try_from(config.clock_window_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        Self {
            inner: Arc::new(Inner {
                bus,
                directory: CachedDirectory::new(
                    directory,
                    Duration::from_millis(config.auth_cache_ttl_ms),
                    config.max_streams,
                ),
                limits,
                streams: streams::StreamTable::new(
                    config.max_streams,
                    config.seq_window,
                    window_ns,
                ),
                rate: rate_limit::RateLimiter::new(
                    config.rate_limit_per_s,
                    config.rate_limit_burst,
                    config.max_streams,
                ),
                readiness: Readiness::default(),
                metrics: vigil_core::telemetry::metrics_handle(),
                publish_timeout,
                retry_after: Duration::from_secs(config.retry_after_s.max(1)),
                max_body_bytes,
                correct_device_clock: config.correct_device_clock,
            }),
        }
    }

    /// Readiness checks (`/readyz`).
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The bus records are produced to.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// Probes the bus once and records the result in the `bus` readiness check.
    pub async fn probe_bus(&self) -> bool {
        let timeout = self.inner.publish_timeout.min(Duration::from_secs(5));
        let result = tokio::time::timeout(timeout, self.inner.bus.probe())
            .await
            .unwrap_or(Err(BusError::Timeout {
                op: "probe",
                after: timeout,
            }));
        let ok = result.is_ok();
        match result {
            Ok(()) => self.inner.readiness.set("bus", true, "broker answers"),
            Err(err) => self.inner.readiness.set("bus", false, err.to_string()),
        }
        ok
    }

    /// Probes the bus every `interval` until `shutdown`, keeping `/readyz` current.
    pub fn spawn_bus_probe(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            loop {
                state.probe_bus().await;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}

/// The gateway's router: device API, OpenAPI document and the ops endpoints.
pub fn app(state: IngestState) -> Router {
    let ops = vigil_core::telemetry::ops_router(
        state.inner.readiness.clone(),
        state.inner.metrics.clone(),
    );
    http::routes(state).merge(ops)
}

/// The bus settings of the gateway's producer: the bus's, with the gateway's own linger.
fn gateway_bus(config: &VigilConfig) -> vigil_core::config::BusConfig {
    let mut bus = config.bus.clone();
    bus.kafka
        .insert("linger.ms".to_owned(), config.ingest.linger_ms.to_string());
    bus
}

/// Runs the gateway with `config` until `shutdown` fires (`vigil ingest`).
pub async fn serve(config: &VigilConfig, shutdown: CancellationToken) -> Result<(), StartError> {
    let bus = Bus::connect(&gateway_bus(config)).await?;
    if config.bus.url.starts_with("memory://") {
        // The embedded bus starts empty; a Kafka cluster's topics are created by ops.
        bus.create_vigil_topics().await?;
    }
    let directory = SqlDeviceDirectory::connect(&config.ingest.database_url).await?;
    let state = IngestState::new(
        bus,
        Arc::new(directory),
        &config.ingest,
        Duration::from_millis(config.bus.publish_timeout_ms),
    );
    state.readiness().set("device_directory", true, "connected");
    let probe = state.spawn_bus_probe(
        Duration::from_millis(config.ingest.probe_interval_ms.max(100)),
        shutdown.clone(),
    );
    let addr = config.ingest.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Io { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(%local, bus = %config.bus.url, "ingest gateway listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| StartError::Io { addr, source })?;
    probe.abort();
    tracing::info!("ingest gateway stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's linger replaces the bus's for its producer alone; the other librdkafka
    /// settings of the bus still apply to it.
    #[test]
    fn the_gateway_producer_takes_its_own_linger() {
        let mut config = VigilConfig::default();
        config.bus.kafka.insert("linger.ms".into(), "5".into());
        config
            .bus
            .kafka
            .insert("security.protocol".into(), "ssl".into());
        config.ingest.linger_ms = 200;
        let bus = gateway_bus(&config);
        assert_eq!(bus.kafka["linger.ms"], "200");
        assert_eq!(bus.kafka["security.protocol"], "ssl");
        assert_eq!(
            config.bus.kafka["linger.ms"], "5",
            "other stages keep the bus's"
        );
    }
}
