//! The burst-suppression ratio over a trailing window, updated per sample in O(1) amortised.
//!
//! A sample is *suppressed* when it belongs to a run of consecutive evaluated samples whose
//! amplitude is below the threshold and the run, as seen so far, lasts at least the minimum
//! duration. Once a run reaches the minimum, its earlier samples are marked too, so a run
//! still shorter than the minimum at the end of the window does not count (yet).

/// Per-sample class in the window ring.
const VALID: u8 = 0;
const SUPPRESSED: u8 = 1;
const MISSING: u8 = 2;

/// Trailing-window suppression counter of one hemisphere (or of all derivations).
#[derive(Debug, Clone)]
pub struct Suppression {
    flags: Vec<u8>,
    pos: usize,
    filled: usize,
    run: usize,
    min_run: usize,
    suppressed: usize,
    valid: usize,
    min_valid: usize,
}

impl Suppression {
    /// Window of `window` samples, runs of at least `min_run` samples (`1 <= min_run <=
    /// window`), a ratio only when at least `min_valid` samples of the window are evaluated.
    pub fn new(window: usize, min_run: usize, min_valid: usize) -> Self {
        Self {
            flags: vec![MISSING; window.max(1)],
            pos: 0,
            filled: 0,
            run: 0,
            min_run: min_run.clamp(1, window.max(1)),
            suppressed: 0,
            valid: 0,
            min_valid,
        }
    }

    /// Adds one sample: `None` when not evaluated, else whether it is below the threshold.
    #[inline]
    pub fn push(&mut self, below: Option<bool>) {
        let len = self.flags.len();
        if self.filled == len {
            match self.flags[self.pos] {
                SUPPRESSED => {
                    self.suppressed -= 1;
                    self.valid -= 1;
                }
                VALID => self.valid -= 1,
                _ => {}
            }
        } else {
            self.filled += 1;
        }
        let flag = match below {
            None => {
                self.run = 0;
                MISSING
            }
            Some(false) => {
                self.run = 0;
                VALID
            }
            Some(true) => {
                self.run += 1;
                if self.run == self.min_run {
                    // The run just became long enough: its earlier samples (still in the
                    // window, since min_run <= window) become suppressed too.
                    for back in 1..self.min_run {
                        let i = (self.pos + len - back) % len;
                        self.flags[i] = SUPPRESSED;
                    }
                    self.suppressed += self.min_run - 1;
                }
                if self.run >= self.min_run {
                    self.suppressed += 1;
                    SUPPRESSED
                } else {
                    VALID
                }
            }
        };
        if flag != MISSING {
            self.valid += 1;
        }
        self.flags[self.pos] = flag;
        self.pos = (self.pos + 1) % len;
    }

    /// Percentage of evaluated samples of the window in suppression; NaN until the window is
    /// full or when fewer than the minimum of its samples were evaluated.
    pub fn percent(&self) -> f64 {
        if self.filled < self.flags.len() || self.valid < self.min_valid || self.valid == 0 {
            return f64::NAN;
        }
        100.0 * self.suppressed as f64 / self.valid as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_runs_do_not_count_and_long_runs_count_whole() {
        let mut s = Suppression::new(10, 3, 1);
        for b in [
            true, true, false, true, true, true, true, false, false, false,
        ] {
            s.push(Some(b));
        }
        assert_eq!(s.percent(), 40.0);
        // Sliding on: the first two (short run) leave, nothing changes in the count.
        s.push(Some(false));
        s.push(Some(false));
        assert_eq!(s.percent(), 40.0);
    }

    #[test]
    fn missing_samples_break_runs_and_leave_the_denominator() {
        let mut s = Suppression::new(6, 2, 4);
        for b in [
            Some(true),
            None,
            Some(true),
            Some(true),
            Some(false),
            Some(false),
        ] {
            s.push(b);
        }
        assert_eq!(s.percent(), 40.0);
        let mut few = Suppression::new(4, 2, 4);
        for b in [Some(true), None, Some(true), Some(true)] {
            few.push(b);
        }
        assert!(few.percent().is_nan());
    }
}
