//! {{name}}: a Ballast scaling policy. Scales on the GPU duty cycle with the HPA's formula: replicas =
//! ceil(ready * duty cycle / target), no change within 10% of the target, and no change while the metric is
//! unavailable.

use ballast_policy_sdk::{Decision, Guest, MetricProposal, PolicyError, PolicyInput, config, hpa};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    /// The GPU duty cycle (%) each ready pod should run at.
    #[serde(default = "default_target")]
    target_gpu_percent: f64,
}

fn default_target() -> f64 {
    80.0
}

struct Policy;

impl Guest for Policy {
    fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
        let cfg = config::parse::<Config>(&input.config)?;
        let Some(gpu) = input.observations.gpu_duty_cycle_percent else {
            return Ok(Decision::hold(&input, "gpu duty cycle unavailable"));
        };
        let current = input.current_replicas;
        let Some(replicas) =
            hpa::utilization_proposal(current, input.ready_replicas, gpu, cfg.target_gpu_percent, hpa::TOLERANCE)
        else {
            return Ok(Decision::hold(&input, "no ready pods or an unusable gpu duty cycle"));
        };
        let mut decision = Decision::new(replicas, format!("gpu proposes {replicas}"));
        decision.proposals.push(MetricProposal { metric: "gpu".into(), replicas });
        Ok(decision)
    }
}

ballast_policy_sdk::export_policy!(Policy);
