//! {{name}}: a Ballast scaling policy for a queue-fed service. Scales on the BullMQ backlog (waiting, prioritized,
//! active and delayed jobs) with the HPA's per-pod formula: replicas = ceil(backlog / jobsPerPod), no change within
//! 10% of the target, and no change while the queue counts are unavailable or the queue is paused.

use ballast_policy_sdk::{Decision, Guest, MetricProposal, PolicyError, PolicyInput, config, hpa};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    /// The backlog each pod should have.
    jobs_per_pod: f64,
}

struct Policy;

impl Guest for Policy {
    fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
        let cfg = config::parse::<Config>(&input.config)?;
        let Some(queue) = &input.observations.queue else {
            return Ok(Decision::hold(&input, "queue counts unavailable"));
        };
        // A paused queue's jobs stay under `waiting`, but no worker takes them: more pods would not help.
        if queue.is_paused {
            return Ok(Decision::hold(&input, "the queue is paused"));
        }
        let jobs = queue.backlog();
        let Some(replicas) =
            hpa::per_pod_proposal(input.current_replicas, jobs as f64, cfg.jobs_per_pod, hpa::TOLERANCE)
        else {
            return Err(PolicyError::InvalidConfig("config JSON: `jobsPerPod` must be above 0".into()));
        };
        let mut decision = Decision::new(replicas, format!("backlog {jobs} at {} jobs per pod", cfg.jobs_per_pod));
        decision.proposals.push(MetricProposal { metric: "backlog".into(), replicas });
        Ok(decision)
    }
}

ballast_policy_sdk::export_policy!(Policy);
