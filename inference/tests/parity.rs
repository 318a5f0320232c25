//! Parity with the Python reference (`brainmaze-eeg-models==0.1.0`): the streaming Rust path
//! must reproduce `predict_channel_seizure_probability` to 1e-4 with identical NaN masks, fed
//! whole and in chunks of varied sizes. Golden outputs: `tests/golden/reference.json`, made by
//! `scripts/reference/run` on the synthetic signals regenerated here bit-for-bit.
//!
//! Needs the model weights (`vigil models fetch`; scripts/test does it).

use std::path::PathBuf;

use serde_json::Value;
use vigil_inference::model::SeizureModel;
use vigil_inference::spectrogram::{tukey_periodic, SpectrogramPlan, WindowSpectrogram, N_BINS};
use vigil_inference::synthetic::SyntheticChannel;
use vigil_inference::windowing::{predict_channel, push_all, ChannelStream, WindowParams};

const TOLERANCE: f32 = 1e-4;

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("json")
}

fn model() -> Option<SeizureModel> {
    let path = vigil_core::testenv::model_weights()?;
    Some(SeizureModel::load(&path).expect("load model"))
}

fn pair(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    Some((a[0].as_f64()?, a[1].as_f64()?))
}

/// `synthetic_channel` of make_goldens.py for a golden case's channel spec.
fn synthetic_channel(fs: f64, seconds: f64, spec: &Value) -> Vec<f32> {
    SyntheticChannel {
        seed: spec["seed"].as_u64().expect("seed"),
        burst: pair(&spec["burst"]),
        gap: pair(&spec["gap"]),
        flat: pair(&spec["flat"]),
    }
    .generate(fs, seconds)
}

/// A golden case's sampling rate, length in seconds and windows.
fn case_geometry(case: &Value) -> (f64, f64, WindowParams) {
    let params = WindowParams {
        window_s: case["window_s"].as_f64().expect("window"),
        step_s: case["step_s"].as_f64().expect("step"),
        discard_edges_s: case["discard_edges_s"].as_f64().expect("edges"),
    };
    (
        case["fs"].as_f64().expect("fs"),
        case["seconds"].as_f64().expect("seconds"),
        params,
    )
}

fn expected(values: &Value) -> Vec<f32> {
    values
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect()
}

/// Max abs difference; panics on any NaN-mask mismatch.
fn compare(label: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{label}: number of points");
    let mut worst = 0.0f32;
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.is_nan(),
            w.is_nan(),
            "{label}: NaN mask differs at point {k} (t = {} s): got {g}, want {w}",
            k as f32 / 2.0
        );
        if !g.is_nan() {
            worst = worst.max((g - w).abs());
        }
    }
    worst
}

#[test]
fn tukey_window_matches_scipy() {
    let want: Vec<f64> = golden()["tukey_256"]
        .as_array()
        .expect("tukey")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let got = tukey_periodic(256, 0.25);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-8, "tukey[{k}]: {g} vs {w}");
    }
}

/// The normalised spectrogram of a window with a gap, built from raw-sample columns plus
/// z-scored columns for the invalid segments, equals the reference's `preprocess_input`.
#[test]
fn window_spectrogram_matches_reference_preprocess() {
    let g = golden();
    let p = &g["preprocess"];
    let fs = p["fs"].as_f64().expect("fs");
    let signal = synthetic_channel(fs, 400.0, p);
    let start = (p["start_s"].as_f64().expect("start") * fs) as usize;
    let len = (p["seconds"].as_f64().expect("seconds") * fs) as usize;
    let plan = SpectrogramPlan::new(fs as usize);
    let got = WindowSpectrogram {
        plan: &plan,
        samples: &signal[start..start + len],
        hop: fs as usize / 2,
    }
    .normalised();
    let want = p["sxx"].as_array().expect("sxx");
    let n_cols = got.len() / N_BINS;
    assert_eq!(want.len(), N_BINS);
    let mut worst = 0.0f32;
    for (bin, row) in want.iter().enumerate() {
        let row = expected(row);
        assert_eq!(row.len(), n_cols);
        for (col, w) in row.iter().enumerate() {
            worst = worst.max((got[bin * n_cols + col] - w).abs());
        }
    }
    assert!(worst <= 1e-5, "spectrogram max abs diff {worst}");
}

#[test]
fn streaming_probabilities_match_reference() {
    let Some(model) = model() else { return };
    let g = golden();
    let mut report = Vec::new();
    for case in g["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (fs, seconds, params) = case_geometry(case);
        for channel in case["channels"].as_array().expect("channels") {
            let signal = synthetic_channel(fs, seconds, channel);
            let want = expected(&channel["prob"]);
            let label = format!("{name} seed {}", channel["seed"]);

            let whole = predict_channel(&model, &signal, fs, params).expect("predict");
            let worst_whole = compare(&label, &whole, &want);

            // The same signal in chunks of varied sizes, collecting finalized points as they come.
            let mut stream = ChannelStream::new(fs, params).expect("stream");
            let sizes = [1usize, 7, 128, 1000, 4099, 333];
            let (mut at, mut i, mut chunked) = (0, 0, Vec::new());
            while at < signal.len() {
                let end = (at + sizes[i % sizes.len()]).min(signal.len());
                let out = stream.push(&model, &signal[at..end]).expect("push");
                assert_eq!(
                    out.first_index,
                    chunked.len(),
                    "{label}: points arrive in order"
                );
                chunked.extend(out.values);
                at = end;
                i += 1;
            }
            chunked.extend(stream.finish(&model).expect("finish").values);
            let worst_chunked = compare(&format!("{label} chunked"), &chunked, &want);

            assert!(
                worst_whole <= TOLERANCE,
                "{label}: max abs diff {worst_whole}"
            );
            assert!(
                worst_chunked <= TOLERANCE,
                "{label} chunked: max abs diff {worst_chunked}"
            );
            report.push(format!(
                "{label}: max abs diff {worst_whole:.2e} (chunked {worst_chunked:.2e})"
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// A case's channels streamed together, their windows run 3 per model call across channels
/// (`push_all`, as a shard batches them), give each channel the reference's values.
#[test]
fn channels_batched_together_match_reference() {
    let Some(model) = model() else { return };
    let g = golden();
    for case in g["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (fs, seconds, params) = case_geometry(case);
        let channels = case["channels"].as_array().expect("channels");
        let signals: Vec<Vec<f32>> = channels
            .iter()
            .map(|c| synthetic_channel(fs, seconds, c))
            .collect();
        let mut streams: Vec<ChannelStream> = channels
            .iter()
            .map(|_| ChannelStream::new(fs, params).expect("stream"))
            .collect();
        let mut got = vec![Vec::new(); channels.len()];
        let sizes = [777usize, 4099, 5120, 1];
        let (mut at, mut i) = (0, 0);
        while at < signals[0].len() {
            let end = (at + sizes[i % sizes.len()]).min(signals[0].len());
            let chunks: Vec<&[f32]> = signals.iter().map(|s| &s[at..end]).collect();
            for (ch, points) in push_all(&model, &mut streams, &chunks, 3)
                .expect("push")
                .into_iter()
                .enumerate()
            {
                assert_eq!(points.first_index, got[ch].len(), "{name}: points in order");
                got[ch].extend(points.values);
            }
            at = end;
            i += 1;
        }
        for (ch, (stream, channel)) in streams.iter_mut().zip(channels).enumerate() {
            got[ch].extend(stream.finish(&model).expect("finish").values);
            let label = format!("{name} seed {} batched", channel["seed"]);
            let worst = compare(&label, &got[ch], &expected(&channel["prob"]));
            assert!(worst <= TOLERANCE, "{label}: max abs diff {worst}");
        }
    }
}
