//! Where a display trace's latency goes, hop by hop, from each stage's own histograms: the
//! gateway's produce, the broker hop to inference, inference's publish of the trace, and the
//! broker hop to the dashboard. The end-to-end figure (receipt to browser socket) is the
//! dashboard's push histogram, reported with the step.
//!
//! The same scrape reads inference's provisional-to-final delay ([`PROVISIONAL`]): how long
//! after a point is first shown provisionally its final value is published.

use serde::Serialize;
use vigil_bench::histogram::Histogram;
use vigil_bench::services;

/// One hop: its name, the stage serving the histogram, the metric and its labels.
pub struct HopSpec {
    name: &'static str,
    stage: &'static str,
    metric: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

/// The display trace's path.
pub const HOPS: [HopSpec; 4] = [
    HopSpec {
        name: "ingest: receipt -> eeg.raw acknowledged",
        stage: "ingest",
        metric: "vigil_ingest_produce_latency_seconds",
        labels: &[("kind", "eeg")],
    },
    HopSpec {
        name: "broker: eeg.raw produced -> inference decode",
        stage: "infer",
        metric: "vigil_bus_consume_delay_seconds",
        labels: &[("stage", "inference"), ("topic", "vigil.eeg.raw")],
    },
    HopSpec {
        name: "inference: trace publish -> acknowledged",
        stage: "infer",
        metric: "vigil_bus_publish_latency_seconds",
        labels: &[("topic", "vigil.eeg.trace")],
    },
    HopSpec {
        name: "broker: eeg.trace produced -> dashboard decode",
        stage: "dashboard",
        metric: "vigil_bus_consume_delay_seconds",
        labels: &[("stage", "dashboard"), ("topic", "vigil.eeg.trace")],
    },
];

/// From a point's first provisional value to its final value (inference).
pub const PROVISIONAL: [HopSpec; 1] = [HopSpec {
    name: "inference: first shown provisional -> final",
    stage: "infer",
    metric: "vigil_inference_provisional_to_final_seconds",
    labels: &[],
}];

/// One hop's latency over a measuring period.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub name: &'static str,
    pub count: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Every hop's histogram now, in `specs` order (None where the stage does not run or has
/// not observed anything yet); `metrics_addr` says where a stage serves `/metrics`.
pub async fn scrape(
    metrics_addr: impl Fn(&str) -> Option<String>,
    specs: &[HopSpec],
) -> Vec<Option<Histogram>> {
    let mut out = Vec::with_capacity(specs.len());
    for hop in specs {
        let page = match metrics_addr(hop.stage) {
            Some(addr) => services::get(&addr, "/metrics")
                .await
                .map(|(_, body)| body)
                .unwrap_or_default(),
            None => String::new(),
        };
        out.push(Histogram::parse(&page, hop.metric, hop.labels));
    }
    out
}

/// The hops' quantiles between two scrapes of `specs`.
pub fn between(
    specs: &[HopSpec],
    before: &[Option<Histogram>],
    after: Vec<Option<Histogram>>,
) -> Vec<Hop> {
    specs
        .iter()
        .zip(after)
        .enumerate()
        .map(|(k, (spec, now))| {
            let h = now.map(|h| h.since(before.get(k).and_then(Option::as_ref)));
            let ms = |q| h.as_ref().and_then(|h| h.quantile(q)).map(|s| s * 1e3);
            Hop {
                name: spec.name,
                count: h.as_ref().map_or(0.0, |h| h.count),
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            }
        })
        .collect()
}
