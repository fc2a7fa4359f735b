//! The simulated cluster: per service a BullMQ-like queue (waiting, active, delayed, failed, completed) worked by
//! pods that take work only after their start-up delay. Time is discrete (the caller's step), but within a step
//! every job starts and ends at its exact millisecond, so a fast service (0.3 s per job) is as exact as a slow one.
//!
//! Scale-down removes pods that are not ready yet first (newest first), then the ready pods with the least work.
//! A job on a removed pod goes back to the head of the waiting list and starts over, as BullMQ does with the
//! active job of a worker that died (stalled-job recovery); its wait keeps counting from its first arrival.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use super::config::{ServiceSetup, SimulationSpec};
use super::rng::SplitMix64;
use crate::autoscaler::{Observer, ScaleState, ScaleTarget};
use crate::observation::{Observation, QueueCounts};
use crate::spec::{ScalingPolicySpec, ServiceKey};

/// Window of the latency percentiles and the request rate.
pub(crate) const METRICS_WINDOW_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Job {
    arrived_ms: u64,
    /// When the job may start (arrival, or the end of a retry backoff).
    available_ms: u64,
    attempts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    job: Job,
    started_ms: u64,
    finish_ms: u64,
    /// Busy time before this has been counted already.
    counted_until_ms: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    /// When the slot can start its next job: the pod's ready time, or the end of its current job.
    free_at_ms: u64,
    running: Option<Running>,
}

/// One simulated pod.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: u64,
    pub created_ms: u64,
    pub ready_ms: u64,
    /// When the pod first started a job (to check that no pod works before it is ready).
    pub first_start_ms: Option<u64>,
    slots: Vec<Slot>,
}

impl Pod {
    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.running.is_some()).count()
    }
}

/// Totals since the start; observations and the timeline take differences of them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub arrived: u64,
    pub completed: u64,
    pub(crate) failed: u64,
    /// Slot-milliseconds spent working, and slot-milliseconds of ready pods (busy fraction = busy / ready).
    pub(crate) busy_slot_ms: u64,
    pub(crate) ready_slot_ms: u64,
    /// Pod-milliseconds of every existing pod, ready or starting (what the cloud bills).
    pub(crate) pod_ms: u64,
    /// Milliseconds during which some waiting job had waited longer than the SLO.
    pub(crate) over_slo_ms: u64,
    pub(crate) scale_events: u64,
    /// Sum of the latencies (arrival to completion) of completed jobs, for the mean time in the system.
    pub sojourn_ms: u64,
}

/// One simulated service.
pub struct SimService {
    pub(crate) sim: SimulationSpec,
    pods: Vec<Pod>,
    next_pod_id: u64,
    waiting: VecDeque<Job>,
    delayed: Vec<Job>,
    pub totals: Totals,
    rng: SplitMix64,
    /// Recent completions' latencies and (time, count) of recent arrivals, for the windowed metrics.
    recent_latencies: LatencyWindow,
    recent_arrivals: VecDeque<(u64, u64)>,
    /// Wait (arrival to start of the successful attempt) of every completed job, in ms.
    pub(crate) waits_ms: Vec<u32>,
    /// The totals the previous observation was taken at (busy fraction and completions since then).
    observed: Totals,
    /// Observations not yet visible to the policy (metrics delay).
    pending: VecDeque<(u64, Observation)>,
}

impl SimService {
    pub fn new(setup: &ServiceSetup, seed: u64, now_ms: u64) -> Self {
        let mut service = SimService {
            sim: setup.sim.clone(),
            pods: Vec::new(),
            next_pod_id: 0,
            waiting: VecDeque::new(),
            delayed: Vec::new(),
            totals: Totals::default(),
            rng: SplitMix64::stream(seed, &setup.key.name, "service"),
            recent_latencies: LatencyWindow::default(),
            recent_arrivals: VecDeque::new(),
            waits_ms: Vec::new(),
            observed: Totals::default(),
            pending: VecDeque::new(),
        };
        let initial = setup.sim.initial_replicas.unwrap_or(setup.spec.min_replicas);
        // The initial pods are up already: the run starts from a steady cluster, not a cold start.
        for _ in 0..initial {
            service.add_pod(now_ms, now_ms);
        }
        service
    }

    fn add_pod(&mut self, created_ms: u64, ready_ms: u64) {
        let slots = (0..self.sim.concurrency).map(|_| Slot { free_at_ms: ready_ms, running: None }).collect();
        self.pods.push(Pod { id: self.next_pod_id, created_ms, ready_ms, first_start_ms: None, slots });
        self.next_pod_id += 1;
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub(crate) fn replicas(&self) -> u32 {
        self.pods.len() as u32
    }

    pub(crate) fn ready(&self, now_ms: u64) -> u32 {
        self.pods.iter().filter(|p| p.ready_ms <= now_ms).count() as u32
    }

    pub fn queue_counts(&self) -> QueueCounts {
        QueueCounts {
            waiting: self.waiting.len() as u64,
            active: self.pods.iter().map(|p| p.active() as u64).sum(),
            delayed: self.delayed.len() as u64,
            failed: self.totals.failed,
            completed: self.totals.completed,
            ..QueueCounts::default()
        }
    }

    /// Age of the oldest waiting job.
    pub(crate) fn oldest_wait_ms(&self, now_ms: u64) -> u64 {
        self.waiting.iter().map(|j| now_ms.saturating_sub(j.arrived_ms)).max().unwrap_or(0)
    }

    /// Sets the replica count: new pods start loading now; removed pods give their jobs back to the queue.
    pub(crate) fn scale(&mut self, replicas: u32, now_ms: u64) {
        let wanted = replicas as usize;
        if wanted == self.pods.len() {
            return;
        }
        self.totals.scale_events += 1;
        let startup_ms = (self.sim.startup_seconds * 1000.0).round() as u64;
        while self.pods.len() < wanted {
            self.add_pod(now_ms, now_ms + startup_ms);
        }
        while self.pods.len() > wanted {
            let victim = self.removal_candidate(now_ms);
            let pod = self.pods.remove(victim);
            for slot in pod.slots.iter().rev() {
                if let Some(running) = slot.running {
                    self.totals.busy_slot_ms += now_ms.saturating_sub(running.counted_until_ms);
                    self.waiting.push_front(Job { available_ms: now_ms, ..running.job });
                }
            }
        }
    }

    /// Not-ready pods first (newest first), then ready pods with the fewest running jobs (newest first).
    fn removal_candidate(&self, now_ms: u64) -> usize {
        let rank = |p: &Pod| (p.ready_ms <= now_ms, p.active(), std::cmp::Reverse(p.id));
        (0..self.pods.len()).min_by_key(|&i| rank(&self.pods[i])).expect("there is a pod to remove")
    }

    fn service_time_ms(&mut self) -> u64 {
        let spread = self.sim.jitter * (2.0 * self.rng.next_f64() - 1.0);
        ((self.sim.service_seconds * (1.0 + spread) * 1000.0).round() as u64).max(1)
    }

    /// Ends a job at its finish time: completed, retried after a backoff, or failed for good.
    fn finish(&mut self, running: Running) {
        self.totals.busy_slot_ms += running.finish_ms.saturating_sub(running.counted_until_ms);
        let failed = self.sim.failure_rate > 0.0 && self.rng.next_f64() < self.sim.failure_rate;
        let job = running.job;
        if !failed {
            self.totals.completed += 1;
            let latency = running.finish_ms - job.arrived_ms;
            self.totals.sojourn_ms += latency;
            self.recent_latencies.push(running.finish_ms, latency.min(u64::from(u32::MAX)) as u32);
            let wait = running.started_ms - job.arrived_ms;
            self.waits_ms.push(wait.min(u64::from(u32::MAX)) as u32);
        } else if job.attempts + 1 < self.sim.max_attempts {
            let backoff = (self.sim.retry_backoff_seconds * 1000.0).round() as u64;
            self.delayed.push(Job { available_ms: running.finish_ms + backoff, attempts: job.attempts + 1, ..job });
        } else {
            self.totals.failed += 1;
        }
    }

    /// Advances the service by `[start_ms, start_ms + step_ms)`, with `arrivals` jobs spread evenly over it.
    pub fn step(&mut self, start_ms: u64, step_ms: u64, arrivals: u64) {
        let end_ms = start_ms + step_ms;
        // Retries whose backoff ends in this step become waiting (BullMQ moves due delayed jobs to wait).
        let mut due = Vec::new();
        self.delayed.retain(|job| {
            let is_due = job.available_ms < end_ms;
            if is_due {
                due.push(*job);
            }
            !is_due
        });
        due.sort_by_key(|j| j.available_ms);
        self.waiting.extend(due);
        for i in 0..arrivals {
            let at = start_ms + (2 * i + 1) * step_ms / (2 * arrivals);
            self.waiting.push_back(Job { arrived_ms: at, available_ms: at, attempts: 0 });
        }
        self.totals.arrived += arrivals;
        if arrivals > 0 {
            self.recent_arrivals.push_back((start_ms, arrivals));
        }

        // Hand the head of the queue to whichever slot of a ready pod frees up first, until none does in the step.
        while let Some(&head) = self.waiting.front() {
            let Some((pod_index, slot_index, free_at)) = self.earliest_slot() else { break };
            let begin = free_at.max(head.available_ms).max(start_ms);
            if begin >= end_ms {
                break;
            }
            self.waiting.pop_front();
            if let Some(done) = self.pods[pod_index].slots[slot_index].running.take() {
                self.finish(done);
            }
            let finish_ms = begin + self.service_time_ms();
            let pod = &mut self.pods[pod_index];
            pod.first_start_ms.get_or_insert(begin);
            pod.slots[slot_index] = Slot {
                free_at_ms: finish_ms,
                running: Some(Running { job: head, started_ms: begin, finish_ms, counted_until_ms: begin }),
            };
        }

        // Jobs ending within the step; busy time of the rest up to the step's end.
        let mut finished = Vec::new();
        for pod in &mut self.pods {
            for slot in &mut pod.slots {
                if let Some(running) = slot.running.as_mut() {
                    if running.finish_ms <= end_ms {
                        finished.push(*running);
                        slot.running = None;
                    } else if running.counted_until_ms < end_ms {
                        self.totals.busy_slot_ms += end_ms - running.counted_until_ms;
                        running.counted_until_ms = end_ms;
                    }
                }
            }
        }
        finished.sort_by_key(|r| r.finish_ms);
        for running in finished {
            self.finish(running);
        }

        let concurrency = u64::from(self.sim.concurrency);
        for pod in &self.pods {
            self.totals.ready_slot_ms += end_ms.saturating_sub(pod.ready_ms.max(start_ms)).min(step_ms) * concurrency;
        }
        self.totals.pod_ms += self.pods.len() as u64 * step_ms;
        if self.oldest_wait_ms(end_ms) as f64 > self.sim.wait_slo_seconds * 1000.0 {
            self.totals.over_slo_ms += step_ms;
        }
        let horizon = end_ms.saturating_sub(METRICS_WINDOW_MS);
        self.recent_latencies.expire_before(horizon);
        while self.recent_arrivals.front().is_some_and(|(t, _)| *t < horizon) {
            self.recent_arrivals.pop_front();
        }
    }

    fn earliest_slot(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (p, pod) in self.pods.iter().enumerate() {
            for (s, slot) in pod.slots.iter().enumerate() {
                if best.is_none_or(|(_, _, t)| slot.free_at_ms < t) {
                    best = Some((p, s, slot.free_at_ms));
                }
            }
        }
        best
    }

    /// Jobs in the system: waiting, delayed or being worked on.
    pub fn in_system(&self) -> u64 {
        let q = self.queue_counts();
        q.waiting + q.delayed + q.active
    }

    /// What the metric sources would report now, as the live sources shape it.
    fn measure(&mut self, now_ms: u64) -> Observation {
        let busy = self.totals.busy_slot_ms - self.observed.busy_slot_ms;
        let ready_slots = self.totals.ready_slot_ms - self.observed.ready_slot_ms;
        let completed_since = self.totals.completed - self.observed.completed;
        self.observed = self.totals;
        // No ready pod, or no time passed: no GPU or CPU samples, so unavailable (never 0).
        let busy_fraction = (ready_slots > 0).then(|| busy as f64 / ready_slots as f64);
        let [p50, p95, p99] = [0.50, 0.95, 0.99].map(|q| percentile_ms(&self.recent_latencies.sorted, q));
        let window_s = now_ms.clamp(1000, METRICS_WINDOW_MS) as f64 / 1000.0;
        let arrivals: u64 = self.recent_arrivals.iter().map(|(_, n)| n).sum();
        Observation {
            gpu_duty_cycle_percent: busy_fraction.map(|f| f * self.sim.gpu_percent_busy),
            cpu_percent_of_request: busy_fraction
                .map(|f| self.sim.cpu_percent_idle + f * (self.sim.cpu_percent_busy - self.sim.cpu_percent_idle)),
            memory_percent_of_request: None,
            queue: Some(self.queue_counts()),
            completed_since_last: Some(completed_since),
            latency_p50_ms: p50.map(f64::from),
            latency_p95_ms: p95.map(f64::from),
            latency_p99_ms: p99.map(f64::from),
            request_rate: Some(arrivals as f64 / window_s),
            custom: Vec::new(),
            sample_age_ms: BTreeMap::new(),
            queue_paused: Some(false),
            unavailable: BTreeMap::new(),
        }
    }

    /// The observation the policy sees at `now_ms`: the current one, or one `metricsDelaySeconds` old.
    pub(crate) fn observe(&mut self, now_ms: u64) -> Observation {
        let current = self.measure(now_ms);
        let delay_ms = self.sim.metrics_delay_seconds * 1000;
        if delay_ms == 0 {
            return current;
        }
        self.pending.push_back((now_ms, current));
        // Completions are counted exactly even when delayed: each observation is handed out once, in order.
        let mut visible = None;
        while self.pending.front().is_some_and(|(t, _)| t + delay_ms <= now_ms) {
            visible = self.pending.pop_front();
        }
        visible.map_or_else(Observation::default, |(measured_ms, mut observation)| {
            observation.sample_age_ms.insert("simulation".into(), now_ms - measured_ms);
            observation
        })
    }
}

/// The `q` quantile (nearest rank) of sorted values.
pub(crate) fn percentile_ms(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Latencies of the completions in the metrics window, kept sorted as they come and go: an observation then reads
/// its percentiles off directly, where copying and selecting over the window on every observation was most of an
/// observation's cost (and a thousand services observe every tick).
#[derive(Default)]
struct LatencyWindow {
    /// (finish time, latency) in order of finishing, to expire the oldest first.
    by_finish: VecDeque<(u64, u32)>,
    /// The same latencies, ascending.
    sorted: Vec<u32>,
}

impl LatencyWindow {
    fn push(&mut self, finish_ms: u64, latency_ms: u32) {
        self.by_finish.push_back((finish_ms, latency_ms));
        let at = self.sorted.partition_point(|&l| l <= latency_ms);
        self.sorted.insert(at, latency_ms);
    }

    /// Drops the completions that finished before `horizon_ms`.
    fn expire_before(&mut self, horizon_ms: u64) {
        while let Some(&(finish_ms, latency_ms)) = self.by_finish.front() {
            if finish_ms >= horizon_ms {
                break;
            }
            self.by_finish.pop_front();
            let at = self.sorted.partition_point(|&l| l < latency_ms);
            self.sorted.remove(at);
        }
    }
}

/// Every simulated service, by key.
pub struct SimCluster {
    pub services: BTreeMap<ServiceKey, SimService>,
    pub now_ms: u64,
}

impl SimCluster {
    pub fn new(setups: &[ServiceSetup], seed: u64) -> Self {
        let services = setups.iter().map(|s| (s.key.clone(), SimService::new(s, seed, 0))).collect();
        SimCluster { services, now_ms: 0 }
    }
}

/// The simulated cluster as the control loop sees it: the same [`Observer`] and [`ScaleTarget`] a live cluster
/// offers. Two handles may share one cluster (the loop borrows an observer and a target at once).
pub struct SimHandle<'a>(pub &'a RefCell<SimCluster>);

/// A service the control loop asks about that the simulation does not have.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not part of the simulation")]
pub struct UnknownService(ServiceKey);

impl Observer for SimHandle<'_> {
    async fn observe(&mut self, services: &[(&ServiceKey, &ScalingPolicySpec)], now_ms: u64) -> Vec<Observation> {
        let mut cluster = self.0.borrow_mut();
        let mut observations = Vec::with_capacity(services.len());
        if services.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            // The control loop asks in key order, the cluster's own: walk both instead of looking each one up.
            let mut simulated = cluster.services.iter_mut().peekable();
            for (key, _) in services {
                while simulated.next_if(|(simulated, _)| simulated < key).is_some() {}
                let service = simulated.next_if(|(simulated, _)| simulated == key).map(|(_, service)| service);
                observations.push(service.map(|s| s.observe(now_ms)).unwrap_or_default());
            }
        } else {
            for (key, _) in services {
                let service = cluster.services.get_mut(*key);
                observations.push(service.map(|s| s.observe(now_ms)).unwrap_or_default());
            }
        }
        observations
    }
}

impl ScaleTarget for SimHandle<'_> {
    type Error = UnknownService;

    async fn read(&mut self, key: &ServiceKey, _spec: &ScalingPolicySpec) -> Result<ScaleState, UnknownService> {
        let cluster = self.0.borrow();
        let now = cluster.now_ms;
        let service = cluster.services.get(key).ok_or_else(|| UnknownService(key.clone()))?;
        Ok(ScaleState { current: service.replicas(), ready: service.ready(now) })
    }

    async fn write(
        &mut self,
        key: &ServiceKey,
        _spec: &ScalingPolicySpec,
        replicas: u32,
    ) -> Result<(), UnknownService> {
        let mut cluster = self.0.borrow_mut();
        let now = cluster.now_ms;
        let service = cluster.services.get_mut(key).ok_or_else(|| UnknownService(key.clone()))?;
        service.scale(replicas, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::PolicySet;

    fn setup(extra: &str) -> ServiceSetup {
        let text = format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: svc}}\nspec:\n  target: {{name: svc}}\n  \
             minReplicas: 1\n  maxReplicas: 4\n  plugin: {{builtin: hpa}}\nsimulation: {{serviceSeconds: 2, startupSeconds: 30, \
             concurrency: 2{extra}}}\n"
        );
        PolicySet::parse("t", "t.yaml", &text, None).unwrap().services.remove(0)
    }

    fn conserved(s: &SimService) -> bool {
        s.totals.arrived == s.totals.completed + s.totals.failed + s.in_system()
    }

    #[test]
    fn the_latency_window_holds_exactly_the_unexpired_latencies_in_order() {
        let mut rng = SplitMix64::stream(3, "latency-window", "test");
        let mut window = LatencyWindow::default();
        let mut finished = Vec::new();
        for second in 0..300u64 {
            for _ in 0..(rng.next_f64() * 6.0) as u64 {
                // Few distinct values, so equal latencies come and go.
                let (finish_ms, latency_ms) =
                    (second * 1000 + (rng.next_f64() * 999.0) as u64, (rng.next_f64() * 20.0) as u32);
                window.push(finish_ms, latency_ms);
                finished.push((finish_ms, latency_ms));
            }
            let horizon_ms = (second * 1000).saturating_sub(METRICS_WINDOW_MS);
            window.expire_before(horizon_ms);
            let mut expected: Vec<u32> = finished.iter().filter(|(t, _)| *t >= horizon_ms).map(|(_, l)| *l).collect();
            expected.sort_unstable();
            assert_eq!(window.sorted, expected, "at {second} s");
        }
        assert!(window.sorted.len() > 100, "the window held a minute of completions");
    }

    #[test]
    fn new_pods_take_no_work_before_start_up() {
        let mut s = SimService::new(&setup(""), 1, 0);
        s.scale(3, 0);
        for t in 0..60 {
            s.step(t * 1000, 1000, 5);
            assert!(conserved(&s));
        }
        let late: Vec<_> = s.pods().iter().filter(|p| p.created_ms == 0 && p.ready_ms == 30_000).collect();
        assert_eq!(late.len(), 2);
        for pod in late {
            assert_eq!(pod.first_start_ms, Some(30_000), "a backlog was waiting when it became ready");
        }
    }

    #[test]
    fn exact_service_time_within_a_step() {
        // One pod, two slots, 2 s per job, jitter 0: 4 arrivals in second 0 (at 125, 375, 625, 875 ms) -> two finish at 2.125 s and 2.375 s.
        let mut s = SimService::new(&setup(""), 1, 0);
        s.step(0, 1000, 4);
        assert_eq!(s.queue_counts().active, 2);
        s.step(1000, 1000, 0);
        s.step(2000, 1000, 0);
        assert_eq!(s.totals.completed, 2);
        assert_eq!(s.waits_ms, [0, 0]);
        assert_eq!(s.queue_counts().active, 2, "the next two started as the first two finished");
    }

    #[test]
    fn removed_busy_pod_returns_its_jobs() {
        let mut s = SimService::new(&setup(""), 1, 0);
        s.scale(2, 0);
        s.step(0, 1000, 2);
        assert_eq!(s.queue_counts().active, 2);
        s.scale(0, 1000);
        assert_eq!(s.queue_counts().waiting, 2);
        assert!(conserved(&s));
    }

    #[test]
    fn failures_retry_then_fail_and_are_conserved() {
        let mut s = SimService::new(&setup(", failureRate: 0.5, retryBackoffSeconds: 3"), 7, 0);
        for t in 0..600 {
            s.step(t * 1000, 1000, u64::from(t % 3 == 0));
            assert!(conserved(&s), "at {t}: {:?} {:?}", s.totals, s.queue_counts());
        }
        assert!(s.totals.failed > 0 && s.totals.completed > 0);
    }

    #[test]
    fn observes_the_services_asked_for_in_any_order() {
        let mut setups = vec![setup(""), setup("")];
        setups[1].key.name = "other".into();
        let observe = |order: &[usize]| {
            let cluster = RefCell::new(SimCluster::new(&setups, 1));
            // Different arrivals, so the two observations differ.
            for (arrivals, service) in (3..).zip(cluster.borrow_mut().services.values_mut()) {
                service.step(0, 1000, arrivals);
            }
            let asked: Vec<_> = order.iter().map(|&i| (&setups[i].key, &setups[i].spec)).collect();
            futures::executor::block_on(SimHandle(&cluster).observe(&asked, 1000))
        };
        let out_of_order = observe(&[1, 0]);
        assert_eq!(out_of_order.len(), 2);
        assert_ne!(out_of_order[0], out_of_order[1]);
        assert_eq!(observe(&[0, 1]), [out_of_order[1].clone(), out_of_order[0].clone()]);
        assert_eq!(observe(&[1]), [out_of_order[0].clone()]);
    }

    #[test]
    fn metrics_delay_hands_out_old_observations_in_order() {
        let mut s = SimService::new(&setup(", metricsDelaySeconds: 30"), 1, 0);
        assert_eq!(s.observe(0), Observation::default(), "nothing measured 30 s ago yet");
        for t in 0..30 {
            s.step(t * 1000, 1000, 2);
        }
        let seen = s.observe(30_000);
        assert_eq!(seen.queue.map(|q| q.completed), Some(0), "the observation of time 0");
        assert_eq!(seen.sample_age_ms.get("simulation"), Some(&30_000));
    }
}
