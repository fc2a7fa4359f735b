//! Shared by the benchmarks whose baseline runs a policy natively: the host's (WIT) input as the guest SDK's types.

use ballast::runtime::PolicyInput;
use ballast_policy_sdk as sdk;

/// The input the host hands a plugin, as the plugin's own code receives it.
pub fn to_sdk(input: &PolicyInput) -> sdk::PolicyInput {
    let o = &input.observations;
    sdk::PolicyInput {
        service: sdk::ServiceId { namespace: input.service.namespace.clone(), name: input.service.name.clone() },
        now_ms: input.now_ms,
        current_replicas: input.current_replicas,
        ready_replicas: input.ready_replicas,
        min_replicas: input.min_replicas,
        max_replicas: input.max_replicas,
        config: input.config.clone(),
        state: input.state.clone(),
        observations: sdk::Observations {
            gpu_duty_cycle_percent: o.gpu_duty_cycle_percent,
            cpu_percent_of_request: o.cpu_percent_of_request,
            memory_percent_of_request: o.memory_percent_of_request,
            queue: o.queue.map(|q| sdk::QueueCounts {
                waiting: q.waiting,
                prioritized: q.prioritized,
                paused: q.paused,
                active: q.active,
                delayed: q.delayed,
                failed: q.failed,
                waiting_children: q.waiting_children,
                completed_since_last: q.completed_since_last,
                is_paused: q.is_paused,
            }),
            latency_p50_ms: o.latency_p50_ms,
            latency_p95_ms: o.latency_p95_ms,
            latency_p99_ms: o.latency_p99_ms,
            request_rate: o.request_rate,
            custom: o.custom.iter().map(|c| sdk::CustomMetric { name: c.name.clone(), value: c.value }).collect(),
        },
    }
}
