//! The load generator: simulated patients from the replay simulator (`vigil-replay`), each
//! an EEG headset and a heart-rate sensor streaming through the ingest gateway's WebSocket.
//!
//! `vigil replay` cannot be used as is: it sends no heart rate and plays one speed from
//! start to end. Each patient here first sends `warmup_s` of signal at `warmup_speed` (the
//! model needs 300 s of context before its first output), waits at that point until the
//! benchmark says go (so the warm-up backlog can drain), then continues at real time: every
//! chunk is sent when its last sample would have been recorded. Heart rate: one point per
//! second of signal (a smooth 64-80 bpm curve with its RR interval) from a second device
//! bound to the same patient, paced with the EEG. Devices are well behaved (no loss, no
//! jitter, no clock offset): the benchmark measures throughput, not the gateway's repairs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use vigil_core::record::{HrBatch, HrPoint, HrSource};
use vigil_core::CancellationToken;
use vigil_ingest::client::{ClientConfig, ClientStats, IngestClient};
use vigil_replay::{DeviceProfile, PatientSimulator};

/// Records per second one patient offers: two 0.5 s EEG chunks and one heart-rate batch.
pub const RECORDS_PER_PATIENT_S: f64 = 3.0;
/// EEG chunk length, seconds.
const CHUNK_S: f64 = 0.5;

/// Where a patient's streams go.
#[derive(Debug, Clone)]
pub struct PatientSpec {
    /// Patient id.
    pub patient_id: String,
    /// EEG device id and token.
    pub eeg_device: (String, String),
    /// Heart-rate device id and token.
    pub hr_device: (String, String),
    /// Where in the recording the patient starts, seconds.
    pub offset_s: f64,
    /// Seconds of signal sent in the warm-up beyond the cohort's: where in the model's 20 s
    /// step the patient's real time starts. Its burst comes as long after real time starts
    /// as everyone else's (`--burst-after-s`).
    pub phase_s: f64,
}

impl PatientSpec {
    /// Seconds of signal this patient sends in the warm-up.
    pub fn warmup_s(&self, cohort_warmup_s: f64) -> f64 {
        cohort_warmup_s + self.phase_s
    }
}

/// Go signal: the instant real-time streaming starts and the same moment as UTC ns.
pub type Go = Option<(Instant, i64)>;

/// Shared observations of every patient task.
#[derive(Debug, Default)]
pub struct Observed {
    /// `(when, seconds late)` of every real-time EEG chunk handed to its client.
    pub lateness: Mutex<Vec<(Instant, f64)>>,
}

/// A group of patients started together (one ramp step's new patients).
pub struct Cohort {
    /// The patients.
    pub patients: Vec<PatientSpec>,
    /// Releases the real-time phase.
    pub go: watch::Sender<Go>,
    /// Patients that sent their whole warm-up.
    pub warmed: watch::Receiver<usize>,
    /// Stops the cohort.
    pub stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<PatientResult>>,
}

/// What one patient's devices reported at the end.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PatientResult {
    /// EEG chunks handed to the client.
    pub eeg_sent: u64,
    /// Heart-rate batches handed to the client.
    pub hr_sent: u64,
    /// Accepted, duplicate, refused (both devices).
    pub accepted: u64,
    /// Acknowledged as duplicates.
    pub duplicates: u64,
    /// Refused by the gateway.
    pub rejected: u64,
    /// Client errors (timeouts at the end, closed connections).
    pub errors: Vec<String>,
}

impl Cohort {
    /// Starts `patients` streaming `sim` through `stream_url`.
    pub fn start(
        sim: Arc<PatientSimulator>,
        patients: Vec<PatientSpec>,
        stream_url: &str,
        warmup_s: f64,
        warmup_speed: f64,
        observed: Arc<Observed>,
    ) -> Cohort {
        let (go, go_rx) = watch::channel(None);
        let (warmed_tx, warmed) = watch::channel(0usize);
        let warmed_tx = Arc::new(warmed_tx);
        let stop = CancellationToken::new();
        let t0 = Instant::now();
        let t0_ns = vigil_core::time::now_ns();
        let tasks = patients
            .iter()
            .cloned()
            .map(|spec| {
                let warmup_s = spec.warmup_s(warmup_s);
                let run = PatientRun {
                    sim: sim.clone(),
                    spec,
                    stream_url: stream_url.to_owned(),
                    t0,
                    start_ns: t0_ns - ((warmup_s - warmup_s / warmup_speed) * 1e9) as i64,
                    warmup_s,
                    warmup_speed,
                };
                tokio::spawn(run.run(
                    go_rx.clone(),
                    warmed_tx.clone(),
                    stop.clone(),
                    observed.clone(),
                ))
            })
            .collect();
        Cohort {
            patients,
            go,
            warmed,
            stop,
            tasks,
        }
    }

    /// Stops the cohort and waits for its devices to flush.
    pub async fn finish(self) -> Vec<PatientResult> {
        self.stop.cancel();
        let mut out = Vec::new();
        for task in self.tasks {
            out.push(task.await.unwrap_or_else(|e| PatientResult {
                errors: vec![format!("patient task failed: {e}")],
                ..PatientResult::default()
            }));
        }
        out
    }
}

struct PatientRun {
    sim: Arc<PatientSimulator>,
    spec: PatientSpec,
    stream_url: String,
    t0: Instant,
    start_ns: i64,
    warmup_s: f64,
    warmup_speed: f64,
}

/// Heart rate at signal second `s`: a slow 64-80 bpm oscillation, inside every alert band.
fn bpm_at(s: u64, patient_offset_s: f64) -> f32 {
    (72.0 + 8.0 * ((s as f64 + patient_offset_s * 7.0) / 60.0 * std::f64::consts::TAU).sin()) as f32
}

impl PatientRun {
    async fn run(
        self,
        mut go: watch::Receiver<Go>,
        warmed: Arc<watch::Sender<usize>>,
        stop: CancellationToken,
        observed: Arc<Observed>,
    ) -> PatientResult {
        let eeg = IngestClient::start(ClientConfig::new(
            self.stream_url.clone(),
            self.spec.eeg_device.1.clone(),
        ));
        let hr = IngestClient::start(ClientConfig::new(
            self.stream_url.clone(),
            self.spec.hr_device.1.clone(),
        ));
        let profile = DeviceProfile {
            chunk_s: CHUNK_S,
            // Long enough for any run; chunks are made lazily.
            loops: (8.0 * 3600.0 / self.sim.duration_s()).ceil() as usize,
            offset_s: self.spec.offset_s,
            ..DeviceProfile::new(
                self.spec.patient_id.clone(),
                self.spec.eeg_device.0.clone(),
                self.start_ns,
            )
        };
        let hr_stream = uuid::Uuid::new_v4();
        let patient = self.sim.patient(profile);
        let mut result = PatientResult::default();
        let mut real_time: Option<(Instant, i64)> = None;
        let mut hr_seconds_sent = 0u64;
        'chunks: for planned in patient.chunks() {
            let at = planned.send_at_s;
            let due = if at <= self.warmup_s {
                self.t0 + Duration::from_secs_f64(at / self.warmup_speed)
            } else {
                let (t1, _) = match real_time {
                    Some(go) => go,
                    None => {
                        warmed.send_modify(|n| *n += 1);
                        let go = tokio::select! {
                            _ = stop.cancelled() => break 'chunks,
                            released = go.wait_for(Option::is_some) => match released {
                                Ok(released) => (*released).unwrap_or((Instant::now(), 0)),
                                Err(_) => break 'chunks,
                            },
                        };
                        real_time = Some(go);
                        go
                    }
                };
                t1 + Duration::from_secs_f64(at - self.warmup_s)
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
            let Some(chunk) = planned.chunk else { continue };
            if real_time.is_some() {
                let late = Instant::now().saturating_duration_since(due).as_secs_f64();
                if let Ok(mut l) = observed.lateness.lock() {
                    l.push((Instant::now(), late));
                }
            }
            let sent = tokio::select! {
                _ = stop.cancelled() => break,
                sent = eeg.send(&chunk) => sent,
            };
            if let Err(e) = sent {
                result
                    .errors
                    .push(format!("{} eeg: {e}", self.spec.patient_id));
                break;
            }
            result.eeg_sent += 1;
            // One heart-rate point per whole second of signal sent so far.
            while (hr_seconds_sent as f64) < at.floor() {
                let s = hr_seconds_sent;
                let bpm = bpm_at(s, self.spec.offset_s);
                let batch = HrBatch {
                    patient_id: self.spec.patient_id.clone(),
                    device_id: self.spec.hr_device.0.clone(),
                    stream_id: hr_stream,
                    seq: s,
                    points: vec![HrPoint {
                        t_ns: self.start_ns + (s as i64 + 1) * 1_000_000_000,
                        bpm,
                        rr_ms: Some(60_000.0 / bpm),
                    }],
                    source: HrSource::ChestStrap,
                };
                if let Err(e) = hr.send(&batch).await {
                    result
                        .errors
                        .push(format!("{} hr: {e}", self.spec.patient_id));
                    break 'chunks;
                }
                hr_seconds_sent += 1;
                result.hr_sent += 1;
            }
        }
        for (name, client) in [("eeg", eeg), ("hr", hr)] {
            if let Err(e) = client.flush(Duration::from_secs(20)).await {
                result
                    .errors
                    .push(format!("{} {name}: {e}", self.spec.patient_id));
            }
            let stats: ClientStats = client.stats();
            result.accepted += stats.accepted;
            result.duplicates += stats.duplicates;
            result.rejected += stats.rejected;
            let _ = client.close(Duration::from_secs(5)).await;
        }
        result
    }
}

/// Signal times (seconds from a patient's first sample) at which the bursts of `sim` start for
/// a patient starting `offset_s` into the recording, up to `until_s`.
pub fn burst_onsets_s(sim: &PatientSimulator, offset_s: f64, until_s: f64) -> Vec<f64> {
    let d = sim.duration_s();
    let mut out = Vec::new();
    for &(from, _) in sim.bursts() {
        let mut t = (from - offset_s).rem_euclid(d);
        while t <= until_s {
            out.push(t);
            t += d;
        }
    }
    out.sort_by(f64::total_cmp);
    out
}
