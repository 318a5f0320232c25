//! Test feed for the browser test (`dashboard/e2e/`): a dashboard on the embedded bus with a
//! SQLite clinical store, a clinician and two assigned patients, and a stream of synthetic
//! probabilities, heart rate, EEG traces and qEEG trends; patient 1 gets a seizure alert after
//! 2 s (with provisional lower bounds ahead of its final probabilities), and has 30 min of stored trends and 5 min of stored EEG around the start.
//!
//! Prints `VIGIL_E2E_URL=<url>` once serving and `ACK <alert_id> <patient> by <user>` for
//! every acknowledgement that reaches `vigil.alerts`. Runs until stdin closes or SIGTERM.
//!
//! For the ward measurement (`dashboard/e2e/ward.measure.mjs`), `VIGIL_E2E_PATIENTS` sets how
//! many patients are assigned and fed (default 2) and `VIGIL_E2E_LIVE_S` how many seconds the
//! live feed runs after its minute of history (default 30).
//! Synthetic signals exercise the screen; they mean nothing clinically.
//!
//! `cargo run -p vigil-dashboard --example e2e_feed`

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use vigil_core::bus::{Bus, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::{BusConfig, DashboardConfig};
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, EegChunk, EegTrace, EegTrends, HrBatch,
    HrPoint, HrSource, ProvisionalProbability, SeizureProbability, SignalUnit,
};
use vigil_core::CancellationToken;
use vigil_dashboard::DashboardState;

// The record builders shared with the server tests.
#[path = "../tests/common/mod.rs"]
mod common;

/// `e2e-patient-1` ... `e2e-patient-N`, N from `VIGIL_E2E_PATIENTS` (default 2).
fn patients() -> Vec<String> {
    let n = env_number("VIGIL_E2E_PATIENTS", 2).max(1);
    (1..=n).map(|i| format!("e2e-patient-{i}")).collect()
}

fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const USERNAME: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const FS: f64 = 256.0;
const CHANNELS: [&str; 4] = ["Fp1-F7", "F7-T7", "C3-P3", "C4-P4"];

fn trace(patient_id: &str, second: i64, start_ns: i64) -> EegTrace {
    let n = FS as usize;
    let samples = CHANNELS
        .iter()
        .enumerate()
        .map(|(c, _)| {
            (0..n)
                .map(|i| {
                    let t = second as f64 + i as f64 / FS;
                    // Seconds 6..7 of every 20 are missing: the screen must show a gap.
                    if second % 20 == 6 {
                        return f32::NAN;
                    }
                    let alpha = 30.0 * (2.0 * std::f64::consts::PI * 10.0 * t + c as f64).sin();
                    let slow = 15.0 * (2.0 * std::f64::consts::PI * 1.3 * t).sin();
                    (alpha + slow) as f32
                })
                .collect()
        })
        .collect();
    EegTrace {
        patient_id: patient_id.to_owned(),
        stream_id: Uuid::nil(),
        start_ns,
        received_ns: vigil_core::time::now_ns(),
        sample_rate_hz: FS,
        channels: CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
        samples,
    }
}

/// The 2 s trend interval starting at `start_ns`: CSA falling with frequency and drifting
/// slowly, a left-sided rise every few minutes, 20-50 uV aEEG; interval 5 of every 60 is not
/// evaluated (NaN), as after a lead-off.
fn trends_at(patient_id: &str, start_ns: i64, index: i64) -> EegTrends {
    let mut t = common::trends(patient_id, 0, 0.0, (20.0, 50.0), (index % 30) as f32);
    t.start_ns = start_ns;
    let drift = ((index as f32) / 40.0).sin() * 4.0;
    let left_rise = if (index / 30) % 4 == 1 { 6.0 } else { 0.0 };
    for (r, row) in t.csa_db.iter_mut().enumerate() {
        for (b, v) in row.iter_mut().enumerate() {
            *v = 25.0 - 0.8 * b as f32 + drift + if r == 0 { left_rise } else { 0.0 };
        }
    }
    t.asymmetry_index = if left_rise > 0.0 { 0.4 } else { 0.02 };
    if index % 60 == 5 {
        t.csa_db = vec![vec![f32::NAN; t.csa_db[0].len()]; t.csa_db.len()];
        t.left.aeeg_min_uv = f32::NAN;
        t.left.aeeg_max_uv = f32::NAN;
    }
    t
}

/// Stored history for the trends panel and its click-through: 30 min of trend intervals and
/// raw EEG of patient 1 from 2 min before the feed starts to 3 min after.
async fn store_history(store: &vigil_storage::Store, patient: &str, t0: i64) -> anyhow::Result<()> {
    let trends = (0..900)
        .map(|i| trends_at(patient, t0 - (900 - i) * 2_000_000_000, i))
        .collect();
    let eeg = (0..300)
        .map(|second| {
            let start_ns = t0 + (second - 60) * 1_000_000_000;
            let t = trace(patient, second, start_ns);
            EegChunk {
                patient_id: t.patient_id,
                device_id: "headset-0".to_owned(),
                stream_id: Uuid::nil(),
                seq: second as u64,
                start_ns,
                received_ns: start_ns,
                sample_rate_hz: t.sample_rate_hz,
                channels: t.channels,
                unit: SignalUnit::Microvolt,
                samples: t.samples,
            }
        })
        .collect();
    store
        .write_batch(&vigil_storage::WriteBatch {
            trends,
            eeg,
            ..vigil_storage::WriteBatch::default()
        })
        .await?;
    Ok(())
}

fn probability_at(
    patient_id: &str,
    start_ns: i64,
    index: i64,
    seizing: bool,
) -> SeizureProbability {
    // Four 0.5 s points; every fifth record and seconds 20..28 are "not evaluated" (NaN).
    let p: Vec<f32> = (0..4)
        .map(|k| {
            if index % 5 == 3 || (10..14).contains(&index) {
                f32::NAN
            } else if seizing {
                0.9 + 0.02 * k as f32
            } else {
                0.05 + 0.01 * ((index + k) % 7) as f32
            }
        })
        .collect();
    common::probability(patient_id, start_ns, p)
}

/// The lower bound of the 20 s after `record`, as inference publishes it while windows that
/// cover a seizure have run but are not all in yet.
fn provisional_after(record: &SeizureProbability) -> ProvisionalProbability {
    let points = record.aggregate_p.len() as i64;
    ProvisionalProbability {
        patient_id: record.patient_id.clone(),
        start_ns: record.start_ns + points * record.step_ns,
        step_ns: record.step_ns,
        aggregate_p: vec![0.93; 40],
        model: record.model.clone(),
        emitted_ns: vigil_core::time::now_ns(),
    }
}

async fn feed(
    bus: Bus,
    patients: &[String],
    t0: i64,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A minute of history first so the charts have a past, then live every second.
    let live_s = env_number("VIGIL_E2E_LIVE_S", 30);
    for second in 0..60 + live_s {
        if second >= 60 {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let start_ns = t0 + second * 1_000_000_000;
        for (k, patient) in patients.iter().enumerate() {
            let batch = HrBatch {
                patient_id: (*patient).to_owned(),
                device_id: format!("strap-{k}"),
                stream_id: Uuid::nil(),
                seq: second as u64,
                points: vec![HrPoint {
                    t_ns: start_ns,
                    bpm: 70.0 + 8.0 * (k % 10) as f32 + (second % 9) as f32,
                    rr_ms: None,
                }],
                source: HrSource::ChestStrap,
            };
            bus.publish_record(Topic::HrRaw, patient, &batch).await?;
            if second % 2 == 0 {
                let seizing = k == 0 && second >= 62;
                let record = probability_at(patient, start_ns, second / 2, seizing);
                bus.publish_record(Topic::EegProb, patient, &record).await?;
                if seizing {
                    bus.publish_record(Topic::EegProb, patient, &provisional_after(&record))
                        .await?;
                }
            }
            if second >= 50 {
                bus.publish_record(Topic::EegTrace, patient, &trace(patient, second, start_ns))
                    .await?;
            }
            if second >= 50 && second % 2 == 0 {
                let interval = trends_at(patient, start_ns, 900 + second / 2);
                bus.publish_record(Topic::EegTrends, patient, &interval)
                    .await?;
            }
        }
        if second == 62 {
            let event = AlertEvent {
                alert_id: Uuid::new_v4(),
                patient_id: patients[0].clone(),
                kind: AlertKind::Seizure,
                transition: AlertTransition::Raised,
                onset_ns: start_ns - 10_000_000_000,
                at_ns: vigil_core::time::now_ns(),
                by: None,
                evidence: AlertEvidence {
                    p: Some(0.92),
                    ..AlertEvidence::default()
                },
            };
            bus.publish_record(Topic::Alerts, &patients[0], &event)
                .await?;
            println!("RAISED {} {}", event.alert_id, patients[0]);
        }
    }
    shutdown.cancelled().await;
    Ok(())
}

async fn report_acks(bus: Bus, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut consumer = bus
        .subscribe("e2e-ack-watch", &[bus.topic(Topic::Alerts)])
        .await?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = consumer.recv() => msg?,
        };
        let event: AlertEvent = codec::decode(&msg.payload, &DecodeLimits::default())?;
        if event.transition == AlertTransition::Acknowledged {
            println!(
                "ACK {} {} by {}",
                event.alert_id,
                event.patient_id,
                event.by.unwrap_or_default()
            );
            std::io::stdout().flush()?;
        }
        consumer.ack(&msg)?;
    }
    consumer.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vigil_core::telemetry::init(&vigil_core::config::TelemetryConfig::default());
    let bus = Bus::connect(&BusConfig {
        url: "memory://e2e".to_owned(),
        ..BusConfig::default()
    })
    .await?;
    bus.create_vigil_topics().await?;
    // A throwaway SQLite clinical database, migrated by the store; argon2 login.
    let scratch = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("vigil.db").display()
    );
    let store = vigil_storage::Store::connect(&url).await?;
    let user = store
        .create_user(USERNAME, PASSWORD, vigil_storage::Role::Clinician)
        .await?;
    let patients = patients();
    for patient in &patients {
        store.assign(user.id, patient).await?;
    }
    let t0 = vigil_core::time::now_ns() - 60_000_000_000;
    store_history(&store, &patients[0], t0).await?;
    let store = Arc::new(store);
    let config = DashboardConfig {
        listen: "127.0.0.1:0".parse()?,
        history_window_s: 120.0,
        ..DashboardConfig::default()
    };
    let state = DashboardState::new(bus.clone(), store, &config);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let shutdown = vigil_core::shutdown::on_signals();
    let running = vigil_dashboard::start(state, listener, shutdown.clone()).await?;
    println!("VIGIL_E2E_URL=http://{}", running.addr);
    std::io::stdout().flush()?;
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // The test driver closes our stdin when it is done (or dies).
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
            })
            .await;
            shutdown.cancel();
        });
    }
    let acks = tokio::spawn(report_acks(bus.clone(), shutdown.clone()));
    feed(bus, &patients, t0, shutdown.clone()).await?;
    acks.await??;
    running.wait().await?;
    Ok(())
}
