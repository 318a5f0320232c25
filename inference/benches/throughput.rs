//! End-to-end throughput of the streaming path on one hour of 256 Hz EEG, one thread, default
//! windows (300/20/10 s): channel-seconds processed per CPU-second, comparable with
//! `scripts/reference/run bench` (the Python reference on the same signal and machine).
//!
//! Run: `cargo bench -p vigil-inference --bench throughput [-- SECONDS] [native|tract]`
//! (needs the model). Prints one JSON line per engine (both unless one is named).

use std::path::PathBuf;
use std::time::Instant;

use vigil_inference::model::{ModelEngine, SeizureModel};
use vigil_inference::synthetic::SyntheticChannel;
use vigil_inference::windowing::{ChannelStream, WindowParams};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3600.0);
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
        run(seconds, engine);
    }
}

fn run(seconds: f64, engine: ModelEngine) {
    let fs = 256.0;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/modelA_paper.onnx");
    let model = SeizureModel::load_with(&path, engine).expect("model (run `vigil models fetch`)");
    assert_eq!(model.engine(), engine);
    let signal = SyntheticChannel {
        seed: 1,
        ..Default::default()
    }
    .generate(fs, seconds);
    // Warm-up: plan optimisation happens once per process, not per window.
    model.warm_up(1, 599).expect("warm-up");

    let (cpu0, wall0) = (vigil_core::testenv::process_cpu_seconds(), Instant::now());
    let mut stream = ChannelStream::new(fs, WindowParams::default()).expect("stream");
    let mut points = 0;
    // One-second chunks, as a device would send them.
    for chunk in signal.chunks(fs as usize) {
        points += stream.push(&model, chunk).expect("push").values.len();
    }
    points += stream.finish(&model).expect("finish").values.len();
    let (cpu, wall) = (
        vigil_core::testenv::process_cpu_seconds() - cpu0,
        wall0.elapsed().as_secs_f64(),
    );
    assert_eq!(points, (seconds * 2.0) as usize);
    println!(
        "{{\"impl\": \"vigil-{engine}\", \"signal_s\": {seconds}, \"cpu_s\": {cpu:.3}, \"wall_s\": {wall:.3}, \"channel_s_per_cpu_s\": {:.1}}}",
        seconds / cpu
    );
}
