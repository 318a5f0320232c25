//! Heart-rate analysis on real recordings against an independent numpy implementation
//! (golden file `tests/golden/heart_rate.json`, made by `scripts/reference/make_hr_goldens.py`):
//!
//! - 60 min of real NN intervals (pyhrv 0.5.0 `SampleNNISeriesLong.npy`, read from the data dir
//!   that `scripts/fetch-data` fills; pinned and checksummed in data/manifest.toml);
//! - 5 min of MIT-BIH record 208 (scipy 1.11.4 `ecg.dat`), an ECG full of premature
//!   ventricular beats, as the RR intervals between the R peaks the golden script detected.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use vigil_core::config::AlertPolicy;
use vigil_core::record::{AlertKind, AlertTransition, HrPoint, ModelRef, SeizureProbability};
use vigil_inference::alerts::PatientAlerts;
use vigil_inference::heart_rate::HeartRateTracker;

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/heart_rate.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden")).expect("json")
}

/// The fetched data dir (`VIGIL_DATA_DIR`, default `~/.cache/vigil/data`), or `None` with a
/// note when the file is missing outside CI.
fn data_file(relative: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIL_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vigil/data")))?;
    let path = dir.join(relative);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} missing under CI: scripts/fetch-data installs it",
        path.display()
    );
    eprintln!(
        "skipped: {} missing; run scripts/fetch-data",
        path.display()
    );
    None
}

/// A 1-D little-endian int64 `.npy` array (the format of pyhrv's sample series).
fn read_npy_i64(path: &PathBuf) -> Vec<i64> {
    let bytes = std::fs::read(path).expect("read npy");
    assert_eq!(&bytes[..6], b"\x93NUMPY", "npy magic");
    let (header_len, offset) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[offset..offset + header_len]).expect("header");
    assert!(header.contains("'descr': '<i8'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    bytes[offset + header_len..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// Beats from RR intervals exactly as the golden script makes them: time at the end of each
/// interval (cumulative sum from 0), bpm = 60000 / rr in f32.
fn beats(rr_ms: &[f32]) -> Vec<HrPoint> {
    let mut cumulative_ms = 0.0f64;
    rr_ms
        .iter()
        .map(|&rr| {
            cumulative_ms += f64::from(rr);
            HrPoint {
                t_ns: (cumulative_ms / 1000.0 * 1e9).round() as i64,
                bpm: 60_000.0 / rr,
                rr_ms: Some(rr),
            }
        })
        .collect()
}

fn nni_beats() -> Option<Vec<HrPoint>> {
    let path = data_file("pyhrv/SampleNNISeriesLong.npy")?;
    let nni: Vec<f32> = read_npy_i64(&path).into_iter().map(|x| x as f32).collect();
    assert_eq!(nni.len(), 4684, "pyhrv 0.5.0's 60 min series");
    Some(beats(&nni))
}

fn ecg_beats(golden: &Value) -> Vec<HrPoint> {
    let fs = golden["ecg_fs"].as_f64().expect("fs");
    let peaks: Vec<i64> = golden["ecg_r_peaks"]
        .as_array()
        .expect("peaks")
        .iter()
        .map(|p| p.as_i64().expect("int"))
        .collect();
    let rr: Vec<f32> = peaks
        .windows(2)
        .map(|w| ((w[1] - w[0]) as f64 / fs * 1000.0) as f32)
        .collect();
    beats(&rr)
}

fn i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}

/// RMSSD at the golden's checkpoints and the ictal-rise times, on one series.
fn check_tracker(points: &[HrPoint], expected: &Value) {
    let checkpoints = i64s(&expected["rmssd_checkpoints_ns"]);
    let rmssd: Vec<Option<f64>> = expected["rmssd_ms"]
        .as_array()
        .expect("rmssd")
        .iter()
        .map(Value::as_f64)
        .collect();
    let mut tracker = HeartRateTracker::new(AlertPolicy::default());
    let mut rises = Vec::new();
    let mut next = 0;
    for point in points {
        let assessment = tracker.push(point);
        if let Some(rise) = assessment.rise {
            rises.push(rise.at_ns);
        }
        if checkpoints.get(next) == Some(&point.t_ns) {
            let got = tracker.rmssd_ms().map(f64::from);
            match (got, rmssd[next]) {
                (Some(got), Some(want)) => assert!(
                    (got - want).abs() < 1e-3,
                    "RMSSD at {} ns: {got} vs {want}",
                    point.t_ns
                ),
                (got, want) => assert_eq!(got, want, "RMSSD presence"),
            }
            next += 1;
        }
    }
    assert_eq!(next, checkpoints.len(), "every checkpoint is a beat time");
    let want = i64s(&expected["rise_times_ns"]);
    assert_eq!(rises, want, "ictal-rise points");
}

/// Band alerts through [`PatientAlerts`] (feeding one beat at a time, `now` = beat time) must
/// equal the golden's independent run-based computation.
fn check_band(points: &[HrPoint], overrides: &BTreeMap<String, f64>, expected: &Value) {
    let policy = AlertPolicy::default()
        .with_overrides(overrides)
        .expect("valid overrides");
    let mut alerts = PatientAlerts::new("p1", policy);
    let mut got = Vec::new();
    for point in points {
        for event in alerts.on_heart_rate(std::slice::from_ref(point), point.t_ns) {
            assert_eq!(event.evidence.bpm, Some(point.bpm));
            got.push((
                format!("{:?}", event.kind).to_lowercase(),
                format!("{:?}", event.transition).to_lowercase(),
                event.at_ns,
                event.onset_ns,
            ));
        }
    }
    let want: Vec<(String, String, i64, i64)> = expected
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind").to_owned(),
                e["transition"].as_str().expect("transition").to_owned(),
                e["at_t_ns"].as_i64().expect("at"),
                e["onset_ns"].as_i64().expect("onset"),
            )
        })
        .collect();
    assert_eq!(got, want);
}

fn band(expected: &Value) -> BTreeMap<String, f64> {
    ["brady_below_bpm", "tachy_above_bpm"]
        .into_iter()
        .map(|k| {
            (
                k.to_owned(),
                expected["tight_band"][k].as_f64().expect("band"),
            )
        })
        .collect()
}

#[test]
fn real_nn_intervals_rmssd_and_rises_match_the_reference() {
    let Some(points) = nni_beats() else { return };
    let golden = golden();
    let expected = &golden["nni"];
    assert_eq!(expected["beats"].as_u64(), Some(points.len() as u64));
    check_tracker(&points, expected);
}

#[test]
fn real_nn_intervals_band_alerts_match_the_reference() {
    let Some(points) = nni_beats() else { return };
    let golden = golden();
    let expected = &golden["nni"];
    // Default band (50-120 bpm): this resting recording never leaves it.
    check_band(&points, &BTreeMap::new(), &expected["default_band_events"]);
    // A per-patient band of 65-85 bpm: the golden has 18 transitions of both kinds.
    let events = &expected["tight_band_events"];
    assert_eq!(events.as_array().map(Vec::len), Some(18));
    check_band(&points, &band(expected), events);
}

#[test]
fn ecg_derived_rr_with_ectopic_beats_matches_the_reference() {
    let golden = golden();
    let points = ecg_beats(&golden);
    let expected = &golden["ecg"];
    assert_eq!(expected["beats"].as_u64(), Some(points.len() as u64));
    // Record 208's premature beats: the Malik filter rejects ~12 % of intervals, and RMSSD is
    // computed only over normal-to-normal differences.
    assert_eq!(expected["malik_rejected"].as_u64(), Some(59));
    check_tracker(&points, expected);
    check_band(&points, &BTreeMap::new(), &expected["default_band_events"]);
    check_band(&points, &band(expected), &expected["tight_band_events"]);
}

fn seizure(start_ns: i64, seconds: usize) -> SeizureProbability {
    let n = seconds * 2;
    SeizureProbability {
        patient_id: "p1".into(),
        start_ns,
        step_ns: 500_000_000,
        channels: vec!["C3".into()],
        channel_p: vec![vec![0.95; n]],
        aggregate_p: vec![0.95; n],
        model: ModelRef {
            id: "m".into(),
            sha256: "0".repeat(64),
        },
        emitted_ns: start_ns,
    }
}

#[test]
fn a_seizure_alert_carries_a_concurrent_heart_rate_rise_as_evidence() {
    let Some(points) = nni_beats() else { return };
    let golden = golden();
    let rise_at = i64s(&golden["nni"]["rise_times_ns"])[0];

    // A seizure starting 5 s after the first real rise: the raise carries the rise.
    // Heart rate arrives well before the EEG's probabilities (they are final only once every
    // window covering them ran): feed the beats up to 2 min after the rise first.
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    let until = points.partition_point(|p| p.t_ns <= rise_at + 120_000_000_000);
    alerts.on_heart_rate(&points[..until], 0);
    let events = alerts.on_probability(&seizure(rise_at + 5_000_000_000, 20), 0);
    let raised = events
        .iter()
        .find(|e| e.kind == AlertKind::Seizure && e.transition == AlertTransition::Raised)
        .expect("seizure raised");
    let evidence = raised.evidence;
    assert!(evidence.hr_rise_bpm.expect("rise attached") >= 10.0);
    let (bpm, baseline) = (
        evidence.bpm.expect("bpm"),
        evidence.baseline_bpm.expect("baseline"),
    );
    assert!((bpm - baseline - evidence.hr_rise_bpm.expect("rise")).abs() < 1e-4);
    assert!(evidence.rmssd_ms.is_some(), "RMSSD over real RR intervals");

    // The same seizure with heart rate that only ever drifts: no ictal-tachycardia evidence.
    let calm: Vec<HrPoint> = (0..600)
        .map(|s| HrPoint {
            t_ns: rise_at - 300_000_000_000 + s * 1_000_000_000,
            bpm: 70.0,
            rr_ms: None,
        })
        .collect();
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    alerts.on_heart_rate(&calm, 0);
    let events = alerts.on_probability(&seizure(rise_at + 5_000_000_000, 20), 0);
    let raised = events
        .iter()
        .find(|e| e.kind == AlertKind::Seizure)
        .expect("seizure raised");
    assert_eq!(raised.evidence.hr_rise_bpm, None);
    assert_eq!(raised.evidence.baseline_bpm, None);
    assert_eq!(raised.evidence.rmssd_ms, None, "no RR intervals, no RMSSD");
}

#[test]
fn artefacts_neither_raise_nor_resolve_and_gaps_restart_the_run() {
    let mut alerts = PatientAlerts::new("p1", AlertPolicy::default());
    let at = |s: i64, bpm: f32| HrPoint {
        t_ns: s * 1_000_000_000,
        bpm,
        rr_ms: None,
    };
    // 140 bpm for 8 s, an implausible 300 bpm reading, 140 again: the run continues across
    // the artefact and raises once it spans 10 s.
    let mut events = Vec::new();
    for s in 0..8 {
        events.extend(alerts.on_heart_rate(&[at(s, 140.0)], s));
    }
    events.extend(alerts.on_heart_rate(&[at(8, 300.0)], 8));
    assert!(events.is_empty());
    events.extend(alerts.on_heart_rate(&[at(9, 140.0), at(10, 140.0)], 10));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, AlertKind::Tachycardia);
    assert_eq!(events[0].onset_ns, 0);

    // Bradycardia interrupted by a 6 s gap in valid readings restarts its 10 s run.
    let mut alerts = PatientAlerts::new("p2", AlertPolicy::default());
    let mut events = Vec::new();
    for s in (0..6).chain(12..21) {
        events.extend(alerts.on_heart_rate(&[at(s, 40.0)], s));
    }
    assert!(events.is_empty(), "{events:?}");
    events.extend(alerts.on_heart_rate(&[at(22, 40.0)], 22));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, AlertKind::Bradycardia);
    assert_eq!(events[0].onset_ns, 12_000_000_000);
}
