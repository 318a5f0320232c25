//! Per-piece costs of the model on one 300 s window (599 columns): the native runtime's conv1,
//! conv2 and LSTM stack, and the whole graph on both engines at batch 1, at the stage's batch
//! (`inference.batch_windows`) and at 23 (one window of every channel).
//!
//! Run: `cargo bench -p vigil-inference --bench pieces` (needs `vigil models fetch`); pin to a
//! core with `taskset -c 1` for stable figures. Batched groups report time per call of all
//! its windows (criterion's throughput line gives windows/s).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_core::config::InferenceConfig;
use vigil_inference::model::{ModelEngine, SeizureModel};
use vigil_inference::runtime::NativeModel;
use vigil_inference::spectrogram::{SpectrogramPlan, WindowSpectrogram};
use vigil_inference::synthetic::SyntheticChannel;

const COLS: usize = 599;

fn window() -> Vec<f32> {
    let fs = 256usize;
    let signal = SyntheticChannel {
        seed: 1,
        burst: Some((100.0, 130.0)),
        ..Default::default()
    }
    .generate(fs as f64, 300.0);
    WindowSpectrogram {
        plan: &SpectrogramPlan::new(fs),
        samples: &signal,
        hop: fs / 2,
    }
    .normalised()
}

fn bench(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/modelA_paper.onnx");
    let native = NativeModel::load(&path).expect("model (run `vigil models fetch`)");
    let input = window();

    let mut group = c.benchmark_group("native_piece");
    group.sample_size(20);
    group.bench_function("conv1_one_window", |b| {
        b.iter(|| native.run_conv1(&input, COLS))
    });
    native.run_conv1(&input, COLS);
    group.bench_function("conv2_one_window", |b| b.iter(|| native.run_conv2(COLS)));
    for batch in [1, 23] {
        native.run_lstm(batch, COLS);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("lstm_batch_{batch}"), |b| {
            b.iter(|| native.run_lstm(batch, COLS))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("whole_window");
    group.sample_size(10);
    let stage_batch = InferenceConfig::default().batch_windows;
    for engine in [ModelEngine::Native, ModelEngine::Tract] {
        let model = SeizureModel::load_with(&path, engine).expect("model");
        for batch in [1, stage_batch, 23] {
            let windows = vec![input.clone(); batch];
            model.predict(&windows, COLS).expect("warm-up");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{engine}_batch_{batch}"), |b| {
                b.iter(|| model.predict(&windows, COLS).expect("predict"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
