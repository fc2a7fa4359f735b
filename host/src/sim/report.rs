//! What a run produces: the summary table, the timeline CSV and the chart (SVG or PNG).

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::SimError;
use super::run::{RunResult, Sample};

/// The per-service summary of one or more runs, the runs of each service side by side, then the service's lower
/// bound ([`super::bound`]) with every run's pod-hours as a multiple of it.
pub fn table(results: &[RunResult]) -> String {
    let mut out = header(results);
    let label_width = results.iter().map(|r| r.label.len()).max().unwrap_or(6).max(LOWER_BOUND.len());
    let service_width =
        results.iter().flat_map(|r| r.summaries.iter().map(|s| s.service.len())).max().unwrap_or(7).max(7);
    let _ = writeln!(
        out,
        "{:<service_width$}  {:<label_width$}  {:>9}  {:>7}  {:>9}  {:>8}  {:>8}  {:>10}  {:>6}  {:>8}  {:>9}  {:>5}",
        "service",
        "policy",
        "pod-hours",
        "x bound",
        "wait mean",
        "wait p95",
        "wait max",
        "over SLO s",
        "scales",
        "failures",
        "completed",
        "left"
    );
    let services: Vec<&str> =
        results.first().map(|r| r.summaries.iter().map(|s| s.service.as_str()).collect()).unwrap_or_default();
    for service in services {
        let mut bounds: Vec<(&str, f64)> = Vec::new();
        for result in results {
            let Some(s) = result.summaries.iter().find(|s| s.service == service) else { continue };
            let _ = writeln!(
                out,
                "{:<service_width$}  {:<label_width$}  {:>9.1}  {:>7}  {:>8.2}s  {:>7.2}s  {:>7.1}s  {:>10}  {:>6}  \
                 {:>8}  {:>9}  {:>5}",
                s.service,
                result.label,
                s.pod_hours,
                times_bound(s.pod_hours, s.lower_bound_pod_hours),
                s.wait_mean_s,
                s.wait_p95_s,
                s.wait_max_s,
                s.seconds_over_slo,
                s.scale_events,
                s.plugin_failures,
                s.completed,
                s.left_in_system
            );
            if !bounds.iter().any(|(_, b)| *b == s.lower_bound_pod_hours) {
                bounds.push((&result.label, s.lower_bound_pod_hours));
            }
        }
        // One bound per service unless sets simulate it with different physics (--allow-different-physics).
        for (label, bound) in &bounds {
            let name = if bounds.len() == 1 { LOWER_BOUND.to_owned() } else { format!("bound {label}") };
            let _ = writeln!(out, "{service:<service_width$}  {name:<label_width$}  {bound:>9.1}  {:>7}", "1.00");
        }
    }
    if results.len() > 1 {
        let total = |r: &RunResult| r.summaries.iter().map(|s| s.pod_hours).sum::<f64>();
        let totals: Vec<String> = results.iter().map(|r| format!("{} {:.1}", r.label, total(r))).collect();
        let _ = writeln!(out, "total pod-hours: {}", totals.join(", "));
    }
    if let Some(first) = results.first() {
        let bound: f64 = first.summaries.iter().map(|s| s.lower_bound_pod_hours).sum();
        let _ = writeln!(
            out,
            "{LOWER_BOUND} {bound:.1} pod-hours in all: the fewest that meet each service's wait objective on this \
             trace (Erlang C per minute, at most 5% of jobs waiting over waitSloSeconds, no start-up delay; see --help)"
        );
    }
    for result in results {
        for s in result.summaries.iter().filter(|s| s.plugin_failures > 0) {
            let kinds: Vec<String> = s.failure_kinds.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
            let _ = writeln!(
                out,
                "plugin failures, {} ({}): {} ({}); the first: {}",
                s.service,
                result.label,
                s.plugin_failures,
                kinds.join(", "),
                s.first_failure.as_deref().map_or_else(String::new, |m| crate::runtime::text::escaped(m, 512))
            );
        }
        for s in result.summaries.iter().filter(|s| s.completed + s.failed + s.left_in_system == 0) {
            let _ = writeln!(
                out,
                "warning: no job arrived for {} ({}): the trace sends it nothing (a built-in trace with baseRate 0, or \
                 a CSV trace without rows for it), so its figures say nothing about how the policy scales",
                s.service, result.label
            );
        }
    }
    out
}

/// The name of the bound's rows.
const LOWER_BOUND: &str = "lower bound";

/// Pod-hours as a multiple of the bound; `-` when the bound is 0 (no load).
fn times_bound(pod_hours: f64, bound: f64) -> String {
    if bound > 0.0 { format!("{:.2}", pod_hours / bound) } else { "-".into() }
}

/// Which pipeline each set's decisions were modelled behind, so that no comparison hides it.
fn header(results: &[RunResult]) -> String {
    let sets: Vec<String> = results.iter().map(|r| format!("{} ({} pipeline)", r.label, r.pipeline.name())).collect();
    format!(
        "policy sets: {}; direct = each policy's decisionIntervalSeconds, original = 15 s sync on metrics 60 s old\n",
        sets.join(", ")
    )
}

/// The timeline of every run as CSV: fixed column order and number formats, so equal runs give equal bytes.
pub fn timeline_csv(results: &[RunResult]) -> String {
    let mut out = String::from(
        "time_s,policy,service,arrivals,completed,waiting,active,delayed,failed,replicas,ready,busy_percent,\
         oldest_wait_s,wait_p95_s,lower_bound_pods\n",
    );
    for result in results {
        for s in &result.timeline {
            let busy = s.busy_percent.map(|b| format!("{b:.1}")).unwrap_or_default();
            let p95 = s.wait_p95_s.map(|w| format!("{w:.2}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{},{:.2}",
                s.time_s,
                result.label,
                s.service,
                s.arrivals,
                s.completed,
                s.waiting,
                s.active,
                s.delayed,
                s.failed,
                s.replicas,
                s.ready,
                busy,
                s.oldest_wait_s,
                p95,
                s.lower_bound_pods
            );
        }
    }
    out
}

/// Points per line at most: a day of minute samples is drawn from buckets of a few minutes, which keeps a day's
/// chart a few hundred KB and loses nothing a 600-pixel panel could show.
const MAX_POINTS: usize = 360;
const WIDTH: u32 = 1200;
const HEADER_HEIGHT: u32 = 64;
const ROW_HEIGHT: u32 = 300;
/// One colour per policy set, in order.
const SET_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];
const LOAD: RGBColor = RGBColor(170, 170, 170);
const OBJECTIVE: RGBColor = RGBColor(214, 39, 40);

fn set_colour(index: usize) -> RGBColor {
    SET_COLOURS[index % SET_COLOURS.len()]
}

/// The chart of the runs, as SVG, or as PNG when `path` ends in `.png`: per service, the replicas of every set
/// overlaid with the load and the lower bound, and beside it every set's p95 wait per sample with the wait
/// objective.
pub fn chart(results: &[RunResult], path: &Path) -> Result<(), SimError> {
    let fail = |e: &dyn std::fmt::Display| SimError::Chart { path: path.into(), message: e.to_string() };
    register_font().map_err(|e| fail(&e))?;
    let rows = results.first().map_or(0, |r| r.summaries.len()).max(1) as u32;
    let size = (WIDTH, HEADER_HEIGHT + ROW_HEIGHT * rows);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
            draw(&root, results).map_err(|e| fail(&e))?;
            root.present().map_err(|e| fail(&e))?;
        }
        let file = std::fs::File::create(path).map_err(|e| SimError::Io { path: path.into(), source: e })?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), size.0, size.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
        writer.write_image_data(&pixels).map_err(|e| fail(&e))?;
        writer.finish().map_err(|e| fail(&e))
    } else {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(&root, results).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))
    }
}

/// The font text is measured (and, in a PNG, drawn) with: DejaVu Sans, built in, so no system font is needed.
fn register_font() -> Result<(), &'static str> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok { Ok(()) } else { Err("the built-in font could not be read") }
}

type DrawResult<E> = Result<(), DrawingAreaErrorKind<E>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, results: &[RunResult]) -> DrawResult<DB::ErrorType> {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER_HEIGHT);
    legend(&header, results)?;
    let services: Vec<&str> =
        results.first().map(|r| r.summaries.iter().map(|s| s.service.as_str()).collect()).unwrap_or_default();
    for (row, service) in body.split_evenly((services.len().max(1), 1)).iter().zip(services) {
        let (caption, panels) = row.split_vertically(24);
        let mut text = format!("{service}: pod-hours");
        for result in results {
            if let Some(s) = result.summaries.iter().find(|s| s.service == service) {
                let _ = write!(
                    text,
                    " {} {:.1} ({}x bound),",
                    result.label,
                    s.pod_hours,
                    times_bound(s.pod_hours, s.lower_bound_pod_hours)
                );
            }
        }
        let bound = results[0].summaries.iter().find(|s| s.service == service).map_or(0.0, |s| s.lower_bound_pod_hours);
        let _ = write!(text, " {LOWER_BOUND} {bound:.1}");
        caption.draw(&Text::new(text, (10, 6), ("sans-serif", 14).into_font()))?;
        let (left, right) = panels.split_horizontally(WIDTH * 3 / 5);
        replicas_panel(&left, service, results)?;
        wait_panel(&right, service, results)?;
    }
    Ok(())
}

/// The header: what the chart shows, and the legend, outside every plot.
fn legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, results: &[RunResult]) -> DrawResult<DB::ErrorType> {
    let font = ("sans-serif", 13).into_font();
    area.draw(&Text::new(
        "Per service: replicas of each policy set with the load and the lower bound (left); p95 wait of the jobs \
         completed per sample with the wait objective (right)",
        (10, 6),
        font.clone(),
    ))?;
    let mut entries: Vec<(String, RGBColor)> = results
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("{} ({} pipeline)", r.label, r.pipeline.name()), set_colour(i)))
        .collect();
    entries.push(("load, jobs/min (right axis)".into(), LOAD));
    entries.push((format!("{LOWER_BOUND}, pods"), BLACK));
    entries.push(("wait objective (waitSloSeconds)".into(), OBJECTIVE));
    let mut x = 10;
    let mut y = 30;
    for (label, colour) in entries {
        let width = 30 + 7 * label.len() as i32;
        if x + width > WIDTH as i32 {
            x = 10;
            y += 17;
        }
        area.draw(&PathElement::new([(x, y + 7), (x + 20, y + 7)], colour.stroke_width(3)))?;
        area.draw(&Text::new(label, (x + 25, y), font.clone()))?;
        x += width;
    }
    Ok(())
}

/// Mean of each bucket of at most [`MAX_POINTS`] buckets (replicas: pod-hours are kept), or its maximum (waits:
/// a spike is never averaged away), at the bucket's last time, in hours.
fn buckets(samples: &[&Sample], value: impl Fn(&Sample) -> Option<f64>, max: bool) -> Vec<(f64, f64)> {
    let size = samples.len().div_ceil(MAX_POINTS).max(1);
    samples
        .chunks(size)
        .filter_map(|chunk| {
            let values: Vec<f64> = chunk.iter().filter_map(|s| value(s)).collect();
            let last = chunk.last()?.time_s as f64 / 3600.0;
            if values.is_empty() {
                return None;
            }
            let v = if max {
                values.iter().copied().fold(0.0, f64::max)
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            };
            Some((last, v))
        })
        .collect()
}

fn samples_of<'a>(result: &'a RunResult, service: &str) -> Vec<&'a Sample> {
    result.timeline.iter().filter(|s| s.service == service).collect()
}

/// The first set's samples of `service` and the hour they end at: every panel's x axis.
fn first_samples<'a>(results: &'a [RunResult], service: &str) -> (Vec<&'a Sample>, f64) {
    let first = samples_of(&results[0], service);
    let end_h = first.last().map_or(1.0, |s| s.time_s as f64 / 3600.0).max(1.0 / 60.0);
    (first, end_h)
}

fn replicas_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    service: &str,
    results: &[RunResult],
) -> DrawResult<DB::ErrorType> {
    let (first, end_h) = first_samples(results, service);
    let interval_min = first.first().map_or(1.0, |s| s.time_s.max(1) as f64 / 60.0);
    let load = buckets(&first, |s| Some(s.arrivals as f64 / interval_min), false);
    let bound = buckets(&first, |s| Some(s.lower_bound_pods), false);
    let replicas: Vec<Vec<(f64, f64)>> =
        results.iter().map(|r| buckets(&samples_of(r, service), |s| Some(f64::from(s.replicas)), false)).collect();
    let pods_max = replicas.iter().flatten().chain(&bound).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let load_max = load.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(6)
        .x_label_area_size(30)
        .y_label_area_size(44)
        .right_y_label_area_size(50)
        .build_cartesian_2d(0.0..end_h, 0.0..pods_max)?
        .set_secondary_coord(0.0..end_h, 0.0..load_max);
    chart.configure_mesh().max_light_lines(0).x_desc("hours").y_desc("pods").draw()?;
    chart.configure_secondary_axes().y_desc("jobs/min").draw()?;
    chart.draw_secondary_series(LineSeries::new(load, LOAD))?;
    chart.draw_series(LineSeries::new(bound, BLACK))?;
    for (i, points) in replicas.into_iter().enumerate() {
        chart.draw_series(LineSeries::new(points, set_colour(i).stroke_width(2)))?;
    }
    Ok(())
}

fn wait_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    service: &str,
    results: &[RunResult],
) -> DrawResult<DB::ErrorType> {
    let (_, end_h) = first_samples(results, service);
    let objective = results[0].summaries.iter().find(|s| s.service == service).map_or(0.0, |s| s.wait_slo_s);
    let waits: Vec<Vec<(f64, f64)>> =
        results.iter().map(|r| buckets(&samples_of(r, service), |s| s.wait_p95_s, true)).collect();
    let wait_max = waits.iter().flatten().map(|p| p.1).fold(objective, f64::max).max(0.1) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(6)
        .x_label_area_size(30)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..end_h, 0.0..wait_max)?;
    chart.configure_mesh().max_light_lines(0).x_desc("hours").y_desc("p95 wait, s").draw()?;
    chart.draw_series(DashedLineSeries::new(
        [(0.0, objective), (end_h, objective)],
        8,
        5,
        OBJECTIVE.stroke_width(2),
    ))?;
    for (i, points) in waits.into_iter().enumerate() {
        chart.draw_series(LineSeries::new(points, set_colour(i)))?;
    }
    Ok(())
}

/// Writes the table, the timeline and the chart into `dir`.
pub fn write_outputs(results: &[RunResult], dir: &Path) -> Result<Vec<std::path::PathBuf>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::Io { path: dir.into(), source: e })?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| SimError::Io { path: path.clone(), source: e }).map(|()| path)
    };
    let summary = write("summary.txt", &table(results))?;
    let timeline = write("timeline.csv", &timeline_csv(results))?;
    let chart_path = dir.join("chart.svg");
    chart(results, &chart_path)?;
    Ok(vec![summary, timeline, chart_path])
}
