//! Unit tests of the EDF reader (`edf.rs`), kept apart so the reader stays short.

use super::*;

/// A minimal EDF(+) writer for tests: `signals` = (label, samples per record, digital
/// samples of all records), `annotations` = per-record TAL bytes for an extra signal.
pub(crate) fn write_edf(
    reserved: &str,
    record_duration: &str,
    signals: &[(&str, usize, Vec<i16>)],
    annotations: Option<(usize, Vec<Vec<u8>>)>,
) -> Vec<u8> {
    let n_records = signals
        .first()
        .map(|(_, n, d)| d.len() / n)
        .or(annotations.as_ref().map(|(_, r)| r.len()))
        .unwrap_or(0);
    let ns = signals.len() + usize::from(annotations.is_some());
    let pad = |s: &str, w: usize| format!("{s:<w$}");
    let mut h = String::new();
    h += &pad("0", 8);
    h += &pad("X X X X", 80);
    h += &pad("Startdate 02-JAN-2024 X X X", 80);
    h += "02.01.24";
    h += "10.20.30";
    h += &pad(&(256 * (ns + 1)).to_string(), 8);
    h += &pad(reserved, 44);
    h += &pad(&n_records.to_string(), 8);
    h += &pad(record_duration, 8);
    h += &pad(&ns.to_string(), 4);
    let mut labels: Vec<String> = signals.iter().map(|s| s.0.to_owned()).collect();
    let mut counts: Vec<usize> = signals.iter().map(|s| s.1).collect();
    if let Some((n, _)) = &annotations {
        labels.push("EDF Annotations".into());
        counts.push(*n);
    }
    let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
    let same = |v: &str| vec![v.to_owned(); ns];
    // Signal header fields, column by column, with their widths.
    let columns: [(Vec<String>, usize); 10] = [
        (labels, 16),
        (same("AgAgCl electrode"), 80),
        (same("uV"), 8),
        (same("-3276.8"), 8),
        (same("3276.7"), 8),
        (same("-32768"), 8),
        (same("32767"), 8),
        (same(""), 80),
        (counts, 8),
        (same(""), 32),
    ];
    for (values, width) in &columns {
        for v in values {
            h += &pad(v, *width);
        }
    }
    let mut bytes = h.into_bytes();
    for r in 0..n_records {
        for (_, n, data) in signals {
            for x in &data[r * n..(r + 1) * n] {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        if let Some((n, tals)) = &annotations {
            let mut block = tals[r].clone();
            block.resize(2 * n, 0);
            bytes.extend_from_slice(&block);
        }
    }
    bytes
}

#[test]
fn reads_what_the_writer_wrote_with_physical_scaling() {
    let data: Vec<i16> = (0..20).map(|i| (i * 1000 - 10_000) as i16).collect();
    let bytes = write_edf("", "1", &[("Cz", 10, data.clone())], None);
    let rec = Recording::from_bytes(&bytes).expect("read");
    assert_eq!(rec.header.variant, EdfVariant::Edf);
    assert_eq!(rec.header.n_records, 2);
    assert_eq!(rec.signals[0].sample_rate_hz, 10.0);
    // gain = 6553.5 / 65535 = 0.1 uV per step, offset 0.
    for (x, d) in rec.signals[0].samples.iter().zip(&data) {
        assert!((x - f64::from(*d) * 0.1).abs() < 1e-9, "{x} vs {d}");
    }
    assert_eq!(rec.header.start_ns(), Some(1_704_190_830_000_000_000));
    assert_eq!(rec.record_onsets_s, vec![0.0, 1.0]);
}

#[test]
fn edf_plus_d_gaps_become_nan_and_annotations_are_read() {
    let data: Vec<i16> = (0..12).map(|i| i as i16).collect();
    let tals = vec![
        b"+0\x14\x14\x00+0.5\x150.25\x14Seizure\x14spike\x14\x00".to_vec(),
        b"+1\x14\x14\x00".to_vec(),
        // Record 3 starts at 5 s: a 3 s gap after record 2 (1..2 s).
        b"+5\x14\x14\x00+5.5\x14end\x14\x00".to_vec(),
    ];
    let bytes = write_edf("EDF+D", "1", &[("C3", 4, data)], Some((16, tals)));
    let rec = Recording::from_bytes(&bytes).expect("read");
    assert_eq!(rec.header.variant, EdfVariant::EdfPlusDiscontinuous);
    assert_eq!(rec.signals.len(), 1);
    assert_eq!(rec.record_onsets_s, vec![0.0, 1.0, 5.0]);
    assert_eq!(
        rec.annotations,
        vec![
            Annotation {
                onset_s: 0.5,
                duration_s: Some(0.25),
                text: "Seizure".into()
            },
            Annotation {
                onset_s: 0.5,
                duration_s: Some(0.25),
                text: "spike".into()
            },
            Annotation {
                onset_s: 5.5,
                duration_s: None,
                text: "end".into()
            },
        ]
    );
    let cont = rec.continuous_samples(0).expect("continuous");
    assert_eq!(cont.len(), 24);
    assert!(cont[8..20].iter().all(|x| x.is_nan()));
    assert!(cont[..8].iter().chain(&cont[20..]).all(|x| x.is_finite()));
    assert_eq!(rec.duration_s(), 6.0);
}

#[test]
fn forged_or_cut_headers_are_errors_not_panics() {
    let good = write_edf("", "1", &[("Cz", 4, vec![0; 8])], None);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..100].to_vec(), "truncated"),
        (good[..300].to_vec(), "truncated"),
        (good[..good.len() - 1].to_vec(), "data bytes"),
        (
            {
                let mut b = good.clone();
                b[252..256].copy_from_slice(b"9999");
                b
            },
            "number of signals",
        ),
        (
            {
                let mut b = good.clone();
                b[236..244].copy_from_slice(b"abc     ");
                b
            },
            "not a number",
        ),
        (
            {
                let mut b = good.clone();
                b[0] = b'1';
                b
            },
            "version",
        ),
        (
            {
                let mut b = good.clone();
                // digital max (signal 0) = digital min
                let off = 256 + 16 + 80 + 8 + 8 + 8 + 8;
                b[off..off + 8].copy_from_slice(b"-32768  ");
                b
            },
            "digital maximum",
        ),
        (
            {
                let mut b = good.clone();
                let off = 256 + 16 + 80 + 8 + 8 + 8 + 8 + 8 + 80;
                b[off..off + 8].copy_from_slice(b"0       ");
                b
            },
            "samples per record",
        ),
    ];
    for (bytes, expect) in cases {
        let err = Recording::from_bytes(&bytes).expect_err(expect).to_string();
        assert!(err.contains(expect), "{err:?} should mention {expect:?}");
    }
    // Unknown record count (-1) is derived from the size.
    let mut b = good.clone();
    b[236..244].copy_from_slice(b"-1      ");
    assert_eq!(Recording::from_bytes(&b).expect("read").header.n_records, 2);
    // A TAL without its terminator.
    let bad = write_edf(
        "EDF+C",
        "1",
        &[("Cz", 4, vec![0; 4])],
        Some((8, vec![b"+0\x14\x14\x00+1\x14x".to_vec()])),
    );
    let err = Recording::from_bytes(&bad).expect_err("tal").to_string();
    assert!(err.contains("0x14"), "{err}");
}

#[test]
fn bdf_24_bit_samples_sign_extend() {
    let bytes = [0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00, 0x00, 0x80];
    assert_eq!(read_sample(&bytes, 3, 0), -1);
    assert_eq!(read_sample(&bytes, 3, 1), 1);
    assert_eq!(read_sample(&bytes, 3, 2), -8_388_608);
}
