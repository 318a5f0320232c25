//! `IngestClient`: the WebSocket client devices and simulators use to stream records to the
//! gateway without losing or duplicating any.
//!
//! Records are encoded in the binary codec and sent as binary frames on `/v1/stream`. The
//! client keeps every frame until the gateway acknowledged it (at most `max_in_flight`
//! frames; [`IngestClient::send`] waits when the window is full, which is the backpressure a
//! device needs). Replies come in frame order, so each ack or refusal resolves the oldest
//! unacknowledged frame. When the connection drops, or the gateway says "retry later" (bus
//! unavailable), the client reconnects with exponential backoff and resends every
//! unacknowledged frame in order; frames the gateway had already produced come back as
//! `duplicate` and are not produced twice, frames it had not received come back `accepted`
//! (with `late: true` when a higher seq of the stream got there first, counted in
//! [`ClientStats::late`]). A frame the gateway refuses is counted in
//! [`ClientStats::rejected`] and not resent: besides invalid records that is a resend whose
//! content differs from the received one (409, [`ClientStats::conflicts`]) and a seq too old
//! for the gateway to tell whether it was received (422 `seq_below_window`,
//! [`ClientStats::below_window`]: delivery unknown).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use vigil_core::codec;
use vigil_core::problem::PROBLEM_TYPE_BASE;

use crate::error::Problem;
use crate::pipeline::{AckStatus, IngestRecord};
use crate::ws::{FrameAck, FrameError};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Gateway stream URL, e.g. `ws://127.0.0.1:8081/v1/stream`.
    pub url: String,
    /// The device token (`vigil device register` printed it).
    pub token: String,
    /// Most frames sent but not yet acknowledged.
    pub max_in_flight: usize,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl ClientConfig {
    /// Defaults: 64 frames in flight, backoff 100 ms .. 10 s.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            max_in_flight: 64,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The record could not be encoded.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// The gateway refused the token (unknown or revoked): retrying cannot help.
    #[error("the gateway refused the device token: {0}")]
    Unauthorized(String),
    /// The URL or token cannot form a request.
    #[error("bad gateway URL or token: {0}")]
    BadRequest(String),
    /// The client task ended (after a fatal error or [`IngestClient::close`]).
    #[error("the client is closed")]
    Closed,
    /// Not every frame was acknowledged in time.
    #[error("{unresolved} frames still unacknowledged after {after:?}")]
    Timeout {
        /// Frames without a reply.
        unresolved: u64,
        /// Time waited.
        after: Duration,
    },
}

/// Counters of one client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Frames acknowledged as `accepted`.
    pub accepted: u64,
    /// Of `accepted`, those the gateway received after a higher seq of their stream.
    pub late: u64,
    /// Frames acknowledged as `duplicate` (already produced; resends after a lost ack).
    pub duplicates: u64,
    /// Frames refused (not resent): invalid, conflicting or below the window.
    pub rejected: u64,
    /// Of `rejected`, resends whose content differed from the received record (409).
    pub conflicts: u64,
    /// Of `rejected`, seqs below the gateway's window: whether they were ever received is
    /// unknown.
    pub below_window: u64,
    /// Acks that reported a gap.
    pub gaps: u64,
    /// Connections opened after the first.
    pub reconnects: u64,
    /// Frames resent after a reconnect.
    pub resent: u64,
    /// The last refusal, if any.
    pub last_rejection: Option<Problem>,
}

impl ClientStats {
    /// Frames that got a final reply.
    pub fn resolved(&self) -> u64 {
        self.accepted + self.duplicates + self.rejected
    }
}

#[derive(Debug, Clone)]
struct Frame {
    seq: u64,
    bytes: bytes::Bytes,
}

/// A streaming connection to the gateway that survives reconnects.
pub struct IngestClient {
    tx: Option<mpsc::Sender<Frame>>,
    submitted: Arc<AtomicU64>,
    stats: watch::Receiver<ClientStats>,
    task: JoinHandle<Result<(), ClientError>>,
}

impl IngestClient {
    /// Starts the client; it connects in the background (must run inside a Tokio runtime).
    pub fn start(config: ClientConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.max_in_flight.max(1));
        let (stats_tx, stats) = watch::channel(ClientStats::default());
        let task = tokio::spawn(run(config, rx, stats_tx));
        Self {
            tx: Some(tx),
            submitted: Arc::new(AtomicU64::new(0)),
            stats,
            task,
        }
    }

    /// Queues one record; waits while `max_in_flight` frames are unacknowledged.
    pub async fn send<R: IngestRecord>(&self, record: &R) -> Result<(), ClientError> {
        let bytes = codec::encode(record)?;
        let tx = self.tx.as_ref().ok_or(ClientError::Closed)?;
        self.submitted.fetch_add(1, Ordering::SeqCst);
        let frame = Frame {
            seq: record.seq(),
            bytes: bytes.into(),
        };
        if tx.send(frame).await.is_err() {
            self.submitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Current counters.
    pub fn stats(&self) -> ClientStats {
        self.stats.borrow().clone()
    }

    /// The counters as they change: replies resolve frames in send order, so the n-th record
    /// sent got its final reply once `resolved() >= n` (the LSL bridge times acks this way).
    pub fn watch_stats(&self) -> watch::Receiver<ClientStats> {
        self.stats.clone()
    }

    /// Waits until every queued record got a final reply (ack or refusal).
    pub async fn flush(&self, timeout: Duration) -> Result<ClientStats, ClientError> {
        let submitted = self.submitted.load(Ordering::SeqCst);
        let mut rx = self.stats.clone();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| s.resolved() >= submitted)
                .await
                .map(|s| s.clone())
        })
        .await;
        match waited {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout {
                unresolved: submitted.saturating_sub(self.stats.borrow().resolved()),
                after: timeout,
            }),
        }
    }

    /// Sends what is queued, waits for its replies (up to `timeout`) and disconnects.
    pub async fn close(mut self, timeout: Duration) -> Result<ClientStats, ClientError> {
        self.tx = None;
        match tokio::time::timeout(timeout, &mut self.task).await {
            Ok(Ok(result)) => result.map(|()| self.stats()),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.task.abort();
                let stats = self.stats();
                Err(ClientError::Timeout {
                    unresolved: self
                        .submitted
                        .load(Ordering::SeqCst)
                        .saturating_sub(stats.resolved()),
                    after: timeout,
                })
            }
        }
    }
}

enum Disconnect {
    /// Connection lost: back off.
    Lost,
    /// The gateway asked to retry after this delay.
    RetryAfter(Duration),
    /// Everything sent and acknowledged, input closed.
    Done,
}

async fn run(
    config: ClientConfig,
    mut rx: mpsc::Receiver<Frame>,
    stats: watch::Sender<ClientStats>,
) -> Result<(), ClientError> {
    let mut unacked: VecDeque<Frame> = VecDeque::new();
    let mut input_closed = false;
    let mut backoff = config.backoff_initial;
    let mut connections = 0u64;
    let max_in_flight = config.max_in_flight.max(1);
    loop {
        let mut request = config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::BadRequest(e.to_string()))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", config.token))
            .map_err(|e| ClientError::BadRequest(e.to_string()))?;
        request.headers_mut().insert("authorization", auth);

        let socket = match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => socket,
            Err(tungstenite::Error::Http(response)) if response.status().as_u16() == 401 => {
                return Err(ClientError::Unauthorized(format!(
                    "HTTP {}",
                    response.status()
                )));
            }
            Err(err) => {
                tracing::debug!(%err, ?backoff, "connect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(config.backoff_max);
                continue;
            }
        };
        connections += 1;
        if connections > 1 {
            stats.send_modify(|s| s.reconnects += 1);
        }
        let (mut sink, mut stream) = socket.split();

        let outcome = 'session: {
            for frame in &unacked {
                if sink
                    .send(Message::Binary(frame.bytes.clone()))
                    .await
                    .is_err()
                {
                    break 'session Disconnect::Lost;
                }
                stats.send_modify(|s| s.resent += 1);
            }
            loop {
                if input_closed && unacked.is_empty() {
                    let _ = sink.send(Message::Close(None)).await;
                    break 'session Disconnect::Done;
                }
                tokio::select! {
                    frame = rx.recv(), if !input_closed && unacked.len() < max_in_flight => {
                        match frame {
                            Some(frame) => {
                                let bytes = frame.bytes.clone();
                                unacked.push_back(frame);
                                if sink.send(Message::Binary(bytes)).await.is_err() {
                                    break 'session Disconnect::Lost;
                                }
                            }
                            None => input_closed = true,
                        }
                    }
                    message = stream.next() => {
                        let text = match message {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                                break 'session Disconnect::Lost;
                            }
                            Some(Ok(_)) => continue,
                        };
                        match on_reply(&text, &mut unacked, &stats, &config) {
                            Next::Continue { acked } => {
                                if acked {
                                    backoff = config.backoff_initial;
                                }
                            }
                            Next::Disconnect(d) => break 'session d,
                            Next::Fatal(err) => return Err(err),
                        }
                    }
                }
            }
        };
        match outcome {
            Disconnect::Done => return Ok(()),
            Disconnect::Lost => {
                tracing::info!(
                    unacked = unacked.len(),
                    ?backoff,
                    "connection lost; reconnecting"
                );
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(config.backoff_max);
            }
            Disconnect::RetryAfter(delay) => {
                tracing::info!(
                    unacked = unacked.len(),
                    ?delay,
                    "gateway asked to retry later"
                );
                tokio::time::sleep(delay.max(backoff)).await;
                backoff = backoff.saturating_mul(2).min(config.backoff_max);
            }
        }
    }
}

/// What a reply asks of the session.
enum Next {
    /// Go on; `acked` when a frame was acknowledged (the connection works).
    Continue { acked: bool },
    /// End the connection.
    Disconnect(Disconnect),
    /// Give up.
    Fatal(ClientError),
}

/// Resolves the oldest unacknowledged frame with the gateway's reply `text`.
fn on_reply(
    text: &str,
    unacked: &mut VecDeque<Frame>,
    stats: &watch::Sender<ClientStats>,
    config: &ClientConfig,
) -> Next {
    if let Ok(ack) = serde_json::from_str::<FrameAck>(text) {
        let front = unacked.pop_front();
        if front.as_ref().is_some_and(|f| f.seq != ack.ack) {
            tracing::warn!(expected = ?front.map(|f| f.seq), got = ack.ack, "ack out of order");
        }
        stats.send_modify(|s| {
            match ack.status {
                AckStatus::Accepted => s.accepted += 1,
                AckStatus::Duplicate => s.duplicates += 1,
            }
            s.late += u64::from(ack.late);
            s.gaps += u64::from(ack.gap.is_some());
        });
        return Next::Continue { acked: true };
    }
    let Ok(err) = serde_json::from_str::<FrameError>(text) else {
        tracing::warn!(%text, "unexpected reply from the gateway");
        return Next::Continue { acked: false };
    };
    if err.error.status == 401 {
        return Next::Fatal(ClientError::Unauthorized(err.error.detail));
    }
    if let Some(secs) = err.error.retry_after_s {
        // Trust the hint, within reason.
        let cap = config.backoff_max.max(Duration::from_secs(60));
        return Next::Disconnect(Disconnect::RetryAfter(Duration::from_secs(secs).min(cap)));
    }
    unacked.pop_front();
    let reason = err
        .error
        .problem_type
        .strip_prefix(PROBLEM_TYPE_BASE)
        .unwrap_or_default();
    let (detail, seq) = (&err.error.detail, err.seq);
    match reason {
        "seq_conflict" => {
            tracing::warn!(%detail, ?seq, "resend conflicts with the received record; not resent")
        }
        "seq_below_window" => {
            tracing::error!(%detail, ?seq, "seq below the gateway's window: delivery unknown")
        }
        _ => tracing::warn!(%detail, ?seq, "frame refused by the gateway"),
    }
    let conflict = u64::from(reason == "seq_conflict");
    let below_window = u64::from(reason == "seq_below_window");
    stats.send_modify(|s| {
        s.rejected += 1;
        s.conflicts += conflict;
        s.below_window += below_window;
        s.last_rejection = Some(err.error);
    });
    Next::Continue { acked: false }
}
