//! Runs a policy set against a trace: the simulated cluster stepped in discrete time, decided by the same
//! [`Fleet::tick`] the live host runs (observation -> wasm plugin -> clamps -> `/scale`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::SimError;
use super::bound::Bound;
use super::cluster::{SimCluster, SimHandle, Totals, percentile_ms};
use super::config::{Pipeline, PolicySet};
use super::trace::{Arrivals, Trace};
use super::{MAX_DURATION_S, MAX_TIMELINE_ROWS};
use crate::autoscaler::{Fleet, ManagedService, load_plugin};
use crate::decision::PluginVerdict;
use crate::runtime::{FailureKind, PolicyEngine, RuntimeLimits};
use crate::spec::ServiceKey;

/// How to run a simulation: the seed, how long, the step and the sampling interval.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    pub seed: u64,
    pub duration_s: u64,
    pub step_s: u64,
    /// Interval of the timeline's rows and the chart's points.
    pub sample_s: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { seed: 1, duration_s: 86_400, step_s: 1, sample_s: 60 }
    }
}

impl SimOptions {
    /// Refuses a run of `services` services that the simulator cannot do or hold: no time or more than
    /// [`MAX_DURATION_S`], a step that does not divide the sample interval, more than [`MAX_TIMELINE_ROWS`] rows.
    pub fn check(&self, services: usize) -> Result<(), SimError> {
        let SimOptions { duration_s, step_s, sample_s, .. } = *self;
        if !(1..=MAX_DURATION_S).contains(&duration_s) {
            return Err(SimError::Invalid(format!(
                "{duration_s} s of simulated time; at most {MAX_DURATION_S} s (31 days), and at least 1 s"
            )));
        }
        if step_s == 0 || sample_s == 0 || !sample_s.is_multiple_of(step_s) {
            return Err(SimError::Invalid(format!(
                "the step ({step_s} s) must be at least 1 s and divide the sample interval ({sample_s} s)"
            )));
        }
        let rows = (services as u64).saturating_mul(duration_s.div_ceil(sample_s));
        if rows > MAX_TIMELINE_ROWS {
            return Err(SimError::Invalid(format!(
                "{rows} timeline rows ({services} services over {duration_s} s, a row every {sample_s} s); at most \
                 {MAX_TIMELINE_ROWS}: sample less often (--sample) or simulate less time"
            )));
        }
        Ok(())
    }
}

/// The limits plugins run under in simulation: calls get a generous deadline, so a busy machine never turns a slow
/// call into a failure that another run of the same seed would not have (runs must be reproducible).
pub fn limits() -> RuntimeLimits {
    RuntimeLimits { deadline: std::time::Duration::from_secs(2), ..RuntimeLimits::default() }
}

/// A policy engine for simulation, with [`limits`] or others.
pub fn engine(limits: RuntimeLimits) -> Result<Arc<PolicyEngine>, SimError> {
    Ok(PolicyEngine::new(limits)?)
}

/// One row of the timeline: a service at the end of a sample interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time_s: u64,
    pub(crate) service: String,
    /// Arrivals and completions within the interval.
    pub arrivals: u64,
    pub(crate) completed: u64,
    pub(crate) waiting: u64,
    pub(crate) active: u64,
    pub(crate) delayed: u64,
    pub(crate) failed: u64,
    pub(crate) replicas: u32,
    pub(crate) ready: u32,
    /// Busy fraction of ready pods over the interval, in percent; `None` with no ready pod.
    pub(crate) busy_percent: Option<f64>,
    pub(crate) oldest_wait_s: f64,
    /// p95 wait of the jobs completed in the interval; `None` when none completed.
    pub(crate) wait_p95_s: Option<f64>,
    /// Mean pods the lower bound ([`super::bound`]) needs over the interval.
    pub(crate) lower_bound_pods: f64,
}

/// One service's results over the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSummary {
    pub service: String,
    pub pod_hours: f64,
    /// The fewest pod-hours that would meet the wait objective on this run's arrivals ([`super::bound`]).
    pub lower_bound_pod_hours: f64,
    pub completed: u64,
    pub failed: u64,
    /// Mean wait of the completed jobs, those that waited 0 s included (most jobs find a free slot, so the median
    /// wait is 0 s and says nothing).
    pub(crate) wait_mean_s: f64,
    pub wait_p95_s: f64,
    pub(crate) wait_max_s: f64,
    pub wait_slo_s: f64,
    pub seconds_over_slo: u64,
    pub scale_events: u64,
    pub plugin_failures: u64,
    /// The failures by kind (label, count), and the first one's message: a policy that fails in simulation says
    /// why.
    pub failure_kinds: Vec<(&'static str, u64)>,
    pub first_failure: Option<String>,
    /// Jobs still queued or running at the end.
    pub(crate) left_in_system: u64,
}

/// One service's plugin failures in a run.
#[derive(Default)]
struct Failures {
    by_kind: BTreeMap<FailureKind, u64>,
    first: Option<String>,
}

/// The outcome of one policy set on one trace.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub label: String,
    pub pipeline: Pipeline,
    pub summaries: Vec<ServiceSummary>,
    pub timeline: Vec<Sample>,
}

/// Called after each step with the simulated time, so a caller can show progress or check invariants.
pub trait StepHook {
    fn after_step(&mut self, now_s: u64, cluster: &SimCluster);
}

impl StepHook for () {
    fn after_step(&mut self, _now_s: u64, _cluster: &SimCluster) {}
}

/// Runs every policy set on the same trace and seed, one after another, each with a progress bar on standard error
/// (indicatif hides it when standard error is not a terminal).
pub fn run_sets(
    engine: &Arc<PolicyEngine>,
    sets: &[PolicySet],
    trace: &Trace,
    options: SimOptions,
) -> Result<Vec<RunResult>, SimError> {
    let mut results = Vec::with_capacity(sets.len());
    for set in sets {
        let bar = ProgressBar::new(options.duration_s).with_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} simulated s ({eta} left)")
                .expect("valid progress template")
                .progress_chars("=> "),
        );
        bar.set_prefix(set.label.clone());
        let mut hook = Progress(bar.clone());
        let result = run(engine, set, trace, options, &mut hook)
            .map_err(|source| SimError::Run { label: set.label.clone(), source: Box::new(source) })?;
        bar.finish_and_clear();
        results.push(result);
    }
    Ok(results)
}

struct Progress(ProgressBar);

impl StepHook for Progress {
    fn after_step(&mut self, now_s: u64, _cluster: &SimCluster) {
        if now_s.is_multiple_of(600) {
            self.0.set_position(now_s);
        }
    }
}

/// Runs one policy set on a trace.
pub fn run(
    engine: &Arc<PolicyEngine>,
    set: &PolicySet,
    trace: &Trace,
    options: SimOptions,
    hook: &mut impl StepHook,
) -> Result<RunResult, SimError> {
    options.check(set.services.len())?;
    trace.check_services(&set.services)?;
    trace.check_load(&set.services, options.duration_s)?;
    // Services that decide at the same interval share one fleet, ticked together.
    let mut fleets: BTreeMap<u64, Fleet> = BTreeMap::new();
    for setup in &set.services {
        let plugin = load_plugin(engine, &setup.key, &setup.spec, |ns, name| set.config_map(ns, name))
            .map_err(|e| SimError::Invalid(format!("{} ({}): {e}", set.label, setup.key)))?;
        let shadow = match setup.spec.shadow_spec() {
            Some(spec) => Some(
                load_plugin(engine, &setup.key, &spec, |ns, name| set.config_map(ns, name))
                    .map_err(|e| SimError::Invalid(format!("{} ({}) shadow plugin: {e}", set.label, setup.key)))?,
            ),
            None => None,
        };
        let interval = setup.decision_interval_s();
        // The fleet decides a service when its spec says it is due: the spec carries the interval simulated.
        let mut spec = setup.spec.clone();
        spec.decision_interval_seconds = u32::try_from(interval).unwrap_or(u32::MAX);
        fleets
            .entry(interval)
            .or_default()
            .services
            .insert(setup.key.clone(), ManagedService::new(spec, plugin).with_shadow(shadow));
    }
    let mut arrivals: BTreeMap<ServiceKey, Arrivals> =
        set.services.iter().map(|s| (s.key.clone(), trace.arrivals(s, options.duration_s, options.seed))).collect();
    let cluster = RefCell::new(SimCluster::new(&set.services, options.seed));
    let mut plugin_failures: BTreeMap<ServiceKey, Failures> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut sampled: BTreeMap<ServiceKey, Totals> = BTreeMap::new();

    // The simulated cluster answers at once: a plain executor drives the loop, and plugin calls (which may block
    // in WASI) run on this thread outside any async runtime.
    futures::executor::block_on(async {
        let mut now_s = 0;
        while now_s < options.duration_s {
            let now_ms = now_s * 1000;
            cluster.borrow_mut().now_ms = now_ms;
            for (interval, fleet) in &mut fleets {
                if !now_s.is_multiple_of(*interval) {
                    continue;
                }
                let results = fleet.tick(&mut SimHandle(&cluster), &mut SimHandle(&cluster), now_ms).await;
                for tick in results.into_iter().flatten() {
                    if let PluginVerdict::Failed { kind, message } = &tick.record.plugin {
                        let failures = plugin_failures.entry(tick.record.service.clone()).or_default();
                        *failures.by_kind.entry(*kind).or_default() += 1;
                        failures.first.get_or_insert_with(|| message.clone());
                    }
                }
            }
            let step_s = options.step_s.min(options.duration_s - now_s);
            {
                let mut cluster = cluster.borrow_mut();
                for (key, service) in &mut cluster.services {
                    let count = arrivals.get_mut(key).map_or(0, |arrivals| arrivals.take(step_s as usize).sum());
                    service.step(now_ms, step_s * 1000, count);
                }
                cluster.now_ms = (now_s + step_s) * 1000;
            }
            now_s += step_s;
            let cluster = cluster.borrow();
            if now_s.is_multiple_of(options.sample_s) || now_s == options.duration_s {
                for (key, service) in &cluster.services {
                    let before = sampled.insert(key.clone(), service.totals).unwrap_or_default();
                    let now = service.totals;
                    let queue = service.queue_counts();
                    let ready_slot_ms = now.ready_slot_ms - before.ready_slot_ms;
                    timeline.push(Sample {
                        time_s: now_s,
                        service: key.name.clone(),
                        arrivals: now.arrived - before.arrived,
                        completed: now.completed - before.completed,
                        waiting: queue.waiting,
                        active: queue.active,
                        delayed: queue.delayed,
                        failed: queue.failed,
                        replicas: service.replicas(),
                        ready: service.ready(now_s * 1000),
                        busy_percent: (ready_slot_ms > 0)
                            .then(|| 100.0 * (now.busy_slot_ms - before.busy_slot_ms) as f64 / ready_slot_ms as f64),
                        oldest_wait_s: service.oldest_wait_ms(now_s * 1000) as f64 / 1000.0,
                        wait_p95_s: interval_p95_s(&service.waits_ms[before.completed as usize..]),
                        lower_bound_pods: 0.0,
                    });
                }
            }
            hook.after_step(now_s, &cluster);
        }
    });

    // The bound from the same arrivals the run had (the trace gives them again for the same seed).
    let bounds: BTreeMap<&str, Bound> = set
        .services
        .iter()
        .map(|s| (s.key.name.as_str(), Bound::new(trace.arrivals(s, options.duration_s, options.seed), &s.sim)))
        .collect();
    let mut sampled_until: BTreeMap<String, u64> = BTreeMap::new();
    for sample in &mut timeline {
        let from_s = sampled_until.insert(sample.service.clone(), sample.time_s).unwrap_or(0);
        if let Some(bound) = bounds.get(sample.service.as_str()) {
            let interval_s = (sample.time_s - from_s).max(1);
            sample.lower_bound_pods = bound.pod_seconds(from_s, sample.time_s) as f64 / interval_s as f64;
        }
    }
    let cluster = cluster.into_inner();
    let summaries = set
        .services
        .iter()
        .map(|setup| {
            let service = &cluster.services[&setup.key];
            let failures = plugin_failures.get(&setup.key);
            let mut waits = service.waits_ms.clone();
            waits.sort_unstable();
            let wait = |q: f64| percentile_ms(&waits, q).map_or(0.0, |ms| f64::from(ms) / 1000.0);
            ServiceSummary {
                service: setup.key.name.clone(),
                pod_hours: service.totals.pod_ms as f64 / 3_600_000.0,
                lower_bound_pod_hours: bounds[setup.key.name.as_str()].pod_hours(),
                completed: service.totals.completed,
                failed: service.totals.failed,
                wait_mean_s: waits.iter().map(|&ms| f64::from(ms)).sum::<f64>() / waits.len().max(1) as f64 / 1000.0,
                wait_p95_s: wait(0.95),
                wait_max_s: wait(1.0),
                wait_slo_s: setup.sim.wait_slo_seconds,
                seconds_over_slo: service.totals.over_slo_ms / 1000,
                scale_events: service.totals.scale_events,
                plugin_failures: failures.map_or(0, |f| f.by_kind.values().sum()),
                failure_kinds: failures
                    .map(|f| f.by_kind.iter().map(|(kind, n)| (kind.label(), *n)).collect())
                    .unwrap_or_default(),
                first_failure: failures.and_then(|f| f.first.clone()),
                left_in_system: service.in_system(),
            }
        })
        .collect();
    Ok(RunResult { label: set.label.clone(), pipeline: set.pipeline, summaries, timeline })
}

/// The p95 (nearest rank) of the waits of one sample interval's completions, in seconds.
fn interval_p95_s(waits_ms: &[u32]) -> Option<f64> {
    let mut waits = waits_ms.to_vec();
    waits.sort_unstable();
    percentile_ms(&waits, 0.95).map(|ms| f64::from(ms) / 1000.0)
}
