//! Prometheus histograms read from a `/metrics` page, differenced between two scrapes and
//! turned into quantiles the way PromQL's `histogram_quantile` does (linear within a bucket).

/// One histogram series: cumulative bucket counts by upper bound (ascending, `+Inf` last).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// `(le, cumulative count)`, ascending `le`; the last bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

/// Whether a sample line's labels include every `name="value"` pair of `labels`.
fn has_labels(line_labels: &str, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| line_labels.contains(&format!("{k}=\"{v}\"")))
}

fn label_value<'a>(line_labels: &'a str, name: &str) -> Option<&'a str> {
    let start = line_labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &line_labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// Splits `name{labels} value` into its parts (`labels` empty when absent).
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    match series.split_once('{') {
        Some((name, labels)) => Some((name, labels.trim_end_matches('}'), value)),
        None => Some((series, "", value)),
    }
}

/// The value of the gauge or counter `name` whose labels include `labels` (the first such
/// series), from a Prometheus text page.
pub fn sample_value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(split_sample)
        .find(|(series, line_labels, _)| *series == name && has_labels(line_labels, labels))
        .map(|(_, _, value)| value)
}

impl Histogram {
    /// The series `name` whose labels include `labels`, from a Prometheus text page; `None`
    /// when the page has no bucket of it (nothing observed yet).
    pub fn parse(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        let mut h = Histogram::default();
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, line_labels, value)) = split_sample(line) else {
                continue;
            };
            if !has_labels(line_labels, labels) {
                continue;
            }
            if series == bucket {
                let le = match label_value(line_labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                h.buckets.push((le, value));
            } else if series == sum {
                h.sum = value;
            } else if series == count {
                h.count = value;
            }
        }
        if h.buckets.is_empty() {
            return None;
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(h)
    }

    /// Observations made after `earlier` (a scrape of the same series from the same process).
    pub fn since(&self, earlier: Option<&Histogram>) -> Histogram {
        let Some(earlier) = earlier else {
            return self.clone();
        };
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, (c - before(le)).max(0.0)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The `q` quantile (0..=1), linear within its bucket like `histogram_quantile`; in the
    /// `+Inf` bucket, the largest finite bound (so "at least that"). `None` without
    /// observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }

    /// Smallest bucket bound holding at least the `q` quantile (a guaranteed upper bound,
    /// unlike the interpolated [`Histogram::quantile`]).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= rank)
            .map(|(le, _)| *le)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_value_finds_the_series_with_the_labels() {
        let page = "# TYPE vigil_bus_group_lag_records gauge\n\
            vigil_bus_group_lag_records{broker=\"b\",group=\"vigil-inference-alerts\"} 7\n\
            vigil_bus_group_lag_records{broker=\"b\",group=\"vigil-inference\"} 42\n\
            vigil_bus_group_lag_records_total 3\n";
        let lag = |g| sample_value(page, "vigil_bus_group_lag_records", &[("group", g)]);
        assert_eq!(lag("vigil-inference"), Some(42.0));
        assert_eq!(lag("vigil-inference-alerts"), Some(7.0));
        assert_eq!(lag("vigil-storage"), None);
    }

    const PAGE: &str = r#"# TYPE vigil_dashboard_push_latency_seconds histogram
vigil_dashboard_push_latency_seconds_bucket{record="trace",le="0.005"} 10
vigil_dashboard_push_latency_seconds_bucket{record="trace",le="0.01"} 90
vigil_dashboard_push_latency_seconds_bucket{record="trace",le="0.05"} 99
vigil_dashboard_push_latency_seconds_bucket{record="trace",le="+Inf"} 100
vigil_dashboard_push_latency_seconds_sum{record="trace"} 0.9
vigil_dashboard_push_latency_seconds_count{record="trace"} 100
vigil_dashboard_push_latency_seconds_bucket{record="hr",le="0.005"} 3
vigil_dashboard_push_latency_seconds_bucket{record="hr",le="+Inf"} 3
"#;

    #[test]
    fn parses_one_labelled_series_and_interpolates_like_promql() {
        let h = Histogram::parse(
            PAGE,
            "vigil_dashboard_push_latency_seconds",
            &[("record", "trace")],
        )
        .expect("series present");
        assert_eq!(h.buckets.len(), 4);
        assert_eq!(h.count, 100.0);
        // rank 50 lies in (0.005, 0.01] holding 80 observations: 40/80 of the way.
        let p50 = h.quantile(0.5).expect("observations");
        assert!((p50 - 0.0075).abs() < 1e-12, "{p50}");
        // rank 99 is the last observation of (0.01, 0.05].
        let p99 = h.quantile(0.99).expect("observations");
        assert!((p99 - 0.05).abs() < 1e-12, "{p99}");
        assert_eq!(h.quantile_bound(0.99), Some(0.05));
        // The top observation is in +Inf: reported as the largest finite bound.
        assert_eq!(h.quantile(1.0), Some(0.05));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn difference_between_scrapes_keeps_only_new_observations() {
        let later = Histogram::parse(
            PAGE,
            "vigil_dashboard_push_latency_seconds",
            &[("record", "trace")],
        )
        .expect("series present");
        // 10 observations, all at most 5 ms.
        let earlier_page = PAGE
            .replace("le=\"0.01\"} 90", "le=\"0.01\"} 10")
            .replace("le=\"0.05\"} 99", "le=\"0.05\"} 10")
            .replace("le=\"+Inf\"} 100", "le=\"+Inf\"} 10");
        let earlier = Histogram::parse(
            &earlier_page,
            "vigil_dashboard_push_latency_seconds",
            &[("record", "trace")],
        );
        let d = later.since(earlier.as_ref());
        // 90 new observations: 80 in (0.005, 0.01], 9 in (0.01, 0.05], 1 above.
        assert_eq!(d.buckets[0].1, 0.0);
        assert_eq!(d.buckets[3].1, 90.0);
        let p50 = d.quantile(0.5).expect("observations");
        assert!(p50 > 0.005 && p50 < 0.01, "{p50}");
        // 89 of 90 within 50 ms: p98 is bounded by it, p99 (rank 89.1) is not.
        assert_eq!(d.quantile_bound(0.98), Some(0.05));
        assert_eq!(d.quantile_bound(0.99), Some(f64::INFINITY));
    }

    #[test]
    fn absent_or_empty_series() {
        assert!(Histogram::parse(PAGE, "vigil_other_seconds", &[]).is_none());
        let h = Histogram::parse(
            PAGE,
            "vigil_dashboard_push_latency_seconds",
            &[("record", "hr")],
        )
        .expect("series present");
        assert_eq!(h.since(Some(&h)).quantile(0.5), None);
    }
}
