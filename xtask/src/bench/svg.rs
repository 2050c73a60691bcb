//! A small hand-written SVG bar chart (median bars with min–max whiskers): enough for the
//! report, and no plotting crate to compile on a 2-core machine.

use std::fmt::Write as _;

/// One configuration's bar.
pub struct Bar {
    /// Configuration name.
    pub label: String,
    /// Bar length.
    pub median: f64,
    /// Whisker start.
    pub min: f64,
    /// Whisker end.
    pub max: f64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart titled `title`.
pub fn bars(title: &str, bars: &[Bar]) -> String {
    const LABEL_W: f64 = 190.0;
    const PLOT_W: f64 = 460.0;
    const ROW_H: f64 = 28.0;
    const TOP: f64 = 36.0;
    let width = LABEL_W + PLOT_W + 90.0;
    let height = TOP + ROW_H * bars.len() as f64 + 16.0;
    let top = bars
        .iter()
        .map(|b| if b.max.is_finite() { b.max } else { b.median })
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let x = |v: f64| LABEL_W + PLOT_W * (v.max(0.0) / top);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="8" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let mid = y + ROW_H / 2.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            mid + 4.0,
            esc(&b.label)
        );
        if b.median.is_finite() {
            let _ = writeln!(
                s,
                r##"<rect x="{LABEL_W}" y="{}" width="{:.1}" height="{}" fill="{}"/>"##,
                y + 5.0,
                x(b.median) - LABEL_W,
                ROW_H - 10.0,
                if b.label.starts_with("xdp-ingress") {
                    "#2b7bba"
                } else {
                    "#9aa5b1"
                }
            );
            if b.min.is_finite() && b.max.is_finite() && b.max > b.min {
                let _ = writeln!(
                    s,
                    r#"<line x1="{:.1}" x2="{:.1}" y1="{mid}" y2="{mid}" stroke="black"/><line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="black"/><line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="black"/>"#,
                    x(b.min),
                    x(b.max),
                    x(b.min),
                    x(b.min),
                    mid - 5.0,
                    mid + 5.0,
                    x(b.max),
                    x(b.max),
                    mid - 5.0,
                    mid + 5.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                x(b.max.max(b.median)) + 6.0,
                mid + 4.0,
                super::report::num(b.median)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
