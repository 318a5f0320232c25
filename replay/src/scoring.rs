//! Event-based seizure detection scoring as defined by SzCORE (Dan et al. 2024, the
//! `timescoring` reference library's `EventScoring`), so Vigil's numbers compare with
//! published ones:
//!
//! 1. Reference and detected events are placed on a 10 Hz grid over the recording
//!    (`[round(10 onset), round(10 end))`).
//! 2. In each list, events separated by less than 90 s are merged; then events longer than
//!    5 min are split into 5 min pieces (each piece counts as one event).
//! 3. Each reference event is widened by 30 s before its onset and 60 s after its end
//!    (clipped to the recording). It is a **true positive** when any detected sample falls in
//!    the widened interval; those widened intervals form the "explained" mask.
//! 4. A detected event is a **false positive** when any of its samples lies outside the
//!    explained mask. Consequence, kept from the reference: a detection that starts more than
//!    30 s before a seizure both detects it (TP) and counts as a false alarm (FP).
//! 5. Sensitivity = TP / reference events; precision = TP / (TP + FP); F1 their harmonic
//!    mean; false alarms per 24 h = FP / recording days.
//!
//! Undefined values are NaN, never 0 or 1: sensitivity without reference events, precision
//! without any detection, F1 when either is undefined. Latency (not part of SzCORE) is
//! reported per detected reference event as the time from its onset to the first alarm
//! that fell inside its widened interval.

use serde::Serialize;

/// Scoring parameters (SzCORE defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoringParams {
    /// Tolerance before a reference onset, s.
    pub tolerance_before_s: f64,
    /// Tolerance after a reference end, s.
    pub tolerance_after_s: f64,
    /// Events longer than this are split, s.
    pub max_event_s: f64,
    /// Events closer than this are merged, s.
    pub min_gap_s: f64,
    /// Grid rate, Hz.
    pub grid_hz: f64,
}

impl Default for ScoringParams {
    fn default() -> Self {
        Self {
            tolerance_before_s: 30.0,
            tolerance_after_s: 60.0,
            max_event_s: 300.0,
            min_gap_s: 90.0,
            grid_hz: 10.0,
        }
    }
}

/// An interval in seconds from the recording start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Interval {
    /// Start, s.
    pub start_s: f64,
    /// End, s.
    pub end_s: f64,
}

impl Interval {
    /// `[start_s, end_s)`.
    pub fn new(start_s: f64, end_s: f64) -> Self {
        Self { start_s, end_s }
    }
}

/// A detection with the time its alarm was given (signal time, s), for latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Detection {
    /// The detected event.
    pub event: Interval,
    /// When the alarm was raised, s (>= event start when an on-duration is required).
    pub alarm_s: f64,
}

/// Counts and scores of one recording or a sum of recordings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventScore {
    /// Reference events after merging/splitting.
    pub reference_events: usize,
    /// Detected events after merging/splitting.
    pub detected_events: usize,
    /// Reference events detected.
    pub true_positives: usize,
    /// Detected events not explained by a reference event.
    pub false_positives: usize,
    /// Scored duration, s.
    pub duration_s: f64,
    /// Onset-to-alarm latency per detected reference event, s (may be negative, >= -30).
    pub latencies_s: Vec<f64>,
}

fn nan_if(undefined: bool, value: f64) -> f64 {
    if undefined {
        f64::NAN
    } else {
        value
    }
}

impl EventScore {
    /// TP / reference events; NaN without reference events.
    pub fn sensitivity(&self) -> f64 {
        nan_if(
            self.reference_events == 0,
            self.true_positives as f64 / self.reference_events as f64,
        )
    }

    /// TP / (TP + FP); NaN without any detection.
    pub fn precision(&self) -> f64 {
        let d = self.true_positives + self.false_positives;
        nan_if(d == 0, self.true_positives as f64 / d as f64)
    }

    /// Harmonic mean of sensitivity and precision; NaN if either is NaN, 0 if both are 0.
    pub fn f1(&self) -> f64 {
        let (s, p) = (self.sensitivity(), self.precision());
        if s.is_nan() || p.is_nan() {
            f64::NAN
        } else if s + p == 0.0 {
            0.0
        } else {
            2.0 * s * p / (s + p)
        }
    }

    /// False positives per 24 h; NaN for an empty duration.
    pub fn false_alarms_per_24h(&self) -> f64 {
        nan_if(
            self.duration_s <= 0.0,
            self.false_positives as f64 / (self.duration_s / 86_400.0),
        )
    }

    /// Median latency, s; NaN when nothing was detected.
    pub fn median_latency_s(&self) -> f64 {
        let mut v = self.latencies_s.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    }

    /// Sum of several recordings' counts (SzCORE's cumulative scoring over a data set).
    pub fn sum<'a>(scores: impl IntoIterator<Item = &'a EventScore>) -> EventScore {
        let mut total = EventScore {
            reference_events: 0,
            detected_events: 0,
            true_positives: 0,
            false_positives: 0,
            duration_s: 0.0,
            latencies_s: Vec::new(),
        };
        for s in scores {
            total.reference_events += s.reference_events;
            total.detected_events += s.detected_events;
            total.true_positives += s.true_positives;
            total.false_positives += s.false_positives;
            total.duration_s += s.duration_s;
            total.latencies_s.extend(&s.latencies_s);
        }
        total
    }
}

/// Grid index range `[a, b)` of an interval, clipped to `n` samples.
fn span(iv: Interval, hz: f64, n: usize) -> (usize, usize) {
    let idx = |t: f64| ((t * hz).round().max(0.0) as usize).min(n);
    (idx(iv.start_s), idx(iv.end_s))
}

/// Sorts, clips to the recording, drops empty events, merges (gap < min_gap, or
/// overlapping), then splits events longer than max_event.
fn normalise(events: &[Interval], duration_s: f64, p: &ScoringParams) -> Vec<Interval> {
    let mut sorted: Vec<Interval> = events
        .iter()
        .map(|e| Interval::new(e.start_s.max(0.0), e.end_s.min(duration_s)))
        .filter(|e| e.end_s > e.start_s)
        .collect();
    sorted.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let mut merged: Vec<Interval> = Vec::new();
    for e in sorted {
        match merged.last_mut() {
            Some(last) if e.start_s - last.end_s < p.min_gap_s => {
                last.end_s = last.end_s.max(e.end_s);
            }
            _ => merged.push(e),
        }
    }
    let mut out = Vec::new();
    for e in merged {
        let mut start = e.start_s;
        while e.end_s - start > p.max_event_s {
            out.push(Interval::new(start, start + p.max_event_s));
            start += p.max_event_s;
        }
        out.push(Interval::new(start, e.end_s));
    }
    out
}

/// Scores one recording of `duration_s`: reference events against detections.
pub fn score_events(
    reference: &[Interval],
    detections: &[Detection],
    duration_s: f64,
    params: &ScoringParams,
) -> EventScore {
    let hz = params.grid_hz;
    let n = (duration_s * hz).round().max(0.0) as usize;
    let reference = normalise(reference, duration_s, params);
    let detected_events: Vec<Interval> = detections.iter().map(|d| d.event).collect();
    let hypothesis = normalise(&detected_events, duration_s, params);
    let mut hyp_mask = vec![false; n];
    for e in &hypothesis {
        let (a, b) = span(*e, hz, n);
        hyp_mask[a..b].fill(true);
    }
    let mut explained = vec![false; n];
    let mut true_positives = 0;
    let mut latencies_s = Vec::new();
    for e in &reference {
        let widened = Interval::new(
            (e.start_s - params.tolerance_before_s).max(0.0),
            (e.end_s + params.tolerance_after_s).min(duration_s),
        );
        let (a, b) = span(widened, hz, n);
        if hyp_mask[a..b].iter().any(|&x| x) {
            true_positives += 1;
            explained[a..b].fill(true);
            // The first alarm whose detection overlaps the widened interval.
            let alarm = detections
                .iter()
                .filter(|d| {
                    let (da, db) = span(d.event, hz, n);
                    da < b && db > a
                })
                .map(|d| d.alarm_s)
                .fold(f64::INFINITY, f64::min);
            if alarm.is_finite() {
                latencies_s.push(alarm - e.start_s);
            }
        }
    }
    let false_positives = hypothesis
        .iter()
        .filter(|e| {
            let (a, b) = span(**e, hz, n);
            explained[a..b].iter().any(|&x| !x)
        })
        .count();
    EventScore {
        reference_events: reference.len(),
        detected_events: hypothesis.len(),
        true_positives,
        false_positives,
        duration_s,
        latencies_s,
    }
}
