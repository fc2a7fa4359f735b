//! A plugin as a 0.1 author wrote it, against `policies-wit/wit-0.1`: one replica per five jobs of backlog, saying
//! what it saw, and logging through the 0.1 host interface. The host, now serving 0.2, must still run it.
wit_bindgen::generate!({ world: "scaling-policy", path: "../../../policies-wit/wit-0.1" });

use ballast::policy::host::{LogLevel, log};
use exports::ballast::policy::policy::{Decision, Guest, PolicyError, PolicyInput};

struct PerFiveJobs;

impl Guest for PerFiveJobs {
    fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
        let Some(q) = input.observations.queue else {
            return Err(PolicyError::InsufficientData("no queue counts".into()));
        };
        let backlog = q.waiting + q.prioritized + q.active + q.delayed;
        let replicas = backlog.div_ceil(5).clamp(1, u64::from(u32::MAX)) as u32;
        log(LogLevel::Info, &format!("0.1 plugin saw {backlog} jobs"));
        Ok(Decision {
            replicas,
            reason: format!("world 0.1: {backlog} jobs (waiting {}) at 5 per pod", q.waiting),
            proposals: Vec::new(),
            state: input.state,
        })
    }
}

export!(PerFiveJobs);
