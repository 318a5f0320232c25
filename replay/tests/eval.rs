//! `eval` with the real model on a real recording: `edfjs/sample.edf` (5 bipolar channels,
//! 256 Hz, 100 s of real background EEG) played 4 times end to end (400 s, enough for the
//! model's 300 s windows) with a synthetic seizure-like burst injected at 200-230 s.
//!
//! Asserted: the burst is detected (TP = 1) and the alarm comes after its onset, within the
//! policy's 10 s on-duration plus a few seconds; no false alarm on the real background; the
//! trace equals the streaming path's (same samples fed in chunks). Needs `vigil models
//! fetch` and `scripts/fetch-data`.

use vigil_core::datasets;
use vigil_inference::alerts::AlertPolicy;
use vigil_inference::model::SeizureModel;
use vigil_inference::windowing::{fmax, ChannelStream, WindowParams};
use vigil_replay::eval::{evaluate, EvalSettings};
use vigil_replay::scoring::ScoringParams;
use vigil_replay::{PatientSimulator, Recording, SimulatorConfig};

fn model() -> Option<SeizureModel> {
    let path = vigil_core::testenv::model_weights()?;
    Some(SeizureModel::load(&path).expect("load model"))
}

#[test]
fn burst_in_real_background_is_detected_and_scored() {
    let Some(path) = datasets::for_test("edfjs/sample.edf") else {
        return;
    };
    let Some(model) = model() else {
        return;
    };
    let recording = Recording::open(path).expect("sample.edf");
    let sim = PatientSimulator::new(
        &recording,
        &SimulatorConfig {
            repeat: 4,
            bursts: vec![(200.0, 230.0)],
            ..SimulatorConfig::default()
        },
    )
    .expect("sim");
    let settings = EvalSettings {
        windows: WindowParams::default(),
        policy: AlertPolicy::default(),
        scoring: ScoringParams::default(),
    };
    let result = evaluate(&model, "sample.edf", &sim, &[], &settings).expect("evaluate");
    eprintln!(
        "detections {:?}, score {:?}, evaluated {:.2}",
        result.detections, result.score, result.evaluated_fraction
    );
    assert_eq!(result.aggregate_p.len(), 800, "one point per 0.5 s");
    assert!(result.evaluated_fraction > 0.9);
    let peak_in_burst = result.aggregate_p[400..460]
        .iter()
        .copied()
        .fold(f32::NAN, fmax);
    assert!(peak_in_burst > 0.8, "burst peak p {peak_in_burst}");
    assert_eq!(result.score.reference_events, 1);
    assert_eq!(result.score.true_positives, 1, "burst detected");
    let latency = result.score.latencies_s[0];
    assert!(
        (10.0..=20.0).contains(&latency),
        "alarm {latency} s after the burst onset"
    );
    assert_eq!(
        result.score.false_positives, 0,
        "false alarm on real background"
    );
    assert_eq!(
        (
            result.score.sensitivity(),
            result.score.precision(),
            result.score.f1()
        ),
        (1.0, 1.0, 1.0)
    );

    // The offline trace is the streaming stage's: feed the same samples in 0.25 s chunks.
    let mut streamed: Vec<Vec<f32>> = Vec::new();
    for channel in sim.samples() {
        let mut stream = ChannelStream::new(sim.rate_hz(), settings.windows).expect("stream");
        let mut out = Vec::new();
        for chunk in channel.chunks(64) {
            out.extend(stream.push(&model, chunk).expect("push").values);
        }
        out.extend(stream.finish(&model).expect("finish").values);
        streamed.push(out);
    }
    let aggregate: Vec<f32> = (0..streamed[0].len())
        .map(|k| streamed.iter().map(|c| c[k]).fold(f32::NAN, fmax))
        .collect();
    assert_eq!(aggregate.len(), result.aggregate_p.len());
    for (a, b) in aggregate.iter().zip(&result.aggregate_p) {
        assert!(
            a.to_bits() == b.to_bits() || (a - b).abs() < 1e-6,
            "{a} vs {b}"
        );
    }
}
