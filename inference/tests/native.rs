//! The native runtime against tract on the same model: seizure probabilities within 1e-5 on
//! spectrograms of the golden signals and on random inputs, at batches of 1, 7 and 23; models
//! outside the recognised structure are refused with a reason and served by tract.
//!
//! Needs the model weights (`vigil models fetch`; scripts/test does it).

use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::Value;
use tract_onnx::pb;
use tract_onnx::prelude::Framework;
use vigil_inference::model::{ModelEngine, SeizureModel};
use vigil_inference::runtime::{NativeModel, UnsupportedModel};
use vigil_inference::spectrogram::{SpectrogramPlan, WindowSpectrogram, N_BINS};
use vigil_inference::synthetic::SyntheticChannel;

const TOLERANCE: f32 = 1e-5;

fn weights() -> Option<PathBuf> {
    vigil_core::testenv::model_weights()
}

fn engines(path: &Path) -> (SeizureModel, SeizureModel) {
    let native = SeizureModel::load(path).expect("native");
    assert_eq!(
        native.engine(),
        ModelEngine::Native,
        "{:?}",
        native.native_refusal()
    );
    let tract = SeizureModel::load_with(path, ModelEngine::Tract).expect("tract");
    assert_eq!(tract.engine(), ModelEngine::Tract);
    (native, tract)
}

/// Max abs difference between the engines' outputs for `windows`; panics on a NaN mismatch.
fn max_diff(
    native: &SeizureModel,
    tract: &SeizureModel,
    windows: &[Vec<f32>],
    n_cols: usize,
) -> f32 {
    let a = native.predict(windows, n_cols).expect("native predict");
    let b = tract.predict(windows, n_cols).expect("tract predict");
    assert_eq!(a.len(), windows.len());
    assert_eq!(b.len(), windows.len());
    let mut worst = 0.0f32;
    for (w, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.len(), n_cols, "window {w}: columns");
        for (t, (p, q)) in x.iter().zip(y).enumerate() {
            assert_eq!(p.is_nan(), q.is_nan(), "window {w} column {t}: {p} vs {q}");
            assert!(p.is_finite() || p.is_nan(), "window {w} column {t}: {p}");
            if !p.is_nan() {
                worst = worst.max((p - q).abs());
            }
        }
    }
    worst
}

/// Normalised 300 s windows (599 columns) of the golden signals, as the stage builds them.
fn golden_windows() -> Vec<Vec<f32>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reference.json");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("golden")).expect("json");
    let case = &golden["cases"][0];
    let fs = case["fs"].as_f64().expect("fs") as usize;
    let plan = SpectrogramPlan::new(fs);
    let hop = fs / 2;
    let pair = |v: &Value| {
        v.as_array()
            .map(|a| (a[0].as_f64().expect("s"), a[1].as_f64().expect("s")))
    };
    let mut windows = Vec::new();
    for spec in case["channels"].as_array().expect("channels") {
        let signal = SyntheticChannel {
            seed: spec["seed"].as_u64().expect("seed"),
            burst: pair(&spec["burst"]),
            gap: pair(&spec["gap"]),
            flat: pair(&spec["flat"]),
        }
        .generate(fs as f64, 400.0);
        for start_s in [0, 100] {
            let samples = &signal[start_s * fs..(start_s + 300) * fs];
            windows.push(
                WindowSpectrogram {
                    plan: &plan,
                    samples,
                    hop,
                }
                .normalised(),
            );
        }
    }
    windows
}

/// Deterministic standard-normal-ish values (z-scored spectrograms are roughly N(0, 1)).
fn random_windows(count: usize, n_cols: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..count)
        .map(|_| {
            (0..N_BINS * n_cols)
                .map(|_| (0..4).map(|_| uniform()).sum::<f32>() * 1.7 - 3.4)
                .collect()
        })
        .collect()
}

#[test]
fn native_matches_tract_on_golden_signal_windows() {
    let Some(path) = weights() else { return };
    let (native, tract) = engines(&path);
    let windows = golden_windows();
    assert_eq!(windows.len(), 6);
    let mut report = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let d = max_diff(&native, &tract, std::slice::from_ref(w), 599);
        report.push(format!("window {i}: {d:.2e}"));
        assert!(d <= TOLERANCE, "golden window {i}: max diff {d}");
    }
    // The burst windows must actually reach seizure-level probabilities (not a trivial match).
    let p = native.predict(&windows, 599).expect("predict");
    assert!(
        p.iter().flatten().any(|&v| v > 0.9),
        "no high probability in the burst windows"
    );
    assert!(
        p.iter().flatten().any(|&v| v < 0.1),
        "no low probability in the background windows"
    );
    let d = max_diff(&native, &tract, &windows, 599);
    eprintln!(
        "native vs tract, golden windows: {} ; batch of 6: {d:.2e}",
        report.join(", ")
    );
    assert!(d <= TOLERANCE, "golden windows batched: max diff {d}");
}

#[test]
fn native_matches_tract_on_reference_preprocess_input() {
    let Some(path) = weights() else { return };
    let (native, tract) = engines(&path);
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reference.json");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("golden")).expect("json");
    let rows = golden["preprocess"]["sxx"].as_array().expect("sxx");
    let n_cols = rows[0].as_array().expect("row").len();
    let window: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().map_or(f32::NAN, |f| f as f32))
        })
        .collect();
    assert!(window.iter().all(|v| v.is_finite()));
    let d = max_diff(&native, &tract, &[window], n_cols);
    eprintln!("native vs tract, reference preprocess sxx ({n_cols} columns): {d:.2e}");
    assert!(d <= TOLERANCE, "max diff {d}");
}

#[test]
fn native_matches_tract_on_random_batches() {
    let Some(path) = weights() else { return };
    let (native, tract) = engines(&path);
    for (batch, n_cols, seed) in [
        (1, 599, 1),
        (7, 599, 2),
        (23, 599, 3),
        (7, 119, 4),
        (3, 5, 5),
        (1, 1, 6),
    ] {
        let windows = random_windows(batch, n_cols, seed);
        let d = max_diff(&native, &tract, &windows, n_cols);
        eprintln!("native vs tract, random batch {batch} x {n_cols} columns: {d:.2e}");
        assert!(
            d <= TOLERANCE,
            "batch {batch}, {n_cols} columns: max diff {d}"
        );
        // Each window's result must not depend on the batch it is in.
        let alone = native
            .predict(&windows[batch - 1..], n_cols)
            .expect("alone");
        let batched = native.predict(&windows, n_cols).expect("batched");
        let worst = alone[0]
            .iter()
            .zip(&batched[batch - 1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-6,
            "batch {batch}: last window alone vs batched {worst}"
        );
    }
}

#[test]
fn native_is_thread_safe_and_rejects_bad_shapes() {
    let Some(path) = weights() else { return };
    let model = SeizureModel::load(&path).expect("native");
    let windows = random_windows(5, 40, 9);
    let want = model.predict(&windows, 40).expect("predict");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| model.predict(&windows, 40).expect("predict")))
            .collect();
        for h in handles {
            assert_eq!(h.join().expect("thread"), want);
        }
    });
    assert!(model.predict(&[vec![0.0; N_BINS * 40 - 1]], 40).is_err());
    assert!(model.predict(&[], 40).expect("empty").is_empty());
}

fn proto(path: &Path) -> pb::ModelProto {
    tract_onnx::onnx()
        .proto_model_for_path(path)
        .expect("proto")
}

fn node<'a>(p: &'a mut pb::ModelProto, op: &str) -> &'a mut pb::NodeProto {
    let graph = p.graph.as_mut().expect("graph");
    graph
        .node
        .iter_mut()
        .find(|n| n.op_type == op)
        .expect("node")
}

fn refusal(p: &pb::ModelProto) -> String {
    match NativeModel::from_proto(p) {
        Ok(_) => panic!("a modified model was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn structures_outside_the_family_are_refused_with_a_reason() {
    let Some(path) = weights() else { return };
    assert!(NativeModel::from_proto(&proto(&path)).is_ok());

    let mut p = proto(&path);
    let dir = node(&mut p, "LSTM")
        .attribute
        .iter_mut()
        .find(|a| a.name == "direction")
        .expect("attr");
    dir.s = b"forward".to_vec();
    assert!(refusal(&p).contains("bidirectional"), "{}", refusal(&p));

    let mut p = proto(&path);
    let pads = node(&mut p, "Conv")
        .attribute
        .iter_mut()
        .find(|a| a.name == "pads")
        .expect("pads");
    pads.ints = vec![1, 2, 1, 2];
    assert!(refusal(&p).contains("pads"), "{}", refusal(&p));

    let mut p = proto(&path);
    node(&mut p, "Relu").op_type = "Sigmoid".into();
    assert!(refusal(&p).contains("op sequence"), "{}", refusal(&p));

    let mut p = proto(&path);
    let softmax = node(&mut p, "Softmax");
    softmax
        .attribute
        .iter_mut()
        .find(|a| a.name == "axis")
        .expect("axis")
        .i = 1;
    assert!(refusal(&p).contains("axis"), "{}", refusal(&p));

    let mut p = proto(&path);
    let graph = p.graph.as_mut().expect("graph");
    let w = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == "conv2.weight")
        .expect("conv2 weight");
    w.dims = vec![200, 20, 95, 3];
    w.raw_data.truncate(200 * 20 * 95 * 3 * 4);
    let conv2 = graph
        .node
        .iter_mut()
        .filter(|n| n.op_type == "Conv")
        .nth(1)
        .expect("conv2");
    conv2
        .attribute
        .iter_mut()
        .find(|a| a.name == "kernel_shape")
        .expect("kernel")
        .ints = vec![95, 3];
    let why = NativeModel::from_proto(&p).expect_err("a 95-row conv2 kernel leaves 2 rows");
    assert!(matches!(why, UnsupportedModel::Node { .. }), "{why}");
    assert!(
        why.to_string().contains("collapse the frequency axis"),
        "{why}"
    );
}

#[test]
fn unrecognised_model_falls_back_to_tract() {
    let Some(path) = weights() else { return };
    // An extra Relu before the softmax: same outputs' shape, valid ONNX, not the family.
    let mut p = proto(&path);
    let graph = p.graph.as_mut().expect("graph");
    let softmax = graph
        .node
        .iter()
        .position(|n| n.op_type == "Softmax")
        .expect("softmax");
    graph.node[softmax].input[0] = "relu_logits".into();
    graph.node.insert(
        softmax,
        pb::NodeProto {
            input: vec!["logits".into()],
            output: vec!["relu_logits".into()],
            name: "/extra/Relu".into(),
            op_type: "Relu".into(),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("modified.onnx");
    std::fs::write(&file, p.encode_to_vec()).expect("write");
    let model = SeizureModel::load(&file).expect("load");
    assert_eq!(model.engine(), ModelEngine::Tract);
    let why = model
        .native_refusal()
        .expect("a refusal reason")
        .to_string();
    assert!(why.contains("op sequence"), "{why}");
    let out = model
        .predict(&random_windows(2, 9, 3), 9)
        .expect("tract serves it");
    assert_eq!(out.len(), 2);
}
