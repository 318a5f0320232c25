//! `replay()` of the real `edfjs/sample.edf` (5 channels, 256 Hz, 100 s: a rate the model
//! accepts, so no resampling) through a real ingest gateway (`vigil_ingest::app` on port 0,
//! WebSocket, SQLite device directory) onto the bus: the EegChunks consumed from
//! `vigil.eeg.raw` carry exactly the file's samples (as f32 microvolts), in order, none lost
//! or duplicated.
//!
//! Runs on `memory://` and on a real Kafka-protocol broker (`VIGIL_TEST_KAFKA=host:port`,
//! tansu in CI; skipped locally without it, failing under CI). Needs `scripts/fetch-data`.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use vigil_core::bus::{Bus, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::{BusConfig, IngestConfig};
use vigil_core::datasets;
use vigil_core::record::EegChunk;
use vigil_core::CancellationToken;
use vigil_ingest::{app, DeviceDirectory, IngestState, NewDevice, SqlDeviceDirectory};
use vigil_replay::{
    replay, DeviceProfile, PatientSimulator, Recording, ReplayConfig, ReplayDevice,
    SimulatorConfig, Speed,
};

async fn replay_sample_edf_exactly(bus_config: BusConfig) {
    let Some(path) = datasets::for_test("edfjs/sample.edf") else {
        return;
    };
    let recording = Recording::open(path).expect("sample.edf");
    let sim =
        Arc::new(PatientSimulator::new(&recording, &SimulatorConfig::default()).expect("sim"));
    assert_eq!(sim.rate_hz(), 256.0, "no resampling on this path");

    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("devices.db").display()
    );
    let directory = SqlDeviceDirectory::connect(&db).await.expect("directory");
    let token = directory
        .register(&NewDevice {
            device_id: "replay-dev".into(),
            patient_id: "replay-pat".into(),
            sample_rate_hz: Some(256.0),
            channels: Some(sim.channels().to_vec()),
        })
        .await
        .expect("register")
        .expose()
        .to_owned();
    let bus = Bus::connect(&bus_config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let mut consumer = bus
        .subscribe("replay-test", &[bus.topic(Topic::EegRaw)])
        .await
        .expect("subscribe");
    let config = IngestConfig {
        rate_limit_per_s: 10_000.0,
        rate_limit_burst: 10_000,
        ..IngestConfig::default()
    };
    let state = IngestState::new(
        bus.clone(),
        Arc::new(directory),
        &config,
        Duration::from_millis(bus_config.publish_timeout_ms),
    );
    state.probe_bus().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app(state))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    let profile = DeviceProfile {
        chunk_s: 0.25,
        ..DeviceProfile::new("replay-pat", "replay-dev", vigil_core::time::now_ns())
    };
    let stream_id = profile.stream_id;
    let replay_config = ReplayConfig {
        speed: Speed::Max,
        ..ReplayConfig::new(format!("ws://{addr}/v1/stream"))
    };
    let summary = replay(
        sim.clone(),
        vec![ReplayDevice { profile, token }],
        &replay_config,
        CancellationToken::new(),
    )
    .await;
    eprintln!("{}", summary.line());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.chunks_sent, 400, "100 s in 0.25 s chunks");
    assert_eq!(
        (
            summary.accepted,
            summary.duplicates,
            summary.rejected,
            summary.lost
        ),
        (400, 0, 0, 0)
    );
    assert_eq!(summary.samples_sent, 5 * 25_600);

    // Consume everything the gateway produced and rebuild the channels.
    let mut seqs = Vec::new();
    let mut rebuilt: Vec<Vec<f32>> = vec![Vec::new(); 5];
    while seqs.len() < 400 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("record within 30 s")
            .expect("recv");
        let chunk: EegChunk =
            codec::decode(&msg.payload, &DecodeLimits::default()).expect("decode");
        assert_eq!(chunk.stream_id, stream_id);
        assert_eq!(chunk.channels, sim.channels());
        seqs.push(chunk.seq);
        for (row, samples) in rebuilt.iter_mut().zip(&chunk.samples) {
            row.extend_from_slice(samples);
        }
        consumer.ack(&msg).expect("ack");
    }
    // Nothing more arrives: no duplicate was produced.
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(extra.is_err(), "an extra record arrived: {extra:?}");
    assert_eq!(seqs, (0..400).collect::<Vec<u64>>(), "in order, gapless");
    for (c, row) in rebuilt.iter().enumerate() {
        let file: Vec<f32> = recording.signals[c]
            .samples
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_eq!(row.len(), file.len());
        let first_diff = row
            .iter()
            .zip(&file)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first_diff, None, "channel {c} differs from the file");
    }
    consumer.close().await.expect("close");
    stop.cancel();
    server.await.expect("server task").expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_through_the_gateway_on_memory_bus() {
    replay_sample_edf_exactly(BusConfig {
        url: format!("memory://replay-{}", Uuid::new_v4().simple()),
        partitions: 3,
        ..BusConfig::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_through_the_gateway_on_kafka() {
    let Some(config) = vigil_core::testenv::kafka_bus(3) else {
        return;
    };
    replay_sample_edf_exactly(config).await;
}
