//! Shared harness: a dashboard on port 0 over a bus and a clinical store, with clients that
//! log in over HTTP and read the WebSocket like the page does.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt;
use uuid::Uuid;
use vigil_core::bus::{Bus, Topic};
use vigil_core::config::{BusConfig, DashboardConfig};
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, EegTrace, EegTrends, HrBatch, HrPoint,
    HrSource, ModelRef, MontageKind, SeizureProbability, SideTrends, TREND_BINS,
};
use vigil_core::CancellationToken;
use vigil_dashboard::{app, ClinicalDirectory, DashboardState, HistorySource};

pub const WAIT: Duration = Duration::from_secs(20);
pub const T0: i64 = 1_700_000_000_000_000_000;

pub fn memory_bus() -> BusConfig {
    BusConfig {
        url: format!("memory://{}", Uuid::new_v4()),
        ..BusConfig::default()
    }
}

/// The test broker, or `None` (skip) outside CI.
pub fn kafka_bus() -> Option<BusConfig> {
    vigil_core::testenv::kafka_bus(2)
}

pub fn test_config() -> DashboardConfig {
    DashboardConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        session_key: "test-session-key-0123456789abcdef-0123".to_owned(),
        ..DashboardConfig::default()
    }
}

/// A running dashboard.
pub struct Harness {
    pub state: DashboardState,
    pub addr: std::net::SocketAddr,
    pub bus: Bus,
    pub shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    pub async fn start<S>(bus: BusConfig, store: Arc<S>, config: DashboardConfig) -> Self
    where
        S: ClinicalDirectory + HistorySource,
    {
        let bus = Bus::connect(&bus).await.unwrap();
        bus.create_vigil_topics().await.unwrap();
        let state = DashboardState::new(bus.clone(), store, &config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let shutdown = CancellationToken::new();
        let running = vigil_dashboard::start(state.clone(), listener, shutdown.clone())
            .await
            .unwrap();
        let addr = running.addr;
        tokio::spawn(running.wait());
        Self {
            state,
            addr,
            bus,
            shutdown,
        }
    }

    /// Sends one HTTP request through the router (no socket): status, headers, body.
    pub async fn http(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, body)
    }

    /// Logs in; returns the cookie (`name=value`) and the CSRF token.
    pub async fn login(&self, username: &str, password: &str) -> (String, String) {
        let (status, headers, body) = self
            .http(
                Request::post("/api/login")
                    .header("content-type", "application/json")
                    .body(Body::from(
                        serde_json::json!({"username": username, "password": password}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let set_cookie = headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        (cookie, body["csrf_token"].as_str().unwrap().to_owned())
    }

    pub fn live_url(&self, query: &str) -> String {
        format!("ws://{}/api/live?{query}", self.addr)
    }

    /// Opens the live socket; `Err` carries the HTTP status and body of a refused handshake.
    pub async fn connect(
        &self,
        query: &str,
        cookie: Option<&str>,
    ) -> Result<LiveClient, (u16, String)> {
        let mut request = self.live_url(query).into_client_request().unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(LiveClient { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err((
                response.status().as_u16(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            )),
            Err(other) => panic!("websocket connect failed: {other}"),
        }
    }

    /// Waits until the hub has assigned `seq` for the patient (the feed read the bus).
    pub async fn wait_for_seq(&self, patient_id: &str, seq: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (sink, _rx, _) = vigil_dashboard::live::ClientSink::new(1, false);
            let last = self
                .state
                .hub()
                .subscribe(patient_id, None, &sink, vigil_core::time::now_ns())
                .last_seq;
            self.state.hub().unsubscribe(patient_id, &sink);
            if last >= seq {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub stuck at seq {last} < {seq} for {patient_id}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A browser-like WebSocket client.
pub struct LiveClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl LiveClient {
    /// The next JSON text frame (panics on timeout or close).
    pub async fn next(&mut self) -> serde_json::Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("frame in time")
                .expect("socket open")
                .expect("frame");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Reads a snapshot (begin, items, end) and returns (begin, items).
    pub async fn snapshot(&mut self) -> (serde_json::Value, Vec<serde_json::Value>) {
        let begin = self.next().await;
        assert_eq!(begin["type"], "snapshot", "{begin}");
        let n = begin["items"].as_u64().unwrap();
        let mut items = Vec::new();
        for _ in 0..n {
            items.push(self.next().await);
        }
        let end = self.next().await;
        assert_eq!(end["type"], "snapshot_end", "{end}");
        assert_eq!(end["last_seq"], begin["last_seq"]);
        (begin, items)
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A GET request carrying the session cookie.
pub fn authed_get(cookie: &str, path: String) -> Request<Body> {
    Request::get(path)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

pub fn hr_batch(patient_id: &str, i: usize) -> HrBatch {
    HrBatch {
        patient_id: patient_id.to_owned(),
        device_id: "strap-1".to_owned(),
        stream_id: Uuid::nil(),
        seq: i as u64,
        points: vec![HrPoint {
            t_ns: T0 + i as i64 * 1_000_000_000,
            bpm: 60.0 + (i % 50) as f32,
            rr_ms: None,
        }],
        source: HrSource::ChestStrap,
    }
}

pub fn probability(patient_id: &str, start_ns: i64, p: Vec<f32>) -> SeizureProbability {
    SeizureProbability {
        patient_id: patient_id.to_owned(),
        start_ns,
        step_ns: 500_000_000,
        channels: vec!["C3-P3".to_owned()],
        channel_p: vec![p.clone()],
        aggregate_p: p,
        model: ModelRef {
            id: "brainmaze-seizure-modelA".to_owned(),
            sha256: "0".repeat(64),
        },
        emitted_ns: vigil_core::time::now_ns(),
    }
}

/// The 2 s trend interval `i` from `T0`: CSA `csa` dB in every bin of both regions, aEEG
/// band `aeeg`, BSR `bsr` %, on both sides (NaN = not evaluated).
pub fn trends(patient_id: &str, i: i64, csa: f32, aeeg: (f32, f32), bsr: f32) -> EegTrends {
    let side = SideTrends {
        aeeg_min_uv: aeeg.0,
        aeeg_max_uv: aeeg.1,
        bsr_percent: bsr,
    };
    EegTrends {
        patient_id: patient_id.to_owned(),
        stream_id: Uuid::nil(),
        start_ns: T0 + i * 2_000_000_000,
        duration_ns: 2_000_000_000,
        montage: MontageKind::DoubleBanana,
        regions: vec!["left lateral".to_owned(), "right lateral".to_owned()],
        csa_db: vec![vec![csa; TREND_BINS]; 2],
        asymmetry: vec![0.1; TREND_BINS],
        asymmetry_index: 0.1,
        left: side,
        right: side,
        global: side,
        emitted_ns: vigil_core::time::now_ns(),
    }
}

pub fn trace(patient_id: &str, channels: usize, samples: usize, i: usize) -> EegTrace {
    EegTrace {
        patient_id: patient_id.to_owned(),
        stream_id: Uuid::nil(),
        start_ns: T0 + i as i64 * 1_000_000_000,
        received_ns: vigil_core::time::now_ns(),
        sample_rate_hz: 256.0,
        channels: (0..channels).map(|c| format!("ch{c}")).collect(),
        samples: (0..channels)
            .map(|c| {
                (0..samples)
                    .map(|s| ((s + c) % 200) as f32 - 100.0)
                    .collect()
            })
            .collect(),
    }
}

pub fn raised(patient_id: &str, kind: AlertKind) -> AlertEvent {
    AlertEvent {
        alert_id: Uuid::new_v4(),
        patient_id: patient_id.to_owned(),
        kind,
        transition: AlertTransition::Raised,
        onset_ns: T0,
        at_ns: vigil_core::time::now_ns(),
        by: None,
        evidence: AlertEvidence {
            p: Some(0.93),
            ..AlertEvidence::default()
        },
    }
}

pub async fn publish_hr(bus: &Bus, batch: &HrBatch) {
    bus.publish_record(Topic::HrRaw, &batch.patient_id, batch)
        .await
        .unwrap();
}

/// Sends a text frame on a client (browsers send nothing; used to test it is ignored).
pub async fn send_text(client: &mut LiveClient, text: &str) {
    client.ws.send(Message::Text(text.into())).await.unwrap();
}
