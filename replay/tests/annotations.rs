//! Annotation parsers on the real annotation files shipped in epilepsy2bids 0.0.7 (CHB-MIT
//! summaries, TUH csv_bi, a BIDS events.tsv) and on the EDF+ annotation of a real file, with
//! counts and times read off the files by hand. Skipped without the data, failing under CI.

use vigil_core::datasets;
use vigil_replay::annotations::{
    from_edf_annotations, parse_bids_events, parse_chbmit_summary, parse_tuh_csv_bi,
};
use vigil_replay::edf::Recording;

fn read(name: &str) -> Option<String> {
    datasets::for_test(name).map(|p| std::fs::read_to_string(p).expect("read annotation file"))
}

#[test]
fn chbmit_summaries() {
    let Some(chb08) = read("epilepsy2bids/chb08-summary.txt") else {
        return;
    };
    let files = parse_chbmit_summary(&chb08).expect("chb08");
    assert_eq!(files.len(), 20);
    let seizures: Vec<(&str, f64, f64)> = files
        .iter()
        .flat_map(|f| {
            f.events
                .iter()
                .map(move |e| (f.recording.as_str(), e.onset_s, e.end_s()))
        })
        .collect();
    assert_eq!(
        seizures,
        [
            ("chb08_02.edf", 2670.0, 2841.0),
            ("chb08_05.edf", 2856.0, 3046.0),
            ("chb08_11.edf", 2988.0, 3122.0),
            ("chb08_13.edf", 2417.0, 2577.0),
            ("chb08_21.edf", 2083.0, 2347.0),
        ]
    );
    assert_eq!(files[0].duration_s, Some(3600.0));
    // chb08_29: 13:51:25 to 14:51:48.
    assert_eq!(files[19].duration_s, Some(3623.0));
    assert!(files
        .iter()
        .all(|f| f.events.iter().all(|e| e.channels.is_none())));

    let Some(chb05) = read("epilepsy2bids/chb05-summary.txt") else {
        return;
    };
    let files = parse_chbmit_summary(&chb05).expect("chb05");
    assert_eq!(files.len(), 39);
    // "Seizure Start Time" without a number in this file.
    let events: Vec<_> = files.iter().flat_map(|f| &f.events).collect();
    assert_eq!(events.len(), 5);
    assert_eq!((events[0].onset_s, events[0].duration_s), (417.0, 115.0));
    assert_eq!((events[4].onset_s, events[4].end_s()), (2348.0, 2465.0));
    // 23:21:32 to "24:21:32": one hour across midnight.
    assert_eq!(files[6].duration_s, Some(3600.0));
}

#[test]
fn tuh_csv_bi_files() {
    let cases = [
        ("aaaaahln_s001_t000", 1275.0, 0),
        ("aaaaaool_s004_t001", 1831.0, 1),
        ("aaaaapks_s016_t003", 300.0, 10),
        ("aaaaapks_s012_t001", 2348.0, 52),
    ];
    for (name, duration, count) in cases {
        let Some(text) = read(&format!("epilepsy2bids/{name}.csv_bi")) else {
            return;
        };
        let a = parse_tuh_csv_bi(&text).expect(name);
        assert_eq!(a.recording, name);
        assert_eq!(a.duration_s, Some(duration), "{name}");
        assert_eq!(a.events.len(), count, "{name}");
        assert!(a
            .events
            .iter()
            .all(|e| e.label == "seiz" && e.channels.is_none()));
        assert!(
            a.events.windows(2).all(|w| w[0].end_s() <= w[1].onset_s),
            "{name} ordered"
        );
    }
    let text = read("epilepsy2bids/aaaaaool_s004_t001.csv_bi").expect("checked above");
    let a = parse_tuh_csv_bi(&text).expect("parse");
    assert_eq!(a.events[0].onset_s, 733.9656);
    assert!((a.events[0].end_s() - 818.0202).abs() < 1e-9);
    let text = read("epilepsy2bids/aaaaapks_s012_t001.csv_bi").expect("checked above");
    let a = parse_tuh_csv_bi(&text).expect("parse");
    assert_eq!(a.events[0].onset_s, 4.9724);
    assert_eq!(a.events[51].onset_s, 2294.9724);
}

#[test]
fn bids_events_tsv() {
    let Some(text) = read("epilepsy2bids/sample_events.tsv") else {
        return;
    };
    let a = parse_bids_events("sample", &text).expect("parse");
    assert_eq!(a.duration_s, Some(3600.0));
    let got: Vec<(f64, f64)> = a.events.iter().map(|e| (e.onset_s, e.duration_s)).collect();
    assert_eq!(got, [(36.89, 200.32), (304.56, 121.14), (1023.45, 24.14)]);
    assert!(a
        .events
        .iter()
        .all(|e| e.label == "sz" && e.channels.is_none()));
}

#[test]
fn edf_plus_annotations_select_by_text() {
    let Some(path) = datasets::for_test("edfjs/edfp-sample.edf") else {
        return;
    };
    let rec = Recording::open(path).expect("edf");
    let none = from_edf_annotations("edfp", rec.duration_s(), &rec.annotations, |t| {
        t.to_lowercase().contains("seiz")
    });
    assert!(none.events.is_empty());
    let eyes = from_edf_annotations("edfp", rec.duration_s(), &rec.annotations, |t| {
        t.contains("Eyes")
    });
    assert_eq!(eyes.events.len(), 1);
    assert_eq!(eyes.events[0].onset_s, 17.448);
    assert_eq!(eyes.events[0].duration_s, 0.001);
    assert_eq!(eyes.duration_s, Some(25.6));
}
