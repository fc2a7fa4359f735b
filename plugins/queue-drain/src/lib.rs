//! `queue-drain`: a policy for queue-fed GPU services that sizes the fleet from work, not from utilization.
//!
//! It learns two rates in its state blob: per-pod throughput (jobs completed per ready pod per second, learned only
//! while work was waiting at both ends of the interval, since an idle pod's completions say nothing about its
//! capacity, and kept within half to twice the configured figure so a bad interval cannot run away with it) and the
//! arrival rate (completions plus the change in backlog). It asks for enough pods to keep up with arrivals plus
//! `headroom`, and to drain the backlog expected when new pods become ready (start-up delay anticipated) within the
//! target wait. It scales down only when the arrivals fit in fewer pods with the larger `scaleDownHeadroom`, a
//! tolerance band that keeps arrival noise from flapping the fleet; the host's `behavior` does the rest.

use ballast_policy_sdk::{Decision, Guest, MetricProposal, PolicyError, PolicyInput, config, hpa};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainConfig {
    /// Drain the backlog within this many seconds of wait.
    #[serde(default = "default_wait")]
    pub target_wait_seconds: f64,
    /// Spare capacity kept above the arrival rate (0.15 = 15%).
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Scale down only to a count that leaves this much spare capacity (at least `headroom`).
    #[serde(default = "default_scale_down_headroom")]
    pub scale_down_headroom: f64,
    /// Time from a scale-up to the new pod taking work (model load).
    #[serde(default = "default_startup")]
    pub startup_seconds: f64,
    /// Throughput of one pod (jobs/s) assumed until it has been measured.
    pub initial_jobs_per_pod_per_second: f64,
    /// Weight of each new measurement in the moving averages (0..1].
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
}

fn default_wait() -> f64 {
    30.0
}
fn default_headroom() -> f64 {
    0.15
}
fn default_scale_down_headroom() -> f64 {
    0.3
}
fn default_startup() -> f64 {
    90.0
}
fn default_smoothing() -> f64 {
    0.2
}

/// What the plugin remembers between calls (fixed little-endian layout, 34 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Memory {
    jobs_per_pod_per_second: f64,
    arrivals_per_second: f64,
    last_ms: u64,
    last_backlog: u64,
    last_saturated: bool,
}

impl Memory {
    const LEN: usize = 34;

    fn decode(bytes: &[u8]) -> Option<Memory> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let f = |i: usize| f64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Some(Memory {
            jobs_per_pod_per_second: f(0),
            arrivals_per_second: f(8),
            last_ms: u(16),
            last_backlog: u(24),
            last_saturated: bytes[32] == 1,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.jobs_per_pod_per_second.to_le_bytes());
        out.extend_from_slice(&self.arrivals_per_second.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&self.last_backlog.to_le_bytes());
        out.push(u8::from(self.last_saturated));
        out.push(1); // layout version
        out
    }
}

pub fn decide(input: &PolicyInput) -> Result<Decision, PolicyError> {
    let cfg = config::parse::<DrainConfig>(&input.config)?;
    if !(cfg.initial_jobs_per_pod_per_second > 0.0) || !(cfg.target_wait_seconds > 0.0) {
        return Err(PolicyError::InvalidConfig(
            "initialJobsPerPodPerSecond and targetWaitSeconds must be greater than 0".into(),
        ));
    }
    let Some(queue) = input.observations.queue.as_ref() else {
        return Ok(Decision::hold(input, "queue counts unavailable"));
    };
    let backlog = queue.waiting + queue.prioritized + queue.delayed;
    let in_flight = backlog + queue.active;
    let ready = input.ready_replicas;
    let previous = input.state.as_deref().and_then(Memory::decode);

    let alpha = cfg.smoothing.clamp(0.01, 1.0);
    let mut memory = previous.unwrap_or(Memory {
        jobs_per_pod_per_second: cfg.initial_jobs_per_pod_per_second,
        arrivals_per_second: 0.0,
        last_ms: input.now_ms,
        last_backlog: in_flight,
        last_saturated: false,
    });
    let dt = input.now_ms.saturating_sub(memory.last_ms) as f64 / 1000.0;
    if let (Some(done), true) = (queue.completed_since_last, dt > 0.0 && previous.is_some()) {
        let done = done as f64;
        let arrived = (done + in_flight as f64 - memory.last_backlog as f64).max(0.0);
        memory.arrivals_per_second += alpha * (arrived / dt - memory.arrivals_per_second);
        // Only a pod with work waiting shows its capacity.
        if memory.last_saturated && queue.waiting + queue.prioritized > 0 && ready > 0 {
            let measured = done / dt / f64::from(ready);
            memory.jobs_per_pod_per_second += alpha * (measured - memory.jobs_per_pod_per_second);
        }
    }
    let configured = cfg.initial_jobs_per_pod_per_second;
    memory.jobs_per_pod_per_second = memory.jobs_per_pod_per_second.clamp(configured * 0.5, configured * 2.0);
    memory.last_ms = input.now_ms;
    memory.last_backlog = in_flight;
    memory.last_saturated = queue.waiting + queue.prioritized > 0;

    let per_pod = memory.jobs_per_pod_per_second;
    let lambda = memory.arrivals_per_second;
    // Work that piles up while new pods load their models, if the ready pods cannot keep up meanwhile.
    let shortfall = (lambda - per_pod * f64::from(ready)).max(0.0);
    let backlog_when_ready = backlog as f64 + shortfall * cfg.startup_seconds;
    let load = lambda / per_pod;
    let drain = backlog_when_ready / (per_pod * cfg.target_wait_seconds);
    let steady = load * (1.0 + cfg.headroom);
    let up = hpa::ceil_replicas(steady + drain);
    let down = hpa::ceil_replicas(load * (1.0 + cfg.scale_down_headroom.max(cfg.headroom)) + drain);
    let current = input.current_replicas;
    let replicas = if in_flight == 0 && lambda < per_pod * 0.05 {
        input.min_replicas
    } else if up > current {
        up
    } else {
        down.min(current)
    }
    .max(u32::from(queue.active > 0));
    let reason = format!(
        "arrivals {lambda:.2}/s, {per_pod:.3} jobs/s per pod, backlog {backlog} (expected {backlog_when_ready:.0} \
         when new pods are ready): {steady:.2} pods to keep up + {drain:.2} to drain within {}s -> {replicas}",
        cfg.target_wait_seconds
    );
    Ok(Decision {
        replicas,
        reason,
        proposals: vec![
            MetricProposal { metric: "arrivals".into(), replicas: hpa::ceil_replicas(steady) },
            MetricProposal { metric: "backlog".into(), replicas: hpa::ceil_replicas(drain) },
        ],
        state: Some(memory.encode()),
    })
}

struct QueueDrain;

impl Guest for QueueDrain {
    fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
        decide(&input)
    }
}

#[cfg(target_arch = "wasm32")]
ballast_policy_sdk::export_policy!(QueueDrain);

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_policy_sdk::{Observations, QueueCounts, ServiceId};

    const CFG: &str = r#"{"initialJobsPerPodPerSecond": 0.5, "targetWaitSeconds": 20, "startupSeconds": 60}"#;

    fn input(
        now_s: u64,
        ready: u32,
        waiting: u64,
        active: u64,
        done: Option<u64>,
        state: Option<Vec<u8>>,
    ) -> PolicyInput {
        let mut obs = Observations::none();
        obs.queue = Some(QueueCounts {
            waiting,
            prioritized: 0,
            paused: 0,
            active,
            delayed: 0,
            failed: 0,
            waiting_children: 0,
            completed_since_last: done,
        });
        PolicyInput {
            service: ServiceId { namespace: "ai-models".into(), name: "stt".into() },
            now_ms: now_s * 1000,
            current_replicas: ready,
            ready_replicas: ready,
            min_replicas: 1,
            max_replicas: 8,
            config: CFG.into(),
            state,
            observations: obs,
        }
    }

    #[test]
    fn memory_round_trips() {
        let m = Memory {
            jobs_per_pod_per_second: 0.25,
            arrivals_per_second: 3.5,
            last_ms: 42,
            last_backlog: 7,
            last_saturated: true,
        };
        assert_eq!(Memory::decode(&m.encode()), Some(m));
        assert_eq!(Memory::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn idle_queue_goes_to_min() {
        let d = decide(&input(0, 4, 0, 0, None, None)).unwrap();
        assert_eq!(d.replicas, 1);
    }

    #[test]
    fn backlog_asks_for_enough_pods_to_drain_it() {
        // 40 jobs, 0.5 jobs/s per pod, 20 s target: 4 pods to drain.
        let d = decide(&input(0, 2, 40, 2, None, None)).unwrap();
        assert!(d.replicas >= 4, "{}", d.reason);
    }

    #[test]
    fn learns_throughput_while_saturated() {
        let mut state = decide(&input(0, 4, 50, 4, None, None)).unwrap().state;
        // Four pods complete 3 jobs/s between calls: 0.75 jobs/s per pod, 1.5 times the configured figure.
        for t in 1..60 {
            state = decide(&input(t, 4, 50, 4, Some(3), state)).unwrap().state;
        }
        let m = Memory::decode(&state.unwrap()).unwrap();
        assert!((m.jobs_per_pod_per_second - 0.75).abs() < 0.02, "{m:?}");
        assert!((m.arrivals_per_second - 3.0).abs() < 0.1, "{m:?}");
    }

    #[test]
    fn learned_throughput_stays_within_twice_the_configured_figure() {
        let mut state = decide(&input(0, 2, 50, 2, None, None)).unwrap().state;
        for t in 1..60 {
            state = decide(&input(t, 2, 50, 2, Some(40), state)).unwrap().state;
        }
        let m = Memory::decode(&state.unwrap()).unwrap();
        assert_eq!(m.jobs_per_pod_per_second, 1.0, "{m:?}");
    }

    #[test]
    fn scales_down_only_past_the_tolerance_band() {
        // Steady 2 jobs/s (0.5 per pod: 4 pods of load) with nothing waiting: 5 pods give 25% spare, under the 30%
        // scale-down headroom, so 5 holds; 7 pods are clearly too many.
        let run = |current: u32| {
            let mut state = None;
            let mut replicas = 0;
            for t in 0..120 {
                let mut i = input(t, current, 0, 4, (t > 0).then_some(2), state);
                i.current_replicas = current;
                let d = decide(&i).unwrap();
                state = d.state;
                replicas = d.replicas;
            }
            replicas
        };
        assert_eq!(run(5), 5);
        assert_eq!(run(7), 6);
    }

    #[test]
    fn missing_queue_holds() {
        let mut i = input(0, 3, 0, 0, None, None);
        i.observations.queue = None;
        assert_eq!(decide(&i).unwrap().replicas, 3);
    }
}
