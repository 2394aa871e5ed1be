//! A self-contained, single-file HTML model report: a summary table and three inline
//! SVG plots (singular value spectrum, neighbour similarity histogram, 2-D user map).
//!
//! Pure: [`render`] only builds a `String`; writing it anywhere is the caller's job. The
//! document needs no JavaScript and references no external resource (scripts, fonts,
//! images, stylesheets), so it opens from disk and prints as is.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Everything the report shows; built by the training pipeline.
#[derive(Clone, Copy, Debug)]
pub struct ReportInput<'a> {
    /// Model version name, shown in the title.
    pub version: &'a str,
    /// Creation time (RFC 3339), shown under the title.
    pub created_at: &'a str,
    /// Users in the model.
    pub users: usize,
    /// Tag vocabulary size.
    pub tags: usize,
    /// Embedding dimension (SVD rank).
    pub dimensions: usize,
    /// Share of the squared Frobenius norm kept, 0..=1.
    pub explained_variance: f64,
    /// All kept singular values, descending.
    pub singular_values: &'a [f64],
    /// Cosine similarity of each sampled user's nearest neighbours (mostly 0..=1).
    pub neighbour_similarities: &'a [f32],
    /// 2-D map of sampled users.
    pub map: &'a [MapPoint],
    /// Legend: the name of each group id used in [`MapPoint::group`].
    pub groups: &'a [String],
    /// Key figures as (label, value) rows, appended to the summary table.
    pub figures: &'a [(String, String)],
    /// Free text shown at the end; a note containing a newline is shown preformatted.
    pub notes: &'a [String],
}

/// One user on the 2-D map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapPoint {
    /// Horizontal coordinate, any scale (the map is fitted to the data); NaN/inf skipped.
    pub x: f32,
    /// Vertical coordinate, any scale; NaN/inf skipped.
    pub y: f32,
    /// Index into [`ReportInput::groups`]; ids without a name show as "group `<id>`";
    /// [`UNGROUPED`] is drawn grey and never takes a colour.
    pub group: u32,
    /// User handle, shown in the point's tooltip.
    pub handle: u64,
}

/// The group of a point that belongs to none: drawn grey, named "other" in its tooltip.
pub const UNGROUPED: u32 = u32::MAX;

/// Categorical palette (Tableau 10 with its grey swapped out: grey means "other").
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#17becf",
];
const OTHER: &str = "#a8a8a8";
const RED: &str = " fill=\"#e15759\"";
const RED_TICK: &str = " dy=\"0.32em\" fill=\"#e15759\"";
const DARK: &str = " fill=\"#222\"";
const LINE: &str = "fill=\"none\" stroke=\"#e15759\" stroke-width=\"2\"";
const DASHED: &str = "stroke=\"#222\" stroke-dasharray=\"5 3\"";
const TICK_Y: &str = " dy=\"0.32em\" text-anchor=\"end\"";
const MIDDLE: &str = " text-anchor=\"middle\"";
const AXIS: &str = "stroke=\"#888\"";
const BINS: usize = 20;
const LEFT: f64 = 56.0;
const TOP: f64 = 16.0;
const CSS: &str = "body{margin:0;color:#222;background:#fff;\
font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
main{max-width:860px;margin:0 auto;padding:24px}h1{font-size:1.6em;margin:0}\
h2{font-size:1.15em;margin:1.6em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #ddd}\
.meta{color:#666;margin:0 0 1em}table{border-collapse:collapse}\
th,td{padding:3px 18px 3px 0;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
th{font-weight:500;color:#555}td{font-variant-numeric:tabular-nums}figure{margin:0}\
svg{display:block;width:100%;height:auto}figcaption{color:#555;font-size:.9em;margin-top:.3em}\
.nodata{color:#888;font-style:italic}\
pre{white-space:pre-wrap;font-size:.85em;background:#f6f6f6;padding:8px}\
@media print{main{max-width:none;padding:0}section,table,pre{break-inside:avoid}\
pre{background:none;border:1px solid #ddd}}";

/// Renders the report as one HTML document.
pub fn render(input: &ReportInput) -> String {
    let mut out = String::with_capacity(16 * 1024 + input.map.len() * 120);
    let (title, created) = (escape(input.version), escape(input.created_at));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Kindred model {title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <h1>Kindred model {title}</h1>\n<p class=\"meta\">created {created}</p>\n\
         <h2>Summary</h2>\n<table>\n"
    );
    let ev = input.explained_variance;
    let ev = if ev.is_finite() {
        format!("{}%", fmt_num(ev * 100.0))
    } else {
        "n/a".into()
    };
    let mut rows = vec![
        ("users".to_string(), fmt_int(input.users)),
        ("tags".to_string(), fmt_int(input.tags)),
        ("dimensions".to_string(), fmt_int(input.dimensions)),
        ("explained variance".to_string(), ev),
    ];
    rows.extend(input.figures.iter().cloned());
    for (label, value) in &rows {
        let (label, value) = (escape(label), escape(value));
        let _ = writeln!(out, "<tr><th>{label}</th><td>{value}</td></tr>");
    }
    out.push_str("</table>\n<section>\n<h2>Singular value spectrum</h2>\n");
    spectrum(&mut out, input);
    out.push_str("</section>\n<section>\n<h2>Neighbour similarity</h2>\n");
    similarity_histogram(&mut out, input.neighbour_similarities);
    out.push_str("</section>\n<section>\n<h2>User map</h2>\n");
    user_map(&mut out, input);
    out.push_str("</section>\n");
    if !input.notes.is_empty() {
        out.push_str("<section>\n<h2>Notes</h2>\n");
        for note in input.notes {
            let tag = if note.contains('\n') { "pre" } else { "p" };
            let _ = writeln!(out, "<{tag}>{}</{tag}>", escape(note.trim_end()));
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// A bar in data units: x from, x to, height, tooltip (already escaped).
type Bar = (f64, f64, f64, String);

/// Plot area in pixels (from `LEFT`, `TOP`) and the data ranges mapped onto it.
struct Frame {
    right: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / span(self.x) * (self.right - LEFT)
    }
    fn py(&self, y: f64) -> f64 {
        self.bottom - (y - self.y.0) / span(self.y) * (self.bottom - TOP)
    }
}

fn span((lo, hi): (f64, f64)) -> f64 {
    if hi > lo { hi - lo } else { 1.0 }
}

fn spectrum(out: &mut String, input: &ReportInput) {
    let sv = input.singular_values;
    if sv.is_empty() {
        return no_data(out, "Singular values");
    }
    let (n, mut bars) = (sv.len() as f64, Vec::with_capacity(sv.len()));
    for (i, &v) in sv.iter().enumerate() {
        let x = (i + 1) as f64;
        let h = if v.is_finite() { v.max(0.0) } else { 0.0 };
        bars.push((x - 0.5, x + 0.5, h, format!("σ{} = {}", i + 1, fmt_num(v))));
    }
    let step = nice_step(n, 8.0).max(1.0);
    let mut xt = vec![1.0];
    xt.extend(ticks(step, n, step).into_iter().filter(|&t| t > 1.0));
    let labels = ["Singular values", "dimension i", "singular value σᵢ"];
    let f = bar_chart(out, &bars, &xt, 0.0, labels);
    // The kept σ² are `explained_variance` of ‖A‖²_F, so the line can show the share of it.
    let ev = input.explained_variance;
    let of_total = ev.is_finite() && ev > 0.0 && ev <= 1.0;
    let total: f64 = bars.iter().map(|b| b.2 * b.2).sum();
    let kept = if of_total { ev } else { 1.0 };
    let scale = if total > 0.0 { kept / total } else { 0.0 };
    let (mut cum, mut points) = (0.0, String::new());
    for b in &bars {
        cum += b.2 * b.2;
        let (x, y) = (f.px(b.0 + 0.5), f.bottom - scale * cum * (f.bottom - TOP));
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(out, "<polyline points=\"{}\" {LINE}/>", points.trim_end());
    line(out, (f.right, TOP), (f.right, f.bottom), AXIS);
    for p in [0, 25, 50, 75, 100] {
        let y = f.bottom - f64::from(p) / 100.0 * (f.bottom - TOP);
        text(out, (f.right + 6.0, y), RED_TICK, &format!("{p}%"));
    }
    let mid = (TOP + f.bottom) / 2.0;
    vtext(out, (630.0, mid), 90, RED, "cumulative share of σ²");
    let k = sv.len();
    let caption = if of_total {
        let ev = fmt_num(ev * 100.0);
        format!(
            "Bars: the {k} kept singular values σᵢ (left axis). Line: share of the user × tag matrix's squared Frobenius norm captured by dimensions 1..i (right axis); all {k} explain {ev}%."
        )
    } else {
        format!(
            "Bars: the {k} kept singular values σᵢ (left axis). Line: cumulative share of their σ² (right axis)."
        )
    };
    svg_close(out, &caption);
}

fn similarity_histogram(out: &mut String, sims: &[f32]) {
    let mut vals: Vec<f64> = sims.iter().map(|&v| f64::from(v)).collect();
    vals.retain(|v| v.is_finite());
    if vals.is_empty() {
        return no_data(out, "Neighbour similarities");
    }
    vals.sort_by(f64::total_cmp);
    let m = vals.len();
    let median = (vals[(m - 1) / 2] + vals[m / 2]) / 2.0;
    let lo = vals[0].min(0.0);
    let width = (1.0 - lo) / BINS as f64;
    let mut bars = Vec::with_capacity(BINS);
    for (b, c) in histogram(&vals, BINS, lo, 1.0).into_iter().enumerate() {
        let (a, z) = (lo + b as f64 * width, lo + (b + 1) as f64 * width);
        let tip = format!("{}–{}: {c}", fmt_num(a), fmt_num(z));
        bars.push((a, z, c as f64, tip));
    }
    let xt = ticks(lo, 1.0, nice_step(1.0 - lo, 5.0));
    let labels = ["Neighbour similarity", "cosine similarity", "pairs"];
    let f = bar_chart(out, &bars, &xt, 1.0, labels);
    let x = f.px(median.clamp(lo, 1.0));
    line(out, (x, TOP), (x, f.bottom), DASHED);
    let end = x > (LEFT + f.right) / 2.0;
    let (anchor, dx) = if end { ("end", -4.0) } else { ("start", 4.0) };
    let (attrs, median) = (format!("{DARK} text-anchor=\"{anchor}\""), fmt_num(median));
    let label = format!("median {median}");
    text(out, (x + dx, TOP + 10.0), &attrs, &label);
    let skipped = match sims.len() - m {
        0 => String::new(),
        s => format!(" {s} non-finite values skipped."),
    };
    let (m, lo) = (fmt_int(m), fmt_num(lo));
    let caption = format!(
        "Cosine similarity of sampled users to their nearest neighbours: {m} pairs in {BINS} bins over [{lo}, 1]; median {median} (dashed line).{skipped}"
    );
    svg_close(out, &caption);
}

/// Counts finite `values` in `bins` equal bins over `[lo, hi]`; the last bin is closed, and
/// values outside the range are clamped into the first or last bin.
fn histogram(values: &[f64], bins: usize, lo: f64, hi: f64) -> Vec<usize> {
    let mut counts = vec![0; bins];
    for &v in values.iter().filter(|v| v.is_finite() && bins > 0) {
        let i = ((v - lo) / span((lo, hi)) * bins as f64).floor();
        counts[(i.max(0.0) as usize).min(bins - 1)] += 1;
    }
    counts
}

/// Opens a 640 x 300 figure labelled `[aria label, x title, y title]` and draws axes and
/// the (non-empty, left to right) bars from y = 0, y ticks at least `min` apart; returns the frame for overlays.
fn bar_chart(out: &mut String, bars: &[Bar], xt: &[f64], min: f64, labels: [&str; 3]) -> Frame {
    let max = bars.iter().map(|b| b.2).fold(0.0, f64::max);
    let step = nice_step(max, 5.0).max(min);
    let top = ((max / step).ceil() * step).max(step);
    let x = (bars[0].0, bars[bars.len() - 1].1);
    let f = Frame {
        right: 584.0,
        bottom: 256.0,
        x,
        y: (0.0, top),
    };
    svg_open(out, 640, 300, labels[0]);
    axes(out, &f, xt, &ticks(0.0, top, step), [labels[1], labels[2]]);
    for (a, z, h, tip) in bars {
        let (x, y) = (f.px(*a) + 0.5, f.py(*h));
        let (w, h) = ((f.px(*z) - f.px(*a) - 1.0).max(0.5), f.bottom - y);
        let _ = writeln!(
            out,
            "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{h:.1}\" fill=\"#4e79a7\"><title>{tip}</title></rect>"
        );
    }
    f
}

fn user_map(out: &mut String, input: &ReportInput) {
    let finite = |p: &&MapPoint| p.x.is_finite() && p.y.is_finite();
    let pts: Vec<&MapPoint> = input.map.iter().filter(finite).collect();
    if pts.is_empty() {
        return no_data(out, "User map");
    }
    let mut by_group = BTreeMap::<u32, usize>::new();
    for p in &pts {
        *by_group.entry(p.group).or_default() += 1;
    }
    // Colours go to the most populous groups (stable sort: ties by id); the rest are "other".
    let ungrouped = by_group.remove(&UNGROUPED).unwrap_or(0);
    let mut order: Vec<(u32, usize)> = by_group.into_iter().collect();
    order.sort_by_key(|o| Reverse(o.1));
    let colours: BTreeMap<u32, &str> = order.iter().zip(PALETTE).map(|(o, c)| (o.0, c)).collect();
    let colour = |g| colours.get(&g).copied().unwrap_or(OTHER);
    let name = |g: u32| match input.groups.get(g as usize) {
        Some(name) => name.clone(),
        None if g == UNGROUPED => "other".to_owned(),
        None => format!("group {g}"),
    };
    let (x0, x1) = min_max(pts.iter().map(|p| f64::from(p.x)));
    let (y0, y1) = min_max(pts.iter().map(|p| f64::from(p.y)));
    let (right, bottom) = (540.0, 416.0);
    let (pw, ph) = (right - LEFT, bottom - TOP);
    // One scale for both axes keeps distances honest; 5% margin on the tighter side.
    let scale = if x1 > x0 || y1 > y0 {
        (0.9 * pw / (x1 - x0)).min(0.9 * ph / (y1 - y0))
    } else {
        ph / 2.0
    };
    let (hx, hy) = (pw / 2.0 / scale, ph / 2.0 / scale);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let f = Frame {
        right,
        bottom,
        x: (cx - hx, cx + hx),
        y: (cy - hy, cy + hy),
    };
    let step = nice_step(2.0 * hx, 6.0);
    let (xt, yt) = (ticks(f.x.0, f.x.1, step), ticks(f.y.0, f.y.1, step));
    svg_open(out, 720, 440, "Map of sampled users");
    axes(out, &f, &xt, &yt, ["", ""]);
    for grey in [true, false] {
        // Grey points first so the coloured groups stay on top.
        for p in pts.iter().filter(|p| (colour(p.group) == OTHER) == grey) {
            let (x, y) = (f.px(f64::from(p.x)), f.py(f64::from(p.y)));
            let (c, tip) = (colour(p.group), escape(&name(p.group)));
            let _ = writeln!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{c}\" fill-opacity=\"0.8\"><title>user {} · {tip}</title></circle>",
                p.handle
            );
        }
    }
    for (i, ((g, n), c)) in order.iter().zip(PALETTE).enumerate() {
        legend_row(out, i, c, &name(*g), *n);
    }
    let rest = &order[colours.len()..];
    if !rest.is_empty() || ungrouped > 0 {
        let other = match rest.len() {
            0 => "other".to_owned(),
            n => format!("other: {n} groups"),
        };
        let users = rest.iter().map(|o| o.1).sum::<usize>() + ungrouped;
        legend_row(out, colours.len(), OTHER, &other, users);
    }
    let skipped = match input.map.len() - pts.len() {
        0 => String::new(),
        s => format!(" {s} points with non-finite coordinates skipped."),
    };
    let (n, k) = (fmt_int(pts.len()), colours.len());
    svg_close(
        out,
        &format!(
            "2-D map of {n} sampled users, coloured by group (the {k} largest; grey: other). Hover a point for its handle.{skipped}"
        ),
    );
}

fn legend_row(out: &mut String, row: usize, colour: &str, name: &str, users: usize) {
    let (y, full) = (TOP + 4.0 + 20.0 * row as f64, escape(name));
    let (label, n) = (escape(&truncate(name, 24)), fmt_int(users));
    let _ = writeln!(
        out,
        "<g><title>{full}</title><rect x=\"560\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>"
    );
    text(out, (578.0, y + 10.0), DARK, &format!("{label} ({n})"));
    out.push_str("</g>\n");
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn svg_open(out: &mut String, w: u32, h: u32, label: &str) {
    let _ = writeln!(
        out,
        "<figure>\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" font-size=\"11\" fill=\"#444\" role=\"img\" aria-label=\"{label}\">"
    );
}

fn svg_close(out: &mut String, caption: &str) {
    let _ = writeln!(out, "</svg>\n<figcaption>{caption}</figcaption>\n</figure>");
}

/// Grid lines, axis lines, tick labels and axis titles (x title, y title).
fn axes(out: &mut String, f: &Frame, xt: &[f64], yt: &[f64], [xtitle, ytitle]: [&str; 2]) {
    for &v in yt {
        let y = f.py(v);
        line(out, (LEFT, y), (f.right, y), "stroke=\"#eee\"");
        text(out, (LEFT - 6.0, y), TICK_Y, &fmt_num(v));
    }
    for &v in xt {
        let x = f.px(v);
        line(out, (x, f.bottom), (x, f.bottom + 4.0), AXIS);
        text(out, (x, f.bottom + 16.0), MIDDLE, &fmt_num(v));
    }
    let (b, r) = (f.bottom, f.right);
    let _ = writeln!(
        out,
        "<path d=\"M{LEFT} {TOP}V{b}H{r}\" fill=\"none\" {AXIS}/>"
    );
    text(out, ((LEFT + r) / 2.0, b + 34.0), MIDDLE, xtitle);
    vtext(out, (14.0, (TOP + b) / 2.0), -90, "", ytitle);
}

fn line(out: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
    let _ = writeln!(
        out,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" {attrs}/>"
    );
}

fn text(out: &mut String, (x, y): (f64, f64), attrs: &str, body: &str) {
    let _ = writeln!(out, "<text x=\"{x:.1}\" y=\"{y:.1}\"{attrs}>{body}</text>");
}

/// Text centred on `(x, y)` and rotated by `deg` degrees.
fn vtext(out: &mut String, (x, y): (f64, f64), deg: i32, attrs: &str, body: &str) {
    let at = format!(" transform=\"translate({x:.1} {y:.1}) rotate({deg})\"{MIDDLE}{attrs}");
    text(out, (0.0, 0.0), &at, body);
}

fn no_data(out: &mut String, what: &str) {
    let _ = writeln!(out, "<p class=\"nodata\">{what}: no data.</p>");
}

/// A 1-2-5 step giving about `target` intervals over `span`; 1 for an empty span.
fn nice_step(span: f64, target: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf((span / target).log10().floor());
    let norm = span / target / mag;
    let nice = [1.0, 2.0, 5.0].into_iter().find(|&s| norm <= s);
    mag * nice.unwrap_or(10.0)
}

/// Multiples of `step` within `[lo, hi]` (computed as k * step, so 0 is exact).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if (lo / step).abs().max((hi / step).abs()) > 1e12 {
        return Vec::new(); // would lose precision (or saturate) as i64
    }
    let a = (lo / step - 1e-9).ceil() as i64;
    let b = (hi / step + 1e-9).floor() as i64;
    (a..=b).map(|k| k as f64 * step).collect()
}

/// Three significant digits, trailing zeros dropped; whole numbers stay whole.
fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        return "n/a".into();
    } else if a == 0.0 {
        return "0".into();
    } else if !(1e-3..1e6).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An integer with thousands separators: 1234567 -> "1,234,567".
fn fmt_int(n: usize) -> String {
    match n {
        0..1000 => n.to_string(),
        _ => format!("{},{:03}", fmt_int(n / 1000), n % 1000),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).chain(['…']).collect()
    }
}

/// HTML-escapes `& < > " '` so input text is safe in content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

    fn pt(x: f32, y: f32, group: u32, handle: u64) -> MapPoint {
        MapPoint {
            x,
            y,
            group,
            handle,
        }
    }

    fn input<'a>(sv: &'a [f64], sims: &'a [f32], map: &'a [MapPoint]) -> ReportInput<'a> {
        ReportInput {
            version: "v7",
            created_at: "2024-06-01T12:00:00Z",
            users: 1_234_567,
            tags: 2048,
            dimensions: sv.len(),
            explained_variance: 0.8734,
            singular_values: sv,
            neighbour_similarities: sims,
            map,
            groups: &[],
            figures: &[],
            notes: &[],
        }
    }

    #[test]
    fn document_is_self_contained_with_three_plots() {
        // Given a full input with a key figure and a multi-line note
        let map = [pt(0.0, 0.0, 0, 1), pt(1.0, 2.0, 1, 2)];
        let figures = [("index recall@10".to_string(), "0.991".to_string())];
        let notes = ["users.csv: 10 rows\n  skipped 0".to_string()];
        let mut inp = input(&[40.0, 22.5, 10.0, 4.2], &[0.2, 0.6, 0.9], &map);
        (inp.figures, inp.notes) = (&figures, &notes);
        // When it is rendered
        let html = render(&inp);
        // Then it is one HTML document with three inline SVG plots, the summary and the notes
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("<h1>Kindred model v7</h1>"));
        assert!(html.contains("<td>1,234,567</td>") && html.contains("<td>87.3%</td>"));
        assert!(html.contains("<th>index recall@10</th><td>0.991</td>"));
        assert!(html.contains("<pre>users.csv: 10 rows\n  skipped 0</pre>"));
        assert!(html.contains(">median 0.6</text>") && html.contains("1]; median 0.6 "));
        // And it references nothing outside itself: the SVG namespace is the only URL
        let rest = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for needle in ["http://", "https://", "<script", "src=", "href=", "url("] {
            assert!(!rest.contains(needle), "found {needle}");
        }
    }

    #[test]
    fn scatter_has_one_circle_per_finite_point() {
        // Given five finite points and three with NaN or infinite coordinates
        let mut map: Vec<MapPoint> = (0..5).map(|i| pt(i as f32, 0.0, i % 2, i.into())).collect();
        map.push(pt(f32::NAN, 1.0, 0, 7));
        map.push(pt(1.0, f32::INFINITY, 0, 8));
        map.push(pt(f32::NEG_INFINITY, 0.0, 1, 9));
        let groups = ["rust".to_string()];
        // When it is rendered
        let html = render(&ReportInput {
            groups: &groups,
            ..input(&[1.0], &[0.5], &map)
        });
        // Then only the finite points are drawn, each with a tooltip; unnamed ids get a fallback
        assert_eq!(html.matches("<circle").count(), 5);
        assert!(html.contains("<title>user 2 · rust</title>"));
        assert!(html.contains("<title>user 3 · group 1</title>"));
        assert!(html.contains("3 points with non-finite coordinates skipped"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
        // And points that all coincide sit at the centre of the plot area
        let same = [pt(3.0, 3.0, 0, 1), pt(3.0, 3.0, 0, 2)];
        let html = render(&input(&[1.0], &[0.5], &same));
        assert_eq!(html.matches("<circle cx=\"298.0\" cy=\"216.0\"").count(), 2);
    }

    #[test]
    fn histogram_counts_every_value_and_one_lands_in_last_bin() {
        // Given values spanning the whole range, including both ends
        let values = [-0.2, 0.0, 0.1, 0.5, 0.5, 0.99, 1.0, 1.0];
        // When they are binned into 20 bins over [-0.2, 1]
        let counts = histogram(&values, 20, -0.2, 1.0);
        // Then every value is counted once, the low end in the first bin and 1.0 in the last
        assert_eq!(counts.len(), 20);
        assert_eq!(counts.iter().sum::<usize>(), values.len());
        assert_eq!((counts[0], counts[19]), (1, 3));
        // And NaN is ignored while out-of-range values are clamped into the edge bins
        let clamped = histogram(&[f64::NAN, -5.0, 1.5], 4, 0.0, 1.0);
        assert_eq!(clamped, vec![1, 0, 0, 1]);
    }

    #[test]
    fn text_from_inputs_is_escaped() {
        // Given group names, figures and notes with HTML-special characters
        let map = [pt(0.0, 0.0, 0, 1), pt(1.0, 1.0, 1, 2)];
        let groups = ["<script>".to_string(), "C# & .NET".to_string()];
        let figures = [("a \"b\"".to_string(), "it's".to_string())];
        let notes = ["<b>bold</b>".to_string()];
        let mut inp = input(&[1.0], &[0.5], &map);
        (inp.groups, inp.figures, inp.notes) = (&groups, &figures, &notes);
        // When rendered
        let html = render(&inp);
        // Then every special character is escaped wherever the text appears
        assert!(!html.contains("<script>") && !html.contains("<b>"));
        assert!(html.contains("user 1 · &lt;script&gt;</title>"));
        assert!(html.contains("user 2 · C# &amp; .NET</title>"));
        assert!(html.contains("<th>a &quot;b&quot;</th><td>it&#39;s</td>"));
        assert!(html.contains("<p>&lt;b&gt;bold&lt;/b&gt;</p>"));
    }

    #[test]
    fn ungrouped_points_are_grey_and_take_no_colour() {
        // Given a point of group 0 and three ungrouped ones,
        let map: Vec<MapPoint> = [0, UNGROUPED, UNGROUPED, UNGROUPED]
            .iter()
            .enumerate()
            .map(|(i, &group)| MapPoint {
                x: i as f32,
                y: 0.0,
                group,
                handle: i as u64,
            })
            .collect();
        let groups = ["rust".to_string()];
        let mut inp = input(&[1.0], &[0.5], &map);
        (inp.map, inp.groups) = (&map, &groups);
        let html = render(&inp);
        // then group 0 takes the first colour, the rest are grey "other".
        assert!(html.contains(&format!("fill=\"{}\"", PALETTE[0])));
        assert_eq!(
            html.matches(&format!("fill=\"{OTHER}\" fill-opacity"))
                .count(),
            3
        );
        assert!(html.contains("<title>user 1 · other</title>"));
    }

    #[test]
    fn legend_caps_at_ten_groups_plus_other() {
        // Given 12 groups, group 11 the most populous
        let mut map: Vec<MapPoint> = (0..12).map(|g| pt(g as f32, 0.0, g, g.into())).collect();
        map.extend((0..5).map(|i| pt(i as f32, 1.0, 11, 100 + i)));
        // When rendered
        let html = render(&input(&[1.0], &[0.5], &map));
        // Then the biggest group gets the first colour and two groups fall into grey "other"
        let first = format!(
            "{}\"/>\n<text x=\"578.0\" y=\"30.0\" fill=\"#222\">group 11 (6)<",
            PALETTE[0]
        );
        assert!(html.contains(&first));
        assert!(html.contains(">other: 2 groups (2)</text>"));
        let grey = format!("r=\"3\" fill=\"{OTHER}\"");
        assert_eq!(html.matches(&grey).count(), 2);
    }

    #[test]
    fn empty_inputs_say_no_data() {
        // Given no singular values, similarities or map points (or only non-finite ones)
        let nan_map = [pt(f32::NAN, 0.0, 0, 1)];
        for (sims, map) in [(&[][..], &[][..]), (&[f32::NAN][..], &nan_map[..])] {
            let mut inp = input(&[], sims, map);
            inp.explained_variance = f64::NAN;
            // When rendered
            let html = render(&inp);
            // Then each plot is replaced by a "no data" line and nothing is drawn
            assert_eq!(html.matches("no data").count(), 3);
            assert_eq!(html.matches("<svg").count(), 0);
            assert!(html.contains("<td>n/a</td>") && !html.contains("NaN"));
        }
    }

    #[test]
    fn numbers_are_compact() {
        // Given assorted magnitudes, then: three significant digits, no trailing zeros
        assert_eq!(fmt_num(0.991), "0.991");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(fmt_num(9.996), "10");
        assert_eq!(fmt_num(-0.25), "-0.25");
        assert_eq!(fmt_num(2.5e-7), "2.50e-7");
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        // And ticks are exact multiples of a 1-2-5 step
        assert_eq!(ticks(0.0, 1.0, nice_step(1.0, 5.0)).len(), 6);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
    }
}
