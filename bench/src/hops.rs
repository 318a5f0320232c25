//! Where a display trace's latency goes, hop by hop, from each stage's own histograms: the
//! gateway's produce, the broker hop to inference, inference's publish of the trace, and the
//! broker hop to the dashboard. The end-to-end figure (receipt to browser socket) is the
//! dashboard's push histogram, reported with the step.

use serde::Serialize;
use vigil_bench::histogram::Histogram;
use vigil_bench::services::{self, Service};

/// One hop: its name, the stage serving the histogram, the metric and its labels.
struct HopSpec {
    name: &'static str,
    stage: &'static str,
    metric: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

const HOPS: [HopSpec; 4] = [
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

/// One hop's latency over a measuring period.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub name: &'static str,
    pub count: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Every hop's histogram now, in [`HOPS`] order (None where the stage does not run or has
/// not observed anything yet).
pub async fn scrape(stages: &[Service]) -> Vec<Option<Histogram>> {
    let mut out = Vec::with_capacity(HOPS.len());
    for hop in &HOPS {
        let addr = stages
            .iter()
            .find(|s| s.name == hop.stage)
            .and_then(|s| s.addr.clone());
        let page = match addr {
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

/// The hops' quantiles between two scrapes.
pub fn between(before: &[Option<Histogram>], after: Vec<Option<Histogram>>) -> Vec<Hop> {
    HOPS.iter()
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
