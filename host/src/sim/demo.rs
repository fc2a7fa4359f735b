//! `ballast demo`: the five model services of the original design over a simulated day with bursts, the HPA
//! configuration of that design against `queue-drain`. Everything it needs is compiled in: no cluster, no network,
//! no files.

use super::SimError;
use super::config::{PolicySet, SimulationFile};

/// The original HPAs, as `hpa` plugin policies.
pub const HPA_POLICIES: &str = include_str!("../../../deploy/policies/ai-models-hpa.yaml");
/// The same services, bounds and behavior with `queue-drain`.
pub const QUEUE_DRAIN_POLICIES: &str = include_str!("../../../deploy/policies/ai-models-queue-drain.yaml");
/// Service times, start-up delays and load of the five services.
pub const SIMULATION: &str = include_str!("demo.yaml");
/// The demo's trace.
pub const TRACE: &str = "builtin:day";

/// The demo's simulation parameters.
pub fn simulation() -> Result<SimulationFile, SimError> {
    SimulationFile::parse("built-in demo simulation (host/src/sim/demo.yaml)", SIMULATION)
}

/// The two policy sets of the demo: `hpa` first, then `queue-drain`.
pub fn policy_sets() -> Result<Vec<PolicySet>, SimError> {
    let simulation = simulation()?;
    Ok(vec![
        PolicySet::parse("hpa", "deploy/policies/ai-models-hpa.yaml", HPA_POLICIES, Some(&simulation))?,
        PolicySet::parse(
            "queue-drain",
            "deploy/policies/ai-models-queue-drain.yaml",
            QUEUE_DRAIN_POLICIES,
            Some(&simulation),
        )?,
    ])
}
