//! Shared test fixtures: a gateway on the in-process bus with a SQLite device directory.
#![allow(dead_code)]

pub mod http;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tempfile::TempDir;
use uuid::Uuid;
use vigil_core::bus::{Bus, BusConsumer, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::{BusConfig, IngestConfig};
use vigil_core::record::{EegChunk, HrBatch, HrPoint, HrSource, SignalUnit};
use vigil_ingest::{app, DeviceDirectory, IngestState, NewDevice, SqlDeviceDirectory};

pub const PATIENT: &str = "pat-1";
pub const DEVICE: &str = "dev-1";
pub const CHANNELS: [&str; 2] = ["Fp1-F7", "F7-T7"];
pub const RATE: f64 = 256.0;

pub struct Harness {
    pub state: IngestState,
    pub router: Router,
    pub token: String,
    pub bus: Bus,
    pub directory: Arc<SqlDeviceDirectory>,
    _dir: TempDir,
}

pub fn test_ingest_config() -> IngestConfig {
    IngestConfig {
        rate_limit_per_s: 1000.0,
        rate_limit_burst: 1000,
        ..IngestConfig::default()
    }
}

/// A gateway over `bus_config`'s bus (topics created when `create_topics`), a fresh SQLite
/// directory with device `dev-1` of patient `pat-1` registered at 256 Hz, 2 channels.
pub async fn harness_with(
    bus_config: BusConfig,
    create_topics: bool,
    config: IngestConfig,
) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("devices.db").display()
    );
    let directory = Arc::new(SqlDeviceDirectory::connect(&url).await.expect("directory"));
    let token = directory
        .register(&NewDevice {
            device_id: DEVICE.into(),
            patient_id: PATIENT.into(),
            sample_rate_hz: Some(RATE),
            channels: Some(CHANNELS.iter().map(|c| (*c).to_owned()).collect()),
        })
        .await
        .expect("register")
        .expose()
        .to_owned();
    let bus = Bus::connect(&bus_config).await.expect("bus");
    if create_topics {
        bus.create_vigil_topics().await.expect("topics");
    }
    let state = IngestState::new(
        bus.clone(),
        directory.clone(),
        &config,
        Duration::from_millis(bus_config.publish_timeout_ms),
    );
    Harness {
        router: app(state.clone()),
        state,
        token,
        bus,
        directory,
        _dir: dir,
    }
}

pub async fn harness() -> Harness {
    harness_with(memory_bus(), true, test_ingest_config()).await
}

/// The default harness with a received-seq window of `seq_window`.
pub async fn harness_with_seq_window(seq_window: usize) -> Harness {
    let config = IngestConfig {
        seq_window,
        ..test_ingest_config()
    };
    harness_with(memory_bus(), true, config).await
}

pub fn memory_bus() -> BusConfig {
    BusConfig {
        url: format!("memory://{}", Uuid::new_v4()),
        publish_timeout_ms: 5_000,
        ..BusConfig::default()
    }
}

pub fn now_ns() -> i64 {
    vigil_core::time::now_ns()
}

/// A 1 s, 2-channel, 256 Hz chunk whose device clock reads `start_ns`.
pub fn chunk_at(stream_id: Uuid, seq: u64, start_ns: i64) -> EegChunk {
    let n = 256;
    EegChunk {
        patient_id: PATIENT.into(),
        device_id: DEVICE.into(),
        stream_id,
        seq,
        start_ns,
        received_ns: 0,
        sample_rate_hz: RATE,
        channels: CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
        unit: SignalUnit::Microvolt,
        samples: (0..2)
            .map(|c| {
                (0..n)
                    .map(|i| ((i + c * 7) as f32 * 0.1).sin() * 50.0)
                    .collect()
            })
            .collect(),
    }
}

pub fn chunk(stream_id: Uuid, seq: u64) -> EegChunk {
    chunk_at(stream_id, seq, now_ns() - 1_000_000_000)
}

pub fn hr_batch(stream_id: Uuid, seq: u64) -> HrBatch {
    let t0 = now_ns() - 2_000_000_000;
    HrBatch {
        patient_id: PATIENT.into(),
        device_id: DEVICE.into(),
        stream_id,
        seq,
        points: vec![
            HrPoint {
                t_ns: t0,
                bpm: 72.0,
                rr_ms: Some(830.0),
            },
            HrPoint {
                t_ns: t0 + 830_000_000,
                bpm: 73.0,
                rr_ms: None,
            },
        ],
        source: HrSource::ChestStrap,
    }
}

/// Every EEG chunk on the topic until it stays quiet for `quiet`.
pub async fn drain_eeg(consumer: &mut Box<dyn BusConsumer>, quiet: Duration) -> Vec<EegChunk> {
    let mut out = Vec::new();
    while let Ok(msg) = tokio::time::timeout(quiet, consumer.recv()).await {
        let msg = msg.expect("recv");
        let chunk: EegChunk =
            codec::decode(&msg.payload, &DecodeLimits::default()).expect("valid record on topic");
        assert_eq!(msg.key, chunk.patient_id.as_bytes(), "keyed by patient");
        consumer.ack(&msg).expect("ack");
        out.push(chunk);
    }
    out
}

/// The seqs of [`drain_eeg`], in topic order.
pub async fn drain_eeg_seqs(consumer: &mut Box<dyn BusConsumer>, quiet: Duration) -> Vec<u64> {
    drain_eeg(consumer, quiet)
        .await
        .iter()
        .map(|c| c.seq)
        .collect()
}

pub async fn eeg_consumer(bus: &Bus) -> Box<dyn BusConsumer> {
    bus.subscribe(
        &format!("g-{}", Uuid::new_v4().simple()),
        &[bus.topic(Topic::EegRaw)],
    )
    .await
    .expect("subscribe")
}
