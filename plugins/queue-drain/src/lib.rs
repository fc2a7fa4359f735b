//! `queue-drain`: a policy for queue-fed GPU services that sizes the fleet from work, not from utilization.
//!
//! It is meant to decide often (every second) on fresh queue counts, so every estimate averages over time, not over
//! calls, and is as steady from one second to the next as the load allows: the host's scale-down stabilization
//! window keeps the largest answer of the last minutes, so a noisy answer costs pods.
//!
//! It learns in its state blob:
//! - the arrival rate (completions plus the change in backlog), averaged over `smoothingSeconds`. A second average
//!   over `burstSeconds` watches for a change of load far outside Poisson noise (a burst starting or ending); the
//!   estimate then jumps to it instead of catching up slowly, in both directions.
//! - the throughput of one worker slot: completions over busy slot-seconds (the time-average of active jobs), both
//!   decayed over ten times `smoothingSeconds`. It holds at any load, not only when work queues, starts from the
//!   configured figure as a prior worth a few jobs, and stays within -20%/+25% of it so a bad interval cannot run
//!   away with it.
//!
//! - recurring load ([`recurrence`]): arrivals per minute over eight hours and per five minutes over today and
//!   yesterday. With `lookaheadSeconds` set, load that came one period ago and two periods ago (an upload every N
//!   minutes, a burst every few hours), or yesterday once today has matched yesterday, and is due within
//!   `startupSeconds` plus `lookaheadSeconds`, is staffed for now: the pods are ready when it arrives.
//!
//! From them it staffs the service for a wait objective, as a call centre is staffed: the fewest pods for which the
//! queueing model (Erlang C, M/G/c through the Allen-Cunneen correction for the service time's variation) keeps the
//! `waitQuantile` of job waits under `targetWaitSeconds` (relaxed at low load by a budget of late jobs per hour).
//! Small pools get more relative headroom than large ones, which is where a fixed utilization target (the HPA's)
//! wastes pods or misses waits. When a backlog builds, it asks for at least enough pods to serve the arrivals and
//! drain the backlog expected when new pods become ready (pods still starting count as capacity to come; the
//! start-up delay is anticipated) within `drainSeconds`. It scales down only when the arrivals `scaleDownBand` above
//! the estimate would still fit in fewer pods, and to `minReplicas` when nothing arrives and nothing is queued; the
//! host's `behavior` paces the rest.

use ballast_policy_sdk::{Decision, MetricProposal, PolicyError, PolicyInput, config, hpa};
use serde::Deserialize;

mod recurrence;
use recurrence::Recurrence;

/// The furthest `lookaheadSeconds` looks beyond the start-up delay: an hour.
const MAX_LOOKAHEAD_SECONDS: f64 = 3600.0;

/// The state blob's length: the estimates, then the recurrence history.
const STATE_LEN: usize = Memory::LEN + recurrence::LEN;

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
    /// Time constant of the arrival rate and throughput estimates.
    #[serde(default = "default_smoothing")]
    pub smoothing_seconds: f64,
    /// Time constant of the fast arrival average that detects a change of load (at most `smoothingSeconds`).
    #[serde(default = "default_burst")]
    pub burst_seconds: f64,
    /// The fast average this many standard deviations of its Poisson noise away from the estimate is a change of
    /// load: the estimate jumps to it.
    #[serde(default = "default_shift_sigmas")]
    pub shift_sigmas: f64,
    /// Staff ahead for recurring load (see [`recurrence`]) expected within `startupSeconds` plus this many seconds
    /// (the host's scale-up policies may need a period or two to grant the pods); no forecast when unset.
    #[serde(default)]
    pub lookahead_seconds: Option<f64>,
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
    300.0
}
fn default_burst() -> f64 {
    30.0
}
fn default_shift_sigmas() -> f64 {
    4.0
}

impl DrainConfig {
    fn validate(&self) -> Result<(), PolicyError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        let times_and_rates = [
            self.initial_jobs_per_pod_per_second,
            self.target_wait_seconds,
            self.drain_seconds,
            self.smoothing_seconds,
            self.burst_seconds,
        ];
        if !times_and_rates.into_iter().all(positive) {
            return Err(PolicyError::InvalidConfig(
                "initialJobsPerPodPerSecond, targetWaitSeconds, drainSeconds, smoothingSeconds and burstSeconds must \
                 be greater than 0"
                    .into(),
            ));
        }
        let valid = self.wait_quantile > 0.0
            && self.wait_quantile < 1.0
            && self.concurrency > 0
            && positive(self.shift_sigmas)
            && self.lookahead_seconds.is_none_or(|ahead| (0.0..=MAX_LOOKAHEAD_SECONDS).contains(&ahead))
            && [self.service_time_cv, self.late_jobs_per_hour, self.scale_down_band, self.startup_seconds]
                .into_iter()
                .all(non_negative);
        if !valid {
            return Err(PolicyError::InvalidConfig(
                "waitQuantile must be in (0, 1), concurrency at least 1, serviceTimeCv, lateJobsPerHour, \
                 scaleDownBand and startupSeconds 0 or more, lookaheadSeconds 0 to 3600, shiftSigmas above 0"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Time constant of the fast arrival average.
    fn burst_tau(&self) -> f64 {
        self.burst_seconds.min(self.smoothing_seconds)
    }
}

/// Jobs of evidence the configured throughput counts for: measured completions take over as they accumulate.
const PRIOR_JOBS: f64 = 5.0;

/// Throughput is a property of the model and the hardware, not of the load: it is averaged over this many times
/// `smoothingSeconds`, so its noise does not reach the answer.
const THROUGHPUT_HORIZON: f64 = 10.0;

/// What the plugin remembers between calls (fixed little-endian layout, 65 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Memory {
    /// Arrival rate (jobs/s) averaged over `burstSeconds`, to see the load change.
    arrivals_fast: f64,
    /// The arrival rate (jobs/s) the policy staffs for, averaged over `smoothingSeconds`.
    arrivals_per_second: f64,
    /// Seconds of arrivals behind the estimate: since the start or the last change of load, plus the fast
    /// average's window. Until it reaches `smoothingSeconds` the estimate is the plain mean over them.
    evidence_seconds: f64,
    /// Completions and busy slot-seconds, both decayed over [`THROUGHPUT_HORIZON`] times `smoothingSeconds`.
    completed: f64,
    busy_slot_seconds: f64,
    last_ms: u64,
    last_in_flight: u64,
    last_active: u64,
}

impl Memory {
    const LEN: usize = 65;
    const VERSION: u8 = 3;

    fn decode(bytes: &[u8]) -> Option<Memory> {
        if bytes.len() != Self::LEN || bytes[Self::LEN - 1] != Self::VERSION {
            return None;
        }
        let word = |i: usize| -> [u8; 8] { bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes") };
        Some(Memory {
            arrivals_fast: f64::from_le_bytes(word(0)),
            arrivals_per_second: f64::from_le_bytes(word(1)),
            evidence_seconds: f64::from_le_bytes(word(2)),
            completed: f64::from_le_bytes(word(3)),
            busy_slot_seconds: f64::from_le_bytes(word(4)),
            last_ms: u64::from_le_bytes(word(5)),
            last_in_flight: u64::from_le_bytes(word(6)),
            last_active: u64::from_le_bytes(word(7)),
        })
    }

    /// Writes the estimates into the first [`Memory::LEN`] bytes of the state blob.
    fn encode_into(&self, out: &mut [u8]) {
        let words = [
            self.arrivals_fast.to_le_bytes(),
            self.arrivals_per_second.to_le_bytes(),
            self.evidence_seconds.to_le_bytes(),
            self.completed.to_le_bytes(),
            self.busy_slot_seconds.to_le_bytes(),
            self.last_ms.to_le_bytes(),
            self.last_in_flight.to_le_bytes(),
            self.last_active.to_le_bytes(),
        ];
        for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word);
        }
        out[Self::LEN - 1] = Self::VERSION;
    }

    /// Takes in one interval of `dt_s` seconds: `arrived` jobs, `completed` jobs, `active` jobs at its end.
    /// Returns whether the arrival estimate jumped to a change of load.
    fn learn(&mut self, cfg: &DrainConfig, dt_s: f64, arrived: f64, completed: f64, active: u64) -> bool {
        let rate = arrived / dt_s;
        let burst_tau = cfg.burst_tau();
        let decay = (-dt_s / cfg.smoothing_seconds).exp();
        // Both averages are plain means over the evidence since the start or the last change of load until there
        // is a window's worth of it, then moving averages.
        self.evidence_seconds += dt_s;
        let warming = dt_s / self.evidence_seconds;
        self.arrivals_fast += (1.0 - (-dt_s / burst_tau).exp()).max(warming) * (rate - self.arrivals_fast);
        self.arrivals_per_second += (1.0 - decay).max(warming) * (rate - self.arrivals_per_second);
        // The fast average of Poisson arrivals has variance rate / (2 tau); one arrival per window is the floor, so
        // a lone job at night is not a change of load.
        let noise = ((self.arrivals_per_second + 1.0 / burst_tau) / (2.0 * burst_tau)).sqrt();
        let shifted = (self.arrivals_fast - self.arrivals_per_second).abs() > cfg.shift_sigmas * noise;
        if shifted {
            self.arrivals_per_second = self.arrivals_fast;
            self.evidence_seconds = burst_tau;
        }
        // Active jobs sampled at both ends of the interval: their mean is the interval's busy slots on average.
        let busy = (self.last_active + active) as f64 / 2.0 * dt_s;
        let keep = (-dt_s / (THROUGHPUT_HORIZON * cfg.smoothing_seconds)).exp();
        self.completed = self.completed * keep + completed;
        self.busy_slot_seconds = self.busy_slot_seconds * keep + busy;
        shifted
    }

    /// Jobs per second one worker slot completes: the measured figure, weighed against the configured one as a
    /// prior of [`PRIOR_JOBS`] jobs, within -20%/+25% of the configured one.
    fn slot_rate(&self, configured: f64) -> f64 {
        let measured = (self.completed + PRIOR_JOBS) / (self.busy_slot_seconds + PRIOR_JOBS / configured);
        measured.clamp(configured * 0.8, configured * 1.25)
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
    decide_with_state(input, input.state.clone())
}

/// [`decide`] on `state`, the blob taken out of `input`: it is updated in place and sent back, not copied.
fn decide_with_state(input: &PolicyInput, state: Option<Vec<u8>>) -> Result<Decision, PolicyError> {
    let cfg = config::parse::<DrainConfig>(&input.config)?;
    cfg.validate()?;
    let Some(queue) = input.observations.queue.as_ref() else {
        return Ok(Decision::hold(input, "queue counts unavailable"));
    };
    if queue.is_paused {
        // Nothing arrives at the pods while the queue is paused: hold, and learn nothing (the state goes back as
        // it came, so the first call after the resume measures arrivals over the whole pause).
        let mut hold = Decision::hold(input, "the queue is paused; its jobs wait for Queue.resume()");
        hold.state = state;
        return Ok(hold);
    }
    let backlog = queue.waiting + queue.prioritized + queue.delayed;
    let in_flight = backlog + queue.active;
    let ready = input.ready_replicas;
    // The blob is the estimates, then the recurrence history; both are updated where they lie and sent back.
    let mut state = state.unwrap_or_default();
    let previous = (state.len() == STATE_LEN).then(|| Memory::decode(&state[..Memory::LEN])).flatten();
    if previous.is_none() {
        state.clear();
        state.resize(STATE_LEN, 0);
    }
    let (estimates, history) = state.split_at_mut(Memory::LEN);
    let mut recurrence = Recurrence::in_place(history).expect("the blob has room for the history");
    if previous.is_none() {
        recurrence.reset(input.now_ms);
    }

    let mut memory = previous.unwrap_or_else(|| {
        // Until it has measured arrivals itself, the host's request rate (when it has one) is the best guess.
        let rate = input.observations.request_rate.filter(|r| r.is_finite() && *r >= 0.0).unwrap_or(0.0);
        Memory {
            arrivals_fast: rate,
            arrivals_per_second: rate,
            evidence_seconds: 0.0,
            completed: 0.0,
            busy_slot_seconds: 0.0,
            last_ms: input.now_ms,
            last_in_flight: in_flight,
            last_active: queue.active,
        }
    });
    let dt = input.now_ms.saturating_sub(memory.last_ms) as f64 / 1000.0;
    let mut shifted = false;
    if let (Some(done), true) = (queue.completed_since_last, dt > 0.0 && previous.is_some()) {
        let arrived = (done as f64 + in_flight as f64 - memory.last_in_flight as f64).max(0.0);
        shifted = memory.learn(&cfg, dt, arrived, done as f64, queue.active);
        recurrence.record(input.now_ms, arrived);
    }
    memory.last_ms = input.now_ms;
    memory.last_in_flight = in_flight;
    memory.last_active = queue.active;

    // Each of a pod's `concurrency` slots is a server of the queueing model.
    let slots = cfg.concurrency;
    let slot_rate = memory.slot_rate(cfg.initial_jobs_per_pod_per_second / f64::from(slots));
    let per_pod = slot_rate * f64::from(slots);
    // Recurring load due within the time new pods take to start (and be granted) is staffed for now.
    let forecast =
        cfg.lookahead_seconds.and_then(|ahead| recurrence.forecast(input.now_ms, cfg.startup_seconds + ahead));
    let lambda = memory.arrivals_per_second.max(forecast.unwrap_or(0.0));
    // Work that piles up while new pods load their models, if the pods cannot keep up meanwhile: pods still
    // starting are taken to be halfway through their start-up.
    let shortfall = |pods: u32| (lambda - per_pod * f64::from(pods)).max(0.0) * cfg.startup_seconds / 2.0;
    let backlog_when_ready = backlog as f64 + shortfall(ready) + shortfall(input.current_replicas.max(ready));
    let drain = backlog_when_ready / (per_pod * cfg.drain_seconds);

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
        // Pods still loading their models count: they are capacity on its way.
        up
    } else {
        down.min(current)
    }
    .max(u32::from(queue.active > 0))
    // No more than the host could grant: a burst's backlog can call for many times maxReplicas.
    .min(input.max_replicas.max(current));
    memory.encode_into(estimates);
    let reason = format!(
        "arrivals {:.2}/s{}{}, {per_pod:.3} jobs/s per pod, backlog {backlog} (expected {backlog_when_ready:.0} \
         when new pods are ready): {steady} pods keep the p{:.0} wait under {}s + {drain:.2} to drain -> {replicas}",
        memory.arrivals_per_second,
        if shifted { " (load changed)" } else { "" },
        match forecast {
            Some(rate) if rate > memory.arrivals_per_second => format!(", recurring {rate:.2}/s due"),
            _ => String::new(),
        },
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
        state: Some(state),
    })
}

#[cfg(target_arch = "wasm32")]
struct QueueDrain;

#[cfg(target_arch = "wasm32")]
impl ballast_policy_sdk::Guest for QueueDrain {
    fn decide(mut input: PolicyInput) -> Result<Decision, PolicyError> {
        let state = input.state.take();
        decide_with_state(&input, state)
    }
}

#[cfg(target_arch = "wasm32")]
ballast_policy_sdk::export_policy!(QueueDrain);

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_policy_sdk::{Observations, QueueCounts, ServiceId};

    const CFG: &str = r#"{"initialJobsPerPodPerSecond": 0.5, "targetWaitSeconds": 20, "drainSeconds": 20,
        "startupSeconds": 60, "smoothingSeconds": 60, "burstSeconds": 10}"#;

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
            is_paused: false,
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

    fn memory(decision: &Decision) -> Memory {
        Memory::decode(&decision.state.as_deref().expect("state")[..Memory::LEN]).expect("decodable state")
    }

    /// Poisson counts from a fixed seed (xorshift and Knuth's method), for arrivals in tests.
    struct Poisson(u64);

    impl Poisson {
        fn next(&mut self, mean: f64) -> u64 {
            let limit = (-mean).exp();
            let (mut count, mut product) = (0, 1.0);
            loop {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                product *= (self.0 >> 11) as f64 / (1u64 << 53) as f64;
                if product <= limit {
                    return count;
                }
                count += 1;
            }
        }
    }

    /// Feeds `arrivals[t]` jobs in second `t` to a service that starts each at once (nothing waits, `active` jobs
    /// always running, each second's arrivals completed by the next), deciding every second. Returns the decisions.
    fn run_steady(arrivals: &[u64], ready: u32, active: u64, config: &str) -> Vec<Decision> {
        let mut state = None;
        let mut decisions = Vec::new();
        for (t, &count) in arrivals.iter().enumerate() {
            let mut i = input(t as u64, ready, 0, active, (t > 0).then_some(count), state);
            i.config = config.into();
            let d = decide(&i).unwrap();
            state = d.state.clone();
            decisions.push(d);
        }
        decisions
    }

    #[test]
    fn memory_round_trips_and_an_old_layout_starts_afresh() {
        let m = Memory {
            arrivals_fast: 4.0,
            arrivals_per_second: 3.5,
            evidence_seconds: 300.0,
            completed: 12.5,
            busy_slot_seconds: 30.0,
            last_ms: 42,
            last_in_flight: 7,
            last_active: 3,
        };
        let mut bytes = [0; Memory::LEN];
        m.encode_into(&mut bytes);
        assert_eq!(Memory::decode(&bytes), Some(m));
        assert_eq!(Memory::decode(&[1, 2, 3]), None);
        bytes[Memory::LEN - 1] = 2;
        assert_eq!(Memory::decode(&bytes), None);
    }

    #[test]
    fn the_state_stays_far_within_the_hosts_64_kib_cap() {
        let mut state = None;
        for t in 0..3 {
            state = decide(&input(t, 2, 5, 2, Some(3), state)).unwrap().state;
        }
        let len = state.unwrap().len();
        assert_eq!(len, STATE_LEN);
        assert!(len < 4 * 1024, "{len} bytes");
    }

    #[test]
    fn pods_start_before_an_upload_that_comes_every_40_minutes() {
        // 0.1 jobs/s, and 1.5 jobs/s for 5 minutes every 40 minutes, served as it comes (nothing waits).
        let reactive_config = r#"{"initialJobsPerPodPerSecond": 0.5, "targetWaitSeconds": 20, "startupSeconds": 60}"#;
        let config = reactive_config.replace('}', r#", "lookaheadSeconds": 0}"#);
        let rate = |t: u64| if t % 2400 < 300 { 1.5 } else { 0.1 };
        let mut poisson = Poisson(0x2545_f491_4f6c_dd1d);
        let arrivals: Vec<u64> = (0..6 * 3600 + 2345).map(|t| poisson.next(rate(t))).collect();
        let decisions = run_steady(&arrivals, 2, 1, &config);
        // 56 s (the start-up delay, to the minute) before the upload due at 6 h 40 min, on the base load only, it asks for the pods the
        // upload needs ...
        let before = decisions.last().unwrap();
        assert!(before.replicas >= 4, "{}", before.reason);
        assert!(before.reason.contains("recurring"), "{}", before.reason);
        // ... which, without the forecast, the base load does not.
        let reactive = run_steady(&arrivals, 2, 1, reactive_config);
        assert!(reactive.last().unwrap().replicas <= 2, "{}", reactive.last().unwrap().reason);
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
    fn learns_slot_throughput_from_busy_time_at_any_load() {
        // Two of five pods busy, completing 0.6 jobs/s each (1.2 times the configured figure), nothing waiting:
        // an idle pod's completions say nothing, but completions per busy slot-second do.
        let mut state = decide(&input(0, 5, 0, 2, None, None)).unwrap().state;
        for t in 1..600 {
            state = decide(&input(5 * t, 5, 0, 2, Some(6), state)).unwrap().state;
        }
        let m = Memory::decode(&state.unwrap()[..Memory::LEN]).unwrap();
        assert!((m.slot_rate(0.5) - 0.6).abs() < 0.01, "{}", m.slot_rate(0.5));
        assert!((m.arrivals_per_second - 1.2).abs() < 0.05, "{m:?}");
    }

    #[test]
    fn throughput_starts_from_the_configured_figure_and_stays_near_it() {
        let first = decide(&input(0, 2, 50, 2, None, None)).unwrap();
        assert_eq!(memory(&first).slot_rate(0.5), 0.5);
        let mut state = first.state;
        for t in 1..120 {
            state = decide(&input(t, 2, 50, 2, Some(40), state)).unwrap().state;
        }
        let m = Memory::decode(&state.unwrap()[..Memory::LEN]).unwrap();
        assert_eq!(m.slot_rate(0.5), 0.625, "{m:?}");
    }

    #[test]
    fn one_second_decisions_on_poisson_arrivals_hold_steady() {
        // 2 jobs/s at 0.5 jobs/s per pod for two hours, decided every second: the host keeps the largest answer of
        // the last five minutes, so an answer that follows the noise would cost pods. After the estimate settles
        // the answer may move by one pod at most.
        let config = r#"{"initialJobsPerPodPerSecond": 0.5, "targetWaitSeconds": 20}"#;
        let mut poisson = Poisson(0x9e37_79b9_7f4a_7c15);
        let arrivals: Vec<u64> = (0..7200).map(|_| poisson.next(2.0)).collect();
        let decisions = run_steady(&arrivals, 5, 4, config);
        let settled = &decisions[1800..];
        let low = settled.iter().map(|d| d.replicas).min().unwrap();
        let high = settled.iter().map(|d| d.replicas).max().unwrap();
        assert!(high - low <= 1, "replicas ranged {low}..={high}");
        assert!((4..=6).contains(&low), "{low}: {}", settled[0].reason);
        let estimates: Vec<f64> = settled.iter().map(|d| memory(d).arrivals_per_second).collect();
        assert!(estimates.iter().all(|e| (e - 2.0).abs() < 0.3), "{:?}", estimates.iter().copied().reduce(f64::max));
        assert!(settled.iter().all(|d| !d.reason.contains("load changed")));
    }

    #[test]
    fn a_change_of_load_moves_the_estimate_at_once_both_ways() {
        // 2 jobs/s, a burst of 8 jobs/s for 5 minutes, 2 jobs/s again. Averaged over smoothingSeconds alone the
        // estimate would still be far off after 30 s; the fast average sees the change and the estimate jumps.
        let config = r#"{"initialJobsPerPodPerSecond": 0.5, "smoothingSeconds": 300, "burstSeconds": 30}"#;
        let arrivals: Vec<u64> = (0..1800).map(|t| if (900..1200).contains(&t) { 8 } else { 2 }).collect();
        let decisions = run_steady(&arrivals, 8, 4, config);
        let rate = |t: usize| memory(&decisions[t]).arrivals_per_second;
        assert!((rate(899) - 2.0).abs() < 0.01, "{}", rate(899));
        let slow_only = 2.0 + 6.0 * (1.0 - (-30.0f64 / 300.0).exp());
        assert!(rate(930) > 5.0 && rate(930) > 2.0 * slow_only, "{} after 30 s of the burst", rate(930));
        assert!(decisions[900..960].iter().any(|d| d.reason.contains("load changed")));
        assert!(decisions[930].replicas > decisions[899].replicas);
        let slow_only = 2.0 + 6.0 * (-60.0f64 / 300.0).exp();
        assert!(rate(1260) < 3.6 && slow_only > 6.5, "{} 60 s after the burst", rate(1260));
        assert!(decisions[1260].replicas < decisions[1199].replicas);
    }

    #[test]
    fn scales_down_to_what_the_wait_objective_needs_and_no_further() {
        // Steady 2 jobs/s at 0.5 per pod (4 pods of load) with nothing waiting: 5 pods keep the p95 wait under 20 s.
        let run = |current: u32| run_steady(&[2; 600], current, 4, CFG).last().unwrap().replicas;
        assert_eq!(run(7), 5);
        assert_eq!(run(5), 5);
    }

    #[test]
    fn pods_still_starting_count_and_their_start_up_is_anticipated() {
        // 2.5 jobs/s (5 pods of load at 0.5 jobs/s each) warmed up on 8 ready pods.
        let arrivals: Vec<u64> = (0..300).map(|t| 2 + t % 2).collect();
        let warm = run_steady(&arrivals, 8, 5, CFG).pop().unwrap();
        let at = |ready: u32| {
            let mut i = input(300, ready, 0, u64::from(ready).min(5), Some(2), warm.state.clone());
            (i.current_replicas, i.max_replicas) = (8, 20);
            decide(&i).unwrap()
        };
        // With four of the eight still loading their models, asking for more would only add to what is coming ...
        let starting = at(4);
        assert!(starting.replicas <= 8, "{}", starting.reason);
        // ... but the work that piles up meanwhile is foreseen: more to drain than with all eight ready.
        let backlog = |d: &Decision| d.proposals.iter().find(|p| p.metric == "backlog").unwrap().replicas;
        assert!(backlog(&starting) > backlog(&at(8)), "{} vs {}", starting.reason, at(8).reason);
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

    #[test]
    fn a_paused_queue_holds_and_keeps_what_was_learned() {
        let mut i = input(0, 3, 40, 0, None, None);
        i.state = Some(b"learned".to_vec());
        if let Some(q) = &mut i.observations.queue {
            q.is_paused = true;
        }
        let d = decide(&i).unwrap();
        assert_eq!(d.replicas, 3, "{}", d.reason);
        assert!(d.reason.contains("paused"), "{}", d.reason);
        assert_eq!(d.state, i.state, "the state goes back as it came");
    }

    #[test]
    fn bad_config_is_refused_with_the_fields_named() {
        let mut i = input(0, 3, 0, 0, None, None);
        i.config = r#"{"initialJobsPerPodPerSecond": 0.5, "burstSeconds": 0}"#.into();
        let Err(PolicyError::InvalidConfig(message)) = decide(&i) else { panic!("expected invalid-config") };
        assert!(message.contains("burstSeconds"), "{message}");

        for (lookahead, valid) in [("0", true), ("3600", true), ("3600.001", false), ("-1", false)] {
            i.config = format!(r#"{{"initialJobsPerPodPerSecond": 0.5, "lookaheadSeconds": {lookahead}}}"#);
            match decide(&i) {
                Err(PolicyError::InvalidConfig(message)) => {
                    assert!(!valid && message.contains("lookaheadSeconds 0 to 3600"), "{lookahead}: {message}")
                }
                other => assert!(valid && other.is_ok(), "{lookahead}: {other:?}"),
            }
        }
    }
}
