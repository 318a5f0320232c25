//! Codec throughput: encode and decode+validate of a realistic EEG chunk (23 channels x 1 s
//! at 256 Hz, the design's load unit) in the binary codec and in JSON.
//!
//! Run: `cargo bench -p vigil-core --bench codec`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use uuid::Uuid;
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{EegChunk, SignalUnit};

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
                    .map(|i| ((i * 7 + c * 13) % 200) as f32 - 100.0)
                    .collect()
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let chunk = chunk();
    let samples = (chunk.channels.len() * chunk.samples_per_channel()) as u64;
    let limits = DecodeLimits::default();
    let binary = codec::encode(&chunk).expect("encode");
    let json = codec::to_json(&chunk).expect("json");

    let mut group = c.benchmark_group("eeg_chunk_23ch_256");
    group.throughput(Throughput::Elements(samples));
    group.bench_function("binary_encode", |b| {
        b.iter(|| codec::encode(&chunk).expect("encode"))
    });
    group.bench_function("binary_decode_validate", |b| {
        b.iter(|| codec::decode::<EegChunk>(&binary, &limits).expect("decode"))
    });
    group.bench_function("json_encode", |b| {
        b.iter(|| codec::to_json(&chunk).expect("json"))
    });
    group.bench_function("json_decode_validate", |b| {
        b.iter_batched(
            || json.clone(),
            |j| codec::from_json::<EegChunk>(&j, &limits).expect("decode"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
