//! End-to-end throughput of the streaming path on one hour of 256 Hz EEG, one thread, default
//! windows (300/20/10 s): channel-seconds processed per CPU-second, comparable with
//! `scripts/reference/run bench` (the Python reference on the same signal and machine).
//!
//! Run: `cargo bench -p vigil-inference --bench throughput [-- SECONDS] [native|tract]
//! [--channels N --batch B]` (needs the model). Prints one JSON line per engine (both unless
//! one is named).
//!
//! By default one channel streams and every window is its own model call (batch 1). With
//! `--channels N --batch B`, N channels (distinct signals) stream side by side and their
//! ready windows run B per model call, as `vigil infer`'s shards do with
//! `inference.batch_windows = B`.

use std::path::PathBuf;
use std::time::Instant;

use vigil_inference::model::{ModelEngine, SeizureModel};
use vigil_inference::synthetic::SyntheticChannel;
use vigil_inference::windowing::{push_all, ChannelStream, WindowParams};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a count after the flag"))
    };
    let channels = flag("--channels").unwrap_or(1);
    let batch = flag("--batch").unwrap_or(1);
    let seconds: f64 = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !args[i - 1].starts_with("--"))
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(3600.0);
    let named: Vec<ModelEngine> = args
        .iter()
        .filter_map(|a| match a.as_str() {
            "native" => Some(ModelEngine::Native),
            "tract" => Some(ModelEngine::Tract),
            _ => None,
        })
        .collect();
    let engines = if named.is_empty() {
        vec![ModelEngine::Native, ModelEngine::Tract]
    } else {
        named
    };
    for engine in engines {
        run(seconds, engine, channels, batch);
    }
}

fn run(seconds: f64, engine: ModelEngine, channels: usize, batch: usize) {
    let fs = 256.0;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/modelA_paper.onnx");
    let model = SeizureModel::load_with(&path, engine).expect("model (run `vigil models fetch`)");
    assert_eq!(model.engine(), engine);
    let signals: Vec<Vec<f32>> = (1..=channels as u64)
        .map(|seed| {
            SyntheticChannel {
                seed,
                ..Default::default()
            }
            .generate(fs, seconds)
        })
        .collect();
    // Warm-up: plan optimisation happens once per process, not per window.
    model.warm_up(batch, 599).expect("warm-up");

    let (cpu0, wall0) = (vigil_core::testenv::process_cpu_seconds(), Instant::now());
    let mut streams: Vec<ChannelStream> = (0..channels)
        .map(|_| ChannelStream::new(fs, WindowParams::default()).expect("stream"))
        .collect();
    let mut points = 0;
    // One-second chunks, as a device would send them.
    let step = fs as usize;
    for at in (0..signals[0].len()).step_by(step) {
        let chunks: Vec<&[f32]> = signals
            .iter()
            .map(|x| &x[at..(at + step).min(x.len())])
            .collect();
        points += push_all(&model, &mut streams, &chunks, batch)
            .expect("push")
            .iter()
            .map(|p| p.values.len())
            .sum::<usize>();
    }
    for stream in &mut streams {
        points += stream.finish(&model).expect("finish").values.len();
    }
    let (cpu, wall) = (
        vigil_core::testenv::process_cpu_seconds() - cpu0,
        wall0.elapsed().as_secs_f64(),
    );
    assert_eq!(points, (seconds * 2.0) as usize * channels);
    let channel_s = seconds * channels as f64;
    println!(
        "{{\"impl\": \"vigil-{engine}\", \"channels\": {channels}, \"batch\": {batch}, \"signal_s\": {seconds}, \"cpu_s\": {cpu:.3}, \"wall_s\": {wall:.3}, \"channel_s_per_cpu_s\": {:.1}}}",
        channel_s / cpu
    );
}
