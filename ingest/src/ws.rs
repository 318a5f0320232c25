//! `GET /v1/stream`: a WebSocket carrying one record per frame.
//!
//! - Binary frames are binary-codec records (`EegChunk` or `HrBatch`, by the header's kind);
//!   text frames are JSON records (an `HrBatch` if it parses as one and not as an `EegChunk`).
//! - Frames are processed one at a time, in order, and each gets exactly one text reply, in
//!   order: `{"ack": seq, "stream_id": ..., "status": "accepted"|"duplicate", "gap": ...,
//!   "late": bool}` once the broker acknowledged the record (or it was a duplicate), or
//!   `{"error": <problem>, "seq": ...}` when the frame was refused (the socket stays open; do
//!   not resend that frame). The sequence rules are the HTTP ones ([`crate::streams`]): a
//!   conflicting resend is an error with status 409, a seq below the window one with 422.
//! - When the bus fails the gateway does not buffer: it sends an error whose problem carries
//!   `retry_after_s`, closes the socket with code 1013 (try again later), and the device
//!   reconnects after that delay and resends every unacknowledged frame in order.
//! - Backpressure: the next frame is read only after the previous one was produced, so a
//!   device that outruns the broker is slowed by TCP flow control. The per-device rate limit
//!   delays frames (rather than refusing them) for the same reason.
//! - The token is checked again (through the cache) for every frame, so a revoked device is
//!   cut off within the cache TTL even on a long-lived socket.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;
use vigil_core::codec::{self, CodecError, RecordKind};
use vigil_core::record::{EegChunk, HrBatch};
use vigil_core::telemetry::events::Emit;

use crate::devices::DeviceToken;
use crate::error::{IngestError, Problem};
use crate::events::RecordRejected;
use crate::http::bearer_token;
use crate::pipeline::{AckStatus, IngestAck, WireFormat};
use crate::streams::Gap;
use crate::IngestState;

/// WebSocket close code "Try Again Later" (RFC 6455 registry).
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// The text reply to an accepted frame.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FrameAck {
    /// Sequence number of the acknowledged record.
    pub ack: u64,
    /// Its stream.
    pub stream_id: Uuid,
    /// `accepted` or `duplicate`.
    pub status: AckStatus,
    /// Set when records before this one are missing.
    #[serde(default)]
    pub gap: Option<Gap>,
    /// True when accepted after a higher seq of its stream.
    #[serde(default)]
    pub late: bool,
}

/// The text reply to a refused frame.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FrameError {
    /// What was wrong; `retry_after_s` set means "reconnect later and resend".
    pub error: Problem,
    /// Sequence number of the frame, when it could be decoded.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// Upgrades to a WebSocket after authenticating the device.
pub async fn stream(
    State(state): State<IngestState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = match bearer_token(&headers) {
        Ok(t) => t,
        Err(err) => return rejected(err, None).into_response(),
    };
    let device = match state.authenticate_token(&token).await {
        Ok(d) => d,
        Err(err) => return rejected(err, None).into_response(),
    };
    tracing::info!(device_id = %device.device_id, "websocket stream opened");
    ws.max_message_size(state.inner.max_body_bytes)
        .max_frame_size(state.inner.max_body_bytes)
        .on_upgrade(move |socket| session(state, token, socket))
}

fn rejected(err: IngestError, device_id: Option<&str>) -> IngestError {
    RecordRejected {
        reason: err.reason(),
        device_id,
    }
    .emit();
    err
}

fn decode_seq(format: WireFormat, bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    match format {
        WireFormat::Json => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| serde_json::from_value::<SeqOnly>(v).ok())
            .map(|s| s.seq),
        WireFormat::Binary => None,
    }
}

async fn handle_frame(
    state: &IngestState,
    token: &DeviceToken,
    format: WireFormat,
    bytes: &[u8],
) -> Result<IngestAck, IngestError> {
    let device = state.authenticate_token(token).await?;
    // Wait for a token (and take it) rather than refuse the frame.
    while let Err(IngestError::RateLimited { retry_after }) = state.rate_limit(&device) {
        tokio::time::sleep(retry_after).await;
    }
    let limits = &state.inner.limits;
    match format {
        WireFormat::Binary => match codec::peek_kind(bytes, limits)? {
            RecordKind::HrBatch => state.ingest_bytes::<HrBatch>(&device, format, bytes).await,
            _ => state.ingest_bytes::<EegChunk>(&device, format, bytes).await,
        },
        WireFormat::Json => match format.decode::<EegChunk>(bytes, limits) {
            Ok(chunk) => state.ingest(&device, chunk, bytes.len()).await,
            Err(eeg_err @ CodecError::Json { .. }) => {
                match format.decode::<HrBatch>(bytes, limits) {
                    Ok(batch) => state.ingest(&device, batch, bytes.len()).await,
                    Err(CodecError::Json { .. }) => Err(eeg_err.into()),
                    Err(hr_err) => Err(hr_err.into()),
                }
            }
            Err(err) => Err(err.into()),
        },
    }
}

async fn session(state: IngestState, token: DeviceToken, mut socket: WebSocket) {
    while let Some(message) = socket.recv().await {
        let (format, bytes) = match message {
            Ok(Message::Binary(b)) => (WireFormat::Binary, b),
            Ok(Message::Text(t)) => (WireFormat::Json, bytes::Bytes::from(t)),
            Ok(Message::Close(_)) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Err(err) => {
                tracing::info!(%err, "websocket stream ended");
                break;
            }
        };
        let (reply, close) = match handle_frame(&state, &token, format, &bytes).await {
            Ok(ack) => (
                serde_json::to_string(&FrameAck {
                    ack: ack.seq,
                    stream_id: ack.stream_id,
                    status: ack.status,
                    gap: ack.gap,
                    late: ack.late,
                }),
                false,
            ),
            Err(err) => {
                let err = rejected(err, None);
                let retry = err.retry_after().is_some();
                (
                    serde_json::to_string(&FrameError {
                        error: err.problem(),
                        seq: err.seq().or_else(|| decode_seq(format, &bytes)),
                    }),
                    retry || matches!(err, IngestError::Unauthorized(_)),
                )
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(%err, "cannot serialize websocket reply");
                break;
            }
        };
        if socket.send(Message::Text(reply.into())).await.is_err() {
            break;
        }
        if close {
            // Stop acknowledging instead of buffering: the device keeps its unacknowledged
            // frames and resends them after reconnecting.
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: CLOSE_TRY_AGAIN_LATER,
                    reason: "bus unavailable or not authorized; retry later".into(),
                })))
                .await;
            break;
        }
    }
}
