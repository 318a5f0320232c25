//! LSL timestamps to UTC.
//!
//! An LSL timestamp is the outlet host's `local_clock()` (a monotonic clock, seconds). The
//! inlet's `time_correction` is the offset that maps it onto this host's `local_clock()`; it
//! is estimated NTP-style from round trips, and its `uncertainty` (the round-trip time) bounds
//! its error. This host's `local_clock()` is then mapped to UTC by reading both clocks
//! back to back ([`UtcMap::measure`]); half the read interval bounds that step's error. A
//! sample's UTC time is therefore off by at most `uncertainty + read error`, plus whatever
//! the outlet's timestamp itself is off from the moment the amplifier sampled (the
//! amplifier app's business; LSL apps usually stamp at push time).

use std::time::{SystemTime, UNIX_EPOCH};

/// This host's `local_clock()` to UTC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtcMap {
    /// UTC ns minus local clock ns.
    pub offset_ns: i64,
    /// Bound on the error of `offset_ns`, in ns.
    pub error_ns: i64,
}

fn utc_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Seconds (an LSL time) to integer ns.
pub fn seconds_to_ns(seconds: f64) -> i64 {
    (seconds * 1e9).round() as i64
}

impl UtcMap {
    /// Reads UTC, the LSL clock and UTC again, 16 times, and keeps the tightest bracket.
    pub fn measure() -> Self {
        let mut best = Self {
            offset_ns: 0,
            error_ns: i64::MAX,
        };
        for _ in 0..16 {
            let before = utc_now_ns();
            let local = seconds_to_ns(lsl::local_clock());
            let after = utc_now_ns();
            let error_ns = (after - before + 1) / 2;
            if error_ns < best.error_ns {
                best = Self {
                    offset_ns: before + (after - before) / 2 - local,
                    error_ns,
                };
            }
        }
        best
    }

    /// UTC ns of a time on this host's LSL clock (seconds).
    pub fn to_utc_ns(&self, local_s: f64) -> i64 {
        seconds_to_ns(local_s) + self.offset_ns
    }
}

/// One `time_correction` measurement of an inlet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Correction {
    /// Add to the outlet's timestamps to get this host's LSL clock, in s.
    pub offset_s: f64,
    /// Round-trip time of the measurement, bounding the error of `offset_s`, in s.
    pub uncertainty_s: f64,
}

/// LSL timestamps of one inlet to UTC ns, with the bound of the error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeMap {
    /// This host's clock to UTC.
    pub utc: UtcMap,
    /// The inlet's latest correction.
    pub correction: Correction,
}

impl TimeMap {
    /// UTC ns of an outlet timestamp.
    pub fn utc_ns(&self, timestamp_s: f64) -> i64 {
        self.utc.to_utc_ns(timestamp_s + self.correction.offset_s)
    }

    /// Bound on the error of [`TimeMap::utc_ns`] (correction uncertainty + clock reads), ns.
    pub fn error_ns(&self) -> i64 {
        seconds_to_ns(self.correction.uncertainty_s) + self.utc.error_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lsl_clock_maps_onto_utc_within_the_measured_error() {
        let map = UtcMap::measure();
        assert!(
            map.error_ns < 1_000_000,
            "clock reads took {} ns",
            map.error_ns
        );
        let before = utc_now_ns();
        let mapped = map.to_utc_ns(lsl::local_clock());
        let after = utc_now_ns();
        assert!(
            mapped >= before - map.error_ns - 1_000 && mapped <= after + map.error_ns + 1_000,
            "{before} <= {mapped} <= {after} (error {})",
            map.error_ns
        );
    }

    #[test]
    fn correction_shifts_outlet_time_and_adds_its_uncertainty() {
        let map = TimeMap {
            utc: UtcMap {
                offset_ns: 1_000_000_000_000,
                error_ns: 500,
            },
            correction: Correction {
                offset_s: 0.25,
                uncertainty_s: 0.001,
            },
        };
        assert_eq!(map.utc_ns(10.0), 1_000_000_000_000 + 10_250_000_000);
        assert_eq!(map.error_ns(), 1_000_500);
    }
}
