//! When a consumer group keeps up: its lag (records produced but not yet committed by the
//! group) is flat, and small, over a measuring period at constant load.
//!
//! Lag is sampled every few seconds during the period. Committed offsets advance in steps
//! (librdkafka commits stored offsets every second) and the model runs every `step_s` for all
//! patients at once, so single samples are noisy: the criterion compares averages.
//!
//! - level at one third = mean of the samples within `window / 2` of `period / 3`;
//! - level at the end = mean of the samples in the last `window` of the period;
//!
//! `window` is one model step (`inference.step_s`): the model runs for every patient once per
//! step, so lag is a sawtooth of that period and only whole-period means compare fairly.
//! - **sustained** when `end <= third + slack` (not growing) **and** `end <= max_end` (not
//!   persistently behind: a flat but large lag is a backlog the group never works off).
//!
//! `slack` and `max_end` are given in records; the benchmark derives them from the offered
//! load (records per second) so they mean "seconds of input".

use serde::Serialize;

/// One lag observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagSample {
    /// Seconds since the start of the measuring period.
    pub t_s: f64,
    /// Records not yet committed by the group, summed over its topics and partitions.
    pub lag: f64,
}

/// Thresholds of [`judge`], in records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagCriterion {
    /// Allowed growth from one third to the end.
    pub slack: f64,
    /// Largest allowed level at the end.
    pub max_end: f64,
}

impl LagCriterion {
    /// Thresholds as seconds of input at `records_per_s`.
    pub fn from_seconds(records_per_s: f64, slack_s: f64, max_end_s: f64) -> Self {
        Self {
            slack: records_per_s * slack_s,
            max_end: records_per_s * max_end_s,
        }
    }

    /// Thresholds for a step of `patients` devices sending `records_per_patient_s` each. A
    /// step of none (the quiet phase) still allows one patient's worth: the evicted patients'
    /// last points and signal-loss alerts arrive during it.
    pub fn for_patients(
        patients: usize,
        records_per_patient_s: f64,
        slack_s: f64,
        max_end_s: f64,
    ) -> Self {
        let records_per_s = patients.max(1) as f64 * records_per_patient_s;
        Self::from_seconds(records_per_s, slack_s, max_end_s)
    }
}

/// The judgement of one group over one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagVerdict {
    /// Mean lag over one window centred on one third of the period.
    pub at_third: f64,
    /// Mean lag over the last window.
    pub at_end: f64,
    /// Largest sample.
    pub max: f64,
    /// Whether the group kept up.
    pub sustained: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Judges `samples` taken over a period of `period_s` seconds, averaging over `window_s`.
pub fn judge(
    samples: &[LagSample],
    period_s: f64,
    window_s: f64,
    criterion: LagCriterion,
) -> LagVerdict {
    let third = period_s / 3.0;
    let half_width = window_s / 2.0;
    let at_third = mean(
        samples
            .iter()
            .filter(|s| (s.t_s - third).abs() <= half_width)
            .map(|s| s.lag),
    );
    let at_end = mean(
        samples
            .iter()
            .filter(|s| s.t_s >= period_s - window_s)
            .map(|s| s.lag),
    );
    let max = samples.iter().map(|s| s.lag).fold(0.0, f64::max);
    let (Some(at_third), Some(at_end)) = (at_third, at_end) else {
        return LagVerdict {
            at_third: at_third.unwrap_or(f64::NAN),
            at_end: at_end.unwrap_or(f64::NAN),
            max,
            sustained: false,
            reason: Some("too few lag samples in the period".into()),
        };
    };
    let reason = if at_end > at_third + criterion.slack {
        Some(format!(
            "lag grew from {at_third:.0} to {at_end:.0} records (slack {:.0})",
            criterion.slack
        ))
    } else if at_end > criterion.max_end {
        Some(format!(
            "lag stayed at {at_end:.0} records (limit {:.0})",
            criterion.max_end
        ))
    } else {
        None
    };
    LagVerdict {
        at_third,
        at_end,
        max,
        sustained: reason.is_none(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<LagSample> {
        (0..=60)
            .map(|i| {
                let t = i as f64;
                LagSample { t_s: t, lag: f(t) }
            })
            .collect()
    }

    const CRITERION: LagCriterion = LagCriterion {
        slack: 20.0,
        max_end: 200.0,
    };

    #[test]
    fn flat_noisy_lag_is_sustained() {
        // Commits every second and model bursts: a sawtooth around 50 records.
        let v = judge(
            &series(|t| 50.0 + 30.0 * (t % 4.0 - 1.5)),
            60.0,
            10.0,
            CRITERION,
        );
        assert!(v.sustained, "{v:?}");
        assert!((v.at_third - v.at_end).abs() < 20.0, "{v:?}");
    }

    #[test]
    fn model_step_sawtooth_is_sustained_when_judged_over_whole_steps() {
        // Every 20 s the model runs for all patients: lag jumps to 300 and is worked off in
        // 15 s. Over 120 s, means over whole 20 s steps are equal wherever they start.
        let saw = |t: f64| (300.0 - 20.0 * (t % 20.0)).max(0.0);
        let samples: Vec<LagSample> = (0..60)
            .map(|i| LagSample {
                t_s: i as f64 * 2.0,
                lag: saw(i as f64 * 2.0),
            })
            .collect();
        let v = judge(&samples, 120.0, 20.0, CRITERION);
        assert!(v.sustained, "{v:?}");
        assert_eq!(v.max, 300.0);
    }

    #[test]
    fn a_draining_backlog_is_sustained() {
        let v = judge(
            &series(|t| (1000.0 - 20.0 * t).max(10.0)),
            60.0,
            10.0,
            CRITERION,
        );
        assert!(v.sustained, "{v:?}");
        assert_eq!(v.max, 1000.0);
    }

    #[test]
    fn growing_lag_is_not_sustained() {
        // 2 records/s of growth: 40 more at the end than at one third.
        let v = judge(&series(|t| 10.0 + 2.0 * t), 60.0, 10.0, CRITERION);
        assert!(!v.sustained, "{v:?}");
        assert!(
            v.reason.as_deref().is_some_and(|r| r.contains("grew")),
            "{v:?}"
        );
    }

    #[test]
    fn flat_but_large_lag_is_not_sustained() {
        let v = judge(&series(|_| 500.0), 60.0, 10.0, CRITERION);
        assert!(!v.sustained, "{v:?}");
        assert!(
            v.reason.as_deref().is_some_and(|r| r.contains("stayed")),
            "{v:?}"
        );
    }

    #[test]
    fn too_few_samples_is_not_sustained() {
        let v = judge(&[LagSample { t_s: 1.0, lag: 0.0 }], 60.0, 10.0, CRITERION);
        assert!(!v.sustained);
    }

    #[test]
    fn a_step_without_devices_allows_the_last_outputs_of_evicted_patients() {
        let quiet = LagCriterion::for_patients(0, 3.0, 3.0, 20.0);
        assert_eq!(quiet, LagCriterion::from_seconds(3.0, 3.0, 20.0));
        let trailing = series(|t| if t > 50.0 { 2.0 } else { 0.0 });
        assert!(judge(&trailing, 60.0, 20.0, quiet).sustained);
        let stuck = series(|_| 200.0);
        assert!(!judge(&stuck, 60.0, 20.0, quiet).sustained);
        assert_eq!(
            LagCriterion::for_patients(24, 3.0, 3.0, 20.0),
            LagCriterion::from_seconds(72.0, 3.0, 20.0)
        );
    }

    #[test]
    fn thresholds_in_seconds_of_input() {
        let c = LagCriterion::from_seconds(96.0, 2.0, 10.0);
        assert_eq!(c.slack, 192.0);
        assert_eq!(c.max_end, 960.0);
    }
}
