//! qEEG trends (docs/TRENDS.md) against the independent numpy/scipy reference
//! (`scripts/reference/run trends` -> `tests/golden/trends_reference.json`), plus known truths
//! of synthetic signals, chunk-size invariance, NaN handling and the montage mapping.
//!
//! The real-EEG cases need the recordings of `scripts/fetch-data`; without them those cases
//! are skipped with a message (the synthetic cases always run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vigil_inference::trends::{
    Montage, MontageKind, SideTrend, TrendEngine, TrendParams, TrendPoint, CSA_BINS,
};

/// Tolerances against the reference (the golden rounds CSA to 1e-3 dB, asymmetry to 1e-5,
/// the index to 1e-6, aEEG to 1e-4 uV and BSR to 1e-4 %).
const TOL_CSA_DB: f64 = 2e-3;
const TOL_ASYMMETRY: f64 = 2e-5;
const TOL_INDEX: f64 = 2e-6;
const TOL_AEEG_UV: f64 = 2e-4;
const TOL_BSR_PERCENT: f64 = 1e-3;

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trends_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("json")
}

// ------------------------------------------------------------------------------ inputs

/// The make_trends_goldens.py `gauss`: four MMIX-LCG uniforms summed, centred, x sqrt(3).
fn gauss(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s += (state >> 11) as f64 / (1u64 << 53) as f64;
            }
            (s - 2.0) * 3f64.sqrt()
        })
        .collect()
}

/// The make_trends_goldens.py `synthetic` signals (16 double-banana channels).
fn synthetic(kind: &str, fs: usize, seconds: usize) -> Vec<Vec<f32>> {
    use std::f64::consts::PI;
    let n = fs * seconds;
    let k = ["burst_suppression", "lateralised", "aeeg_ramp"]
        .iter()
        .position(|s| *s == kind)
        .expect("known kind") as u64;
    (0..16)
        .map(|c| {
            let noise = gauss(1000 * (k + 1) + c as u64, n);
            let cf = c as f64;
            let mut row: Vec<f32> = (0..n)
                .map(|i| {
                    let t = i as f64 / fs as f64;
                    let x = match kind {
                        "burst_suppression" => {
                            let burst = if t % 5.0 < 2.0 { 1.0 } else { 0.0 };
                            1.0 * noise[i]
                                + burst
                                    * (40.0 * (2.0 * PI * 6.0 * t + 0.4 * cf).sin()
                                        + 30.0 * (2.0 * PI * 11.0 * t).sin())
                        }
                        "lateralised" => {
                            let alpha = if c < 8 {
                                20.0 * (2.0 * PI * 10.0 * t + 0.3 * cf).sin()
                            } else {
                                0.0
                            };
                            5.0 * noise[i] + alpha
                        }
                        _ => {
                            let amp = 5.0 + 95.0 * t / seconds as f64;
                            0.5 * noise[i]
                                + amp
                                    * ((2.0 * PI * 3.0 * t).sin()
                                        + (2.0 * PI * 7.0 * t + 1.0).sin()
                                        + (2.0 * PI * 12.0 * t + 2.0).sin())
                                    / 3.0
                        }
                    };
                    x as f32
                })
                .collect();
            if kind == "lateralised" && c == 5 {
                row[20 * fs..21 * fs].fill(f32::NAN);
            }
            row
        })
        .collect()
}

/// Minimal EDF/EDF+ reader (physical values, annotation signals skipped), enough for the
/// fetched recordings; returns labels, the rate of the first signal and `seconds` of rows.
fn read_edf(path: &Path, seconds: usize) -> (Vec<String>, usize, Vec<Vec<f32>>) {
    let bytes = std::fs::read(path).expect("read edf");
    let field = |from: usize, len: usize| -> String {
        String::from_utf8_lossy(&bytes[from..from + len])
            .trim()
            .to_string()
    };
    let num = |from: usize, len: usize| -> f64 { field(from, len).parse().expect("number") };
    let header = num(184, 8) as usize;
    let records = num(236, 8) as usize;
    let duration = num(244, 8);
    let ns = num(252, 4) as usize;
    let labels: Vec<String> = (0..ns).map(|i| field(256 + 16 * i, 16)).collect();
    let pmin: Vec<f64> = (0..ns).map(|i| num(256 + ns * 104 + 8 * i, 8)).collect();
    let pmax: Vec<f64> = (0..ns).map(|i| num(256 + ns * 112 + 8 * i, 8)).collect();
    let dmin: Vec<f64> = (0..ns).map(|i| num(256 + ns * 120 + 8 * i, 8)).collect();
    let dmax: Vec<f64> = (0..ns).map(|i| num(256 + ns * 128 + 8 * i, 8)).collect();
    let spr: Vec<usize> = (0..ns)
        .map(|i| num(256 + ns * 216 + 8 * i, 8) as usize)
        .collect();
    let record_len: usize = spr.iter().sum::<usize>() * 2;
    let keep: Vec<usize> = (0..ns)
        .filter(|&i| labels[i] != "EDF Annotations")
        .collect();
    let fs = (spr[keep[0]] as f64 / duration).round() as usize;
    let n = (fs * seconds).min(records * spr[keep[0]]);
    let rows = keep
        .iter()
        .map(|&i| {
            let offset: usize = spr[..i].iter().sum::<usize>() * 2;
            let gain = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i]);
            (0..n)
                .map(|s| {
                    let (r, j) = (s / spr[i], s % spr[i]);
                    let p = header + r * record_len + offset + 2 * j;
                    let d = i16::from_le_bytes([bytes[p], bytes[p + 1]]) as f64;
                    ((d - dmin[i]) * gain + pmin[i]) as f32
                })
                .collect()
        })
        .collect();
    (keep.iter().map(|&i| labels[i].clone()).collect(), fs, rows)
}

/// The input rows of a golden case, or `None` when its recording is not fetched.
fn case_rows(case: &Value) -> Option<Vec<Vec<f32>>> {
    let fs = case["sample_rate_hz"].as_u64().expect("fs") as usize;
    let seconds = case["seconds"].as_u64().expect("seconds") as usize;
    let source = case["source"].as_str().expect("source");
    if source == "synthetic" {
        return None;
    }
    let path = vigil_core::datasets::for_test(source)?;
    let (_, file_fs, mut rows) = read_edf(&path, seconds);
    assert_eq!(file_fs, fs);
    if let Some(gap) = case["gap"].as_array() {
        let ch = gap[0].as_u64().expect("channel") as usize;
        let (a, b) = (gap[1].as_f64().expect("from"), gap[2].as_f64().expect("to"));
        rows[ch][(a * fs as f64) as usize..(b * fs as f64) as usize].fill(f32::NAN);
    }
    Some(rows)
}

fn labels_of(case: &Value) -> Vec<String> {
    case["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_str().expect("label").to_string())
        .collect()
}

/// Runs the engine over `rows` in chunks of the given sizes (cycled).
fn run(
    labels: &[String],
    fs: usize,
    rows: &[Vec<f32>],
    chunks: &[usize],
) -> (Montage, Vec<TrendPoint>) {
    let mut engine =
        TrendEngine::new(labels, fs as f64, 0, TrendParams::default(), None).expect("engine");
    let n = rows[0].len();
    let mut out = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at < n {
        let len = chunks[k % chunks.len()].min(n - at);
        let chunk: Vec<&[f32]> = rows.iter().map(|r| &r[at..at + len]).collect();
        engine.push(&chunk, &mut out).expect("push");
        at += len;
        k += 1;
    }
    (engine.montage().clone(), out)
}

// ------------------------------------------------------------------------------ comparison

/// Largest |rust - reference| over matched values; panics on a NaN mismatch.
fn max_diff(what: &str, rust: impl Iterator<Item = f64>, golden: &[Value]) -> f64 {
    let mut worst = 0.0f64;
    let mut count = 0;
    for (i, (r, g)) in rust.zip(golden).enumerate() {
        count += 1;
        match g.as_f64() {
            None => assert!(r.is_nan(), "{what}[{i}]: reference not evaluated, rust {r}"),
            Some(g) => {
                assert!(r.is_finite(), "{what}[{i}]: rust {r}, reference {g}");
                worst = worst.max((r - g).abs());
            }
        }
    }
    assert_eq!(count, golden.len(), "{what}: length");
    worst
}

fn side<'a>(points: &'a [TrendPoint], name: &str) -> Vec<&'a SideTrend> {
    points
        .iter()
        .map(|p| match name {
            "left" => &p.left,
            "right" => &p.right,
            _ => &p.global,
        })
        .collect()
}

/// Compares one case; returns the worst differences [csa, asymmetry, index, aeeg, bsr].
fn compare(name: &str, case: &Value, montage: &Montage, points: &[TrendPoint]) -> [f64; 5] {
    let kind = serde_json::to_value(montage.kind).expect("kind");
    assert_eq!(kind, case["montage"], "{name}: montage");
    let names: Vec<&str> = montage
        .derivations
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let want: Vec<&str> = case["derivations"]
        .as_array()
        .expect("derivations")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    if montage.kind != MontageKind::ChannelGroups {
        assert_eq!(names, want, "{name}: derivations");
    }
    assert_eq!(
        points.len() as u64,
        case["points"].as_u64().expect("points"),
        "{name}"
    );
    for (k, p) in points.iter().enumerate() {
        assert_eq!(p.start_ns, k as i64 * 2_000_000_000);
    }
    let arr = |v: &Value| v.as_array().expect("array").clone();
    let mut worst = [0.0f64; 5];
    for (r, region) in arr(&case["csa_db"]).iter().enumerate() {
        let rust = points.iter().flat_map(|p| p.csa_db[r]);
        worst[0] = worst[0].max(max_diff(&format!("{name} csa[{r}]"), rust, &arr(region)));
    }
    let rust = points.iter().flat_map(|p| p.asymmetry);
    worst[1] = max_diff(&format!("{name} asymmetry"), rust, &arr(&case["asymmetry"]));
    let rust = points.iter().map(|p| p.asymmetry_index);
    worst[2] = max_diff(
        &format!("{name} index"),
        rust,
        &arr(&case["asymmetry_index"]),
    );
    for s in ["left", "right", "global"] {
        let sides = side(points, s);
        let g = &case[s];
        let lo = max_diff(
            &format!("{name} {s} aeeg min"),
            sides.iter().map(|t| t.aeeg_min_uv),
            &arr(&g["aeeg_min_uv"]),
        );
        let hi = max_diff(
            &format!("{name} {s} aeeg max"),
            sides.iter().map(|t| t.aeeg_max_uv),
            &arr(&g["aeeg_max_uv"]),
        );
        worst[3] = worst[3].max(lo).max(hi);
        let bsr = max_diff(
            &format!("{name} {s} bsr"),
            sides.iter().map(|t| t.bsr_percent),
            &arr(&g["bsr_percent"]),
        );
        worst[4] = worst[4].max(bsr);
    }
    worst
}

#[test]
fn trends_match_the_numpy_scipy_reference() {
    let g = golden();
    let params: TrendParams = serde_json::from_value(g["params"].clone()).expect("params");
    assert_eq!(
        params,
        TrendParams::default(),
        "golden made with the default parameters"
    );
    let mut worst = [0.0f64; 5];
    let mut compared = 0;
    for (name, case) in g["cases"].as_object().expect("cases") {
        let fs = case["sample_rate_hz"].as_u64().expect("fs") as usize;
        let rows = match case["source"].as_str() {
            Some("synthetic") => synthetic(name, fs, case["seconds"].as_u64().expect("s") as usize),
            _ => match case_rows(case) {
                Some(rows) => rows,
                None => {
                    eprintln!("skipping {name}: recording not fetched (scripts/fetch-data)");
                    continue;
                }
            },
        };
        let (montage, points) = run(&labels_of(case), fs, &rows, &[fs / 3 + 1]);
        let w = compare(name, case, &montage, &points);
        eprintln!("{name}: max |diff| csa {:.2e} dB, asym {:.2e}, index {:.2e}, aeeg {:.2e} uV, bsr {:.2e} %", w[0], w[1], w[2], w[3], w[4]);
        for (a, b) in worst.iter_mut().zip(w) {
            *a = a.max(b);
        }
        compared += 1;
    }
    assert!(compared >= 3, "synthetic cases always compared");
    let tol = [
        TOL_CSA_DB,
        TOL_ASYMMETRY,
        TOL_INDEX,
        TOL_AEEG_UV,
        TOL_BSR_PERCENT,
    ];
    for (i, (w, t)) in worst.iter().zip(tol).enumerate() {
        assert!(
            *w <= t,
            "quantity {i}: worst difference {w} over tolerance {t}"
        );
    }
}

// ------------------------------------------------------------------------------ known truths

const CHB: [&str; 16] = [
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4",
    "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
];

fn chb_labels() -> Vec<String> {
    CHB.iter().map(|s| s.to_string()).collect()
}

#[test]
fn burst_suppression_ratio_is_near_the_known_ratio() {
    // 2 s bursts every 5 s: 60 % of the time under 1.5 uV of noise. The band-pass tail after
    // each burst shortens the measured suppression a little: tolerance 5 percentage points.
    let rows = synthetic("burst_suppression", 256, 90);
    let (_, points) = run(&chb_labels(), 256, &rows, &[256]);
    for p in &points[..29] {
        assert!(
            p.global.bsr_percent.is_nan(),
            "no ratio before 60 s of signal"
        );
    }
    for p in &points[29..] {
        for s in [p.left, p.right, p.global] {
            assert!((s.bsr_percent - 60.0).abs() < 5.0, "bsr {}", s.bsr_percent);
        }
    }
}

#[test]
fn lateralised_rhythm_gives_positive_asymmetry_at_its_frequency() {
    let rows = synthetic("lateralised", 256, 40);
    let (_, points) = run(&chb_labels(), 256, &rows, &[512]);
    let valid: Vec<&TrendPoint> = points
        .iter()
        .filter(|p| p.asymmetry_index.is_finite())
        .collect();
    assert_eq!(
        valid.len(),
        points.len() - 1,
        "only the gap's point is not evaluated"
    );
    for p in &valid {
        assert!(p.asymmetry[9] > 0.99, "10 Hz bin: {}", p.asymmetry[9]);
        // Expected index: sine power / (sine power + 2 x noise power over 1-18 Hz) ~ 0.965.
        assert!(
            p.asymmetry_index > 0.9 && p.asymmetry_index < 1.0,
            "{}",
            p.asymmetry_index
        );
    }
    // Far from 10 Hz both sides carry the same noise: the mean asymmetry is near 0. (The 1 s
    // Tukey(0.25) segment leaks the rhythm's power over about 4-16 Hz, so nearer bins lean
    // left too.)
    for bin in 17..CSA_BINS {
        let mean = valid.iter().map(|p| p.asymmetry[bin]).sum::<f64>() / valid.len() as f64;
        assert!(mean.abs() < 0.1, "bin {}: mean asymmetry {mean}", bin + 1);
    }
    // The left hemisphere's aEEG carries the rhythm.
    assert!(
        points[10..]
            .iter()
            .all(|p| !p.left.aeeg_min_uv.is_finite()
                || p.left.aeeg_min_uv > 5.0 * p.right.aeeg_max_uv)
    );
}

#[test]
fn aeeg_margins_rise_with_a_2_to_15_hz_ramp() {
    let rows = synthetic("aeeg_ramp", 256, 90);
    let (_, points) = run(&chb_labels(), 256, &rows, &[1000]);
    // Amplitude rises 5 -> 100 uV over 90 s: mean margins of successive 10 s blocks rise.
    let blocks: Vec<(f64, f64)> = points[5..]
        .chunks(5)
        .map(|b| {
            let n = b.len() as f64;
            (
                b.iter().map(|p| p.left.aeeg_min_uv).sum::<f64>() / n,
                b.iter().map(|p| p.left.aeeg_max_uv).sum::<f64>() / n,
            )
        })
        .collect();
    for w in blocks.windows(2) {
        assert!(w[1].0 > w[0].0 && w[1].1 > w[0].1, "{w:?}");
    }
    let (first, last) = (blocks[0], blocks[blocks.len() - 1]);
    assert!(
        last.1 / first.1 > 4.0,
        "upper margin rises with the amplitude: {first:?} {last:?}"
    );
    for p in &points[2..] {
        assert!(p.left.aeeg_min_uv > 0.0 && p.left.aeeg_min_uv <= p.left.aeeg_max_uv);
    }
}

// ------------------------------------------------------------------------------ streaming

fn bits(points: &[TrendPoint]) -> Vec<u64> {
    points
        .iter()
        .flat_map(|p| {
            let sides = [p.left, p.right, p.global]
                .into_iter()
                .flat_map(|s| [s.aeeg_min_uv, s.aeeg_max_uv, s.bsr_percent]);
            p.csa_db
                .iter()
                .flatten()
                .copied()
                .chain(p.asymmetry)
                .chain([p.asymmetry_index, p.start_ns as f64])
                .chain(sides)
                .map(f64::to_bits)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn chunk_size_does_not_change_the_output() {
    let mut rows = synthetic("burst_suppression", 256, 70);
    rows[3][4000..4100].fill(f32::NAN);
    let labels = chb_labels();
    let (_, whole) = run(&labels, 256, &rows, &[usize::MAX]);
    assert_eq!(whole.len(), 35);
    for chunks in [&[1usize][..], &[7, 128, 1, 333], &[256], &[5000, 3]] {
        let (_, pieces) = run(&labels, 256, &rows, chunks);
        assert_eq!(bits(&pieces), bits(&whole), "chunks {chunks:?}");
    }
    // An empty chunk is accepted and changes nothing.
    let mut engine =
        TrendEngine::new(&labels, 256.0, 0, TrendParams::default(), None).expect("engine");
    let empty: Vec<Vec<f32>> = vec![Vec::new(); 16];
    let mut out = Vec::new();
    engine.push(&empty, &mut out).expect("empty chunk");
    assert!(out.is_empty() && engine.consumed() == 0);
}

#[test]
fn missing_samples_give_nan_never_zero() {
    let rows = synthetic("lateralised", 256, 40);
    let (montage, points) = run(&chb_labels(), 256, &rows, &[300]);
    let lp = montage
        .regions
        .iter()
        .position(|(n, _)| n == "left parasagittal")
        .expect("region");
    // F3-C3 misses 20-21 s: point 10 ([20, 22) s) of its region and of the asymmetry.
    assert!(points[10].csa_db[lp].iter().all(|v| v.is_nan()));
    assert!(points[10].asymmetry.iter().all(|v| v.is_nan()) && points[10].asymmetry_index.is_nan());
    assert!(
        points[10].csa_db[0].iter().all(|v| v.is_finite()),
        "other regions evaluated"
    );
    assert!(points[9].csa_db[lp].iter().all(|v| v.is_finite()));
    assert!(points[11].csa_db[lp].iter().all(|v| v.is_finite()));
    // aEEG of the left side restarts: NaN from 20 s until 4 s of warm-up after 21 s.
    for p in &points[10..13] {
        assert!(p.left.aeeg_min_uv.is_nan() && p.global.aeeg_max_uv.is_nan());
        assert!(p.right.aeeg_min_uv.is_finite());
    }
    assert!(points[13].left.aeeg_min_uv.is_finite());
    // A stream of nothing but missing samples evaluates nothing, and says so with NaN.
    let blank = vec![vec![f32::NAN; 256 * 64]; 16];
    let (_, points) = run(&chb_labels(), 256, &blank, &[256]);
    assert_eq!(points.len(), 32);
    for p in &points {
        let sides = [p.left, p.right, p.global];
        assert!(p.csa_db.iter().flatten().all(|v| v.is_nan()));
        assert!(p.asymmetry.iter().all(|v| v.is_nan()) && p.asymmetry_index.is_nan());
        assert!(sides
            .iter()
            .all(|s| s.aeeg_min_uv.is_nan() && s.aeeg_max_uv.is_nan() && s.bsr_percent.is_nan()));
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let labels = chb_labels();
    for fs in [0.0, 99.0, 255.0, 256.5, f64::NAN, f64::INFINITY] {
        assert!(
            TrendEngine::new(&labels, fs, 0, TrendParams::default(), None).is_err(),
            "{fs}"
        );
    }
    let params = TrendParams {
        aeeg_lowpass_hz: 1.0,
        ..TrendParams::default()
    };
    assert!(TrendEngine::new(&labels, 256.0, 0, params, None).is_err());
    let mut engine =
        TrendEngine::new(&labels, 256.0, 0, TrendParams::default(), None).expect("engine");
    let mut out = Vec::new();
    assert!(engine.push(&vec![vec![0.0f32; 10]; 15], &mut out).is_err());
    let mut ragged = vec![vec![0.0f32; 10]; 16];
    ragged[4].pop();
    assert!(engine.push(&ragged, &mut out).is_err());
    let unknown: Result<TrendParams, _> = serde_json::from_str(r#"{"bsr_threshold": 3}"#);
    assert!(unknown.is_err(), "unknown keys refused");
}

// ------------------------------------------------------------------------------ montage

fn strings(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|s| s.to_string()).collect()
}

fn region_names(m: &Montage) -> Vec<Vec<String>> {
    m.regions
        .iter()
        .map(|(_, idx)| idx.iter().map(|&d| m.derivations[d].name.clone()).collect())
        .collect()
}

#[test]
fn chb_mit_labels_map_to_the_double_banana() {
    // chb08's channel list: the chains, midline, extra temporal links, a repeated T8-P8.
    let mut labels = chb_labels();
    labels.extend(strings(&[
        "FZ-CZ", "CZ-PZ", "P7-T7", "T7-FT9", "FT9-FT10", "FT10-T8", "T8-P8",
    ]));
    let m = Montage::resolve(&labels, None);
    assert_eq!(m.kind, MontageKind::DoubleBanana);
    assert_eq!(m.derivations.len(), 16);
    assert_eq!(region_names(&m)[0], ["Fp1-F7", "F7-T7", "T7-P7", "P7-O1"]);
    assert_eq!(region_names(&m)[3], ["Fp2-F8", "F8-T8", "T8-P8", "P8-O2"]);
    assert!(m
        .derivations
        .iter()
        .all(|d| d.minus.is_none() && d.homolog.is_some()));
    assert_eq!(m.derivations[14].plus, 14, "first T8-P8 used");
    // Decorations: EEG prefix, case, CHB-MIT's -0 suffix, old temporal names, reversed links.
    let m = Montage::resolve(
        &strings(&["EEG Fp1-F7", "f7-t3-0", "T5-T3", "P7-O1", "ECG"]),
        None,
    );
    assert_eq!(m.kind, MontageKind::DoubleBanana);
    assert_eq!(region_names(&m)[0], ["Fp1-F7", "F7-T7", "T7-P7", "P7-O1"]);
    assert_eq!(m.derivations[2].plus, 2);
    assert!(region_names(&m)[1].is_empty());
    assert!(
        m.side_members(vigil_inference::trends::Side::Left)
            .is_empty(),
        "no homologs"
    );
}

#[test]
fn referential_labels_are_rereferenced() {
    let labels = strings(&[
        "EEG Fp1-Ref",
        "EEG F7-REF",
        "T3-A1",
        "T5-LE",
        "O1",
        "Fp2.",
        "F8..",
        "T4",
        "T6",
        "O2",
        "Cz",
        "EKG",
    ]);
    let m = Montage::resolve(&labels, None);
    assert_eq!(m.kind, MontageKind::ReferentialToBipolar);
    assert_eq!(region_names(&m)[0], ["Fp1-F7", "F7-T7", "T7-P7", "P7-O1"]);
    assert_eq!(region_names(&m)[3], ["Fp2-F8", "F8-T8", "T8-P8", "P8-O2"]);
    assert!(region_names(&m)[1].is_empty() && region_names(&m)[2].is_empty());
    let d = &m.derivations[1];
    assert_eq!((d.plus, d.minus), (1, Some(2)), "F7 - T7");
    // Re-referencing cancels the common reference: a shared signal leaves no power.
    let n = 256 * 4;
    let common: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).sin() * 50.0).collect();
    let rows = vec![common; labels.len()];
    let (_, points) = run(&labels, 256, &rows, &[256]);
    assert!(
        points
            .iter()
            .all(|p| p.csa_db[0].iter().all(|v| v.is_nan())),
        "zero power is not evaluated"
    );
}

#[test]
fn other_labels_use_the_configured_map_or_one_group() {
    let labels = strings(&["ch1", "ch2", "ch3", "ch4"]);
    let m = Montage::resolve(&labels, None);
    assert_eq!(m.kind, MontageKind::ChannelGroups);
    assert_eq!(m.regions.len(), 1);
    assert_eq!(m.regions[0].0, "all");
    assert_eq!(m.regions[0].1, [0, 1, 2, 3]);
    assert!(
        m.derivations.iter().all(|d| d.side.is_none()),
        "ch1 is not a 10-20 electrode"
    );
    let mut map = BTreeMap::new();
    map.insert("left temporal".to_string(), strings(&["CH1", "ch2"]));
    map.insert("right temporal".to_string(), strings(&["ch3", "missing"]));
    map.insert("vertex".to_string(), strings(&["ch4"]));
    let m = Montage::resolve(&labels, Some(&map));
    assert_eq!(m.kind, MontageKind::Configured);
    assert_eq!(
        region_names(&m),
        [vec!["ch1", "ch2"], vec!["ch3"], vec!["ch4"]]
    );
    use vigil_inference::trends::Side;
    assert_eq!(
        (m.hemisphere(Side::Left), m.hemisphere(Side::Right)),
        (vec![0, 1], vec![2])
    );
    // A map naming no present label falls back to channel groups.
    let mut other = BTreeMap::new();
    other.insert("left".to_string(), strings(&["X"]));
    assert_eq!(
        Montage::resolve(&labels, Some(&other)).kind,
        MontageKind::ChannelGroups
    );
    // 10-20 names outside the chains still know their side.
    let m = Montage::resolve(&strings(&["Fz", "C3x", "Cp5", "Cp6"]), None);
    let sides: Vec<_> = m.derivations.iter().map(|d| d.side).collect();
    assert_eq!(sides, [None, None, Some(Side::Left), Some(Side::Right)]);
}
