//! Time-series charts as standalone SVG (no plotting dependency): the soak run's consumer lag
//! and per-process memory, committed under docs/img/ and shown in docs/RELIABILITY.md.

use std::fmt::Write;

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(seconds, value)` points in time order.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a y axis and its lines, sharing the chart's time axis.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Axis title, with its unit.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 860.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#7f7f7f",
];

/// Least-squares slope of `points` (value per second); None for fewer than 2 distinct times.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_ceiling(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders `panels` stacked over one time axis (seconds from the start) with `title`.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let t_max = nice_ceiling(
        panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| s.points.iter().map(|(t, _)| *t))
            .fold(0.0, f64::max),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (k, panel) in panels.iter().enumerate() {
        let top = TOP + k as f64 * (PANEL_H + GAP);
        let y_max = nice_ceiling(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|(_, v)| *v))
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max),
        );
        let x = |t: f64| LEFT + t / t_max * plot_w;
        let y = |v: f64| top + PANEL_H - v / y_max * PANEL_H;
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#444"/>"##
        );
        for i in 0..=4 {
            let v = y_max * f64::from(i) / 4.0;
            let t = t_max * f64::from(i) / 4.0;
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{yv:.1}" y2="{yv:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text><text x="{:.1}" y="{}" text-anchor="middle">{t}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y(v) + 4.0,
                x(t),
                top + PANEL_H + 16.0,
                yv = y(v),
            );
        }
        let _ = writeln!(
            out,
            r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            LEFT - 50.0,
            top + PANEL_H / 2.0,
            escape(&panel.y_label)
        );
        for (i, s) in panel.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let path: Vec<String> = s
                .points
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" fill="{colour}">{}</text>"#,
                path.join(" "),
                LEFT + plot_w + 10.0,
                top + 14.0 + 16.0 * i as f64,
                escape(&s.name)
            );
        }
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text></svg>"#,
        LEFT + plot_w / 2.0,
        height - 2.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_too_little() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&pts).expect("slope") - 3.0).abs() < 1e-12);
        assert_eq!(slope(&pts[..1]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn axes_round_up_to_1_2_5() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(17.0), 20.0);
        assert_eq!(nice_ceiling(600.0), 1000.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }

    #[test]
    fn one_polyline_per_series_inside_the_panel() {
        let panels = [
            Panel {
                y_label: "lag <records>".into(),
                series: vec![Series {
                    name: "a".into(),
                    points: vec![(0.0, 0.0), (50.0, 10.0), (100.0, f64::NAN)],
                }],
            },
            Panel {
                y_label: "RSS (MiB)".into(),
                series: vec![
                    Series {
                        name: "x".into(),
                        points: vec![(0.0, 5.0), (100.0, 5.0)],
                    },
                    Series {
                        name: "y".into(),
                        points: vec![(0.0, 1.0)],
                    },
                ],
            },
        ];
        let doc = svg("soak & test", &panels);
        assert_eq!(doc.matches("<polyline").count(), 3);
        assert!(doc.contains("soak &amp; test") && doc.contains("lag &lt;records&gt;"));
        // NaN points are left out; the first series reaches the top of its 0..10 axis.
        assert!(doc.contains(&format!(
            "{:.1},{:.1}",
            LEFT + 0.5 * (WIDTH - LEFT - RIGHT),
            TOP
        )));
        assert!(!doc.contains("NaN"));
    }
}
