//! Component costs: one spectrogram column, one window's spectrogram from its raw samples
//! (599 columns, normalised), and one model run (whole graph, one 300 s window = 599 columns).
//!
//! Run: `cargo bench -p vigil-inference --bench components` (needs `vigil models fetch`).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use vigil_inference::model::SeizureModel;
use vigil_inference::spectrogram::{SpectrogramPlan, WindowSpectrogram};
use vigil_inference::synthetic::SyntheticChannel;

fn bench(c: &mut Criterion) {
    let fs = 256usize;
    let hop = fs / 2;
    let signal: Vec<f64> = SyntheticChannel {
        seed: 1,
        ..Default::default()
    }
    .generate(fs as f64, 300.0)
    .into_iter()
    .map(f64::from)
    .collect();
    let plan = SpectrogramPlan::new(fs);
    c.bench_function("spectrogram_column_256hz", |b| {
        b.iter(|| plan.column(&signal[..fs]))
    });

    let samples: Vec<f32> = signal.iter().map(|&x| x as f32).collect();
    let window = WindowSpectrogram {
        plan: &plan,
        samples: &samples,
        hop,
    };
    c.bench_function("window_spectrogram_599_columns", |b| {
        b.iter(|| window.normalised())
    });

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/modelA_paper.onnx");
    let model = SeizureModel::load(&path).expect("model (run `vigil models fetch`)");
    let input = window.normalised();
    model
        .predict(std::slice::from_ref(&input), 599)
        .expect("warm-up");
    let mut group = c.benchmark_group("model");
    group.sample_size(10);
    group.bench_function("whole_graph_one_300s_window", |b| {
        b.iter(|| {
            model
                .predict(std::slice::from_ref(&input), 599)
                .expect("predict")
        })
    });
    let batch: Vec<Vec<f32>> = vec![input.clone(); 8];
    model.predict(&batch, 599).expect("warm-up batch");
    group.bench_function("whole_graph_batch_of_8_windows", |b| {
        b.iter(|| model.predict(&batch, 599).expect("predict"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
