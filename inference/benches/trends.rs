//! Cost of the qEEG trends (docs/TRENDS.md): 60 s of 256 Hz EEG through a `TrendEngine` in
//! 1 s chunks, for a 16-channel bipolar double banana and a 21-channel referential 10-20 set
//! (re-referenced to the same 16 derivations).
//!
//! Run: `cargo bench --workspace --bench trends`; pin to a core with `taskset -c 1` for stable
//! figures. Divide the time per iteration by channels x 60 s for CPU time per channel-second.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_inference::synthetic::SyntheticChannel;
use vigil_inference::trends::{TrendEngine, TrendParams};

const FS: usize = 256;
const SECONDS: usize = 60;

fn bench_montage(c: &mut Criterion, name: &str, labels: &[&str]) {
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    let rows: Vec<Vec<f32>> = (0..labels.len())
        .map(|i| {
            SyntheticChannel {
                seed: i as u64 + 1,
                ..Default::default()
            }
            .generate(FS as f64, SECONDS as f64)
        })
        .collect();
    let mut group = c.benchmark_group("trends");
    group.throughput(Throughput::Elements((labels.len() * SECONDS) as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut engine = TrendEngine::new(&labels, FS as f64, 0, TrendParams::default(), None)
                .expect("engine");
            let mut out = Vec::with_capacity(SECONDS / 2);
            for s in 0..SECONDS {
                let chunk: Vec<&[f32]> = rows.iter().map(|r| &r[s * FS..(s + 1) * FS]).collect();
                engine.push(&chunk, &mut out).expect("push");
            }
            out
        })
    });
    group.finish();
}

fn trends(c: &mut Criterion) {
    bench_montage(
        c,
        "double_banana_16ch_60s",
        &[
            "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
            "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
        ],
    );
    bench_montage(
        c,
        "referential_21ch_60s",
        &[
            "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3",
            "Pz", "P4", "P8", "O1", "O2", "A1", "A2",
        ],
    );
}

criterion_group!(benches, trends);
criterion_main!(benches);
