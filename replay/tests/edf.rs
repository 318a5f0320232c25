//! The EDF reader on the real recordings of `scripts/fetch-data`, against pyedflib (EDFlib, an
//! independent C reader): header fields, annotations, sample values and per-signal sums
//! (golden file made by `scripts/reference/run data`).
//!
//! Without the data the tests are skipped locally and fail under CI.

use serde_json::Value;
use vigil_core::datasets;
use vigil_replay::edf::{EdfVariant, Recording};

fn golden() -> Value {
    let text = include_str!("golden/data_reference.json");
    serde_json::from_str(text).expect("golden json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale.max(1.0)
}

#[test]
fn every_real_file_matches_pyedflib() {
    let golden = golden();
    for file in golden["files"].as_array().expect("files") {
        let name = file["file"].as_str().expect("name");
        let Some(path) = datasets::for_test(name) else {
            return;
        };
        let rec = Recording::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            rec.header.n_records as u64,
            file["n_records"].as_u64().expect("n"),
            "{name}"
        );
        assert!(
            close(
                rec.header.record_duration_s,
                f(&file["record_duration_s"]),
                1.0
            ),
            "{name}"
        );
        assert!(
            close(rec.duration_s(), f(&file["duration_s"]), 1.0),
            "{name}: {}",
            rec.duration_s()
        );
        let signals = file["signals"].as_array().expect("signals");
        assert_eq!(
            rec.signals.len(),
            signals.len(),
            "{name}: ordinary signal count"
        );
        for (sig, want) in rec.signals.iter().zip(signals) {
            let label = want["label"].as_str().expect("label");
            assert_eq!(sig.header.label, label, "{name}");
            assert_eq!(
                sig.header.physical_dimension,
                want["dimension"].as_str().expect("dim")
            );
            assert_eq!(
                sig.sample_rate_hz,
                f(&want["sample_rate_hz"]),
                "{name} {label}"
            );
            assert_eq!(
                sig.samples.len() as u64,
                want["n_samples"].as_u64().expect("n")
            );
            assert_eq!(
                sig.header.digital_min as i64,
                want["digital_min"].as_i64().expect("dmin")
            );
            assert_eq!(
                sig.header.digital_max as i64,
                want["digital_max"].as_i64().expect("dmax")
            );
            let range = (sig.header.physical_max - sig.header.physical_min).abs();
            for (i, v) in want["first"].as_array().expect("first").iter().enumerate() {
                assert!(
                    close(sig.samples[i], f(v), range),
                    "{name} {label}[{i}]: {} vs {v}",
                    sig.samples[i]
                );
            }
            for pair in want["at"].as_array().expect("at") {
                let i = pair[0].as_u64().expect("i") as usize;
                assert!(
                    close(sig.samples[i], f(&pair[1]), range),
                    "{name} {label}[{i}]"
                );
            }
            let n = sig.samples.len() as f64;
            let sum: f64 = sig.samples.iter().sum();
            let sum_sq: f64 = sig.samples.iter().map(|x| x * x).sum();
            assert!(
                close(sum, f(&want["sum"]), n * range),
                "{name} {label}: sum {sum} vs {}",
                want["sum"]
            );
            assert!(
                (sum_sq - f(&want["sum_sq"])).abs() <= 1e-9 * f(&want["sum_sq"]).max(1.0),
                "{name} {label}: sum of squares"
            );
        }
        let annotations = file["annotations"].as_array().expect("annotations");
        assert_eq!(
            rec.annotations.len(),
            annotations.len(),
            "{name}: annotations"
        );
        for (a, want) in rec.annotations.iter().zip(annotations) {
            assert!(close(a.onset_s, f(&want[0]), 1.0), "{name}");
            // pyedflib reports a missing duration as -1.
            let d = f(&want[1]);
            assert_eq!(a.duration_s, (d >= 0.0).then_some(d), "{name}");
            assert_eq!(a.text, want[2].as_str().expect("text"), "{name}");
        }
    }
}

#[test]
fn known_header_facts_of_the_real_files() {
    let Some(path) = datasets::for_test("edfjs/sample.edf") else {
        return;
    };
    let rec = Recording::open(path).expect("sample.edf");
    assert_eq!(rec.header.variant, EdfVariant::Edf);
    let labels: Vec<&str> = rec
        .signals
        .iter()
        .map(|s| s.header.label.as_str())
        .collect();
    assert_eq!(labels, ["Fp2-F4", "F4-C4", "C4-P4", "P4-O2", "F8-T4"]);
    assert!(rec
        .signals
        .iter()
        .all(|s| s.sample_rate_hz == 256.0 && s.samples.len() == 25_600));
    // 2002-02-04 22:07:23 read as UTC.
    assert_eq!(rec.header.start_ns(), Some(1_012_860_443_000_000_000));

    let Some(path) = datasets::for_test("edfjs/edfp-sample.edf") else {
        return;
    };
    let rec = Recording::open(path).expect("edfp-sample.edf");
    assert_eq!(rec.header.variant, EdfVariant::EdfPlusContinuous);
    assert_eq!(rec.header.n_records, 256);
    assert_eq!(rec.signals.len(), 2);
    assert_eq!(rec.signals[0].sample_rate_hz, 250.0);
    assert_eq!(rec.record_onsets_s.len(), 256);
    assert!((rec.record_onsets_s[255] - 25.5).abs() < 1e-9);
    assert_eq!(rec.annotations.len(), 1);
    assert_eq!(rec.annotations[0].text, "Resting Eyes Open");
    assert_eq!(rec.annotations[0].onset_s, 17.448);

    // The CHB-MIT header written by pyedflib repeats the label T8-P8, as the real file does.
    let Some(path) = datasets::for_test("epilepsy2bids/chb08_02.edf") else {
        return;
    };
    let rec = Recording::open(path).expect("chb08_02.edf");
    let t8p8 = rec
        .signals
        .iter()
        .filter(|s| s.header.label == "T8-P8")
        .count();
    assert_eq!((rec.signals.len(), t8p8), (23, 2));
    assert!(rec.annotations.is_empty());
    // EDF+ takes the 4-digit year from the recording field: 2065.
    assert_eq!(rec.header.start_ns(), Some(3_021_452_937_000_000_000));
}
