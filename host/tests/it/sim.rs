//! `ballast simulate`: the simulated cluster's accounting (conservation, Little's law, start-up delays),
//! determinism, clear errors, and the demo's verdict that queue-drain beats the original HPAs.

use ballast::sim::{self, PolicySet, SimCluster, SimOptions, StepHook, Trace};

/// A policy set of one or more services, each with its own `simulation:` section.
fn set(docs: &[(&str, u32, u32, &str, &str)]) -> PolicySet {
    let text: Vec<String> = docs
        .iter()
        .map(|(name, min, max, plugin, simulation)| {
            format!(
                "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: {name}, namespace: t}}\n\
                 spec:\n  target: {{name: {name}}}\n  minReplicas: {min}\n  maxReplicas: {max}\n  plugin: {plugin}\n\
                 simulation: {simulation}\n"
            )
        })
        .collect();
    PolicySet::parse("test", "test.yaml", &text.join("---\n"), None).expect("test policies parse")
}

const HPA: &str = "{builtin: hpa}\n  config: {gpuUtilization: 80, jobsPerPod: 4}";

struct Check<F: FnMut(u64, &SimCluster)>(F);

impl<F: FnMut(u64, &SimCluster)> StepHook for Check<F> {
    fn after_step(&mut self, now_s: u64, cluster: &SimCluster) {
        (self.0)(now_s, cluster)
    }
}

fn options(duration_s: u64, seed: u64) -> SimOptions {
    SimOptions { seed, duration_s, step_s: 1, sample_s: 60 }
}

#[test]
fn every_job_is_accounted_for_at_every_step() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let policies = set(&[
        ("fast", 1, 6, HPA, "{serviceSeconds: 0.3, jitter: 0.5, startupSeconds: 40, concurrency: 3, baseRate: 12}"),
        (
            "flaky",
            1,
            6,
            HPA,
            "{serviceSeconds: 6, jitter: 0.3, startupSeconds: 90, baseRate: 0.6, failureRate: 0.2, maxAttempts: 2}",
        ),
    ]);
    let mut checked = 0;
    let mut hook = Check(|now_s, cluster: &SimCluster| {
        for (key, s) in &cluster.services {
            let q = s.queue_counts();
            assert_eq!(
                s.totals.arrived,
                s.totals.completed + q.failed + q.waiting + q.delayed + q.active,
                "{key} at {now_s} s: {:?} {q:?}",
                s.totals
            );
            checked += 1;
        }
    });
    let result =
        sim::run(&engine, &policies, &Trace::from_arg("builtin:burst").unwrap(), options(4 * 3600, 3), &mut hook)
            .unwrap();
    assert_eq!(checked, 2 * 4 * 3600);
    let flaky = &result.summaries[1];
    assert!(flaky.failed > 0 && flaky.completed > 1000, "{flaky:?}");
    assert!(result.summaries.iter().all(|s| s.scale_events > 0), "the burst trace makes both scale: {result:?}");
}

#[test]
fn littles_law_holds_on_a_steady_trace() {
    // Fixed at 4 pods (min = max), 4 s per job, 0.6 jobs/s: utilization 60%, a stable queue.
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let policies = set(&[("steady", 4, 4, HPA, "{serviceSeconds: 4, jitter: 0.5, startupSeconds: 0, baseRate: 1}")]);
    let duration = 6 * 3600;
    let mut area = 0u64; // job-seconds in the system, sampled at the end of every 1 s step
    let mut totals = None;
    let mut hook = Check(|now_s, cluster: &SimCluster| {
        let service = cluster.services.values().next().unwrap();
        area += service.in_system();
        if now_s == duration {
            totals = Some(service.totals);
        }
    });
    sim::run(&engine, &policies, &Trace::from_arg("builtin:steady").unwrap(), options(duration, 11), &mut hook)
        .unwrap();
    let totals = totals.unwrap();
    let l = area as f64 / duration as f64;
    let lambda = totals.completed as f64 / duration as f64;
    let w = totals.sojourn_ms as f64 / 1000.0 / totals.completed as f64;
    assert!((lambda - 0.6).abs() < 0.02, "arrival rate {lambda}");
    assert!((l - lambda * w).abs() / l < 0.05, "L = {l:.3}, lambda W = {lambda:.3} x {w:.3} = {:.3}", lambda * w);
    assert!(w > 4.0, "jobs spend at least their service time in the system: {w}");
}

#[test]
fn no_pod_serves_before_its_start_up_delay() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let policies = set(&[(
        "slow-start",
        1,
        8,
        HPA,
        "{serviceSeconds: 5, jitter: 0.3, startupSeconds: 120, concurrency: 2, baseRate: 2}",
    )]);
    let mut late_pods_worked = 0;
    let mut hook = Check(|_, cluster: &SimCluster| {
        for s in cluster.services.values() {
            for pod in s.pods() {
                if let Some(first) = pod.first_start_ms {
                    assert!(
                        first >= pod.ready_ms,
                        "pod {} started a job at {first} ms, ready at {} ms",
                        pod.id,
                        pod.ready_ms
                    );
                    if pod.created_ms > 0 && first == pod.ready_ms {
                        late_pods_worked += 1;
                    }
                }
            }
        }
    });
    sim::run(&engine, &policies, &Trace::from_arg("builtin:step").unwrap(), options(3 * 3600, 5), &mut hook).unwrap();
    assert!(late_pods_worked > 0, "scaled-up pods took waiting work the moment they became ready");
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let sets = sim::demo::policy_sets().unwrap();
    let trace = Trace::from_arg("builtin:day").unwrap();
    let csv = |seed| {
        let results: Vec<_> =
            sets.iter().map(|set| sim::run(&engine, set, &trace, options(6 * 3600, seed), &mut ()).unwrap()).collect();
        sim::report::timeline_csv(&results)
    };
    let first = csv(42);
    assert_eq!(first, csv(42));
    assert_ne!(first, csv(43));
    assert!(first.lines().count() > 5 * 2 * 360);
}

#[test]
fn bad_documents_get_errors_naming_document_and_field() {
    let good = "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: a}\nspec:\n  target: {name: a}\n  \
                maxReplicas: 3\n  plugin: {builtin: hpa}\nsimulation: {serviceSeconds: 1, startupSeconds: 1}\n";
    let parse = |text: &str| PolicySet::parse("t", "p.yaml", text, None).unwrap_err().to_string();

    let missing = good.replace("  maxReplicas: 3\n", "");
    let err = parse(&format!("{good}---\n{}", missing.replace("name: a", "name: b")));
    assert!(err.contains("p.yaml: document 2 (`b`") && err.contains("maxReplicas"), "{err}");

    let err = parse(&good.replace("maxReplicas: 3", "maxReplicas: three"));
    assert!(err.contains("document 1 (`a`") && err.contains("spec.maxReplicas"), "{err}");

    let err = parse(&good.replace("serviceSeconds: 1", "serviceSecond: 1"));
    assert!(err.contains("serviceSecond"), "{err}");

    let err = parse(&good.replace("v1alpha1", "v1"));
    assert!(err.contains("apiVersion is `ballast.dev/v1`; use `ballast.dev/v1alpha1`"), "{err}");

    let err = parse(&good.replace("serviceSeconds: 1", "serviceSeconds: -1"));
    assert!(err.contains("simulation.serviceSeconds -1 is out of range"), "{err}");

    let err = parse(&good.replace("simulation: {serviceSeconds: 1, startupSeconds: 1}\n", ""));
    assert!(err.contains("no simulation parameters for default/a"), "{err}");

    let err = parse(&good.replace("plugin: {builtin: hpa}", "plugin: {builtin: hpa, path: x.wasm}"));
    assert!(err.contains("spec.plugin must name exactly one"), "{err}");
}

/// The demo's verdict: against the original HPAs (15 s sync, metrics 60 s behind), queue-drain run by Ballast (1 s
/// decisions on fresh queue counts, the same bounds and behavior) uses fewer pod-hours on every service and spends
/// fewer seconds over the wait objectives in all. (Its p95 waits are about the same: issue 15 measures how little
/// there is to win on steady daily load.)
#[test]
fn demo_queue_drain_uses_fewer_pod_hours_and_less_time_over_the_objective() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let sets = sim::demo::policy_sets().unwrap();
    let trace = Trace::from_arg(sim::demo::TRACE).unwrap();
    let results: Vec<_> =
        sets.iter().map(|set| sim::run(&engine, set, &trace, SimOptions::default(), &mut ()).unwrap()).collect();
    let table = sim::report::table(&results);
    let (hpa, drain) = (&results[0], &results[2]);
    assert_eq!((hpa.label.as_str(), drain.label.as_str()), ("hpa-original", "queue-drain"));
    assert!(hpa.summaries.iter().zip(&drain.summaries).all(|(h, d)| d.pod_hours < h.pod_hours), "{table}");
    let over = |r: &sim::RunResult| r.summaries.iter().map(|s| s.seconds_over_slo).sum::<u64>();
    assert!(over(drain) < over(hpa), "{table}");
    assert!(results.iter().all(|r| r.summaries.iter().all(|s| s.plugin_failures == 0)), "{table}");

    // The lower bound: a policy below it misses the objective (its p95 wait is over waitSloSeconds), and a policy
    // that meets the objective (hpa-ballast on most services) is at or above it.
    let mut meeting = 0;
    for result in &results {
        for s in &result.summaries {
            assert!(s.lower_bound_pod_hours > 0.0, "{table}");
            let meets = s.wait_p95_s <= s.wait_slo_s;
            assert!(!meets || s.pod_hours >= s.lower_bound_pod_hours, "{} {}: {table}", result.label, s.service);
            meeting += usize::from(meets);
        }
    }
    assert!(meeting >= 3, "some policies meet their objectives: {table}");
    let bound = |r: &sim::RunResult| r.summaries.iter().map(|s| s.lower_bound_pod_hours).collect::<Vec<_>>();
    assert!(results.iter().all(|r| bound(r) == bound(hpa)), "the bound depends on the trace, not the policy");
    assert!(table.contains("lower bound") && table.contains("x bound") && table.contains("wait mean"), "{table}");
}

/// The scorecard where the shipped queue-drain halves the HPAs' seconds over the objectives: an upload every 40
/// minutes, on a seed it was not tuned on (1-3 were). It learns the period and starts pods before each upload.
/// Twelve hours: the period is confirmed after the third upload. The floor (every service held at maxReplicas) is
/// below both, and holding the fleet there costs more pod-hours than either.
#[test]
fn queue_drain_starts_pods_before_uploads_that_recur() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let drain = sim::demo::queue_drain().unwrap();
    let score = sim::demo::Score::run(&engine, &drain, "batches", 12 * 3600, 7).unwrap();
    assert!(2 * score.candidate.seconds_over <= score.hpa.seconds_over, "{}", score.line());
    assert!(score.candidate.pod_hours <= 1.15 * score.hpa.pod_hours, "{}", score.line());
    assert!(score.at_max.seconds_over < score.candidate.seconds_over, "{}", score.line());
    assert!(score.at_max.pod_hours > score.candidate.pod_hours.max(score.hpa.pod_hours), "{}", score.line());
}

/// A policy whose every call fails (queue-drain without its required config), so each decision is counted.
const FAILING: &str = "{builtin: queue-drain}\n  config: {}\n  decisionIntervalSeconds: 30";

#[test]
fn policies_decide_at_their_own_interval_unless_the_pipeline_is_the_original() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let physics = "{serviceSeconds: 2, startupSeconds: 10, baseRate: 1}";
    let trace = Trace::from_arg("builtin:steady").unwrap();
    let direct = set(&[("svc", 1, 4, FAILING, physics)]);
    let result = sim::run(&engine, &direct, &trace, options(600, 1), &mut ()).unwrap();
    let summary = &result.summaries[0];
    assert_eq!(summary.plugin_failures, 20, "600 s at the spec's 30 s: {summary:?}");
    assert_eq!(result.pipeline, sim::Pipeline::Direct);
    // The failures say what and why, in the summary and in the printed table.
    assert_eq!(summary.failure_kinds, vec![("error", 20)], "{summary:?}");
    let first = summary.first_failure.as_deref().unwrap_or_default();
    assert!(!first.is_empty(), "{summary:?}");
    let table = sim::report::table(std::slice::from_ref(&result));
    assert!(table.starts_with("policy sets: test (direct pipeline)"), "{table}");
    assert!(table.contains("plugin failures, svc (test): 20 (20 error); the first: "), "{table}");

    let original = set(&[("svc", 1, 4, FAILING, physics)]).with_pipeline(sim::Pipeline::Original);
    let result = sim::run(&engine, &original, &trace, options(600, 1), &mut ()).unwrap();
    assert_eq!(result.summaries[0].plugin_failures, 40, "the original pipeline syncs every 15 s");
    assert!(sim::report::table(std::slice::from_ref(&result)).starts_with("policy sets: test (original pipeline)"));
}

#[test]
fn results_do_not_depend_on_the_namespace() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let one = set(&[("svc", 1, 6, HPA, "{serviceSeconds: 3, jitter: 0.4, startupSeconds: 30, baseRate: 2}")]);
    let mut other = one.clone();
    other.services[0].key.namespace = "elsewhere".into();
    let trace = Trace::from_arg("builtin:burst").unwrap();
    let a = sim::run(&engine, &one, &trace, options(3600, 7), &mut ()).unwrap();
    let b = sim::run(&engine, &other, &trace, options(3600, 7), &mut ()).unwrap();
    assert_eq!(format!("{:?}", a.summaries), format!("{:?}", b.summaries));
}

#[test]
fn a_service_the_trace_sends_nothing_is_warned_about_under_the_table() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let trace = Trace::from_arg("builtin:steady").unwrap();
    let both = set(&[
        ("busy", 1, 4, HPA, "{serviceSeconds: 2, startupSeconds: 10, baseRate: 1}"),
        ("idle", 1, 4, HPA, "{serviceSeconds: 2, startupSeconds: 10, baseRate: 0}"),
    ]);
    let result = sim::run(&engine, &both, &trace, options(300, 1), &mut ()).unwrap();
    let table = sim::report::table(std::slice::from_ref(&result));
    assert!(table.contains("warning: no job arrived for idle (test)") && table.contains("baseRate 0"), "{table}");
    assert!(!table.contains("no job arrived for busy"), "{table}");
}

#[test]
fn a_rate_trace_file_drives_the_run_step_by_step() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steps.csv");
    std::fs::write(&path, "time_s,service,rate\n0,svc,3\n600,svc,0\n1200,svc,0\n").unwrap();
    let trace = Trace::from_arg(path.to_str().unwrap()).unwrap();
    assert_eq!(trace.length_s(), 1200);
    let policies = set(&[("svc", 1, 6, HPA, "{serviceSeconds: 1, startupSeconds: 10}")]);
    let result = sim::run(&engine, &policies, &trace, options(trace.length_s(), 1), &mut ()).unwrap();
    let arrived = |minutes: std::ops::Range<u64>| {
        result.timeline.iter().filter(|s| minutes.contains(&(s.time_s / 60 - 1))).map(|s| s.arrivals).sum::<u64>()
    };
    let first = arrived(0..10) as f64;
    assert!((first - 1800.0).abs() < 5.0 * 1800f64.sqrt(), "3 jobs/s for 600 s: {first}");
    assert_eq!(arrived(10..20), 0, "rate 0 from 600 s on");
    assert!(result.timeline.iter().filter(|s| s.time_s <= 600).all(|s| s.arrivals > 100), "every minute has load");
}

/// The chart of a demo day with two sets: a few hundred KB as SVG, and the same drawing as a PNG that decodes.
#[test]
fn a_days_chart_is_small_and_its_png_decodes() {
    let engine = sim::run::engine(sim::run::limits()).unwrap();
    let sets = sim::demo::policy_sets().unwrap();
    let trace = Trace::from_arg(sim::demo::TRACE).unwrap();
    let results: Vec<_> = sets
        .iter()
        .filter(|set| set.label != "hpa-ballast")
        .map(|set| sim::run(&engine, set, &trace, SimOptions::default(), &mut ()).unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("chart.svg");
    sim::report::chart(&results, &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.len() < 400_000, "{} bytes", svg.len());
    for text in ["hpa-original (original pipeline)", "queue-drain (direct pipeline)", "wait objective", "lower bound"] {
        assert!(svg.contains(text), "the chart names {text}");
    }

    let png_path = dir.path().join("chart.png");
    sim::report::chart(&results, &png_path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1200, 64 + 300 * 5));
    let rgb: Vec<[u8; 3]> = pixels[..info.buffer_size()].chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
    let share = |colour: [u8; 3]| rgb.iter().filter(|p| **p == colour).count() as f64 / rgb.len() as f64;
    assert!(share([255, 255, 255]) > 0.5 && share([255, 255, 255]) < 0.99, "mostly white, not blank");
    assert!(share([31, 119, 180]) > 0.001 && share([255, 127, 14]) > 0.001, "both sets' lines are drawn");
    assert!(rgb.iter().any(|p| p == &[0, 0, 0]), "text and axes are drawn");
}
