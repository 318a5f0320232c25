//! `GET /api/live?patients=p1,p2[&traces=true][&epoch=<uuid>&after=s1,s2]`: the WebSocket the
//! page reads live updates from.
//!
//! Before upgrading: 401 problem without a valid session, 403 problem for a patient not
//! assigned to the user (or a cross-origin page), then one `live_view` audit row per patient.
//!
//! Frames (server to browser, JSON text), per patient in order:
//! 1. `{"type":"snapshot","patient_id","epoch","resumed","last_seq","open_alerts":[..],"items":n}`;
//! 2. `n` updates `{"type":"prob"|"prob_provisional"|"hr"|"trace"|"trends"|"alert","patient_id","seq","data":{..}}` from
//!    the recent ring (ascending `seq`);
//! 3. `{"type":"snapshot_end","patient_id","last_seq"}`; then live updates with
//!    `seq > last_seq`, each exactly once.
//!
//! `after` (with the `epoch` the browser saw) resumes: only updates after it are sent, unless
//! the ring lost some (`resumed: false`: the snapshot replaces what the browser had).
//!
//! Close codes: 1013 the browser fell `client_queue_len` updates behind or a send stalled
//! (reconnect); 1001 server shutting down; 4401 session expired; 4403 access revoked.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{
    rejection::WebSocketUpgradeRejection, CloseFrame, Message, Utf8Bytes, WebSocket,
    WebSocketUpgrade,
};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use uuid::Uuid;
use vigil_core::telemetry::events::Emit;

use crate::directory::StaffUser;
use crate::error::DashboardError;
use crate::events::{ClientDropped, ClientsChanged, Pushed};
use crate::live::{ClientSink, LiveItem, Snapshot};
use crate::session::Session;
use crate::DashboardState;

/// Close code: the browser is too slow (or a send stalled); reconnect.
pub const CLOSE_TOO_SLOW: u16 = 1013;
/// Close code: the server is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the session expired.
pub const CLOSE_SESSION_EXPIRED: u16 = 4401;
/// Close code: the user lost access to a subscribed patient.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Most patients on one socket.
pub const MAX_PATIENTS: usize = 200;
/// How often an open socket re-checks the session and the assignments.
const RECHECK: Duration = Duration::from_secs(30);

/// Query of `GET /api/live`.
#[derive(Debug, Deserialize)]
pub struct LiveParams {
    /// Comma-separated patient ids.
    pub patients: String,
    /// Whether to send EEG traces (the patient view does, the ward overview does not).
    #[serde(default)]
    pub traces: bool,
    /// Epoch of the sequences in `after`.
    #[serde(default)]
    pub epoch: Option<Uuid>,
    /// Comma-separated last sequence per patient (empty entry = none).
    #[serde(default)]
    pub after: Option<String>,
}

fn same_origin(headers: &HeaderMap) -> bool {
    // Browsers always send Origin on WebSocket handshakes; a page of another site must not
    // open one with the clinician's cookie (SameSite=Strict already withholds it).
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority == host)
}

fn parse_subscriptions(
    params: &LiveParams,
    epoch: Uuid,
) -> Result<Vec<(String, Option<u64>)>, DashboardError> {
    let patients: Vec<&str> = params
        .patients
        .split(',')
        .filter(|p| !p.is_empty())
        .collect();
    if patients.is_empty() || patients.len() > MAX_PATIENTS {
        return Err(DashboardError::BadRequest(format!(
            "patients must name 1..={MAX_PATIENTS} comma-separated patient ids"
        )));
    }
    let after: Vec<Option<u64>> = match (&params.after, params.epoch) {
        (Some(after), Some(e)) if e == epoch => {
            let parsed: Result<Vec<Option<u64>>, _> = after
                .split(',')
                .map(|s| (!s.is_empty()).then(|| s.parse::<u64>()).transpose())
                .collect();
            let parsed = parsed.map_err(|_| {
                DashboardError::BadRequest("after must be comma-separated sequence numbers".into())
            })?;
            if parsed.len() != patients.len() {
                return Err(DashboardError::BadRequest(
                    "after needs one entry per patient".into(),
                ));
            }
            parsed
        }
        // Another epoch (the dashboard restarted): sequences mean nothing, start fresh.
        _ => vec![None; patients.len()],
    };
    Ok(patients.into_iter().map(str::to_owned).zip(after).collect())
}

/// The WebSocket handshake: authenticate, authorize and audit every patient, then upgrade.
pub async fn live(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    params: Result<Query<LiveParams>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, DashboardError> {
    let (user, session) = state.authenticate(&headers).await?;
    if !same_origin(&headers) {
        return Err(DashboardError::Forbidden(
            "WebSocket from another origin".to_owned(),
        ));
    }
    let Query(params) = params.map_err(|e| DashboardError::BadRequest(e.body_text()))?;
    let subscriptions = parse_subscriptions(&params, state.hub().epoch())?;
    for (patient_id, _) in &subscriptions {
        state.authorize(&user, patient_id).await?;
    }
    let upgrade = upgrade.map_err(|e| DashboardError::BadRequest(e.body_text()))?;
    for (patient_id, _) in &subscriptions {
        let what = if params.traces {
            "live updates with EEG traces"
        } else {
            "live updates"
        };
        // Every patient was authorized above, before anything was read or upgraded.
        state
            .audit(&user, patient_id, "live_view", what.to_owned())
            .await?;
    }
    Ok(upgrade
        // The browser sends nothing but control frames.
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| {
            run_session(state, user, session, subscriptions, params.traces, socket)
        }))
}

type Writer = SplitSink<WebSocket, Message>;

#[derive(Debug)]
enum Stop {
    Close(u16, &'static str),
    Gone,
}

async fn send(writer: &mut Writer, text: Utf8Bytes, timeout: Duration) -> Result<(), Stop> {
    match tokio::time::timeout(timeout, writer.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => {
            ClientDropped {
                reason: "send_timeout",
            }
            .emit();
            Err(Stop::Close(CLOSE_TOO_SLOW, "send stalled; reconnect"))
        }
    }
}

fn snapshot_frames(patient_id: &str, epoch: Uuid, snapshot: &Snapshot) -> (Utf8Bytes, Utf8Bytes) {
    let begin = serde_json::json!({
        "type": "snapshot",
        "patient_id": patient_id,
        "epoch": epoch,
        "resumed": snapshot.resumed,
        "last_seq": snapshot.last_seq,
        "open_alerts": snapshot.open_alerts,
        "items": snapshot.items.len(),
    });
    let end = serde_json::json!({
        "type": "snapshot_end",
        "patient_id": patient_id,
        "last_seq": snapshot.last_seq,
    });
    (begin.to_string().into(), end.to_string().into())
}

async fn still_allowed(
    state: &DashboardState,
    user: &StaffUser,
    session: &Session,
    patients: &[String],
) -> Result<(), Stop> {
    if session.expires_s <= vigil_core::time::now_ns() / 1_000_000_000 {
        ClientDropped {
            reason: "session_expired",
        }
        .emit();
        return Err(Stop::Close(CLOSE_SESSION_EXPIRED, "session expired"));
    }
    for patient_id in patients {
        // A database hiccup keeps the socket; only a definite "no" closes it.
        if let Err(DashboardError::Forbidden(_)) = state.authorize(user, patient_id).await {
            ClientDropped {
                reason: "access_revoked",
            }
            .emit();
            return Err(Stop::Close(
                CLOSE_FORBIDDEN,
                "access to a patient was revoked",
            ));
        }
    }
    Ok(())
}

async fn run_session(
    state: DashboardState,
    user: StaffUser,
    session: Session,
    subscriptions: Vec<(String, Option<u64>)>,
    traces: bool,
    socket: WebSocket,
) {
    ClientsChanged { delta: 1.0 }.emit();
    let config = state.config();
    let (sink, rx, overflow) = ClientSink::new(config.client_queue_len, traces);
    let send_timeout = Duration::from_millis(config.send_timeout_ms);
    let (mut writer, mut reader) = socket.split();
    // The browser sends nothing we act on; reading notices its close and answers pings.
    let reader_done = tokio_util::sync::CancellationToken::new();
    let reader_task = {
        let done = reader_done.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = reader.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
            done.cancel();
        })
    };
    let patients: Vec<String> = subscriptions.iter().map(|(p, _)| p.clone()).collect();
    let stop = stream(
        &state,
        &user,
        &session,
        &subscriptions,
        &sink,
        rx,
        &overflow,
        &reader_done,
        &mut writer,
        send_timeout,
    )
    .await;
    for patient_id in &patients {
        state.hub().unsubscribe(patient_id, &sink);
    }
    if let Stop::Close(code, reason) = stop {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(2), writer.send(frame)).await;
    }
    reader_task.abort();
    ClientsChanged { delta: -1.0 }.emit();
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    state: &DashboardState,
    user: &StaffUser,
    session: &Session,
    subscriptions: &[(String, Option<u64>)],
    sink: &ClientSink,
    mut rx: tokio::sync::mpsc::Receiver<Arc<LiveItem>>,
    overflow: &tokio_util::sync::CancellationToken,
    reader_done: &tokio_util::sync::CancellationToken,
    writer: &mut Writer,
    send_timeout: Duration,
) -> Stop {
    let hub = state.hub();
    let shutdown = state.inner.shutdown.clone();
    let slow = || {
        // ClientDropped was counted by the hub when it gave up on the queue.
        Stop::Close(CLOSE_TOO_SLOW, "too slow: updates were dropped; reconnect")
    };
    for (patient_id, after) in subscriptions {
        let snapshot = hub.subscribe(patient_id, *after, sink, vigil_core::time::now_ns());
        let (begin, end) = snapshot_frames(patient_id, hub.epoch(), &snapshot);
        let frames = std::iter::once(begin)
            .chain(snapshot.items.iter().map(|i| i.json.clone()))
            .chain(std::iter::once(end));
        for frame in frames {
            tokio::select! {
                biased;
                _ = overflow.cancelled() => return slow(),
                sent = send(writer, frame, send_timeout) => if let Err(stop) = sent { return stop },
            }
        }
    }
    let patients: Vec<String> = subscriptions.iter().map(|(p, _)| p.clone()).collect();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Stop::Close(CLOSE_GOING_AWAY, "server shutting down"),
            _ = reader_done.cancelled() => return Stop::Gone,
            _ = overflow.cancelled() => return slow(),
            _ = recheck.tick() => {
                if let Err(stop) = still_allowed(state, user, session, &patients).await {
                    return stop;
                }
            }
            item = rx.recv() => {
                let Some(item) = item else { return slow() };
                tokio::select! {
                    biased;
                    _ = overflow.cancelled() => return slow(),
                    sent = send(writer, item.json.clone(), send_timeout) => {
                        if let Err(stop) = sent { return stop }
                    }
                }
                if let Some(origin) = item.origin_ns {
                    Pushed {
                        record: item.kind.label(),
                        latency_s: (vigil_core::time::now_ns() - origin) as f64 / 1e9,
                    }
                    .emit();
                }
            }
        }
    }
}
