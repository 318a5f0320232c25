//! The gateway's per-record CPU cost: decode + validate (the ingest entry point,
//! `WireFormat::decode`), the registration check, and the binary encode of what is produced,
//! for a 23-channel, 1 s, 256 Hz EEG chunk arriving as JSON or in the binary codec.
//!
//! Run: `cargo bench -p vigil-ingest --bench decode_validate`
//! Criterion's `thrpt` is in samples/s (elements = channel samples); a plain samples/s line
//! per codec is printed first.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uuid::Uuid;
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{EegChunk, SignalUnit};
use vigil_ingest::pipeline::IngestRecord;
use vigil_ingest::{RegisteredDevice, WireFormat};

fn chunk() -> EegChunk {
    let channels = 23;
    let n = 256;
    EegChunk {
        patient_id: "patient-001".into(),
        device_id: "headset-a".into(),
        stream_id: Uuid::from_u128(1),
        seq: 1,
        start_ns: 1_700_000_000_000_000_000,
        received_ns: 0,
        sample_rate_hz: 256.0,
        channels: (0..channels).map(|i| format!("CH{i:02}")).collect(),
        unit: SignalUnit::Microvolt,
        samples: (0..channels)
            .map(|c| {
                (0..n)
                    .map(|i| (i as f32 * 0.37 + c as f32).sin() * 120.0)
                    .collect()
            })
            .collect(),
    }
}

fn gateway_path(
    format: WireFormat,
    body: &[u8],
    limits: &DecodeLimits,
    device: &RegisteredDevice,
) -> Vec<u8> {
    let mut record: EegChunk = format.decode(body, limits).expect("decode");
    record.check_registration(device).expect("registered");
    record.apply_clock(1_000, 1_700_000_001_000_000_000);
    codec::encode(&record).expect("encode")
}

fn bench(c: &mut Criterion) {
    let chunk = chunk();
    let samples = (chunk.channels.len() * chunk.samples_per_channel()) as u64;
    let limits = DecodeLimits::default();
    let device = RegisteredDevice {
        device_id: chunk.device_id.clone(),
        patient_id: chunk.patient_id.clone(),
        sample_rate_hz: Some(256.0),
        channels: Some(chunk.channels.clone()),
    };
    let bodies = [
        (
            "binary",
            WireFormat::Binary,
            codec::encode(&chunk).expect("encode"),
        ),
        (
            "json",
            WireFormat::Json,
            codec::to_json(&chunk).expect("json"),
        ),
    ];

    for (name, format, body) in &bodies {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_secs(1) {
            black_box(gateway_path(*format, body, &limits, &device));
            n += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {} bytes/chunk, {:.0} chunks/s, {:.2e} samples/s (decode+validate+encode, 1 thread)",
            body.len(),
            n as f64 / secs,
            (n * samples) as f64 / secs
        );
    }

    let mut group = c.benchmark_group("ingest_eeg_23ch_256hz_1s");
    group.throughput(Throughput::Elements(samples));
    for (name, format, body) in &bodies {
        group.bench_function(format!("{name}_decode_validate_encode"), |b| {
            b.iter(|| gateway_path(*format, black_box(body), &limits, &device))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
