//! `vigil demo`: every stage in one process on the embedded defaults (memory:// bus, SQLite
//! in a scratch directory), fed by simulated patients through the real ingest gateway.
//!
//! Each simulated patient is a registered device that streams over the gateway's WebSocket
//! with the ingest client, as a headset app would:
//! - EEG: a real recording (`demo.recording`, default the edfjs sample: 5 bipolar channels of
//!   real background EEG at 256 Hz) repeated to 600 s, with synthetic seizure-like bursts
//!   injected at patient-specific times (every third patient has none), replayed by
//!   `vigil_replay` exactly as `vigil replay` does;
//! - heart rate: a synthetic beat series (a resting rate with respiratory sinus arrhythmia)
//!   that rises with each burst, as ictal tachycardia does; the first patient's rise crosses
//!   the tachycardia band.
//!
//! Inference, storage (history API + Parquet-free SQLite store) and the dashboard consume the
//! same bus; a clinician login assigned to the demo patients is created and printed. The
//! bursts and the heart rate are synthetic: they show the pipeline working and say nothing
//! about clinical performance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vigil_core::bus::{Bus, Topic};
use vigil_core::codec::{self, DecodeLimits, RecordKind};
use vigil_core::config::VigilConfig;
use vigil_core::model::PackageOrigin;
use vigil_core::record::{
    AlertEvent, AlertTransition, HrBatch, HrPoint, HrSource, SeizureProbability,
};
use vigil_core::CancellationToken;
use vigil_inference::stage::InferenceStage;
use vigil_ingest::client::{ClientConfig, IngestClient};
use vigil_ingest::{DeviceDirectory, IngestState, NewDevice, SqlDeviceDirectory};
use vigil_replay::{
    DeviceProfile, PatientSimulator, Recording, ReplayConfig, ReplayDevice, SimulatorConfig, Speed,
};

use crate::commands::fetch_model;

/// Signal the recording is repeated to per loop: long enough for the model's 300 s window
/// plus the bursts.
const LOOP_S: f64 = 600.0;
/// Loops of the recording per patient: the demo runs until stopped.
const LOOPS: usize = 100_000;
/// The demo clinician's login name.
const DEMO_USER: &str = "demo";

/// A simulated patient's device identity.
pub fn patient_ids(p: usize) -> (String, String) {
    (
        format!("demo-patient-{}", p + 1),
        format!("demo-headset-{}", p + 1),
    )
}

/// Synthetic seizure-like bursts of patient `p`, seconds into each 600 s loop.
pub fn patient_bursts(p: usize) -> Vec<(f64, f64)> {
    match p % 3 {
        0 => vec![(330.0, 375.0)],
        1 => vec![(450.0, 485.0)],
        _ => Vec::new(),
    }
}

/// Heart rate of patient `p` at `t_s` seconds into a loop: a resting rate with respiratory
/// sinus arrhythmia (0.25 Hz), rising over 10 s at each burst onset and falling back over
/// 20 s after it ends. Patient 1 (index 0) rises past the default tachycardia band (120).
pub fn heart_rate_bpm(p: usize, bursts: &[(f64, f64)], t_s: f64) -> f64 {
    let resting = 68.0 + 4.0 * (p % 4) as f64;
    let rise = if p.is_multiple_of(3) { 58.0 } else { 35.0 };
    let rsa = 3.0 * (2.0 * std::f64::consts::PI * 0.25 * t_s).sin();
    let ictal = bursts
        .iter()
        .map(|&(from, to)| {
            if t_s < from {
                0.0
            } else if t_s < to {
                ((t_s - from) / 10.0).min(1.0)
            } else {
                (1.0 - (t_s - to) / 20.0).max(0.0)
            }
        })
        .fold(0.0, f64::max);
    resting + rsa + rise * ictal
}

/// The beats of patient `p` after the beat at `last_beat_s` and before `to_s` (signal time
/// of the demo; the EEG loops every `loop_s`): `(beat time s, bpm, RR ms)`.
pub fn beats(
    p: usize,
    bursts: &[(f64, f64)],
    loop_s: f64,
    last_beat_s: &mut f64,
    to_s: f64,
) -> Vec<(f64, f32, f32)> {
    let mut out = Vec::new();
    loop {
        let bpm = heart_rate_bpm(p, bursts, last_beat_s.rem_euclid(loop_s));
        let next = *last_beat_s + 60.0 / bpm;
        if next >= to_s {
            return out;
        }
        *last_beat_s = next;
        out.push((next, bpm as f32, (60_000.0 / bpm) as f32));
    }
}

/// Finds the demo recording, fetching the pinned data with `scripts/fetch-data` when it is
/// missing and the script is at hand (the README's command runs from the repository).
fn locate_recording(recording: &Path) -> anyhow::Result<PathBuf> {
    if recording.is_absolute() {
        return Ok(recording.to_owned());
    }
    let relative = recording.to_string_lossy();
    let missing = match vigil_core::datasets::locate(&relative) {
        Ok(path) => return Ok(path),
        Err(missing) => missing,
    };
    let script = Path::new("scripts/fetch-data");
    if !script.is_file() {
        return Err(missing.into());
    }
    println!("Fetching the demo recordings (pinned packages, checksums verified) ...");
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(python)
        .arg(script)
        .status()
        .context("run scripts/fetch-data")?;
    anyhow::ensure!(status.success(), "scripts/fetch-data failed ({status})");
    Ok(vigil_core::datasets::locate(&relative)?)
}

/// Everything the demo prints once it is up.
struct Addresses {
    ingest: std::net::SocketAddr,
    dashboard: std::net::SocketAddr,
    history: std::net::SocketAddr,
}

/// `vigil demo`.
pub async fn run(mut config: VigilConfig) -> anyhow::Result<()> {
    vigil_core::telemetry::init(&config.telemetry);
    adapt_to_simulation(&mut config);
    let shutdown = vigil_core::shutdown::on_signals();

    let origin = PackageOrigin::Pip {
        python: std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into()),
    };
    let cfg = config.clone();
    tokio::task::spawn_blocking(move || fetch_model(&cfg, Some(&cfg.inference.model_id), &origin))
        .await
        .context("model fetch task")??;
    let (model, model_ref) = vigil_inference::serve::load_verified_model_async(&config).await?;
    let recording_path = locate_recording(&config.demo.recording)?;
    let recording = Recording::open(&recording_path)
        .with_context(|| format!("read {}", recording_path.display()))?;

    let bus = Bus::connect(&config.bus).await?;
    bus.create_vigil_topics().await?;

    // Scratch databases: the device directory and the clinical store (SQLite).
    let scratch = tempfile::tempdir().context("demo scratch directory")?;
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", scratch.path().join(name).display());
    let store = vigil_storage::Store::connect(&sqlite("vigil.db")).await?;
    let directory = SqlDeviceDirectory::connect(&sqlite("devices.db")).await?;

    let Enrolled {
        patients,
        your_token,
        password,
        api_token,
    } = enroll(&config, &recording, &recording_path, &directory, &store).await?;

    let gateway = start_gateway(&config, &bus, directory, &model_ref, &shutdown).await?;
    let ingest_addr = gateway.addr;

    // Storage: consumer, history API, retention.
    config.storage.archive_dir = scratch.path().join("archive");
    let history_listener = tokio::net::TcpListener::bind(config.storage.listen)
        .await
        .with_context(|| format!("bind {}", config.storage.listen))?;
    let storage = vigil_storage::server::start(
        store.clone(),
        bus.clone(),
        &config.storage,
        history_listener,
        shutdown.clone(),
    )
    .await?;

    // Dashboard, with a session key for this run (logins end with the demo).
    if config.dashboard.session_key.is_empty() {
        config.dashboard.session_key = vigil_storage::auth::new_api_token();
    }
    let dashboard_listener = tokio::net::TcpListener::bind(config.dashboard.listen)
        .await
        .with_context(|| format!("bind {}", config.dashboard.listen))?;
    let dashboard = vigil_dashboard::start(
        vigil_dashboard::DashboardState::new(
            bus.clone(),
            Arc::new(store.clone()),
            &config.dashboard,
        ),
        dashboard_listener,
        shutdown.clone(),
    )
    .await?;

    let addresses = Addresses {
        ingest: ingest_addr,
        dashboard: dashboard.addr,
        history: storage.addr,
    };
    print_banner(
        &config,
        &addresses,
        &recording_path,
        &password,
        &api_token,
        &your_token,
        &model_ref.id,
    );

    let stage = InferenceStage::from_config(
        &config,
        bus.clone(),
        model,
        model_ref,
        gateway.readiness.clone(),
    )?;
    let stage = tokio::spawn(stage.run(shutdown.clone()));
    let feeders = feed_patients(
        format!("ws://{ingest_addr}/v1/stream"),
        patients,
        config.demo.speed,
        shutdown.clone(),
    );
    let printer = tokio::spawn(print_outputs(bus, shutdown.clone()));
    shutdown.cancelled().await;
    for feeder in feeders {
        feeder.await.context("demo feeder")?;
    }
    gateway.stop.cancel();
    printer.await.context("demo printer")??;
    stage.await.context("inference stage")??;
    storage.wait().await?;
    dashboard.wait().await?;
    gateway
        .server
        .await
        .context("gateway")?
        .context("gateway server")?;
    gateway.probe.abort();
    store.close().await;
    tracing::info!("demo stopped");
    Ok(())
}

/// The demo's ingest gateway, serving until `stop` (after the simulated devices closed, so
/// their last frames are acknowledged instead of timing out).
struct Gateway {
    addr: std::net::SocketAddr,
    readiness: vigil_core::telemetry::Readiness,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    probe: tokio::task::JoinHandle<()>,
}

async fn start_gateway(
    config: &VigilConfig,
    bus: &Bus,
    directory: SqlDeviceDirectory,
    model_ref: &vigil_core::record::ModelRef,
    shutdown: &CancellationToken,
) -> anyhow::Result<Gateway> {
    let gateway = IngestState::new(
        bus.clone(),
        Arc::new(directory),
        &config.ingest,
        Duration::from_millis(config.bus.publish_timeout_ms),
    );
    let readiness = gateway.readiness().clone();
    readiness.set(
        "model",
        true,
        format!("{} sha256 {}", model_ref.id, model_ref.sha256),
    );
    gateway.probe_bus().await;
    let probe = gateway.spawn_bus_probe(Duration::from_secs(1), shutdown.clone());
    let listener = tokio::net::TcpListener::bind(config.demo.listen)
        .await
        .with_context(|| format!("bind {}", config.demo.listen))?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, vigil_ingest::app(gateway))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    Ok(Gateway {
        addr,
        readiness,
        stop,
        server,
        probe,
    })
}

/// Simulated patients (id, device id, token, simulator) and the people of the demo.
struct Enrolled {
    patients: Vec<(String, String, String, Arc<PatientSimulator>)>,
    your_token: String,
    password: String,
    api_token: String,
}

/// Registers a device per simulated patient and one for the person running the demo, and a
/// clinician assigned to all of them.
async fn enroll(
    config: &VigilConfig,
    recording: &Recording,
    recording_path: &Path,
    directory: &SqlDeviceDirectory,
    store: &vigil_storage::Store,
) -> anyhow::Result<Enrolled> {
    let mut patients = Vec::new();
    for p in 0..config.demo.patients {
        let (patient_id, device_id) = patient_ids(p);
        let simulator = PatientSimulator::new(
            recording,
            &SimulatorConfig {
                repeat: (LOOP_S / recording.duration_s().max(1.0)).ceil() as usize,
                bursts: patient_bursts(p),
                ..SimulatorConfig::default()
            },
        )
        .with_context(|| format!("prepare {}", recording_path.display()))?;
        let token = directory
            .register(&NewDevice {
                device_id: device_id.clone(),
                patient_id: patient_id.clone(),
                sample_rate_hz: Some(simulator.rate_hz()),
                channels: Some(simulator.channels().to_vec()),
            })
            .await?;
        patients.push((
            patient_id,
            device_id,
            token.expose().to_owned(),
            Arc::new(simulator),
        ));
    }
    // A device for the person running the demo, so their own records do not disturb the
    // simulated patients' streams.
    let your_token = directory
        .register(&NewDevice {
            device_id: "your-headset".into(),
            patient_id: "your-patient".into(),
            sample_rate_hz: None,
            channels: None,
        })
        .await?;
    let password = vigil_storage::auth::new_password();
    let clinician = store
        .create_user(DEMO_USER, &password, vigil_storage::Role::Clinician)
        .await?;
    for (patient_id, ..) in &patients {
        store.assign(clinician.id, patient_id).await?;
    }
    store.assign(clinician.id, "your-patient").await?;
    let api_token = store.create_api_token(clinician.id).await?;
    Ok(Enrolled {
        patients,
        your_token: your_token.expose().to_owned(),
        password,
        api_token,
    })
}

/// Simulated devices run k x faster than real time, with simulated clocks: the gateway's
/// limits and clock correction are meant for real devices.
fn adapt_to_simulation(config: &mut VigilConfig) {
    if !config.bus.url.starts_with("memory://") {
        tracing::info!(url = %config.bus.url, "demo runs on the embedded bus; ignoring bus.url");
        config.bus.url = "memory://demo".into();
    }
    // Each simulated device sends one EEG frame per second of signal and one heart-rate
    // frame per two: at k x real time that is 1.5 k frames/s, above the per-device limit
    // meant for real-time devices once k > 13.
    let frames_per_s = 1.5 * config.demo.speed + 5.0;
    config.ingest.rate_limit_per_s = config.ingest.rate_limit_per_s.max(frames_per_s);
    config.ingest.rate_limit_burst = config
        .ingest
        .rate_limit_burst
        .max((2.0 * frames_per_s).ceil() as u32);
    // The simulated devices' times are simulation time (k x faster than the wall clock): keep
    // them, or the gateway's clock correction would squeeze the heart rate onto receipt times.
    config.ingest.correct_device_clock = false;
}

fn print_banner(
    config: &VigilConfig,
    at: &Addresses,
    recording: &Path,
    password: &str,
    api_token: &str,
    your_token: &str,
    model_id: &str,
) {
    // The first line is what scripts and tests look for.
    println!(
        "Vigil demo on http://{}  (device API; Ctrl-C to stop)",
        at.ingest
    );
    println!();
    println!("  Dashboard     http://{}/", at.dashboard);
    println!("                log in as {DEMO_USER} / {password}");
    println!(
        "  History API   http://{}/v1/patients  (Authorization: Bearer {api_token})",
        at.history
    );
    println!(
        "  Device API    http://{}  /v1/eeg /v1/hr /v1/stream /openapi.json; ops: /healthz /readyz /metrics",
        at.ingest
    );
    println!();
    println!(
        "Running: {} simulated patients replaying {} (real EEG) with synthetic seizure-like bursts and heart rate at {}x",
        config.demo.patients,
        recording
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        config.demo.speed
    );
    println!("  -> ingest -> inference (model {model_id}) -> storage (SQLite) + dashboard, on the in-process bus.");
    println!(
        "The model needs 300 s of signal, and a point is final 270 s later: the first probabilities appear after ~{:.0} s.",
        330.0 / config.demo.speed
    );
    println!("Send your own EEG chunk (device your-headset, patient your-patient):");
    println!(
        "  curl -X POST http://{}/v1/eeg -H 'Authorization: Bearer {your_token}' -H 'Content-Type: application/json' \\\n    -d '{{\"patient_id\":\"your-patient\",\"device_id\":\"your-headset\",\"stream_id\":\"{}\",\"seq\":0,\"start_ns\":{},\"sample_rate_hz\":256,\"channels\":[\"Cz\"],\"samples\":[[1.5,null,-2.0]]}}'",
        at.ingest,
        uuid::Uuid::new_v4(),
        vigil_core::time::now_ns()
    );
    println!("Synthetic bursts and heart rate demonstrate the pipeline; they say nothing about clinical performance.");
}

/// Starts each patient's EEG replay and heart-rate stream; they run until `shutdown`.
fn feed_patients(
    stream_url: String,
    patients: Vec<(String, String, String, Arc<PatientSimulator>)>,
    speed: f64,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let start_ns = vigil_core::time::now_ns();
    let replay_config = ReplayConfig {
        speed: Speed::Times(speed),
        ..ReplayConfig::new(stream_url.clone())
    };
    let mut tasks = Vec::new();
    for (p, (patient_id, device_id, token, simulator)) in patients.into_iter().enumerate() {
        let device = ReplayDevice {
            profile: DeviceProfile {
                loops: LOOPS,
                chunk_s: 1.0,
                ..DeviceProfile::new(patient_id.clone(), device_id.clone(), start_ns)
            },
            token: token.clone(),
        };
        let (config, stop) = (replay_config.clone(), shutdown.clone());
        let (bursts, loop_s) = (simulator.bursts().to_vec(), simulator.duration_s());
        tasks.push(tokio::spawn(async move {
            let summary = vigil_replay::replay(simulator, vec![device], &config, stop).await;
            for err in summary.errors {
                tracing::warn!(%err, "demo EEG replay");
            }
        }));
        let heart = HeartRateFeed {
            p,
            patient_id,
            device_id,
            bursts,
            loop_s,
            start_ns,
            speed,
        };
        let client = IngestClient::start(ClientConfig::new(stream_url.clone(), token));
        tasks.push(tokio::spawn(heart.run(client, shutdown.clone())));
    }
    tasks
}

/// Signal seconds per heart-rate batch.
const HR_BATCH_S: u64 = 2;

/// One patient's synthetic heart rate, sent every [`HR_BATCH_S`] seconds of signal.
struct HeartRateFeed {
    p: usize,
    patient_id: String,
    device_id: String,
    bursts: Vec<(f64, f64)>,
    loop_s: f64,
    start_ns: i64,
    speed: f64,
}

impl HeartRateFeed {
    async fn run(self, client: IngestClient, shutdown: CancellationToken) {
        let stream_id = uuid::Uuid::new_v4();
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(HR_BATCH_S as f64 / self.speed));
        tick.tick().await;
        let (mut last_beat_s, mut seq) = (0.0, 0u64);
        for n in 1u64.. {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let until_s = (n * HR_BATCH_S) as f64;
            let points: Vec<HrPoint> =
                beats(self.p, &self.bursts, self.loop_s, &mut last_beat_s, until_s)
                    .into_iter()
                    .map(|(t_s, bpm, rr_ms)| HrPoint {
                        t_ns: self.start_ns + (t_s * 1e9) as i64,
                        bpm,
                        rr_ms: Some(rr_ms),
                    })
                    .collect();
            if points.is_empty() {
                continue;
            }
            let batch = HrBatch {
                patient_id: self.patient_id.clone(),
                device_id: self.device_id.clone(),
                stream_id,
                seq,
                points,
                source: HrSource::ChestStrap,
            };
            if let Err(err) = client.send(&batch).await {
                tracing::warn!(%err, "demo heart-rate device could not send");
                break;
            }
            seq += 1;
        }
        if let Err(err) = client.close(Duration::from_secs(5)).await {
            tracing::warn!(%err, "demo heart-rate device closed with unacknowledged batches");
        }
    }
}

/// Prints each probability record (per patient, the span and the highest probability) and
/// each alert transition.
async fn print_outputs(bus: Bus, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (prob_topic, alert_topic) = (bus.topic(Topic::EegProb), bus.topic(Topic::Alerts));
    let mut consumer = bus
        .subscribe("vigil-demo-printer", &[prob_topic.clone(), alert_topic])
        .await?;
    let started = vigil_core::time::now_ns();
    let limits = DecodeLimits::default();
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            msg = consumer.recv() => msg?,
        };
        if msg.topic == prob_topic {
            // Provisional lower bounds go to screens; the log prints final values only.
            if codec::peek_kind(&msg.payload, &limits)? != RecordKind::ProvisionalProbability {
                let record: SeizureProbability = codec::decode(&msg.payload, &limits)?;
                println!("{}", probability_line(&record, started));
            }
        } else {
            let event: AlertEvent = codec::decode(&msg.payload, &limits)?;
            println!("{}", alert_line(&event));
        }
        consumer.ack(&msg)?;
    }
    consumer.close().await?;
    Ok(())
}

fn probability_line(record: &SeizureProbability, started_ns: i64) -> String {
    let evaluated: Vec<f32> = record
        .aggregate_p
        .iter()
        .copied()
        .filter(|p| !p.is_nan())
        .collect();
    let max = evaluated.iter().copied().fold(f32::NAN, f32::max);
    let from_s = (record.start_ns - started_ns) as f64 / 1e9;
    let to_s = from_s + record.aggregate_p.len() as f64 * record.step_ns as f64 / 1e9;
    let verdict = if evaluated.is_empty() {
        "not evaluated".to_owned()
    } else if max >= 0.8 {
        format!("max p = {max:.3}  << SEIZURE-LIKE ACTIVITY")
    } else {
        format!("max p = {max:.3}")
    };
    format!(
        "{:<16} signal {from_s:>7.1}-{to_s:>7.1} s  {:>3} points ({} not evaluated)  {verdict}",
        record.patient_id,
        record.aggregate_p.len(),
        record.aggregate_p.len() - evaluated.len(),
    )
}

fn alert_line(event: &AlertEvent) -> String {
    let marker = match event.transition {
        AlertTransition::Raised => "ALERT",
        AlertTransition::Escalated => "ALERT ESCALATED",
        AlertTransition::Acknowledged => "alert acknowledged",
        AlertTransition::Resolved => "alert resolved",
        AlertTransition::OnsetRefined => "alert onset refined",
    };
    let mut evidence = Vec::new();
    if let Some(p) = event.evidence.p {
        evidence.push(format!("p {p:.2}"));
    }
    if let Some(bpm) = event.evidence.bpm {
        evidence.push(format!("{bpm:.0} bpm"));
    }
    if let Some(rise) = event.evidence.hr_rise_bpm {
        evidence.push(format!("HR rise +{rise:.0} bpm"));
    }
    if let Some(by) = &event.by {
        evidence.push(format!("by {by}"));
    }
    format!(
        "{:<16} {marker}: {:?}  {}",
        event.patient_id,
        event.kind,
        evidence.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heart_rate_rises_with_each_burst_and_crosses_the_band_for_patient_one() {
        let bursts = patient_bursts(0);
        let (from, to) = bursts[0];
        let before = heart_rate_bpm(0, &bursts, from - 5.0);
        let during = heart_rate_bpm(0, &bursts, from + 20.0);
        let after = heart_rate_bpm(0, &bursts, to + 25.0);
        assert!((60.0..80.0).contains(&before), "{before}");
        assert!(
            during > 120.0,
            "past the default tachycardia band: {during}"
        );
        assert!(
            (after - before).abs() < 8.0,
            "back to rest: {after} vs {before}"
        );
        let quiet = patient_bursts(2);
        assert!(quiet.is_empty());
        assert!(heart_rate_bpm(2, &quiet, from + 20.0) < 90.0);
    }

    #[test]
    fn beats_are_contiguous_and_match_their_rate() {
        let bursts = patient_bursts(1);
        let mut last = 0.0;
        let mut all = Vec::new();
        for second in 1..=700 {
            all.extend(beats(1, &bursts, LOOP_S, &mut last, f64::from(second)));
        }
        assert!(
            all.windows(2).all(|w| w[1].0 > w[0].0),
            "strictly increasing"
        );
        for w in all.windows(2) {
            let rr_s = w[1].0 - w[0].0;
            assert!(
                (rr_s * 1000.0 - f64::from(w[1].2)).abs() < 1.0,
                "RR is the beat gap"
            );
        }
        // ~70 bpm over 700 s, plus the burst's rise.
        assert!((780..900).contains(&all.len()), "{}", all.len());
    }
}
