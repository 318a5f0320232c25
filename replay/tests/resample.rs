//! The resampler against `scipy.signal.resample_poly` on real EEG segments (golden file from
//! `scripts/reference/run data`): 256 -> 200 Hz, 160 -> 200 Hz, 1000 -> 500 Hz.
//!
//! Tolerance: 1e-9 of the segment's peak amplitude. Both sides compute the same filter in
//! f64; what differs is summation order and the Bessel/sinc evaluation, worth ~1e-13.

use serde_json::Value;
use vigil_core::datasets;
use vigil_replay::edf::Recording;
use vigil_replay::resample::Resampler;

#[test]
fn matches_scipy_resample_poly_on_real_segments() {
    let golden: Value =
        serde_json::from_str(include_str!("golden/data_reference.json")).expect("golden");
    for case in golden["resample_poly"].as_array().expect("cases") {
        let file = case["file"].as_str().expect("file");
        let Some(path) = datasets::for_test(file) else {
            return;
        };
        let rec = Recording::open(path).expect("recording");
        let signal = &rec.signals[case["signal"].as_u64().expect("signal") as usize];
        let start = case["start"].as_u64().expect("start") as usize;
        let count = case["count"].as_u64().expect("count") as usize;
        let x = &signal.samples[start..start + count];
        let (up, down) = (
            case["up"].as_u64().expect("up") as f64,
            case["down"].as_u64().expect("down") as f64,
        );
        let from = signal.sample_rate_hz;
        let to = from * up / down;
        let r = Resampler::new(from, to).expect("resampler");
        let y = r.process(x);
        let want: Vec<f64> = case["output"]
            .as_array()
            .expect("output")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        assert_eq!(y.len(), want.len(), "{file}: {from} -> {to} Hz length");
        let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = y
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{file}: {from} -> {to} Hz, {} samples, max |diff| {worst:.3e} (peak {peak:.1})",
            y.len()
        );
        assert!(
            worst <= 1e-9 * peak,
            "{file}: max diff {worst} vs peak {peak}"
        );
    }
}
