//! `queue-drain`: a policy for queue-fed GPU services that sizes the fleet from work, not from utilization.
//!
//! It learns two rates in its state blob: the arrival rate (completions plus the change in backlog, averaged over
//! `smoothingSeconds`, but following at once a change far outside Poisson noise, such as a burst) and per-pod throughput (jobs completed per ready pod per second, learned only while work was
//! waiting for every slot at both ends of the interval, since an idle pod's completions say nothing about its
//! capacity, and kept within -20%/+25% of the configured figure so a bad interval cannot run away with it).
//!
//! From them it staffs the service for a wait objective, as a call centre is staffed: the fewest pods for which the
//! queueing model (Erlang C, M/G/c through the Allen-Cunneen correction for the service time's variation) keeps the
//! `waitQuantile` of job waits under `targetWaitSeconds` (relaxed at low load by a budget of late jobs per hour). Small pools get more relative headroom than large ones,
//! which is where a fixed utilization target (the HPA's) wastes pods or misses waits. When a backlog builds, it asks
//! for at least enough pods to serve the arrivals and drain the backlog expected when new pods become ready
//! (start-up delay anticipated) within `drainSeconds`. It scales down only when the arrivals `scaleDownBand` above the estimate would still fit in fewer
//! pods, so arrival noise does not flap the fleet; the host's `behavior` does the rest.

use ballast_policy_sdk::{Decision, MetricProposal, PolicyError, PolicyInput, config, hpa};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainConfig {
    /// Keep the `waitQuantile` of job waits (arrival to start) under this many seconds.
    #[serde(default = "default_wait")]
    pub target_wait_seconds: f64,
    #[serde(default = "default_quantile")]
    pub wait_quantile: f64,
    /// Jobs per hour allowed to wait longer than `targetWaitSeconds`. The objective that matters is the wait over
    /// all jobs, so at low load (few jobs) a larger share may be late: this budget relaxes `waitQuantile` there
    /// instead of keeping idle pods for a handful of jobs.
    #[serde(default)]
    pub late_jobs_per_hour: f64,
    /// Coefficient of variation of the service time (1 = exponential; a model with steady inference times is
    /// 0.2-0.4). Lower means less queueing at the same utilization.
    #[serde(default = "one")]
    pub service_time_cv: f64,
    /// Jobs one pod works on in parallel (its worker concurrency).
    #[serde(default = "one_u32")]
    pub concurrency: u32,
    /// Drain a backlog within this many seconds.
    #[serde(default = "default_drain")]
    pub drain_seconds: f64,
    /// Scale down only if arrivals this much above the estimate (0.1 = 10%) would fit in fewer pods.
    #[serde(default = "default_band")]
    pub scale_down_band: f64,
    /// Time from a scale-up to the new pod taking work (model load).
    #[serde(default = "default_startup")]
    pub startup_seconds: f64,
    /// Throughput of one pod (jobs/s) assumed until it has been measured.
    pub initial_jobs_per_pod_per_second: f64,
    /// Time constant of the moving averages of the arrival rate and throughput.
    #[serde(default = "default_smoothing")]
    pub smoothing_seconds: f64,
    /// Arrivals in one interval this many Poisson standard deviations off the estimate are a change of load (a
    /// burst starting or ending): the estimate jumps to them instead of averaging them in.
    #[serde(default = "default_shift_sigmas")]
    pub shift_sigmas: f64,
}

fn default_wait() -> f64 {
    30.0
}
fn default_quantile() -> f64 {
    0.95
}
fn one() -> f64 {
    1.0
}
fn one_u32() -> u32 {
    1
}
fn default_drain() -> f64 {
    60.0
}
fn default_band() -> f64 {
    0.1
}
fn default_startup() -> f64 {
    90.0
}
fn default_smoothing() -> f64 {
    120.0
}
fn default_shift_sigmas() -> f64 {
    4.0
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

/// Probability that a job waits longer than `wait_s` with `servers` servers, offered load `load` (arrival rate over
/// one server's rate) and one server's rate `rate`: Erlang C times the exponential tail, with the Allen-Cunneen
/// factor `(1 + cv^2) / 2` for the service time's variation. 1 when the servers cannot keep up.
pub fn wait_exceeds_probability(servers: u32, load: f64, rate: f64, wait_s: f64, cv: f64) -> f64 {
    let c = f64::from(servers);
    if c <= load {
        return 1.0;
    }
    // Erlang B by its stable recurrence, then Erlang C.
    let mut blocking = 1.0;
    for k in 1..=servers {
        blocking = load * blocking / (f64::from(k) + load * blocking);
    }
    let utilization = load / c;
    let erlang_c = blocking / (1.0 - utilization * (1.0 - blocking));
    let variation = (1.0 + cv * cv) / 2.0;
    (erlang_c * (-(c - load) * rate * wait_s / variation).exp()).min(1.0)
}

/// The fewest servers meeting the wait objective (at most `limit`).
fn servers_for(load: f64, rate: f64, cfg: &DrainConfig, limit: u32) -> u32 {
    let arrivals_per_hour = load * rate * 3600.0;
    let tail = (1.0 - cfg.wait_quantile).max(cfg.late_jobs_per_hour / arrivals_per_hour.max(f64::MIN_POSITIVE));
    let mut servers = hpa::ceil_replicas(load).max(1);
    while servers < limit
        && wait_exceeds_probability(servers, load, rate, cfg.target_wait_seconds, cfg.service_time_cv) > tail
    {
        servers += 1;
    }
    servers
}

pub fn decide(input: &PolicyInput) -> Result<Decision, PolicyError> {
    let cfg = config::parse::<DrainConfig>(&input.config)?;
    let positive =
        [cfg.initial_jobs_per_pod_per_second, cfg.target_wait_seconds, cfg.drain_seconds, cfg.smoothing_seconds];
    if positive.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
        return Err(PolicyError::InvalidConfig(
            "initialJobsPerPodPerSecond, targetWaitSeconds, drainSeconds and smoothingSeconds must be greater than 0"
                .into(),
        ));
    }
    let in_unit_interval = cfg.wait_quantile > 0.0 && cfg.wait_quantile < 1.0;
    let non_negative = |v: f64| v.is_finite() && v >= 0.0;
    let above_zero = |v: f64| v.is_finite() && v > 0.0;
    if !in_unit_interval
        || cfg.concurrency == 0
        || !non_negative(cfg.service_time_cv)
        || !above_zero(cfg.shift_sigmas)
        || !non_negative(cfg.late_jobs_per_hour)
    {
        return Err(PolicyError::InvalidConfig(
            "waitQuantile must be in (0, 1), concurrency at least 1, serviceTimeCv and lateJobsPerHour 0 or more, \
             shiftSigmas above 0"
                .into(),
        ));
    }
    let Some(queue) = input.observations.queue.as_ref() else {
        return Ok(Decision::hold(input, "queue counts unavailable"));
    };
    let backlog = queue.waiting + queue.prioritized + queue.delayed;
    let in_flight = backlog + queue.active;
    let ready = input.ready_replicas;
    let previous = input.state.as_deref().and_then(Memory::decode);

    let mut memory = previous.unwrap_or(Memory {
        jobs_per_pod_per_second: cfg.initial_jobs_per_pod_per_second,
        arrivals_per_second: 0.0,
        last_ms: input.now_ms,
        last_backlog: in_flight,
        last_saturated: false,
    });
    let dt = input.now_ms.saturating_sub(memory.last_ms) as f64 / 1000.0;
    let saturated = queue.waiting + queue.prioritized >= u64::from(ready.max(1)) * u64::from(cfg.concurrency);
    if let (Some(done), true) = (queue.completed_since_last, dt > 0.0 && previous.is_some()) {
        let alpha = 1.0 - (-dt / cfg.smoothing_seconds).exp();
        let done = done as f64;
        let arrived = (done + in_flight as f64 - memory.last_backlog as f64).max(0.0);
        let expected = memory.arrivals_per_second * dt;
        if (arrived - expected).abs() > cfg.shift_sigmas * (expected + 1.0).sqrt() {
            // Far outside Poisson noise: the load changed (a burst began or ended); follow it at once.
            memory.arrivals_per_second = arrived / dt;
        } else {
            memory.arrivals_per_second += alpha * (arrived / dt - memory.arrivals_per_second);
        }
        // Only pods with work waiting for every slot at both ends of the interval show their capacity (a few
        // waiting jobs are normal on a fast service and say nothing about it).
        if memory.last_saturated && saturated && ready > 0 {
            let measured = done / dt / f64::from(ready);
            memory.jobs_per_pod_per_second += alpha * (measured - memory.jobs_per_pod_per_second);
        }
    }
    let configured = cfg.initial_jobs_per_pod_per_second;
    memory.jobs_per_pod_per_second = memory.jobs_per_pod_per_second.clamp(configured * 0.8, configured * 1.25);
    memory.last_ms = input.now_ms;
    memory.last_backlog = in_flight;
    memory.last_saturated = saturated;

    let per_pod = memory.jobs_per_pod_per_second;
    let lambda = memory.arrivals_per_second;
    // Work that piles up while new pods load their models, if the ready pods cannot keep up meanwhile.
    let shortfall = (lambda - per_pod * f64::from(ready)).max(0.0);
    let backlog_when_ready = backlog as f64 + shortfall * cfg.startup_seconds;
    let drain = backlog_when_ready / (per_pod * cfg.drain_seconds);

    // Each of a pod's `concurrency` slots is a server of the queueing model.
    let slots = cfg.concurrency;
    let slot_rate = per_pod / f64::from(slots);
    let limit = input.max_replicas.max(input.current_replicas).saturating_mul(slots).max(1);
    let pods_for = |rate: f64| servers_for(rate / slot_rate, slot_rate, &cfg, limit).div_ceil(slots);
    let steady = pods_for(lambda);
    // The spare capacity of the staffed pool drains a backlog too; only a backlog it cannot clear in time adds pods.
    let draining = hpa::ceil_replicas(lambda / per_pod + drain);
    let up = steady.max(draining);
    let down = pods_for(lambda * (1.0 + cfg.scale_down_band)).max(draining);
    let current = input.current_replicas;
    let replicas = if in_flight == 0 && lambda < per_pod * 0.05 {
        input.min_replicas
    } else if up > current {
        up
    } else {
        down.min(current)
    }
    .max(u32::from(queue.active > 0))
    // No more than the host could grant: a burst's backlog can call for many times maxReplicas.
    .min(input.max_replicas.max(current));
    let reason = format!(
        "arrivals {lambda:.2}/s, {per_pod:.3} jobs/s per pod, backlog {backlog} (expected {backlog_when_ready:.0} \
         when new pods are ready): {steady} pods keep the p{:.0} wait under {}s + {drain:.2} to drain -> {replicas}",
        cfg.wait_quantile * 100.0,
        cfg.target_wait_seconds
    );
    Ok(Decision {
        replicas,
        reason,
        proposals: vec![
            MetricProposal { metric: "arrivals".into(), replicas: steady },
            MetricProposal { metric: "backlog".into(), replicas: hpa::ceil_replicas(drain) },
        ],
        state: Some(memory.encode()),
    })
}

#[cfg(target_arch = "wasm32")]
struct QueueDrain;

#[cfg(target_arch = "wasm32")]
impl ballast_policy_sdk::Guest for QueueDrain {
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

    const CFG: &str = r#"{"initialJobsPerPodPerSecond": 0.5, "targetWaitSeconds": 20, "drainSeconds": 20,
        "startupSeconds": 60, "smoothingSeconds": 5}"#;

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
        let mut state = decide(&input(0, 5, 50, 5, None, None)).unwrap().state;
        // Five pods complete 3 jobs/s between calls: 0.6 jobs/s per pod, 1.2 times the configured figure.
        for t in 1..60 {
            state = decide(&input(t, 5, 50, 5, Some(3), state)).unwrap().state;
        }
        let m = Memory::decode(&state.unwrap()).unwrap();
        assert!((m.jobs_per_pod_per_second - 0.6).abs() < 0.02, "{m:?}");
        assert!((m.arrivals_per_second - 3.0).abs() < 0.1, "{m:?}");
    }

    #[test]
    fn learned_throughput_stays_near_the_configured_figure() {
        let mut state = decide(&input(0, 2, 50, 2, None, None)).unwrap().state;
        for t in 1..60 {
            state = decide(&input(t, 2, 50, 2, Some(40), state)).unwrap().state;
        }
        let m = Memory::decode(&state.unwrap()).unwrap();
        assert_eq!(m.jobs_per_pod_per_second, 0.625, "{m:?}");
    }

    #[test]
    fn scales_down_to_what_the_wait_objective_needs_and_no_further() {
        // Steady 2 jobs/s at 0.5 per pod (4 pods of load) with nothing waiting: 5 pods keep the p95 wait under 20 s.
        let run = |current: u32| {
            let mut state = None;
            let mut replicas = 0;
            for t in 0..120 {
                let d = decide(&input(t, current, 0, 4, (t > 0).then_some(2), state)).unwrap();
                state = d.state;
                replicas = d.replicas;
            }
            replicas
        };
        assert_eq!(run(7), 5);
        assert_eq!(run(5), 5);
    }

    #[test]
    fn erlang_c_matches_the_textbook() {
        // Two servers, offered load 1: C = 1/3; the wait tail decays at (c - a) * mu.
        assert!((wait_exceeds_probability(2, 1.0, 1.0, 0.0, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        let tail = wait_exceeds_probability(2, 1.0, 0.5, 4.0, 1.0);
        assert!((tail - (-2.0f64).exp() / 3.0).abs() < 1e-12);
        // Steadier service times queue less; an overloaded pool always waits.
        assert!(wait_exceeds_probability(2, 1.0, 0.5, 4.0, 0.3) < tail);
        assert_eq!(wait_exceeds_probability(3, 3.0, 1.0, 1.0, 1.0), 1.0);
    }

    #[test]
    fn small_pools_get_more_headroom_than_large_ones() {
        let cfg: DrainConfig = serde_json::from_str(CFG).unwrap();
        let spare = |load: f64| f64::from(servers_for(load, 0.5, &cfg, 1000)) / load - 1.0;
        assert!(spare(2.0) > 2.0 * spare(50.0), "{} vs {}", spare(2.0), spare(50.0));
    }

    #[test]
    fn missing_queue_holds() {
        let mut i = input(0, 3, 0, 0, None, None);
        i.observations.queue = None;
        assert_eq!(decide(&i).unwrap().replicas, 3);
    }
}
