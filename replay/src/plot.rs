//! SVG plot of one evaluated recording: the aggregate seizure probability over time, the
//! policy's on/off thresholds, annotated seizures (red), injected synthetic bursts (orange)
//! and detections (blue bars at the top; a tick marks the alarm time). Gaps in the trace
//! are points the model did not evaluate (NaN), drawn as gaps, never as zero.

use std::path::Path;

use plotters::prelude::*;
use vigil_inference::alerts::AlertPolicy;

use crate::eval::{RecordingEval, STEP_S};

/// Plotting failed (file or drawing backend).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    /// Output path.
    pub path: String,
    /// Backend message.
    pub reason: String,
}

/// Writes the plot of `eval` to `path` (SVG).
pub fn write_svg(eval: &RecordingEval, policy: &AlertPolicy, path: &Path) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(path, (1200, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let duration = eval.duration_s.max(STEP_S);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: {} ch @ {} Hz, aggregate seizure probability",
                eval.name,
                eval.channels.len(),
                eval.rate_hz
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..duration, 0.0..1.12)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("signal time (s)")
        .y_desc("p(seizure)")
        .draw()
        .map_err(|e| err(&e))?;
    for (event, synthetic) in eval.reference.iter().zip(&eval.reference_synthetic) {
        let colour = if *synthetic {
            RGBColor(255, 170, 60).mix(0.35)
        } else {
            RED.mix(0.25)
        };
        chart
            .draw_series([Rectangle::new(
                [(event.start_s, 0.0), (event.end_s, 1.0)],
                colour.filled(),
            )])
            .map_err(|e| err(&e))?;
    }
    for d in &eval.detections {
        chart
            .draw_series([
                Rectangle::new(
                    [
                        (d.event.start_s, 1.04),
                        (d.event.end_s.max(d.event.start_s + STEP_S), 1.1),
                    ],
                    BLUE.mix(0.6).filled(),
                ),
                Rectangle::new(
                    [(d.alarm_s, 1.0), (d.alarm_s + STEP_S, 1.12)],
                    BLACK.filled(),
                ),
            ])
            .map_err(|e| err(&e))?;
    }
    for (threshold, colour) in [(policy.on_threshold, RED), (policy.off_threshold, GREEN)] {
        chart
            .draw_series(LineSeries::new(
                [
                    (0.0, f64::from(threshold)),
                    (duration, f64::from(threshold)),
                ],
                colour.mix(0.5),
            ))
            .map_err(|e| err(&e))?;
    }
    // One line per run of evaluated points: NaN breaks the line.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut runs = Vec::new();
    for (k, p) in eval.aggregate_p.iter().enumerate() {
        if p.is_nan() {
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        } else {
            run.push((k as f64 * STEP_S, f64::from(*p)));
        }
    }
    runs.push(run);
    for run in runs.into_iter().filter(|r| !r.is_empty()) {
        chart
            .draw_series(LineSeries::new(run, BLACK.stroke_width(1)))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
