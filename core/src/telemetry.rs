//! Logs, metrics and the operations endpoints every server exposes.
//!
//! - [`init`] installs the tracing subscriber (human or JSON) and the Prometheus recorder.
//! - [`events`] holds typed events: each `emit()` writes the log line and updates the metric
//!   together, so the two never drift apart.
//! - [`ops_router`] serves `/healthz` (process alive), `/readyz` (every registered check
//!   passes; 503 with the failing checks otherwise) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};

/// Latency buckets in seconds (1 ms .. 30 s), shared by every latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets (s) of delays on the scale of a model window: a point's value is provisional for
/// up to a window (~290 s at the defaults) before it is final.
const WINDOW_DELAY_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 120.0, 180.0, 240.0, 270.0, 300.0, 360.0, 600.0,
];

/// Installs the log subscriber and the metrics recorder. Calling it twice is harmless (the
/// first installation wins), which keeps tests simple.
pub fn init(config: &TelemetryConfig) -> PrometheusHandle {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Err only means a subscriber is already installed.
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    metrics_handle()
}

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("vigil_inference_provisional_to_final_seconds".into()),
                        &WINDOW_DELAY_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (embedding application): render our own
                // registry, which then stays empty rather than failing start-up.
                Err(err) => {
                    tracing::warn!(%err, "metrics recorder already installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// State of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckState {
    /// Whether the check passes.
    pub ok: bool,
    /// Why not, or a short status.
    pub detail: String,
}

/// Named readiness checks a process updates as its dependencies come and go. The process is
/// ready when at least one check is registered and all pass.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<String, CheckState>>>,
}

impl Readiness {
    /// Sets check `name`.
    pub fn set(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let mut checks = self
            .checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.insert(
            name.to_owned(),
            CheckState {
                ok,
                detail: detail.into(),
            },
        );
    }

    /// All checks.
    pub fn snapshot(&self) -> BTreeMap<String, CheckState> {
        self.checks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// True when checks exist and all pass.
    pub fn is_ready(&self) -> bool {
        let checks = self.snapshot();
        !checks.is_empty() && checks.values().all(|c| c.ok)
    }
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// `/healthz`, `/readyz`, `/metrics`, to be merged into a stage's router.
pub fn ops_router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { readiness, metrics })
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let checks = state.readiness.snapshot();
    let status = if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": status == StatusCode::OK, "checks": checks })),
    )
        .into_response()
}

/// Gauges computed when `/metrics` is read rather than on every change (the embedded broker's
/// consumer lag): each hook sets its gauges just before the page is rendered.
type ScrapeHook = Box<dyn Fn() + Send + Sync>;

fn scrape_hooks() -> &'static RwLock<Vec<ScrapeHook>> {
    static HOOKS: OnceLock<RwLock<Vec<ScrapeHook>>> = OnceLock::new();
    HOOKS.get_or_init(Default::default)
}

/// Registers `hook` to run before every `/metrics` page of this process is rendered.
pub fn on_scrape(hook: impl Fn() + Send + Sync + 'static) {
    scrape_hooks()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Box::new(hook));
}

/// The Prometheus page, after the scrape hooks have set their gauges.
pub fn render_page(metrics: &PrometheusHandle) -> String {
    for hook in scrape_hooks()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
    {
        hook();
    }
    metrics.run_upkeep();
    metrics.render()
}

async fn render_metrics(State(state): State<OpsState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_page(&state.metrics),
    )
        .into_response()
}

/// Typed telemetry events: one call writes the log line and updates the metric.
pub mod events {
    use std::time::Duration;

    use crate::bus::BusError;

    /// An event that logs and counts itself.
    pub trait Emit {
        /// Writes the log line and updates the metrics.
        fn emit(&self);
    }

    /// A record the broker acknowledged.
    pub struct RecordPublished<'a> {
        /// Full topic name.
        pub topic: &'a str,
        /// Key + payload bytes.
        pub bytes: usize,
        /// Time from publish call to broker acknowledgement.
        pub latency: Duration,
    }

    impl Emit for RecordPublished<'_> {
        fn emit(&self) {
            tracing::trace!(
                topic = self.topic,
                bytes = self.bytes,
                latency_ms = self.latency.as_secs_f64() * 1e3,
                "record published"
            );
            let topic = self.topic.to_owned();
            metrics::counter!("vigil_bus_published_records_total", "topic" => topic.clone())
                .increment(1);
            metrics::counter!("vigil_bus_published_bytes_total", "topic" => topic.clone())
                .increment(self.bytes as u64);
            metrics::histogram!("vigil_bus_publish_latency_seconds", "topic" => topic)
                .record(self.latency.as_secs_f64());
        }
    }

    /// A publish the bus refused or could not complete.
    pub struct PublishFailed<'a> {
        /// Full topic name.
        pub topic: &'a str,
        /// Why.
        pub error: &'a BusError,
    }

    impl Emit for PublishFailed<'_> {
        fn emit(&self) {
            tracing::warn!(topic = self.topic, error = %self.error, "publish failed");
            metrics::counter!(
                "vigil_bus_publish_errors_total",
                "topic" => self.topic.to_owned(),
                "reason" => self.error.reason()
            )
            .increment(1);
        }
    }

    /// A consumer left and rejoined its group because partitions of its topics were consumed
    /// by nobody (`core/src/bus/orphans.rs`).
    pub struct GroupRejoined<'a> {
        /// Consumer group.
        pub group: &'a str,
        /// `(topic, partition)` whose committed offset stayed behind its records.
        pub stalled: &'a [(String, i32)],
        /// How long they stayed so (`bus.stall_rejoin_s`).
        pub stall: Duration,
    }

    impl Emit for GroupRejoined<'_> {
        fn emit(&self) {
            tracing::warn!(
                group = self.group,
                stalled = ?self.stalled,
                stall_s = self.stall.as_secs(),
                "partitions consumed by nobody: leaving and rejoining the group to rebalance"
            );
            metrics::counter!("vigil_bus_group_rejoins_total", "group" => self.group.to_owned())
                .increment(1);
        }
    }

    /// A record a stage took from the bus, and how long after it was produced: one hop's
    /// share of an end-to-end latency (the producer's publish latency is the other).
    pub struct RecordConsumed<'a> {
        /// The stage (`storage`, `inference`, `dashboard`).
        pub stage: &'a str,
        /// Full topic name it came from.
        pub topic: &'a str,
        /// From the record's timestamp (producer create time, ms) to its decode.
        pub delay: Duration,
    }

    impl Emit for RecordConsumed<'_> {
        fn emit(&self) {
            tracing::trace!(
                stage = self.stage,
                topic = self.topic,
                delay_ms = self.delay.as_secs_f64() * 1e3,
                "record consumed"
            );
            metrics::histogram!(
                "vigil_bus_consume_delay_seconds",
                "stage" => self.stage.to_owned(),
                "topic" => self.topic.to_owned()
            )
            .record(self.delay.as_secs_f64());
        }
    }

    /// A consumed record a stage refused (undecodable, invalid, or not storable).
    pub struct RecordRefused<'a> {
        /// The stage (`storage`, `inference`, `dashboard`).
        pub stage: &'a str,
        /// Full topic name it came from.
        pub topic: &'a str,
        /// Why.
        pub reason: &'a str,
        /// Published to the dead-letter topic (else only logged and skipped).
        pub dead_lettered: bool,
    }

    impl Emit for RecordRefused<'_> {
        fn emit(&self) {
            let action = if self.dead_lettered {
                "dead_lettered"
            } else {
                "skipped"
            };
            tracing::warn!(
                stage = self.stage,
                topic = self.topic,
                reason = self.reason,
                action,
                "record refused"
            );
            metrics::counter!(
                "vigil_records_refused_total",
                "stage" => self.stage.to_owned(),
                "topic" => self.topic.to_owned(),
                "action" => action
            )
            .increment(1);
        }
    }

    /// A stage's receive from the bus failed; it backs off and retries.
    pub struct ReceiveFailed<'a> {
        /// The stage.
        pub stage: &'a str,
        /// Why.
        pub error: &'a BusError,
        /// Wait before the next attempt.
        pub retry_in: Duration,
    }

    impl Emit for ReceiveFailed<'_> {
        fn emit(&self) {
            tracing::warn!(
                stage = self.stage,
                error = %self.error,
                retry_in_ms = self.retry_in.as_millis() as u64,
                "bus receive failed; retrying"
            );
            metrics::counter!(
                "vigil_bus_receive_errors_total",
                "stage" => self.stage.to_owned(),
                "reason" => self.error.reason()
            )
            .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_status(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_follows_checks() {
        let readiness = Readiness::default();
        let router = ops_router(readiness.clone(), metrics_handle());
        let (status, _) = get_status(router.clone(), "/readyz").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "no checks yet: not ready"
        );

        readiness.set("bus", true, "connected");
        readiness.set("model", false, "checksum mismatch");
        let (status, body) = get_status(router.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("checksum mismatch"), "{body}");

        readiness.set("model", true, "loaded");
        let (status, _) = get_status(router.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get_status(router, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    }

    #[tokio::test]
    async fn metrics_endpoint_renders_emitted_events() {
        use events::Emit;
        let router = ops_router(Readiness::default(), metrics_handle());
        events::RecordPublished {
            topic: "telemetry-test.topic",
            bytes: 10,
            latency: std::time::Duration::from_millis(3),
        }
        .emit();
        let (status, body) = get_status(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("vigil_bus_published_records_total{topic=\"telemetry-test.topic\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("vigil_bus_publish_latency_seconds_bucket"),
            "{body}"
        );
    }
}
