//! What a run produces: the summary table, the timeline CSV and the SVG chart.

use std::fmt::Write as _;
use std::path::Path;

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

/// An SVG chart: one panel per service (rows) and policy set (columns), with arrivals per minute and queue depth on
/// the left axis and replicas and ready replicas on the right one.
pub fn chart_svg(results: &[RunResult], path: &Path) -> Result<(), SimError> {
    let services: Vec<String> =
        results.first().map(|r| r.summaries.iter().map(|s| s.service.clone()).collect()).unwrap_or_default();
    let columns = results.len().max(1);
    let size = (560 * columns as u32, 260 * services.len().max(1) as u32);
    let fail = |e: &dyn std::fmt::Display| SimError::Chart { path: path.into(), message: e.to_string() };
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let panels = root.split_evenly((services.len().max(1), columns));
    for (row, service) in services.iter().enumerate() {
        for (column, result) in results.iter().enumerate() {
            let samples: Vec<&Sample> = result.timeline.iter().filter(|s| &s.service == service).collect();
            let label = format!("{} ({} pipeline)", result.label, result.pipeline.name());
            panel(&panels[row * columns + column], service, &label, &samples).map_err(|e| fail(&e))?;
        }
    }
    root.present().map_err(|e| fail(&e))
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    service: &str,
    label: &str,
    samples: &[&Sample],
) -> DrawResult {
    let end_h = samples.last().map_or(1.0, |s| s.time_s as f64 / 3600.0).max(1.0 / 60.0);
    let interval_min = samples.first().map_or(1.0, |s| s.time_s.max(1) as f64 / 60.0);
    let per_minute = |s: &Sample| s.arrivals as f64 / interval_min;
    let jobs_max = samples.iter().map(|s| per_minute(s).max(s.waiting as f64)).fold(1.0, f64::max) * 1.1;
    let pods_max = samples.iter().map(|s| s.replicas).max().unwrap_or(1).max(1) as f64 + 1.0;
    let hours = |s: &Sample| s.time_s as f64 / 3600.0;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{service} - {label}"), ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .right_y_label_area_size(36)
        .build_cartesian_2d(0.0..end_h, 0.0..jobs_max)?
        .set_secondary_coord(0.0..end_h, 0.0..pods_max);
    chart.configure_mesh().x_desc("hours").y_desc("jobs").light_line_style(WHITE).draw()?;
    chart.configure_secondary_axes().y_desc("pods").draw()?;
    let arrivals = RGBColor(150, 150, 150);
    let queue = RGBColor(214, 39, 40);
    let replicas = RGBColor(31, 119, 180);
    let ready = RGBColor(44, 160, 44);
    chart
        .draw_series(LineSeries::new(samples.iter().map(|s| (hours(s), per_minute(s))), arrivals))?
        .label("arrivals/min")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], arrivals));
    chart
        .draw_series(LineSeries::new(samples.iter().map(|s| (hours(s), s.waiting as f64)), queue))?
        .label("waiting")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], queue));
    chart
        .draw_secondary_series(LineSeries::new(samples.iter().map(|s| (hours(s), f64::from(s.replicas))), replicas))?
        .label("replicas")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], replicas));
    chart
        .draw_secondary_series(LineSeries::new(samples.iter().map(|s| (hours(s), f64::from(s.ready))), ready))?
        .label("ready")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], ready));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
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
    let chart = dir.join("chart.svg");
    chart_svg(results, &chart)?;
    Ok(vec![summary, timeline, chart])
}
