//! What one measuring period found, as printed, written to JSON and drawn.

use serde::Serialize;
use vigil_bench::lag::LagVerdict;
use vigil_bench::plot::{self, Panel, Series};

/// Per-process CPU and memory over a measuring period.
#[derive(Debug, Clone, Serialize)]
pub struct ProcUsage {
    pub name: String,
    /// CPU seconds per wall second (1.0 = one core).
    pub cores: f64,
    pub avg_rss_mib: f64,
    pub peak_rss_mib: f64,
}

/// One measuring period (a ramp step or the final phase).
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub patients: usize,
    pub phase: &'static str,
    pub sustained: bool,
    pub reasons: Vec<String>,
    pub drain_s: f64,
    pub measure_s: f64,
    pub inference_lag: LagVerdict,
    pub storage_lag: LagVerdict,
    pub lag_samples: Vec<(f64, f64, f64)>,
    pub trace_latency_p50_ms: Option<f64>,
    pub trace_latency_p99_ms: Option<f64>,
    pub trace_latency_p99_bucket_ms: Option<f64>,
    pub trace_pushes: f64,
    /// The trace's path hop by hop (bench/src/hops.rs).
    pub hops: Vec<crate::hops::Hop>,
    /// From a point's first provisional value to its final one (inference's histogram).
    pub provisional_to_final: Vec<crate::hops::Hop>,
    pub hr_latency_p50_ms: Option<f64>,
    pub hr_latency_p99_ms: Option<f64>,
    pub send_lateness_p99_s: Option<f64>,
    pub processes: Vec<ProcUsage>,
    /// `(seconds, RSS MiB of each process in `processes` order)`, every sample.
    pub rss_samples: Vec<(f64, Vec<f64>)>,
    /// Least-squares growth of each process's RSS over the period, MiB per minute.
    pub rss_growth_mib_per_min: Vec<(String, Option<f64>)>,
    pub vigil_cores_per_patient: f64,
    pub vigil_rss_mib_per_patient: f64,
    pub vigil_rss_mib_per_patient_marginal: f64,
    pub loadavg: String,
}

/// A burst's onset and the first seizure alert after it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertLatency {
    pub patient_id: String,
    pub onset_ns: i64,
    pub alert_ns: Option<i64>,
    pub latency_s: Option<f64>,
    pub patients_running: Option<usize>,
}

/// The final phase over time: both groups' lag, and every process's RSS.
pub fn soak_chart(s: &StepResult) -> String {
    let lag = |name: &str, pick: fn(&(f64, f64, f64)) -> f64| Series {
        name: name.to_owned(),
        points: s.lag_samples.iter().map(|l| (l.0, pick(l))).collect(),
    };
    let rss = s
        .processes
        .iter()
        .enumerate()
        .map(|(k, p)| Series {
            name: p.name.clone(),
            points: s.rss_samples.iter().map(|(t, v)| (*t, v[k])).collect(),
        })
        .collect();
    plot::svg(
        &format!(
            "{} patients for {:.0} s: consumer lag and memory",
            s.patients, s.measure_s
        ),
        &[
            Panel {
                y_label: "lag (records)".into(),
                series: vec![
                    lag("vigil-inference", |l| l.1),
                    lag("vigil-storage", |l| l.2),
                ],
            },
            Panel {
                y_label: "RSS (MiB)".into(),
                series: rss,
            },
        ],
    )
}

pub fn print_step(s: &StepResult) {
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    println!(
        "{:>4} {:<7} {:<4} lag inf {:>6.0}->{:>6.0} sto {:>6.0}->{:>6.0} | trace p50 {:>6} p99 {:>6} ms | cpu {:.3} cores/pt | rss {:.1} MiB/pt (marginal {:.2}) | load {}{}",
        s.patients,
        s.phase,
        if s.sustained { "ok" } else { "FAIL" },
        s.inference_lag.at_third,
        s.inference_lag.at_end,
        s.storage_lag.at_third,
        s.storage_lag.at_end,
        fmt(s.trace_latency_p50_ms),
        fmt(s.trace_latency_p99_ms),
        s.vigil_cores_per_patient,
        s.vigil_rss_mib_per_patient,
        s.vigil_rss_mib_per_patient_marginal,
        s.loadavg,
        if s.reasons.is_empty() {
            String::new()
        } else {
            format!(" | {}", s.reasons.join("; "))
        }
    );
    for hop in s.hops.iter().chain(&s.provisional_to_final) {
        println!(
            "       {:<48} p50 {:>6} p99 {:>6} ms ({:.0} records)",
            hop.name,
            fmt(hop.p50_ms),
            fmt(hop.p99_ms),
            hop.count
        );
    }
    for (p, (_, growth)) in s.processes.iter().zip(&s.rss_growth_mib_per_min) {
        println!(
            "       {:<10} {:>5.2} cores  rss avg {:>7.1} MiB  peak {:>7.1} MiB  growth {} MiB/min",
            p.name,
            p.cores,
            p.avg_rss_mib,
            p.peak_rss_mib,
            growth.map_or_else(|| "-".to_owned(), |g| format!("{g:+.2}"))
        );
    }
}
