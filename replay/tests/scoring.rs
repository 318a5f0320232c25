//! SzCORE event scoring on hand-built event sets with answers worked out by hand, including
//! the tolerance borders, merging, splitting, and undefined scores reported as NaN.

use vigil_replay::scoring::{score_events, Detection, EventScore, Interval, ScoringParams};

const HOUR: f64 = 3600.0;

fn det(start: f64, end: f64) -> Detection {
    Detection {
        event: Interval::new(start, end),
        alarm_s: start,
    }
}

fn score(reference: &[(f64, f64)], detections: &[(f64, f64)], duration: f64) -> EventScore {
    let reference: Vec<Interval> = reference
        .iter()
        .map(|&(a, b)| Interval::new(a, b))
        .collect();
    let detections: Vec<Detection> = detections.iter().map(|&(a, b)| det(a, b)).collect();
    score_events(&reference, &detections, duration, &ScoringParams::default())
}

fn counts(s: &EventScore) -> (usize, usize, usize, usize) {
    (
        s.reference_events,
        s.detected_events,
        s.true_positives,
        s.false_positives,
    )
}

#[test]
fn perfect_detection_and_latency() {
    let s = score(&[(1000.0, 1060.0)], &[(1005.0, 1050.0)], HOUR);
    assert_eq!(counts(&s), (1, 1, 1, 0));
    assert_eq!((s.sensitivity(), s.precision(), s.f1()), (1.0, 1.0, 1.0));
    assert_eq!(s.false_alarms_per_24h(), 0.0);
    assert_eq!(s.latencies_s, vec![5.0]);
}

#[test]
fn tolerance_borders() {
    // Detection ending exactly 30 s before onset: outside the widened window [970, 1120).
    let s = score(&[(1000.0, 1060.0)], &[(900.0, 970.0)], HOUR);
    assert_eq!(counts(&s), (1, 1, 0, 1));
    assert_eq!((s.sensitivity(), s.precision(), s.f1()), (0.0, 0.0, 0.0));
    // Ending 0.1 s later: one grid sample inside -> detected, but its part before 970 s is
    // unexplained, so it is also a false alarm (the reference library's rule).
    let s = score(&[(1000.0, 1060.0)], &[(900.0, 970.1)], HOUR);
    assert_eq!(counts(&s), (1, 1, 1, 1));
    assert_eq!((s.sensitivity(), s.precision()), (1.0, 0.5));
    assert_eq!(s.latencies_s, vec![-100.0]);
    // Entirely inside the 30 s before onset: detected, no false alarm, negative latency.
    let s = score(&[(1000.0, 1060.0)], &[(975.0, 990.0)], HOUR);
    assert_eq!(counts(&s), (1, 1, 1, 0));
    assert_eq!(s.latencies_s, vec![-25.0]);
    // Starting exactly 60 s after the end: outside [970, 1120).
    let s = score(&[(1000.0, 1060.0)], &[(1120.0, 1130.0)], HOUR);
    assert_eq!(counts(&s), (1, 1, 0, 1));
    // Starting 0.1 s earlier: detected; its part after 1120 s is a false alarm.
    let s = score(&[(1000.0, 1060.0)], &[(1119.9, 1130.0)], HOUR);
    assert_eq!(counts(&s), (1, 1, 1, 1));
    // Ending exactly at 1120 s: detected and fully explained.
    let s = score(&[(1000.0, 1060.0)], &[(1100.0, 1120.0)], HOUR);
    assert_eq!(counts(&s), (1, 1, 1, 0));
}

#[test]
fn merging_events_closer_than_90_s() {
    // Reference events 89.9 s apart merge into one; 90 s apart stay two.
    let s = score(&[(100.0, 110.0), (199.9, 210.0)], &[(105.0, 106.0)], HOUR);
    assert_eq!(s.reference_events, 1);
    assert_eq!(counts(&s), (1, 1, 1, 0));
    let s = score(&[(100.0, 110.0), (200.0, 210.0)], &[(105.0, 106.0)], HOUR);
    assert_eq!(counts(&s), (2, 1, 1, 0));
    assert_eq!(s.sensitivity(), 0.5);
    // Three detections within 90 s of each other are one false alarm, not three.
    let s = score(
        &[],
        &[(1000.0, 1010.0), (1050.0, 1060.0), (1100.0, 1110.0)],
        HOUR,
    );
    assert_eq!(counts(&s), (0, 1, 0, 1));
    assert!(
        s.sensitivity().is_nan(),
        "no reference events: sensitivity undefined"
    );
    assert_eq!(s.precision(), 0.0);
    assert!(s.f1().is_nan());
    assert_eq!(s.false_alarms_per_24h(), 24.0);
}

#[test]
fn splitting_events_longer_than_5_min() {
    // A 12 min seizure is three events (5 + 5 + 2 min); a short detection at its start
    // detects the first piece, and its widened window (30 s / 60 s) does not reach the
    // others: sensitivity 1/3.
    let s = score(&[(600.0, 1320.0)], &[(610.0, 620.0)], HOUR);
    assert_eq!(counts(&s), (3, 1, 1, 0));
    assert!((s.sensitivity() - 1.0 / 3.0).abs() < 1e-12);
    // A detection spanning the whole seizure detects all three pieces.
    let s = score(&[(600.0, 1320.0)], &[(600.0, 1320.0)], HOUR);
    assert_eq!(counts(&s), (3, 3, 3, 0));
    assert_eq!(s.f1(), 1.0);
    // Exactly 5 min is not split.
    let s = score(&[(600.0, 900.0)], &[], HOUR);
    assert_eq!(s.reference_events, 1);
}

#[test]
fn nothing_to_score_is_undefined_not_perfect() {
    let s = score(&[], &[], HOUR);
    assert_eq!(counts(&s), (0, 0, 0, 0));
    assert!(s.sensitivity().is_nan());
    assert!(s.precision().is_nan());
    assert!(s.f1().is_nan());
    assert_eq!(s.false_alarms_per_24h(), 0.0);
    assert!(s.median_latency_s().is_nan());
    // A missed seizure with no detections: sensitivity 0, precision undefined.
    let s = score(&[(100.0, 200.0)], &[], HOUR);
    assert_eq!(s.sensitivity(), 0.0);
    assert!(s.precision().is_nan());
    assert!(s.f1().is_nan());
    let empty = score(&[], &[], 0.0);
    assert!(empty.false_alarms_per_24h().is_nan());
}

#[test]
fn clipping_to_the_recording_and_summing_recordings() {
    // Widened window clipped at 0; the event at the very end is kept.
    let a = score(
        &[(10.0, 20.0), (3590.0, 3600.0)],
        &[(0.0, 5.0), (3595.0, 3600.0)],
        HOUR,
    );
    assert_eq!(counts(&a), (2, 2, 2, 0));
    // Events outside the recording are dropped.
    let b = score(&[(4000.0, 4100.0)], &[(5000.0, 5001.0)], HOUR);
    assert_eq!(counts(&b), (0, 0, 0, 0));
    let c = score(
        &[(100.0, 200.0)],
        &[(1000.0, 1001.0), (2000.0, 2001.0)],
        HOUR,
    );
    assert_eq!(counts(&c), (1, 2, 0, 2));
    let total = EventScore::sum([&a, &b, &c]);
    assert_eq!(counts(&total), (3, 4, 2, 2));
    assert!((total.sensitivity() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(total.precision(), 0.5);
    assert_eq!(total.false_alarms_per_24h(), 2.0 / (3.0 * HOUR / 86_400.0));
}

#[test]
fn latency_is_the_first_alarm_and_median_over_events() {
    let reference = [Interval::new(1000.0, 1100.0), Interval::new(2000.0, 2100.0)];
    let detections = [
        Detection {
            event: Interval::new(1010.0, 1090.0),
            alarm_s: 1020.0,
        },
        Detection {
            event: Interval::new(2004.0, 2090.0),
            alarm_s: 2014.0,
        },
    ];
    let s = score_events(&reference, &detections, HOUR, &ScoringParams::default());
    assert_eq!(s.latencies_s, vec![20.0, 14.0]);
    assert_eq!(s.median_latency_s(), 17.0);
}
