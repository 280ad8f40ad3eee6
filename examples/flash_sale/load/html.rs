//! The HTML report: one self-contained page (inline CSS and SVG, no script)
//! with throughput and latency over time and the report's tables.

use std::fmt::Write as _;

use super::report::{Interval, Report};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

/// One line of a chart.
struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// The report as an HTML page.
pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let verdict = if report.invariants_hold() {
        ("ok", "every invariant holds")
    } else {
        ("broken", "INVARIANTS BROKEN")
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>flash_sale load report: SKU {sku}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>flash_sale load report</h1>\n<p class=\"{class}\">{text}: {rps:.0} requests/s, \
         p99 {p99:.2} ms, {queued} of {stock} units queued.</p>\n",
        sku = report.sku_id,
        class = verdict.0,
        text = verdict.1,
        rps = report.requests_per_second(),
        p99 = report.latency.p99,
        queued = report.queued_requests,
        stock = report.stock,
    );
    let throughput = [Series {
        label: "requests/s",
        color: "#1f77b4",
        points: points(&report.timeline, |i| i.per_second),
    }];
    let latency = [
        Series {
            label: "p50",
            color: "#2ca02c",
            points: points(&report.timeline, |i| i.p50_ms),
        },
        Series {
            label: "p99",
            color: "#d62728",
            points: points(&report.timeline, |i| i.p99_ms),
        },
    ];
    page.push_str("<h2>Throughput</h2>\n");
    page.push_str(&chart(&throughput, "requests/s"));
    page.push_str("<h2>Latency</h2>\n");
    page.push_str(&chart(&latency, "ms"));
    for (title, rows) in report.sections() {
        let _ = write!(page, "<h2>{}</h2>\n<table>\n", escape(title));
        for (label, value) in rows {
            let class = if value.ends_with("BROKEN") {
                " class=\"broken\""
            } else {
                ""
            };
            let _ = writeln!(
                page,
                "<tr{class}><th>{}</th><td>{}</td></tr>",
                escape(&label),
                escape(&value)
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:760px;color:#222}\
table{border-collapse:collapse;margin-bottom:1em}th,td{padding:2px 12px;text-align:left;\
border-bottom:1px solid #ddd}td{font-variant-numeric:tabular-nums}.ok{color:#2ca02c;font-weight:bold}\
.broken{color:#d62728;font-weight:bold}svg text{font-size:11px;fill:#444}";

fn points(timeline: &[Interval], value: impl Fn(&Interval) -> f64) -> Vec<(f64, f64)> {
    timeline.iter().map(|i| (i.start_s, value(i))).collect()
}

/// A line chart of `series` over seconds, as inline SVG.
fn chart(series: &[Series<'_>], unit: &str) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let max_x = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-3);
    let max_y = nice_ceiling(all.map(|p| p.1).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + v / max_x * plot_w;
    let y = |v: f64| TOP + plot_h - v / max_y * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    for step in 0..=4 {
        let value = max_y * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = WIDTH - RIGHT,
            py = y(value),
            tx = LEFT - 6.0,
            ty = y(value) + 4.0,
            label = tick_label(value),
        );
        let seconds = max_x * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{seconds:.2} s</text>",
            tx = x(seconds),
            ty = HEIGHT - BOTTOM + 16.0,
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"12\" y=\"{ty:.1}\" transform=\"rotate(-90 12 {ty:.1})\" text-anchor=\"middle\">{unit}</text>",
        ty = TOP + plot_h / 2.0,
        unit = escape(unit),
    );
    for (n, s) in series.iter().enumerate() {
        let line: Vec<String> = s
            .points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{points}\"/>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\" style=\"fill:{color}\">{label}</text>",
            color = s.color,
            points = line.join(" "),
            lx = LEFT + 10.0 + 90.0 * n as f64,
            ly = TOP - 6.0,
            label = escape(s.label),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (1 for nothing).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn tick_label(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `text` with the HTML special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::tests::sample_report;

    #[test]
    fn the_page_is_self_contained_with_charts_and_tables() {
        let page = render(&sample_report(true));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
        assert_eq!(page.matches("<svg ").count(), 2);
        assert_eq!(page.matches("<polyline ").count(), 3);
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("href="));
        assert!(page.contains("<th>lost orders</th><td>3  BROKEN</td>"));
        assert!(page.contains("<tr class=\"broken\">"));
        assert!(page.contains("INVARIANTS BROKEN"));
        // The target's `<x>` is text, not markup.
        assert!(page.contains("http://127.0.0.1:1/&lt;x&gt;"));
        assert!(!page.contains("/<x>"));
        let ok = render(&sample_report(false));
        assert!(ok.contains("class=\"ok\">every invariant holds"));
        assert!(!ok.contains("class=\"broken\""));
    }

    #[test]
    fn chart_points_are_scaled_into_the_plot() {
        let series = [Series {
            label: "s",
            color: "#000",
            points: vec![(0.0, 0.0), (2.0, 40.0), (4.0, 20.0)],
        }];
        let svg = chart(&series, "u");
        // x from 76 to 700 (max 4 s); max y 40 → nice 50 → 40 is at 4/5 of 180 px.
        assert!(
            svg.contains("points=\"76.0,200.0 388.0,56.0 700.0,128.0\""),
            "{svg}"
        );
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(40.0), 50.0);
        assert_eq!(nice_ceiling(6_100.0), 10_000.0);
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
