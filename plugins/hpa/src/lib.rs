//! `hpa`: the Kubernetes HPA's multi-metric formula as a Ballast policy.
//!
//! Each configured target gives a proposal (the HPA formula, tolerance 0.1 by default); the decision is the largest.
//! A configured metric that is unavailable never lets the result fall below the current replica count, as in the
//! HPA. The host's clamps then apply min/max and `behavior`, exactly as the HPA controller would.
//!
//! CPU and memory use the HPA's resource rules (missing, unready and pending pods) when the host sends the pod
//! groups behind the percentage (`resources.cpu.*` custom metrics, see [`hpa::PodGroups`]); otherwise the plain
//! utilization formula over the ready replicas.

use std::collections::BTreeMap;

use ballast_policy_sdk::hpa::{PodGroups, Resource};
use ballast_policy_sdk::{Decision, MetricProposal, PolicyError, PolicyInput, config, hpa, push_decimal};
use serde::Deserialize;

/// Targets per metric; a metric without a target is ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaConfig {
    /// GPU duty cycle %, averaged over ready pods.
    pub gpu_utilization: Option<f64>,
    /// CPU % of requests.
    pub cpu_utilization: Option<f64>,
    /// Memory % of requests.
    pub memory_utilization: Option<f64>,
    /// BullMQ backlog (waiting + prioritized + active + delayed) per pod.
    pub jobs_per_pod: Option<f64>,
    /// p95 latency in ms, treated like a utilization target.
    pub latency_p95_ms: Option<f64>,
    /// Requests per second per pod.
    pub requests_per_pod: Option<f64>,
    /// Named custom metrics: per-pod target for each.
    #[serde(default)]
    pub custom: BTreeMap<String, f64>,
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    hpa::TOLERANCE
}

/// The policy itself, callable natively too (the benchmark's baseline).
pub fn decide(input: &PolicyInput) -> Result<Decision, PolicyError> {
    let cfg = config::parse::<HpaConfig>(&input.config)?;
    let obs = &input.observations;
    let (current, ready, tol) = (input.current_replicas, input.ready_replicas, cfg.tolerance);

    let mut proposals = Vec::new();
    // Names of the configured metrics that are unavailable, comma-separated.
    let mut missing = String::new();
    let mut consider = |name: &str, target: Option<f64>, proposal: Option<u32>| {
        if target.is_none() {
            return;
        }
        match proposal {
            Some(replicas) => proposals.push(MetricProposal { metric: name.to_owned(), replicas }),
            None => {
                if !missing.is_empty() {
                    missing.push_str(", ");
                }
                missing.push_str(name);
            }
        }
    };
    let utilization = |value: Option<f64>, target: Option<f64>| {
        value.zip(target).and_then(|(v, t)| hpa::utilization_proposal(current, ready, v, t, tol))
    };
    let per_pod = |total: Option<f64>, target: Option<f64>| {
        total.zip(target).and_then(|(v, t)| hpa::per_pod_proposal(current, v, t, tol))
    };
    consider("gpu", cfg.gpu_utilization, utilization(obs.gpu_duty_cycle_percent, cfg.gpu_utilization));
    let resource = |resource: Resource, percent: Option<f64>, target: Option<f64>| match PodGroups::from_observations(
        obs, resource,
    ) {
        Some(groups) => target.and_then(|t| hpa::resource_proposal(current, &groups, t, tol)),
        None => utilization(percent, target),
    };
    consider("cpu", cfg.cpu_utilization, resource(Resource::Cpu, obs.cpu_percent_of_request, cfg.cpu_utilization));
    let memory = resource(Resource::Memory, obs.memory_percent_of_request, cfg.memory_utilization);
    consider("memory", cfg.memory_utilization, memory);
    match obs.queue.as_ref() {
        // A paused queue's jobs (BullMQ 6 keeps them under `waiting`) are work no pod can take until the resume:
        // hold for them, neither adding pods they cannot use nor removing the ones that will drain them.
        Some(q) if q.is_paused => consider("queue-paused", cfg.jobs_per_pod, Some(current)),
        queue => consider("queue", cfg.jobs_per_pod, per_pod(queue.map(|q| q.backlog() as f64), cfg.jobs_per_pod)),
    }
    consider("latency-p95", cfg.latency_p95_ms, utilization(obs.latency_p95_ms, cfg.latency_p95_ms));
    consider("request-rate", cfg.requests_per_pod, per_pod(obs.request_rate, cfg.requests_per_pod));
    for (name, target) in &cfg.custom {
        consider(name, Some(*target), per_pod(obs.custom(name), Some(*target)));
    }

    // Capped at maxReplicas (or the current count, if above) as the HPA caps it: a backlog of thousands of jobs
    // would otherwise ask for hundreds of pods, which the host refuses as nonsense.
    let cap = input.max_replicas.max(current);
    // The reason is built from pieces, not with `format!`: a host running a thousand plugins meets each one's
    // memory cold, and core::fmt's code and tables were a good part of what a decision touched.
    let mut reason = String::with_capacity(96);
    let replicas = match proposals.iter().max_by_key(|p| p.replicas) {
        Some(best) => {
            let replicas = best.replicas.min(cap);
            reason.push_str(&best.metric);
            reason.push_str(" proposes ");
            push_decimal(&mut reason, replicas as usize);
            reason.push_str(" (largest of ");
            push_decimal(&mut reason, proposals.len());
            reason.push(')');
            replicas
        }
        None => {
            reason.push_str("no configured metric available; holding ");
            push_decimal(&mut reason, current as usize);
            current
        }
    };
    let replicas = if !missing.is_empty() && replicas < current {
        reason.push_str("; ");
        reason.push_str(&missing);
        reason.push_str(" unavailable, so no scale-down below ");
        push_decimal(&mut reason, current as usize);
        current
    } else {
        replicas
    };
    Ok(Decision { replicas, reason, proposals, state: None })
}

#[cfg(target_arch = "wasm32")]
struct Hpa;

#[cfg(target_arch = "wasm32")]
impl ballast_policy_sdk::Guest for Hpa {
    fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
        decide(&input)
    }
}

#[cfg(target_arch = "wasm32")]
ballast_policy_sdk::export_policy!(Hpa);

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_policy_sdk::{Observations, QueueCounts, ServiceId};

    fn input(config: &str, current: u32, obs: Observations) -> PolicyInput {
        PolicyInput {
            service: ServiceId { namespace: "ai-models".into(), name: "stt".into() },
            now_ms: 0,
            current_replicas: current,
            ready_replicas: current,
            min_replicas: 2,
            max_replicas: 8,
            config: config.into(),
            state: None,
            observations: obs,
        }
    }

    fn queue(waiting: u64) -> QueueCounts {
        QueueCounts {
            waiting,
            prioritized: 0,
            paused: 0,
            active: 0,
            delayed: 0,
            failed: 0,
            waiting_children: 0,
            completed_since_last: None,
            is_paused: false,
        }
    }

    const STT: &str = r#"{"gpuUtilization": 80, "cpuUtilization": 70, "jobsPerPod": 5}"#;

    #[test]
    fn takes_the_largest_proposal() {
        let mut obs = Observations::none();
        obs.gpu_duty_cycle_percent = Some(100.0); // ceil(2 * 1.25) = 3
        obs.cpu_percent_of_request = Some(35.0); // ceil(2 * 0.5) = 1
        obs.queue = Some(queue(40)); // ceil(40 / 5) = 8
        let d = decide(&input(STT, 2, obs)).unwrap();
        assert_eq!(d.replicas, 8);
        assert_eq!(d.proposals.len(), 3);
        assert!(d.reason.starts_with("queue proposes 8"), "{}", d.reason);
    }

    #[test]
    fn a_paused_queue_holds_for_its_jobs_instead_of_scaling_for_them() {
        let mut obs = Observations::none();
        obs.gpu_duty_cycle_percent = Some(10.0); // would propose 1
        obs.cpu_percent_of_request = Some(10.0);
        obs.queue = Some(QueueCounts { is_paused: true, ..queue(40) }); // running, 40 jobs would propose 8
        let d = decide(&input(STT, 3, obs.clone())).unwrap();
        assert_eq!(d.replicas, 3, "{}", d.reason);
        assert!(d.reason.starts_with("queue-paused proposes 3"), "{}", d.reason);
        obs.queue = Some(queue(40));
        assert_eq!(decide(&input(STT, 3, obs)).unwrap().replicas, 8, "resumed: the backlog counts again");
    }

    #[test]
    fn missing_metric_never_scales_down() {
        let mut obs = Observations::none();
        obs.cpu_percent_of_request = Some(10.0);
        obs.queue = Some(queue(0));
        let d = decide(&input(STT, 6, obs)).unwrap();
        assert_eq!(d.replicas, 6, "gpu is missing, so no scale-down: {}", d.reason);
        assert!(d.reason.contains("gpu unavailable"));
    }

    #[test]
    fn the_reason_names_every_unavailable_metric_and_the_floor() {
        let mut obs = Observations::none();
        obs.queue = Some(queue(10)); // ceil(10 / 5) = 2
        let d = decide(&input(STT, 6, obs)).unwrap();
        assert_eq!(d.replicas, 6);
        assert_eq!(d.reason, "queue proposes 2 (largest of 1); gpu, cpu unavailable, so no scale-down below 6");
        let d = decide(&input(STT, 4, Observations::none())).unwrap();
        assert_eq!(d.reason, "no configured metric available; holding 4");
    }

    #[test]
    fn scales_down_when_every_metric_is_low() {
        let mut obs = Observations::none();
        obs.gpu_duty_cycle_percent = Some(10.0);
        obs.cpu_percent_of_request = Some(10.0);
        obs.queue = Some(queue(0));
        assert_eq!(decide(&input(STT, 6, obs)).unwrap().replicas, 1);
    }

    #[test]
    fn cpu_uses_the_hpa_pod_groups_when_the_host_sends_them() {
        use ballast_policy_sdk::CustomMetric;
        // 3 replicas: one ready pod at 100% of its request, one unready, one without a sample; target 50%.
        // The plain formula asks for ceil(3 * 100 / 50) = 6; the HPA counts the other two at 0% for a scale-up,
        // which gives 33%, below the target, so it holds 3 (TestReplicaCalcScaleUpUnreadyNoScale).
        let mut obs = Observations::none();
        obs.cpu_percent_of_request = Some(100.0);
        let values = [1.0, 1000.0, 1000.0, 1.0, 1000.0, 1.0, 1000.0];
        for (field, value) in hpa::POD_GROUP_FIELDS.iter().zip(values) {
            obs.custom.push(CustomMetric { name: Resource::Cpu.metric_name(field), value });
        }
        let d = decide(&input(r#"{"cpuUtilization": 50}"#, 3, obs.clone())).unwrap();
        assert_eq!(d.replicas, 3, "{}", d.reason);
        obs.custom.clear();
        assert_eq!(decide(&input(r#"{"cpuUtilization": 50}"#, 3, obs)).unwrap().replicas, 6);
    }

    #[test]
    fn nothing_available_holds() {
        let d = decide(&input(STT, 3, Observations::none())).unwrap();
        assert_eq!(d.replicas, 3);
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(matches!(
            decide(&input(r#"{"gpu": 80}"#, 3, Observations::none())),
            Err(PolicyError::InvalidConfig(_))
        ));
    }
}
