//! Heart-rate analysis per patient: which observations are plausible, heart-rate variability
//! (RMSSD) from RR intervals, and ictal-tachycardia rises (docs/ALERTS.md).
//!
//! - **Validity.** A bpm outside `[hr_valid_min_bpm, hr_valid_max_bpm]` is an artefact: it is
//!   "not evaluated", never evidence of brady- or tachycardia.
//! - **RMSSD.** Computed over the RR intervals of the last `rmssd_window_s` that are normal
//!   beats: within the valid range and differing from the previous interval by at most 20 %
//!   (the Malik criterion; it removes ectopic beats and missed detections, which otherwise
//!   dominate RMSSD). Only differences between consecutive accepted intervals count.
//! - **Ictal tachycardia.** At each valid point, the current rate (median of the last 3 s, so
//!   one ectopic beat cannot trigger it) is compared with the baseline (median of the
//!   `ictal_baseline_s` that end `ictal_rise_within_s` earlier): a rise of `ictal_rise_bpm` or
//!   more is recorded. The baseline needs at least half its window covered by valid points.

use std::collections::VecDeque;

use vigil_core::config::AlertPolicy;
use vigil_core::record::HrPoint;

/// Seconds over which the "current" rate is taken (median), damping single beats.
const CURRENT_WINDOW_S: f64 = 3.0;
/// Largest relative change between successive RR intervals of normal beats.
const MALIK_FRACTION: f32 = 0.2;
/// Rises remembered for attaching to later seizure alerts, in seconds.
const RISE_MEMORY_S: f64 = 900.0;

/// A heart-rate rise over its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeartRateRise {
    /// When the rise was observed (device time), UTC ns.
    pub at_ns: i64,
    /// Median rate of the baseline window, bpm.
    pub baseline_bpm: f32,
    /// Current rate (median of the last 3 s), bpm.
    pub bpm: f32,
}

impl HeartRateRise {
    /// Rise over the baseline, bpm.
    pub fn rise_bpm(&self) -> f32 {
        self.bpm - self.baseline_bpm
    }
}

/// What one observation means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeartRateAssessment {
    /// Observation time, UTC ns.
    pub t_ns: i64,
    /// The rate if plausible; `None` = artefact, not evaluated.
    pub bpm: Option<f32>,
    /// An ictal-tachycardia rise ends at this point.
    pub rise: Option<HeartRateRise>,
}

/// One patient's heart-rate history, as much as the analyses need.
#[derive(Debug, Clone)]
pub struct HeartRateTracker {
    policy: AlertPolicy,
    /// Valid (t_ns, bpm) of the last baseline + rise window.
    rates: VecDeque<(i64, f32)>,
    /// Accepted successive-interval differences (t_ns, rr_n - rr_{n-1}) in the RMSSD window.
    nn_diffs: VecDeque<(i64, f32)>,
    /// Previous RR interval (raw) and whether it was a normal beat.
    previous_rr: Option<(f32, bool)>,
    rises: VecDeque<HeartRateRise>,
}

impl HeartRateTracker {
    /// Empty history.
    pub fn new(policy: AlertPolicy) -> Self {
        Self {
            policy,
            rates: VecDeque::new(),
            nn_diffs: VecDeque::new(),
            previous_rr: None,
            rises: VecDeque::new(),
        }
    }

    fn valid_bpm(&self, bpm: f32) -> bool {
        bpm.is_finite()
            && bpm >= self.policy.hr_valid_min_bpm
            && bpm <= self.policy.hr_valid_max_bpm
    }

    /// Feeds one observation (in time order).
    pub fn push(&mut self, point: &HrPoint) -> HeartRateAssessment {
        let t = point.t_ns;
        if let Some(rr) = point.rr_ms {
            self.push_rr(t, rr);
        }
        let bpm = self.valid_bpm(point.bpm).then_some(point.bpm);
        let mut rise = None;
        if let Some(bpm) = bpm {
            self.rates.push_back((t, bpm));
            let keep_ns = secs_ns(self.policy.ictal_baseline_s + self.policy.ictal_rise_within_s);
            while self.rates.front().is_some_and(|(t0, _)| *t0 < t - keep_ns) {
                self.rates.pop_front();
            }
            rise = self.rise_at(t);
            if let Some(rise) = rise {
                self.rises.push_back(rise);
            }
        }
        let memory = secs_ns(RISE_MEMORY_S);
        while self.rises.front().is_some_and(|r| r.at_ns < t - memory) {
            self.rises.pop_front();
        }
        HeartRateAssessment { t_ns: t, bpm, rise }
    }

    fn push_rr(&mut self, t: i64, rr: f32) {
        let normal_range =
            60_000.0 / self.policy.hr_valid_max_bpm..=60_000.0 / self.policy.hr_valid_min_bpm;
        let in_range = rr.is_finite() && normal_range.contains(&rr);
        let normal = match self.previous_rr {
            Some((previous, _)) => in_range && (rr - previous).abs() <= MALIK_FRACTION * previous,
            None => in_range,
        };
        if let Some((previous, previous_normal)) = self.previous_rr {
            if normal && previous_normal {
                self.nn_diffs.push_back((t, rr - previous));
            }
        }
        self.previous_rr = Some((rr, normal));
        let window = secs_ns(self.policy.rmssd_window_s);
        while self
            .nn_diffs
            .front()
            .is_some_and(|(t0, _)| *t0 <= t - window)
        {
            self.nn_diffs.pop_front();
        }
    }

    fn rise_at(&self, t: i64) -> Option<HeartRateRise> {
        let within = secs_ns(self.policy.ictal_rise_within_s);
        let baseline_ns = secs_ns(self.policy.ictal_baseline_s);
        let current_from = t - secs_ns(CURRENT_WINDOW_S);
        let baseline_to = t - within;
        let baseline_from = baseline_to - baseline_ns;
        let baseline: Vec<(i64, f32)> = self
            .rates
            .iter()
            .copied()
            .filter(|(ti, _)| *ti >= baseline_from && *ti < baseline_to)
            .collect();
        let covered = match (baseline.first(), baseline.last()) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => 0,
        };
        if baseline.len() < 5 || covered * 2 < baseline_ns {
            return None;
        }
        let baseline_bpm = median(baseline.iter().map(|p| p.1).collect())?;
        let current: Vec<f32> = self
            .rates
            .iter()
            .filter(|(ti, _)| *ti > current_from)
            .map(|p| p.1)
            .collect();
        let bpm = median(current)?;
        (bpm - baseline_bpm >= self.policy.ictal_rise_bpm).then_some(HeartRateRise {
            at_ns: t,
            baseline_bpm,
            bpm,
        })
    }

    /// RMSSD of the normal RR intervals in the window, ms; `None` with fewer than 10
    /// successive differences (too few beats to mean anything).
    pub fn rmssd_ms(&self) -> Option<f32> {
        if self.nn_diffs.len() < 10 {
            return None;
        }
        let sum: f64 = self
            .nn_diffs
            .iter()
            .map(|(_, d)| f64::from(*d).powi(2))
            .sum();
        Some((sum / self.nn_diffs.len() as f64).sqrt() as f32)
    }

    /// The largest rise observed at or after `from_ns`, if any.
    pub fn largest_rise_since(&self, from_ns: i64) -> Option<HeartRateRise> {
        self.rises
            .iter()
            .filter(|r| r.at_ns >= from_ns)
            .copied()
            .max_by(|a, b| a.rise_bpm().total_cmp(&b.rise_bpm()))
    }
}

fn secs_ns(s: f64) -> i64 {
    (s * 1e9) as i64
}

fn median(mut values: Vec<f32>) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_s: f64, bpm: f32) -> HrPoint {
        HrPoint {
            t_ns: (t_s * 1e9) as i64,
            bpm,
            rr_ms: Some(60_000.0 / bpm),
        }
    }

    #[test]
    fn implausible_rates_are_not_evaluated() {
        let mut hr = HeartRateTracker::new(AlertPolicy::default());
        assert_eq!(hr.push(&point(0.0, 10.0)).bpm, None);
        assert_eq!(hr.push(&point(1.0, 300.0)).bpm, None);
        assert_eq!(hr.push(&point(2.0, 70.0)).bpm, Some(70.0));
    }

    #[test]
    fn a_fast_rise_over_the_baseline_is_found_and_a_slow_drift_is_not() {
        let mut fast = HeartRateTracker::new(AlertPolicy::default());
        let mut found = None;
        for s in 0..100 {
            let bpm = if s < 80 {
                70.0
            } else {
                70.0 + (s - 79).min(8) as f32 * 2.0
            };
            if let Some(rise) = fast.push(&point(f64::from(s), bpm)).rise {
                found.get_or_insert(rise);
            }
        }
        let rise = found.expect("a 16 bpm rise within 8 s");
        assert_eq!(rise.baseline_bpm, 70.0);
        // Current = median of the last 3 s: the rise counts once that median is +10.
        assert_eq!(rise.at_ns, 85_000_000_000);
        assert!(rise.rise_bpm() >= 10.0);

        // +10 bpm spread evenly over 10 minutes never rises 10 bpm over its recent baseline.
        let mut slow = HeartRateTracker::new(AlertPolicy::default());
        for s in 0..600 {
            let rise = slow.push(&point(f64::from(s), 70.0 + s as f32 / 60.0)).rise;
            assert_eq!(rise, None, "at {s} s");
        }
    }

    #[test]
    fn one_ectopic_beat_is_not_a_rise_and_is_left_out_of_rmssd() {
        let mut hr = HeartRateTracker::new(AlertPolicy::default());
        for s in 0..120 {
            // Alternating 800/820 ms: successive differences of 20 ms, RMSSD 20.
            let rr = if s % 2 == 0 { 800.0 } else { 820.0 };
            let mut p = HrPoint {
                t_ns: s * 1_000_000_000,
                bpm: 60_000.0 / rr,
                rr_ms: Some(rr),
            };
            if s == 100 {
                // A premature beat: 450 ms, 133 bpm.
                p.rr_ms = Some(450.0);
                p.bpm = 133.0;
            }
            assert_eq!(hr.push(&p).rise, None, "at {s} s");
        }
        let rmssd = hr.rmssd_ms().expect("enough beats");
        assert!((rmssd - 20.0).abs() < 1e-3, "rmssd {rmssd}");
    }

    #[test]
    fn the_baseline_must_be_covered() {
        let mut hr = HeartRateTracker::new(AlertPolicy::default());
        // Only 20 s of baseline, then a big jump: not enough history to call it a rise.
        for s in 50..70 {
            hr.push(&point(f64::from(s), 70.0));
        }
        for s in 70..85 {
            assert_eq!(hr.push(&point(f64::from(s), 110.0)).rise, None);
        }
    }
}
