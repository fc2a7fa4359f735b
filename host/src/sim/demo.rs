//! `ballast demo`: the five model services of the original design over a simulated day with bursts, the HPA
//! configuration of that design against `queue-drain`. Everything it needs is compiled in: no cluster, no network,
//! no files.

use super::SimError;
use super::config::{Pipeline, PolicySet, PolicySource, SimulationFile};

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
        QUEUE_DRAIN.parse("queue-drain", &physics)?,
    ])
}

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
