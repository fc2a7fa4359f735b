//! The live [`Observer`]: every source batched across services, each on its own schedule.
//!
//! Redis is read inline every tick (one pipeline for every queue of every service, bounded by its timeout).
//! Prometheus is slower and rate-limited by design, so it refreshes in a background task every
//! `prometheus_interval` and the tick reads the latest snapshot: a slow or failing Prometheus never stalls a tick.
//! metrics.k8s.io (CPU and memory, see [`super::resources`]) works the same way with its own task and interval;
//! its task also wakes at once when the set of observed services changes.
//! A failing source leaves only its own metrics unavailable (and counts the error); a snapshot older than
//! `max_age` is not used at all. Each observation records the age of the samples it carries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::bullmq::BullmqSource;
use super::prometheus::{PromTarget, PromValues, PrometheusSource, Sample};
use super::resources::{self, Resource, ResourceError, ResourceSource, ResourceTarget, ResourceValues};
use crate::autoscaler::Observer;
use crate::export::Metrics;
use crate::observation::{Observation, QueueCounts};
use crate::spec::{QueueRef, ScalingPolicySpec, ServiceKey};

/// Source names used in metrics, logs and sample ages.
pub const REDIS: &str = "redis";
pub const PROMETHEUS: &str = "prometheus";
pub const RESOURCES: &str = "metrics.k8s.io";

pub struct LiveObserver {
    bullmq: Option<BullmqSource>,
    prometheus: Option<PromRefresher>,
    resources: Option<ResourceRefresher>,
    metrics: Arc<Metrics>,
    max_age: Duration,
}

/// The latest Prometheus collection, shared with the refresh task.
#[derive(Default)]
struct PromSnapshot {
    targets: Vec<PromTarget>,
    taken: Option<Instant>,
    values: BTreeMap<ServiceKey, PromValues>,
}

struct PromRefresher {
    shared: Arc<Mutex<PromSnapshot>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PromRefresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The latest metrics.k8s.io collection, shared with its refresh task.
#[derive(Default)]
struct ResourceSnapshot {
    targets: Vec<ResourceTarget>,
    taken: Option<Instant>,
    values: BTreeMap<ServiceKey, ResourceValues>,
}

struct ResourceRefresher {
    shared: Arc<Mutex<ResourceSnapshot>>,
    targets_changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ResourceRefresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LiveObserver {
    /// `prometheus_interval` is how often Prometheus is queried; `max_age` how old a snapshot may be and still count.
    /// Must be called inside a tokio runtime (it starts the Prometheus refresh task).
    pub fn new(
        bullmq: Option<BullmqSource>,
        prometheus: Option<PrometheusSource>,
        prometheus_interval: Duration,
        max_age: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let prometheus = prometheus.map(|source| {
            let shared = Arc::new(Mutex::new(PromSnapshot::default()));
            let task = tokio::spawn(refresh_prometheus(source, shared.clone(), prometheus_interval, metrics.clone()));
            PromRefresher { shared, task }
        });
        LiveObserver { bullmq, prometheus, resources: None, metrics, max_age }
    }

    /// Adds CPU and memory from metrics.k8s.io for the services whose spec has `metrics.resources`, collected every
    /// `interval` in a background task (the HPA's default sync period is 15 s). Must be called inside a tokio
    /// runtime.
    pub fn with_resources(mut self, source: ResourceSource, interval: Duration) -> Self {
        let shared = Arc::new(Mutex::new(ResourceSnapshot::default()));
        let targets_changed = Arc::new(Notify::new());
        let task = tokio::spawn(refresh_resources(
            source,
            shared.clone(),
            targets_changed.clone(),
            interval,
            self.metrics.clone(),
        ));
        self.resources = Some(ResourceRefresher { shared, targets_changed, task });
        self
    }

    /// Queue counts per service: one pipelined read for every queue of every service, summed per service.
    async fn queue_counts(
        &self,
        services: &[(&ServiceKey, &ScalingPolicySpec)],
    ) -> BTreeMap<ServiceKey, Option<QueueCounts>> {
        let mut out = BTreeMap::new();
        let Some(source) = &self.bullmq else { return out };
        let mut queues: Vec<QueueRef> = services.iter().flat_map(|(_, s)| s.metrics.queues.iter().cloned()).collect();
        queues.sort_by(|a, b| (&a.prefix, &a.name).cmp(&(&b.prefix, &b.name)));
        queues.dedup();
        if queues.is_empty() {
            return out;
        }
        let states = match source.counts(&queues).await {
            Ok(states) => {
                self.metrics.record_source_ok(REDIS, SystemTime::now());
                states
            }
            Err(e) => {
                tracing::warn!("{e}");
                self.metrics.record_source_error(REDIS);
                queues.iter().for_each(|q| self.metrics.forget_queue(&q.name));
                return services.iter().map(|(k, _)| ((*k).clone(), None)).collect();
            }
        };
        let mut by_queue = BTreeMap::new();
        for (queue, state) in queues.iter().zip(states) {
            match state {
                Ok(state) => {
                    self.metrics.record_queue(&queue.name, &state);
                    by_queue.insert(queue.clone(), state.counts);
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    self.metrics.record_source_error(REDIS);
                    self.metrics.forget_queue(&queue.name);
                }
            }
        }
        for (key, spec) in services {
            // A service whose queue could not be read has no queue metric at all: a partial sum would look like a
            // shorter queue and invite a scale-down.
            let counts = spec.metrics.queues.iter().try_fold(QueueCounts::default(), |mut sum, queue| {
                by_queue.get(queue).map(|counts| {
                    sum.add(counts);
                    sum
                })
            });
            if !spec.metrics.queues.is_empty() {
                out.insert((*key).clone(), counts);
            }
        }
        out
    }
}

impl Observer for LiveObserver {
    async fn observe(&mut self, services: &[(&ServiceKey, &ScalingPolicySpec)], _now_ms: u64) -> Vec<Observation> {
        let mut observations: BTreeMap<ServiceKey, Observation> =
            services.iter().map(|(k, _)| ((*k).clone(), Observation::default())).collect();
        for (key, counts) in self.queue_counts(services).await {
            if let (Some(obs), Some(counts)) = (observations.get_mut(&key), counts) {
                obs.queue = Some(counts);
                obs.sample_age_ms.insert(REDIS.into(), 0);
            }
        }
        if let Some(prometheus) = &self.prometheus {
            let mut snapshot = prometheus.shared.lock().expect("prometheus snapshot poisoned");
            snapshot.targets = services
                .iter()
                .filter_map(|(key, spec)| {
                    spec.metrics.prometheus.clone().map(|metrics| PromTarget {
                        key: (*key).clone(),
                        namespace: key.namespace.clone(),
                        deployment: spec.target.name.clone(),
                        metrics,
                    })
                })
                .collect();
            let snapshot_age = snapshot.taken.map(|t| t.elapsed());
            if let Some(age) = snapshot_age.filter(|age| *age <= self.max_age) {
                for (key, values) in &snapshot.values {
                    if let Some(obs) = observations.get_mut(key) {
                        apply_prometheus(obs, values, age);
                    }
                }
            }
        }
        if let Some(refresher) = &self.resources {
            let targets: Vec<ResourceTarget> = services
                .iter()
                .filter(|(_, spec)| spec.metrics.resources)
                .map(|(key, spec)| ResourceTarget { key: (*key).clone(), target: spec.target.clone() })
                .collect();
            let mut snapshot = refresher.shared.lock().expect("resource snapshot poisoned");
            if snapshot.targets != targets {
                snapshot.targets = targets;
                refresher.targets_changed.notify_one();
            }
            if let Some(age) = snapshot.taken.map(|t| t.elapsed()).filter(|age| *age <= self.max_age) {
                for target in &snapshot.targets {
                    if let (Some(obs), Some(values)) =
                        (observations.get_mut(&target.key), snapshot.values.get(&target.key))
                    {
                        apply_resources(obs, values, age);
                    }
                }
            }
        }
        services.iter().map(|(key, _)| observations.remove(*key).unwrap_or_default()).collect()
    }
}

/// Copies Prometheus values into an observation; the recorded age is the oldest sample's plus the snapshot's.
fn apply_prometheus(obs: &mut Observation, values: &PromValues, snapshot_age: Duration) {
    let mut oldest: Option<Duration> = None;
    let mut take = |sample: &Option<Sample>| {
        sample.as_ref().map(|s| {
            oldest = Some(oldest.map_or(s.age, |o| o.max(s.age)));
            s.value
        })
    };
    obs.gpu_duty_cycle_percent = take(&values.gpu_duty_cycle_percent);
    obs.latency_p50_ms = take(&values.latency_p50_ms);
    obs.latency_p95_ms = take(&values.latency_p95_ms);
    obs.latency_p99_ms = take(&values.latency_p99_ms);
    obs.request_rate = take(&values.request_rate);
    obs.custom.extend(values.custom.iter().map(|(name, s)| (name.clone(), s.value)));
    if let Some(age) = oldest {
        obs.sample_age_ms.insert(PROMETHEUS.into(), (age + snapshot_age).as_millis() as u64);
    }
}

/// Copies CPU and memory (percent of requests, and the pod groups as custom metrics) into an observation; the
/// recorded age is the oldest sample's plus the snapshot's.
fn apply_resources(obs: &mut Observation, values: &ResourceValues, snapshot_age: Duration) {
    let mut oldest: Option<Duration> = None;
    for (resource, reading) in [(Resource::Cpu, &values.cpu), (Resource::Memory, &values.memory)] {
        let Ok(usage) = reading else { continue };
        let percent = Some(usage.percent_of_request());
        match resource {
            Resource::Cpu => obs.cpu_percent_of_request = percent,
            Resource::Memory => obs.memory_percent_of_request = percent,
        }
        obs.custom.extend(resources::custom_metrics(resource, usage));
        oldest = Some(oldest.map_or(usage.sample_age, |o| o.max(usage.sample_age)));
    }
    if let Some(age) = oldest {
        obs.sample_age_ms.insert(RESOURCES.into(), (age + snapshot_age).as_millis() as u64);
    }
}

async fn refresh_resources(
    source: ResourceSource,
    shared: Arc<Mutex<ResourceSnapshot>>,
    targets_changed: Arc<Notify>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = targets_changed.notified() => {}
        }
        let targets = shared.lock().expect("resource snapshot poisoned").targets.clone();
        if targets.is_empty() {
            continue;
        }
        let collection = source.collect(&targets).await;
        // API failures once each; a service's misconfiguration once per service even when both resources show it.
        let mut problems: Vec<&ResourceError> = collection.failures.iter().collect();
        for values in collection.values.values() {
            for error in [&values.cpu, &values.memory].into_iter().filter_map(|r| r.as_ref().err()) {
                if !error.is_misconfiguration() {
                    tracing::debug!("{error}");
                } else if !problems.contains(&error) {
                    problems.push(error);
                }
            }
        }
        for problem in &problems {
            tracing::warn!("{problem}");
            metrics.record_source_error(RESOURCES);
        }
        if collection.namespaces_read > 0 {
            metrics.record_source_ok(RESOURCES, SystemTime::now());
        }
        let mut snapshot = shared.lock().expect("resource snapshot poisoned");
        snapshot.values = collection.values;
        snapshot.taken = Some(Instant::now());
    }
}

async fn refresh_prometheus(
    source: PrometheusSource,
    shared: Arc<Mutex<PromSnapshot>>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let targets = shared.lock().expect("prometheus snapshot poisoned").targets.clone();
        if targets.is_empty() {
            continue;
        }
        let collection = source.collect(&targets).await;
        for failure in &collection.failures {
            tracing::warn!("{}", failure.error);
            metrics.record_source_error(PROMETHEUS);
        }
        if collection.failures.len() < collection.queries {
            metrics.record_source_ok(PROMETHEUS, SystemTime::now());
        }
        let mut snapshot = shared.lock().expect("prometheus snapshot poisoned");
        snapshot.values = collection.values;
        snapshot.taken = Some(Instant::now());
    }
}
