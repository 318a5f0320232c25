//! Streams simulated patients through a real ingest gateway, as their devices would: one
//! [`IngestClient`] (WebSocket, acknowledged frames, resend on reconnect) per patient, each
//! chunk sent when its last sample would have been recorded (scaled by the replay speed), or
//! as fast as the gateway acknowledges (`Speed::Max`, the client's in-flight window is the
//! only brake).
//!
//! The [`ReplaySummary`] says what happened to every chunk: sent, acknowledged as accepted
//! (late or in order) or duplicate, refused (invalid, a conflicting resend, or below the
//! gateway's window so that delivery is unknown), dropped on purpose by the simulator
//! (dropouts), or lost (no final reply before the timeout).

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use vigil_core::CancellationToken;
use vigil_ingest::client::{ClientConfig, IngestClient};

use crate::simulator::{DeviceProfile, PatientSimulator};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// `k` times real time (1.0 = real time).
    Times(f64),
    /// As fast as the gateway acknowledges.
    Max,
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Times(k) => write!(f, "{k}x real time"),
            Self::Max => f.write_str("maximum speed"),
        }
    }
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "max" {
            return Ok(Self::Max);
        }
        let k: f64 = s
            .trim_end_matches('x')
            .parse()
            .map_err(|_| format!("speed {s:?} is neither `max` nor a factor like 1, 10 or 2.5x"))?;
        if k.is_finite() && k > 0.0 {
            Ok(Self::Times(k))
        } else {
            Err(format!("speed {s:?} must be positive"))
        }
    }
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Gateway stream URL, e.g. `ws://127.0.0.1:8081/v1/stream`.
    pub stream_url: String,
    /// Replay speed.
    pub speed: Speed,
    /// Frames in flight per device.
    pub max_in_flight: usize,
    /// How long to wait for the last acknowledgements.
    pub drain_timeout: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl ReplayConfig {
    /// Real time, 64 frames in flight, 30 s drain, no progress bar.
    pub fn new(stream_url: impl Into<String>) -> Self {
        Self {
            stream_url: stream_url.into(),
            speed: Speed::Times(1.0),
            max_in_flight: 64,
            drain_timeout: Duration::from_secs(30),
            progress: false,
        }
    }
}

/// One simulated device: its behaviour and its bearer token.
#[derive(Debug, Clone)]
pub struct ReplayDevice {
    /// Stream behaviour.
    pub profile: DeviceProfile,
    /// The device's token.
    pub token: String,
}

/// What happened to the chunks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Devices replayed.
    pub devices: usize,
    /// Chunks the simulator produced (sent + dropped).
    pub chunks_planned: u64,
    /// Chunks withheld on purpose (simulated dropouts).
    pub chunks_dropped: u64,
    /// Chunks handed to the clients.
    pub chunks_sent: u64,
    /// Samples (all channels) in the chunks sent.
    pub samples_sent: u64,
    /// Acknowledged as accepted.
    pub accepted: u64,
    /// Of `accepted`, received by the gateway after a higher seq of their stream (still
    /// produced; downstream counts them as late).
    pub late: u64,
    /// Acknowledged as duplicates (resends after lost acks; produced once).
    pub duplicates: u64,
    /// Refused by the gateway (not resent).
    pub rejected: u64,
    /// Of `rejected`, resends whose content differed from the received chunk (409).
    pub conflicts: u64,
    /// Of `rejected`, seqs below the gateway's window: whether they were delivered is
    /// unknown.
    pub below_window: u64,
    /// Sent but without a final reply: lost.
    pub lost: u64,
    /// Acks that reported a seq gap (the gateway saw dropouts).
    pub gaps: u64,
    /// Reconnects of all clients.
    pub reconnects: u64,
    /// Signal seconds per device.
    pub signal_s: f64,
    /// Wall seconds the replay took.
    pub elapsed_s: f64,
    /// Devices that ended with an error, and why.
    pub errors: Vec<String>,
}

impl ReplaySummary {
    /// One readable line.
    pub fn line(&self) -> String {
        format!(
            "{} devices, {:.1} s of signal each in {:.1} s: {} chunks sent ({} samples), {} accepted ({} late), {} duplicates, {} refused ({} conflicting resends, {} below the gateway's window: delivery unknown), {} lost; {} dropped on purpose, {} gaps reported, {} reconnects",
            self.devices,
            self.signal_s,
            self.elapsed_s,
            self.chunks_sent,
            self.samples_sent,
            self.accepted,
            self.late,
            self.duplicates,
            self.rejected,
            self.conflicts,
            self.below_window,
            self.lost,
            self.chunks_dropped,
            self.gaps,
            self.reconnects
        )
    }
}

/// Streams every device's view of `source` through the gateway until done or `shutdown`.
pub async fn replay(
    source: Arc<PatientSimulator>,
    devices: Vec<ReplayDevice>,
    config: &ReplayConfig,
    shutdown: CancellationToken,
) -> ReplaySummary {
    let total: u64 = devices
        .iter()
        .map(|d| source.patient(d.profile.clone()).total_samples() as u64)
        .sum();
    let bar = if config.progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for device in devices {
        let source = source.clone();
        let config = config.clone();
        let bar = bar.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            replay_device(&source, device, &config, &bar, started, shutdown).await
        }));
    }
    let mut summary = ReplaySummary {
        signal_s: source.duration_s(),
        ..ReplaySummary::default()
    };
    for task in tasks {
        let part = match task.await {
            Ok(part) => part,
            Err(join) => {
                summary.errors.push(format!("device task failed: {join}"));
                continue;
            }
        };
        summary.devices += 1;
        summary.chunks_planned += part.chunks_planned;
        summary.chunks_dropped += part.chunks_dropped;
        summary.chunks_sent += part.chunks_sent;
        summary.samples_sent += part.samples_sent;
        summary.accepted += part.accepted;
        summary.late += part.late;
        summary.duplicates += part.duplicates;
        summary.rejected += part.rejected;
        summary.conflicts += part.conflicts;
        summary.below_window += part.below_window;
        summary.lost += part.lost;
        summary.gaps += part.gaps;
        summary.reconnects += part.reconnects;
        summary.errors.extend(part.errors);
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    bar.finish_with_message("done");
    summary
}

async fn replay_device(
    source: &PatientSimulator,
    device: ReplayDevice,
    config: &ReplayConfig,
    bar: &ProgressBar,
    started: tokio::time::Instant,
    shutdown: CancellationToken,
) -> ReplaySummary {
    let mut client_config = ClientConfig::new(config.stream_url.clone(), device.token.clone());
    client_config.max_in_flight = config.max_in_flight.max(1);
    let client = IngestClient::start(client_config);
    let patient = source.patient(device.profile.clone());
    let mut part = ReplaySummary::default();
    for planned in patient.chunks() {
        part.chunks_planned += 1;
        if let Speed::Times(k) = config.speed {
            let due = started + Duration::from_secs_f64(planned.send_at_s / k);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
        } else if shutdown.is_cancelled() {
            break;
        }
        let Some(chunk) = planned.chunk else {
            part.chunks_dropped += 1;
            continue;
        };
        let samples = chunk.samples_per_channel() as u64;
        let sent = tokio::select! {
            _ = shutdown.cancelled() => break,
            sent = client.send(&chunk) => sent,
        };
        if let Err(e) = sent {
            part.errors
                .push(format!("{}: {e}", device.profile.device_id));
            break;
        }
        part.chunks_sent += 1;
        part.samples_sent += samples * chunk.channels.len() as u64;
        bar.inc(samples);
    }
    // Wait for the replies, then disconnect; whatever has no final reply by then is lost.
    if let Err(e) = client.flush(config.drain_timeout).await {
        part.errors
            .push(format!("{}: {e}", device.profile.device_id));
    }
    let stats = client.stats();
    if let Err(e) = client.close(Duration::from_secs(5)).await {
        if part.errors.is_empty() {
            part.errors
                .push(format!("{}: {e}", device.profile.device_id));
        }
    }
    part.accepted = stats.accepted;
    part.late = stats.late;
    part.duplicates = stats.duplicates;
    part.rejected = stats.rejected;
    part.conflicts = stats.conflicts;
    part.below_window = stats.below_window;
    part.gaps = stats.gaps;
    part.reconnects = stats.reconnects;
    part.lost = part.chunks_sent.saturating_sub(stats.resolved());
    part
}
