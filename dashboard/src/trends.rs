//! qEEG trends for the patient view (docs/TRENDS.md, docs/DASHBOARD.md "Trends"): the JSON the
//! page reads, and the bucketing that lets one screen show 24 h.
//!
//! A 24 h span holds 43,200 intervals of 2 s, far more columns than a screen has pixels, so
//! history requests may ask for buckets: consecutive intervals merged into one column of
//! `bucket_s`. Merging keeps what each trend means: CSA, asymmetry, the asymmetry index and
//! the burst-suppression ratio are averaged over the evaluated intervals of the bucket (NaN
//! only when none was evaluated); the aEEG band keeps its extremes (lowest lower margin,
//! highest upper margin), as on a paper aEEG compressed over hours.

use std::fmt::Write as _;

use vigil_core::record::{EegTrends, SideTrends};

use crate::live::{ns_to_ms, write_floats};

/// `{"start_ms","duration_ms","montage","regions","csa_db":[[..]..],"asymmetry":[..],
/// "asymmetry_index","left":{"aeeg":[min,max],"bsr"},"right":..,"global":..}`, NaN as `null`.
pub fn trends_json(t: &EegTrends) -> String {
    let mut out = String::with_capacity(256 + t.csa_db.len() * 30 * 7);
    let _ = write!(
        out,
        r#"{{"start_ms":{},"duration_ms":{},"montage":{},"regions":{},"csa_db":["#,
        ns_to_ms(t.start_ns),
        ns_to_ms(t.duration_ns),
        serde_json::to_string(&t.montage).unwrap_or_default(),
        serde_json::to_string(&t.regions).unwrap_or_default(),
    );
    for (i, row) in t.csa_db.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_floats(&mut out, row, Some(2));
    }
    out.push_str(r#"],"asymmetry":"#);
    write_floats(&mut out, &t.asymmetry, Some(4));
    out.push_str(r#","asymmetry_index":"#);
    write_floats(&mut out, &[t.asymmetry_index], Some(4));
    for (name, side) in [
        ("left", &t.left),
        ("right", &t.right),
        ("global", &t.global),
    ] {
        let _ = write!(out, r#","{name}":{{"aeeg":"#);
        write_floats(&mut out, &[side.aeeg_min_uv, side.aeeg_max_uv], Some(2));
        out.push_str(r#","bsr":"#);
        write_floats(&mut out, &[side.bsr_percent], Some(1));
        out.push('}');
    }
    out.push('}');
    out
}

/// Running sums of one bucket.
struct Bucket {
    first: EegTrends,
    csa: Vec<Vec<Mean>>,
    asymmetry: Vec<Mean>,
    index: Mean,
    sides: [SideBucket; 3],
}

/// NaN-ignoring mean.
#[derive(Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: u32,
}

impl Mean {
    fn add(&mut self, v: f32) {
        if v.is_finite() {
            self.sum += f64::from(v);
            self.n += 1;
        }
    }
    fn value(self) -> f32 {
        if self.n == 0 {
            f32::NAN
        } else {
            (self.sum / f64::from(self.n)) as f32
        }
    }
}

#[derive(Clone, Copy)]
struct SideBucket {
    min: f32,
    max: f32,
    bsr: Mean,
}

impl SideBucket {
    fn new() -> Self {
        Self {
            min: f32::NAN,
            max: f32::NAN,
            bsr: Mean::default(),
        }
    }
    fn add(&mut self, s: &SideTrends) {
        // f32::min/max ignore a NaN operand: NaN stays only while nothing was evaluated.
        self.min = self.min.min(s.aeeg_min_uv);
        self.max = self.max.max(s.aeeg_max_uv);
        self.bsr.add(s.bsr_percent);
    }
    fn value(self) -> SideTrends {
        SideTrends {
            aeeg_min_uv: self.min,
            aeeg_max_uv: self.max,
            bsr_percent: self.bsr.value(),
        }
    }
}

impl Bucket {
    fn new(first: &EegTrends) -> Self {
        Self {
            csa: first
                .csa_db
                .iter()
                .map(|row| vec![Mean::default(); row.len()])
                .collect(),
            asymmetry: vec![Mean::default(); first.asymmetry.len()],
            index: Mean::default(),
            sides: [SideBucket::new(); 3],
            first: first.clone(),
        }
    }

    /// Whether `t` can merge into this bucket: same montage and regions (a new stream may
    /// bring others; its intervals start a column of their own).
    fn takes(&self, t: &EegTrends) -> bool {
        self.first.montage == t.montage && self.first.regions == t.regions
    }

    fn add(&mut self, t: &EegTrends) {
        for (sums, row) in self.csa.iter_mut().zip(&t.csa_db) {
            for (m, &v) in sums.iter_mut().zip(row) {
                m.add(v);
            }
        }
        for (m, &v) in self.asymmetry.iter_mut().zip(&t.asymmetry) {
            m.add(v);
        }
        self.index.add(t.asymmetry_index);
        for (b, s) in self.sides.iter_mut().zip([&t.left, &t.right, &t.global]) {
            b.add(s);
        }
    }

    fn finish(self, start_ns: i64, bucket_ns: i64) -> EegTrends {
        let [left, right, global] = self.sides.map(SideBucket::value);
        EegTrends {
            start_ns,
            duration_ns: bucket_ns,
            csa_db: self
                .csa
                .into_iter()
                .map(|row| row.into_iter().map(Mean::value).collect())
                .collect(),
            asymmetry: self.asymmetry.into_iter().map(Mean::value).collect(),
            asymmetry_index: self.index.value(),
            left,
            right,
            global,
            ..self.first
        }
    }
}

/// Merges intervals (in start order) into columns of `bucket_ns` aligned on `from_ns`: one
/// column per bucket that holds at least one interval, starting at the bucket's start.
pub fn bucket(items: &[EegTrends], from_ns: i64, bucket_ns: i64) -> Vec<EegTrends> {
    let bucket_ns = bucket_ns.max(1);
    let mut out = Vec::new();
    let mut open: Option<(i64, Bucket)> = None;
    for t in items {
        let key = from_ns + (t.start_ns - from_ns).div_euclid(bucket_ns) * bucket_ns;
        match &mut open {
            Some((start, b)) if *start == key && b.takes(t) => b.add(t),
            _ => {
                if let Some((start, b)) = open.take() {
                    out.push(b.finish(start, bucket_ns));
                }
                let mut b = Bucket::new(t);
                b.add(t);
                open = Some((key, b));
            }
        }
    }
    if let Some((start, b)) = open {
        out.push(b.finish(start, bucket_ns));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::record::{MontageKind, TREND_BINS};

    fn interval(start_s: i64, csa: f32, aeeg: (f32, f32), bsr: f32) -> EegTrends {
        let side = SideTrends {
            aeeg_min_uv: aeeg.0,
            aeeg_max_uv: aeeg.1,
            bsr_percent: bsr,
        };
        EegTrends {
            patient_id: "p".into(),
            stream_id: uuid::Uuid::nil(),
            start_ns: start_s * 1_000_000_000,
            duration_ns: 2_000_000_000,
            montage: MontageKind::DoubleBanana,
            regions: vec!["left lateral".into()],
            csa_db: vec![vec![csa; TREND_BINS]],
            asymmetry: vec![0.5; TREND_BINS],
            asymmetry_index: 0.25,
            left: side,
            right: side,
            global: side,
            emitted_ns: 0,
        }
    }

    #[test]
    fn buckets_average_trends_and_keep_aeeg_extremes() {
        let items = [
            interval(0, 10.0, (5.0, 20.0), 10.0),
            interval(2, f32::NAN, (f32::NAN, f32::NAN), f32::NAN),
            interval(4, 20.0, (3.0, 15.0), 30.0),
            interval(10, 1.0, (8.0, 9.0), 0.0),
        ];
        let out = bucket(&items, 0, 6_000_000_000);
        assert_eq!(out.len(), 2, "0-6 s and 6-12 s");
        let a = &out[0];
        assert_eq!((a.start_ns, a.duration_ns), (0, 6_000_000_000));
        assert_eq!(
            a.csa_db[0][0], 15.0,
            "NaN intervals do not pull the mean to 0"
        );
        assert_eq!((a.left.aeeg_min_uv, a.left.aeeg_max_uv), (3.0, 20.0));
        assert_eq!(a.left.bsr_percent, 20.0);
        assert_eq!(out[1].start_ns, 6_000_000_000);
        assert_eq!(out[1].csa_db[0][0], 1.0);
    }

    #[test]
    fn a_bucket_of_nothing_evaluated_stays_nan_and_montage_changes_split() {
        let mut other = interval(2, 3.0, (1.0, 2.0), 5.0);
        other.regions = vec!["all".into()];
        other.montage = MontageKind::ChannelGroups;
        let items = [interval(0, f32::NAN, (f32::NAN, f32::NAN), f32::NAN), other];
        let out = bucket(&items, 0, 60_000_000_000);
        assert_eq!(out.len(), 2, "a new montage starts its own column");
        assert!(out[0].csa_db[0][0].is_nan() && out[0].left.aeeg_min_uv.is_nan());
        assert!(out[0].left.bsr_percent.is_nan());
        assert_eq!(out[1].regions, ["all"]);
    }

    #[test]
    fn json_has_null_for_nan_and_millisecond_times() {
        let t = interval(4, f32::NAN, (f32::NAN, 7.5), 12.0);
        let v: serde_json::Value = serde_json::from_str(&trends_json(&t)).expect("json");
        assert_eq!(v["start_ms"], 4000.0);
        assert_eq!(v["montage"], "double_banana");
        assert!(v["csa_db"][0][0].is_null());
        assert!(v["left"]["aeeg"][0].is_null());
        assert_eq!(v["left"]["aeeg"][1], 7.5);
        assert_eq!(v["global"]["bsr"][0], 12.0);
    }
}
