//! Offline evaluation: a recording goes through the same inference code as the live stage
//! (`vigil_inference::windowing` per channel, NaN-aware max over channels, the ONNX model),
//! the alert policy's seizure hysteresis (`vigil_inference::alerts::PatientAlerts`) turns the
//! probability trace into detections, and [`crate::scoring`] scores them against the
//! reference events SzCORE-style.
//!
//! Time is signal time: detection onsets and alarm times are where in the recording the
//! policy would have raised, computed from final probabilities. The live stage finalises a
//! point up to ~270 s after it was recorded (docs/MODEL.md), so wall-clock alert latency is
//! signal-time latency plus that delay (or less with provisional values); this module
//! measures only the former.
//!
//! A detected event runs from the alert's onset (first point of the run that raised it) to
//! the first point of the run that resolved it, or to the end of the recording.

use serde::Serialize;
use vigil_core::record::{AlertKind, AlertTransition, ModelRef, SeizureProbability};
use vigil_inference::alerts::{AlertPolicy, PatientAlerts};
use vigil_inference::model::SeizureModel;
use vigil_inference::patient::{aggregate, STEP_NS};
use vigil_inference::windowing::{predict_channel, WindowParams};
use vigil_inference::InferenceError;

use crate::scoring::{score_events, Detection, EventScore, Interval, ScoringParams};
use crate::simulator::PatientSimulator;

/// Output grid step of the model, s (the stage's [`STEP_NS`]).
pub const STEP_S: f64 = STEP_NS as f64 / 1e9;

/// Everything that decides an evaluation's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalSettings {
    /// Model windows.
    pub windows: WindowParams,
    /// Alert thresholds and durations (only the seizure hysteresis is used).
    pub policy: AlertPolicy,
    /// Scoring rules.
    pub scoring: ScoringParams,
}

/// The evaluation of one recording.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingEval {
    /// Name shown in reports.
    pub name: String,
    /// Duration scored, s.
    pub duration_s: f64,
    /// Channels evaluated.
    pub channels: Vec<String>,
    /// Rate fed to the model, Hz.
    pub rate_hz: f64,
    /// Reference events (annotations + injected bursts), s.
    pub reference: Vec<Interval>,
    /// Which reference events are synthetic bursts (same order as `reference`).
    pub reference_synthetic: Vec<bool>,
    /// Detections from the alert policy.
    pub detections: Vec<Detection>,
    /// Aggregate probability per 0.5 s point (NaN = not evaluated), point k at k * 0.5 s.
    #[serde(serialize_with = "nan_as_null")]
    pub aggregate_p: Vec<f32>,
    /// Fraction of points evaluated (not NaN).
    pub evaluated_fraction: f64,
    /// Scores.
    pub score: EventScore,
}

fn nan_as_null<S: serde::Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for v in values {
        seq.serialize_element(&(!v.is_nan()).then_some(*v))?;
    }
    seq.end()
}

/// Aggregate probability trace of a prepared recording (whole-recording path, as the
/// reference function; identical to the streaming stage's final values).
pub fn probability_trace(
    model: &SeizureModel,
    recording: &PatientSimulator,
    windows: WindowParams,
) -> Result<Vec<f32>, InferenceError> {
    let rows = recording
        .samples()
        .iter()
        .map(|channel| predict_channel(model, channel, recording.rate_hz(), windows))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(aggregate(&rows))
}

/// Runs the alert policy's seizure hysteresis over a trace; returns the detections.
pub fn detections_from_trace(
    aggregate_p: &[f32],
    policy: AlertPolicy,
    duration_s: f64,
) -> Vec<Detection> {
    let step_ns = STEP_NS;
    let mut alerts = PatientAlerts::new("eval", policy);
    let mut open: Option<(f64, f64)> = None;
    let mut out = Vec::new();
    for (k, &p) in aggregate_p.iter().enumerate() {
        let t_ns = k as i64 * step_ns;
        let record = SeizureProbability {
            patient_id: "eval".into(),
            start_ns: t_ns,
            step_ns,
            channels: Vec::new(),
            channel_p: Vec::new(),
            aggregate_p: vec![p],
            model: ModelRef {
                id: "eval".into(),
                sha256: String::new(),
            },
            emitted_ns: 0,
        };
        // The point's 1 s segment is complete half a step after its centre.
        let now_ns = t_ns + step_ns;
        for event in alerts.on_probability(&record, now_ns) {
            if event.kind != AlertKind::Seizure {
                continue;
            }
            match event.transition {
                AlertTransition::Raised => {
                    open = Some((event.onset_ns as f64 / 1e9, event.at_ns as f64 / 1e9));
                }
                AlertTransition::Resolved => {
                    if let Some((onset, alarm)) = open.take() {
                        let end = (event.at_ns as f64 / 1e9 - policy.off_duration_s).max(onset);
                        out.push(Detection {
                            event: Interval::new(onset, end),
                            alarm_s: alarm,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    if let Some((onset, alarm)) = open {
        out.push(Detection {
            event: Interval::new(onset, duration_s),
            alarm_s: alarm,
        });
    }
    out
}

/// Evaluates one prepared recording against its reference events. `synthetic` lists the
/// injected bursts (also reference events).
pub fn evaluate(
    model: &SeizureModel,
    name: &str,
    recording: &PatientSimulator,
    annotated: &[Interval],
    settings: &EvalSettings,
) -> Result<RecordingEval, InferenceError> {
    let aggregate_p = probability_trace(model, recording, settings.windows)?;
    let duration_s = recording.duration_s();
    let detections = detections_from_trace(&aggregate_p, settings.policy, duration_s);
    let mut reference: Vec<Interval> = annotated.to_vec();
    let mut reference_synthetic = vec![false; reference.len()];
    for &(a, b) in recording.bursts() {
        reference.push(Interval::new(a, b));
        reference_synthetic.push(true);
    }
    let score = score_events(&reference, &detections, duration_s, &settings.scoring);
    let evaluated = aggregate_p.iter().filter(|p| !p.is_nan()).count();
    Ok(RecordingEval {
        name: name.to_owned(),
        duration_s,
        channels: recording.channels().to_vec(),
        rate_hz: recording.rate_hz(),
        reference,
        reference_synthetic,
        detections,
        evaluated_fraction: if aggregate_p.is_empty() {
            0.0
        } else {
            evaluated as f64 / aggregate_p.len() as f64
        },
        aggregate_p,
        score,
    })
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.digits$}")
    }
}

/// A readable table: one row per recording and a total (SzCORE sums counts over recordings).
pub fn table(results: &[RecordingEval]) -> String {
    let mut out = format!(
        "{:<28} {:>8} {:>5} {:>6} {:>4} {:>4} {:>4} {:>6} {:>6} {:>6} {:>9} {:>9}\n",
        "recording",
        "dur s",
        "ch",
        "eval%",
        "ref",
        "TP",
        "FP",
        "sens",
        "prec",
        "F1",
        "FA/24h",
        "lat med s"
    );
    let row = |name: &str, s: &EventScore, channels: String, evaluated: String| {
        format!(
            "{:<28} {:>8.1} {:>5} {:>6} {:>4} {:>4} {:>4} {:>6} {:>6} {:>6} {:>9} {:>9}\n",
            name.chars().take(28).collect::<String>(),
            s.duration_s,
            channels,
            evaluated,
            s.reference_events,
            s.true_positives,
            s.false_positives,
            fmt(s.sensitivity(), 2),
            fmt(s.precision(), 2),
            fmt(s.f1(), 2),
            fmt(s.false_alarms_per_24h(), 1),
            fmt(s.median_latency_s(), 1),
        )
    };
    for r in results {
        out += &row(
            &r.name,
            &r.score,
            r.channels.len().to_string(),
            format!("{:.0}", 100.0 * r.evaluated_fraction),
        );
    }
    let total = EventScore::sum(results.iter().map(|r| &r.score));
    out += &row("TOTAL", &total, String::new(), String::new());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_turns_a_trace_into_detections() {
        // 10 s low, 15 s high, 40 s low (0.5 s points); defaults: on >= 0.8 for 10 s, off
        // < 0.5 for 30 s.
        let mut p = vec![0.1f32; 20];
        p.extend([0.9; 30]);
        p.extend([0.1; 80]);
        let d = detections_from_trace(&p, AlertPolicy::default(), 65.0);
        assert_eq!(
            d,
            vec![Detection {
                event: Interval::new(10.0, 25.0),
                alarm_s: 20.0
            }]
        );
        // A NaN inside the high run restarts it: 9.5 s + NaN + 5 s never reaches 10 s.
        let mut p = vec![0.9f32; 19];
        p.push(f32::NAN);
        p.extend([0.9; 10]);
        p.extend([0.1; 70]);
        assert!(detections_from_trace(&p, AlertPolicy::default(), 50.0).is_empty());
        // Still high at the end: the detection runs to the end of the recording.
        let p = vec![0.95f32; 40];
        let d = detections_from_trace(&p, AlertPolicy::default(), 20.0);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].event, Interval::new(0.0, 20.0));
        assert_eq!(d[0].alarm_s, 10.0);
    }
}
