//! `ballast demo`: the five model services of the original design over a simulated day with bursts, the HPA
//! configuration of that design against `queue-drain`. Everything it needs is compiled in: no cluster, no network,
//! no files.

use std::sync::Arc;

use super::SimError;
use super::config::{Pipeline, PolicySet, PolicySource, SimulationFile};
use super::run::{RunResult, SimOptions, run};
use super::trace::Trace;
use crate::runtime::PolicyEngine;

/// A policy set of `deploy/policies/` as `kubectl apply -k` ships it: the policies and the plugin ConfigMap.
struct ShippedSet {
    dir: &'static str,
    policies: &'static str,
    plugin: &'static str,
}

/// The original HPAs, as `hpa` plugin policies.
const HPA: ShippedSet = ShippedSet {
    dir: "deploy/policies/hpa",
    policies: include_str!("../../../deploy/policies/hpa/policies.yaml"),
    plugin: include_str!("../../../deploy/policies/hpa/plugin.yaml"),
};
/// The same services, bounds and behavior with `queue-drain`.
const QUEUE_DRAIN: ShippedSet = ShippedSet {
    dir: "deploy/policies/queue-drain",
    policies: include_str!("../../../deploy/policies/queue-drain/policies.yaml"),
    plugin: include_str!("../../../deploy/policies/queue-drain/plugin.yaml"),
};
/// Service times, start-up delays and load of the five services.
pub(crate) const SIMULATION: &str = include_str!("demo.yaml");
/// The demo's trace.
pub const TRACE: &str = "builtin:day";

/// The demo's simulation parameters.
pub fn simulation() -> Result<SimulationFile, SimError> {
    SimulationFile::parse("built-in demo simulation (host/src/sim/demo.yaml)", SIMULATION)
}

/// The demo's policy sets: the original HPAs behind the original pipeline (the baseline), the same `hpa` policies
/// run by Ballast, and `queue-drain` run by Ballast.
pub fn policy_sets() -> Result<Vec<PolicySet>, SimError> {
    let physics = simulation()?;
    Ok(vec![
        HPA.parse("hpa-original", &physics)?.with_pipeline(Pipeline::Original),
        HPA.parse("hpa-ballast", &physics)?,
        queue_drain()?,
    ])
}

/// The load shapes `queue-drain` is scored on against the original HPAs (issue 15), with the days each runs: the
/// built-in day once and over three days (a recurring day is there to be learned), a burst every 3 hours, a slow
/// wave, flash spikes at no fixed time, and an upload every 40 minutes.
pub const SCORECARD: &[(&str, u64)] =
    &[("day", 1), ("day", 3), ("burst", 1), ("wave", 1), ("spikes", 1), ("batches", 1)];

/// The five services' totals in one run: pod-hours, their lower bound and seconds over the wait objectives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    pub pod_hours: f64,
    pub lower_bound_pod_hours: f64,
    pub seconds_over: u64,
}

impl Totals {
    pub fn of(result: &RunResult) -> Totals {
        Totals {
            pod_hours: result.summaries.iter().map(|s| s.pod_hours).sum(),
            lower_bound_pod_hours: result.summaries.iter().map(|s| s.lower_bound_pod_hours).sum(),
            seconds_over: result.summaries.iter().map(|s| s.seconds_over_slo).sum(),
        }
    }
}

/// One row of the scorecard: the original HPAs behind the original pipeline against a candidate set run by Ballast
/// (`queue-drain` unless another is given), on one shape, seed and length; beside them, the seconds over that no
/// policy within the bounds can avoid (every service held at its maxReplicas all the time).
#[derive(Debug, Clone)]
pub struct Score {
    pub shape: String,
    pub days: u64,
    pub seed: u64,
    pub hpa: Totals,
    pub candidate: Totals,
    pub at_max: Totals,
}

impl Score {
    /// Runs the original HPAs, `candidate` and the fleet held at maxReplicas on `shape` for `duration_s`.
    pub fn run(
        engine: &Arc<PolicyEngine>,
        candidate: &PolicySet,
        shape: &str,
        duration_s: u64,
        seed: u64,
    ) -> Result<Score, SimError> {
        let hpa = HPA.parse("hpa-original", &simulation()?)?.with_pipeline(Pipeline::Original);
        let mut at_max = HPA.parse("at-max", &simulation()?)?;
        for service in &mut at_max.services {
            service.spec.min_replicas = service.spec.max_replicas;
        }
        let trace = Trace::from_arg(&format!("builtin:{shape}"))?;
        let options = SimOptions { seed, duration_s, sample_s: 600, ..SimOptions::default() };
        let totals = |set: &PolicySet| run(engine, set, &trace, options, &mut ()).map(|r| Totals::of(&r));
        Ok(Score {
            shape: shape.into(),
            days: duration_s.div_ceil(86_400),
            seed,
            hpa: totals(&hpa)?,
            candidate: totals(candidate)?,
            at_max: totals(&at_max)?,
        })
    }

    /// The bar: no more pod-hours than the original HPAs and at most half their seconds over the wait
    /// objectives, the five services together.
    pub fn meets_bar(&self) -> bool {
        self.candidate.pod_hours <= self.hpa.pod_hours && 2 * self.candidate.seconds_over <= self.hpa.seconds_over
    }

    /// The bar as the bounds allow it: no more pod-hours and at most half the seconds over that the HPAs have
    /// beyond those no policy within maxReplicas avoids.
    pub fn meets_feasible_bar(&self) -> bool {
        let floor = self.at_max.seconds_over;
        self.candidate.pod_hours <= self.hpa.pod_hours
            && 2 * self.candidate.seconds_over.saturating_sub(floor) <= self.hpa.seconds_over.saturating_sub(floor)
    }

    /// One line: shape, days, seed, pod-hours (HPAs, candidate, its ratio, the lower bound), seconds over (HPAs,
    /// candidate, its ratio, the floor at maxReplicas), and both verdicts.
    pub fn line(&self) -> String {
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
        let verdict = |met: bool| if met { "yes" } else { "NO" };
        format!(
            "{:<8} {:>4} {:>4}  {:>7.1} {:>7.1} {:>5} {:>7.1}  {:>6} {:>6} {:>5} {:>6}  {:>4} {:>8}",
            self.shape,
            self.days,
            self.seed,
            self.hpa.pod_hours,
            self.candidate.pod_hours,
            ratio(self.candidate.pod_hours, self.hpa.pod_hours),
            self.candidate.lower_bound_pod_hours,
            self.hpa.seconds_over,
            self.candidate.seconds_over,
            ratio(self.candidate.seconds_over as f64, self.hpa.seconds_over as f64),
            self.at_max.seconds_over,
            verdict(self.meets_bar()),
            verdict(self.meets_feasible_bar()),
        )
    }
}

/// The scorecard's candidate by default: `queue-drain` as shipped, run by Ballast.
pub fn queue_drain() -> Result<PolicySet, SimError> {
    QUEUE_DRAIN.parse("queue-drain", &simulation()?)
}

/// The scorecard's header, above [`Score::line`]s.
pub const SCORE_HEADER: &str = concat!(
    "                 pod-hours                        seconds over the wait objective     bar\n",
    "shape    days seed      HPA    cand. ratio   bound     HPA  cand. ratio at-max  half feasible"
);

impl ShippedSet {
    fn parse(&self, label: &str, simulation: &SimulationFile) -> Result<PolicySet, SimError> {
        let source = |file: &str, text: &str| PolicySource { what: format!("{}/{file}", self.dir), text: text.into() };
        let sources = [source("plugin.yaml", self.plugin), source("policies.yaml", self.policies)];
        PolicySet::parse_sources(label, &sources, Some(simulation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policies_objectives_are_the_services_wait_objectives() {
        let sets = policy_sets().unwrap();
        let drain = sets.iter().find(|s| s.label == "queue-drain").unwrap();
        for service in &drain.services {
            assert_eq!(
                service.spec.config["targetWaitSeconds"].as_f64(),
                Some(service.sim.wait_slo_seconds),
                "{}: targetWaitSeconds in deploy/policies/queue-drain/policies.yaml and waitSloSeconds in \
                 host/src/sim/demo.yaml must be the same wait objective",
                service.key
            );
        }
        for set in &sets {
            for service in &set.services {
                assert_eq!(
                    service.spec.wait_objective_seconds,
                    Some(service.sim.wait_slo_seconds),
                    "{}/{}: waitObjectiveSeconds in deploy/policies/{}/policies.yaml is the service's waitSloSeconds",
                    set.label,
                    service.key,
                    set.label
                );
            }
        }
    }
}
