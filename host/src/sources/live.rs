//! The live [`Observer`]: every source batched across services, each on its own schedule, none read by the tick
//! itself.
//!
//! Redis is read once per tick (one pipeline for every queue of every service) by a background task: each tick
//! asks for a collection and waits for it at most [`RedisSettings::deadline`], then decides on the freshest counts
//! there are, their age in `sample_age_ms["redis"]`. A stalled Redis thus costs a tick at most that deadline; its
//! counts age, and past [`RedisSettings::max_age`] they are unavailable, the reason in `unavailable["queue"]`. A
//! queue that cannot be read (missing, denied, wrong type) is unavailable at once, the error naming it.
//! Prometheus is slower and rate-limited by design, so it refreshes in a background task every
//! `prometheus_interval` and the tick reads the latest snapshot: a slow or failing Prometheus never stalls a tick.
//! metrics.k8s.io (CPU and memory, see [`super::resources`]) works the same way with its own task and interval;
//! its task also wakes at once when the set of observed services changes.
//! A failing source leaves only its own metrics unavailable (and counts the error); a snapshot older than
//! `max_age` is not used at all. Each observation records the age of the samples it carries, and values outside
//! their metric's sane range are dropped ([`Observation::drop_out_of_range`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};

use super::bullmq::{BullmqError, BullmqSource, QueueState};
use super::prometheus::{PromTarget, PromValues, PrometheusSource, Sample};
use super::resources::{self, Resource, ResourceError, ResourceSource, ResourceTarget, ResourceValues};
use crate::autoscaler::Observer;
use crate::config::RedisSettings;
use crate::export::Metrics;
use crate::observation::{Observation, QueueCounts};
use crate::spec::{QueueRef, ScalingPolicySpec, ServiceKey};

/// Source names used in metrics, logs and sample ages.
pub const REDIS: &str = "redis";
pub(crate) const PROMETHEUS: &str = "prometheus";
pub const RESOURCES: &str = "metrics.k8s.io";

pub struct LiveObserver {
    bullmq: Option<Arc<RedisRefresher>>,
    /// Redis connections of policies that name a Secret (`metrics.redis`), when the observer may read Secrets.
    secret_connections: Option<SecretConnections>,
    prometheus: Option<PromRefresher>,
    resources: Option<ResourceRefresher>,
    metrics: Arc<Metrics>,
    max_age: Duration,
    redis: RedisSettings,
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

/// What the Redis task knows of one queue.
#[derive(Default)]
struct QueueReading {
    /// The last counts read, and when their collection started.
    last: Option<(QueueState, Instant)>,
    /// Why the latest collection did not read it.
    error: Option<String>,
    /// The latest error concerned this queue alone (missing, denied): its older counts are not to be used.
    queue_error: bool,
}

#[derive(Default)]
struct RedisShared {
    /// The queues the latest tick asked for.
    queues: Vec<QueueRef>,
    readings: BTreeMap<QueueRef, QueueReading>,
}

struct RedisRefresher {
    shared: Arc<Mutex<RedisShared>>,
    wake: Arc<Notify>,
    /// When the latest finished collection started.
    collected: watch::Receiver<Option<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisRefresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisRefresher {
    fn start(source: BullmqSource, metrics: Arc<Metrics>) -> Self {
        let shared = Arc::new(Mutex::new(RedisShared::default()));
        let wake = Arc::new(Notify::new());
        let (done, collected) = watch::channel(None);
        let task = tokio::spawn(refresh_redis(source, shared.clone(), wake.clone(), done, metrics));
        RedisRefresher { shared, wake, collected, task }
    }
}

/// A Secret naming a Redis connection: (namespace, name).
type SecretKey = (String, String);

/// What the Secret task knows: which Secrets ticks wanted, and when last (a tick lists only the services due then,
/// so one tick's set is not all of them), and the connection (or the error) of each.
#[derive(Default)]
struct SecretShared {
    wanted: BTreeMap<SecretKey, Instant>,
    connections: BTreeMap<SecretKey, SecretConnection>,
}

struct SecretConnection {
    /// The connection built from the Secret's current data, or why there is none.
    refresher: Result<Arc<RedisRefresher>, Arc<SecretConnectionError>>,
    /// The data it was built from (a change rebuilds it), and when the Secret was last read.
    data: BTreeMap<String, Vec<u8>>,
    read: Instant,
}

/// Why a policy's Secret (`metrics.redis.secretName`) gives no Redis connection.
#[derive(Debug, thiserror::Error)]
enum SecretConnectionError {
    #[error("Redis connection from Secret {namespace}/{name}: this host reads no Secrets")]
    NoSecrets { namespace: String, name: String },
    #[error("Secret {namespace}/{name} with the Redis connection is being read")]
    Pending { namespace: String, name: String },
    #[error(
        "Secret {namespace}/{name}, named by metrics.redis.secretName, does not exist; create it with the Redis \
         connection (keys url or host, password, ...) in the policy's namespace"
    )]
    Missing { namespace: String, name: String },
    #[error("Secret {namespace}/{name} with the Redis connection cannot be read: {source}")]
    Read { namespace: String, name: String, source: kube::Error },
    #[error(transparent)]
    Connection(#[from] BullmqError),
}

struct SecretConnections {
    shared: Arc<Mutex<SecretShared>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SecretConnections {
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
        let bullmq = bullmq.map(|source| Arc::new(RedisRefresher::start(source, metrics.clone())));
        let redis = RedisSettings::default();
        LiveObserver { bullmq, secret_connections: None, prometheus, resources: None, metrics, max_age, redis }
    }

    /// The tick's deadline and the bound on the age of queue counts, and for the Secrets' connections (call it
    /// before [`Self::with_secret_connections`]) their timeout and how often they are read again.
    pub(crate) fn with_redis_settings(mut self, settings: RedisSettings) -> Self {
        self.redis = settings;
        self
    }

    /// Lets policies name their Redis connection in a Secret of their namespace (`metrics.redis.secretName`): each
    /// such Secret is read in the background (again every [`RedisSettings::secret_refresh`], so a rotated password
    /// is picked up) and gets a connection of its own. Must be called inside a tokio runtime.
    pub fn with_secret_connections(mut self, client: kube::Client) -> Self {
        let shared = Arc::new(Mutex::new(SecretShared::default()));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(refresh_secret_connections(
            client,
            shared.clone(),
            wake.clone(),
            self.redis,
            self.metrics.clone(),
        ));
        self.secret_connections = Some(SecretConnections { shared, wake, task });
        self
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

    /// Queue counts per service, summed over its queues, from the freshest collection within the deadline; a
    /// service with any queue unavailable gets a reason instead (a partial sum would look like a shorter queue).
    /// Each connection (the host's Redis, each policy Secret's) is read by its own task, all at once.
    async fn queue_counts(&self, services: &[(&ServiceKey, &ScalingPolicySpec)]) -> BTreeMap<ServiceKey, QueueView> {
        let mut out = BTreeMap::new();
        // The services of each connection: `None` is the host's Redis.
        let mut groups: BTreeMap<Option<SecretKey>, Vec<(&ServiceKey, &ScalingPolicySpec)>> = BTreeMap::new();
        for (key, spec) in services.iter().filter(|(_, spec)| !spec.metrics.queues.is_empty()) {
            let connection = spec.metrics.redis.as_ref().map(|r| (key.namespace.clone(), r.secret_name.clone()));
            groups.entry(connection).or_default().push((key, spec));
        }
        if groups.is_empty() {
            return out;
        }
        let mut resolved = Vec::new();
        if let Some(secrets) = &self.secret_connections {
            let mut shared = secrets.shared.lock().expect("secret connections poisoned");
            let now = Instant::now();
            let mut new = false;
            for key in groups.keys().flatten() {
                new |= shared.wanted.insert(key.clone(), now).is_none();
            }
            if new {
                secrets.wake.notify_one();
            }
        }
        for (connection, members) in groups {
            let refresher = match &connection {
                // Without a host Redis such services simply have no queue metrics, as ever.
                None => match self.bullmq.clone() {
                    Some(refresher) => Ok(refresher),
                    None => continue,
                },
                Some((namespace, name)) => {
                    let (namespace, name) = (namespace.clone(), name.clone());
                    match &self.secret_connections {
                        None => Err(Arc::new(SecretConnectionError::NoSecrets { namespace, name })),
                        Some(secrets) => {
                            let shared = secrets.shared.lock().expect("secret connections poisoned");
                            match shared.connections.get(&(namespace.clone(), name.clone())) {
                                Some(connection) => connection.refresher.clone(),
                                None => Err(Arc::new(SecretConnectionError::Pending { namespace, name })),
                            }
                        }
                    }
                }
            };
            match refresher {
                Ok(refresher) => resolved.push((refresher, members)),
                Err(reason) => {
                    let reason = reason.to_string();
                    for (key, _) in members {
                        out.insert(key.clone(), QueueView { reasons: vec![reason.clone()], ..QueueView::default() });
                    }
                }
            }
        }
        let asked = Instant::now();
        let deadline = self.redis.deadline;
        let waits = resolved.iter().map(|(refresher, members)| {
            let mut queues: Vec<QueueRef> =
                members.iter().flat_map(|(_, s)| s.metrics.queues.iter().cloned()).collect();
            queues.sort_by(|a, b| (&a.prefix, &a.name).cmp(&(&b.prefix, &b.name)));
            queues.dedup();
            refresher.shared.lock().expect("redis readings poisoned").queues = queues;
            refresher.wake.notify_one();
            let mut collected = refresher.collected.clone();
            // Past the deadline (a stalled Redis) the tick goes on with what there is.
            async move {
                let fresh = collected.wait_for(|started| started.is_some_and(|s| s >= asked));
                let _ = tokio::time::timeout(deadline, fresh).await;
            }
        });
        futures::future::join_all(waits).await;
        for (refresher, members) in &resolved {
            let shared = refresher.shared.lock().expect("redis readings poisoned");
            for (key, spec) in members {
                out.insert((*key).clone(), queue_view(&shared, spec, self.redis.max_age));
            }
        }
        out
    }
}

/// One service's queues from its connection's readings.
fn queue_view(shared: &RedisShared, spec: &ScalingPolicySpec, max_age: Duration) -> QueueView {
    let mut view = QueueView { counts: Some(QueueCounts::default()), ..QueueView::default() };
    for queue in &spec.metrics.queues {
        let reading = shared.readings.get(queue);
        let usable = reading.filter(|r| !r.queue_error).and_then(|r| r.last.as_ref());
        let fresh = usable.filter(|(_, taken)| taken.elapsed() <= max_age);
        match fresh {
            Some((state, taken)) => {
                if let Some(counts) = &mut view.counts {
                    counts.add(&state.counts);
                }
                view.paused |= state.is_paused;
                view.age = view.age.max(taken.elapsed());
            }
            None => {
                view.counts = None;
                let error = reading.and_then(|r| r.error.clone());
                view.reasons.push(match (usable, error) {
                    (Some((_, taken)), error) => format!(
                        "counts of queue {} are {:.1} s old, older than the {} s bound{}",
                        queue_name(queue),
                        taken.elapsed().as_secs_f64(),
                        max_age.as_secs(),
                        error.map(|e| format!(": {e}")).unwrap_or_default()
                    ),
                    (None, Some(error)) => error,
                    (None, None) => format!("queue {} has not been read yet", queue_name(queue)),
                });
            }
        }
    }
    view
}

/// What a tick sees of one service's queues.
#[derive(Default)]
struct QueueView {
    counts: Option<QueueCounts>,
    paused: bool,
    /// The oldest queue's age.
    age: Duration,
    /// Why the counts are unavailable, one per queue that is.
    reasons: Vec<String>,
}

fn queue_name(queue: &QueueRef) -> String {
    format!("{}:{}", queue.prefix.as_deref().unwrap_or(super::bullmq::DEFAULT_PREFIX), queue.name)
}

impl Observer for LiveObserver {
    async fn observe(&mut self, services: &[(&ServiceKey, &ScalingPolicySpec)], _now_ms: u64) -> Vec<Observation> {
        let mut observations: BTreeMap<ServiceKey, Observation> =
            services.iter().map(|(k, _)| ((*k).clone(), Observation::default())).collect();
        for (key, view) in self.queue_counts(services).await {
            let Some(obs) = observations.get_mut(&key) else { continue };
            match view.counts {
                Some(counts) => {
                    obs.queue = Some(counts);
                    obs.queue_paused = Some(view.paused);
                    obs.sample_age_ms.insert(REDIS.into(), view.age.as_millis() as u64);
                }
                None => {
                    obs.unavailable.insert("queue".into(), view.reasons.join("; "));
                }
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
        services
            .iter()
            .map(|(key, _)| {
                let mut obs = observations.remove(*key).unwrap_or_default();
                obs.drop_out_of_range();
                obs
            })
            .collect()
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

/// Reads the queues the latest tick asked for, once per wake-up (wake-ups during a collection fold into one).
async fn refresh_redis(
    source: BullmqSource,
    shared: Arc<Mutex<RedisShared>>,
    wake: Arc<Notify>,
    done: watch::Sender<Option<Instant>>,
    metrics: Arc<Metrics>,
) {
    loop {
        wake.notified().await;
        let queues = shared.lock().expect("redis readings poisoned").queues.clone();
        let started = Instant::now();
        let states = source.counts(&queues).await;
        let mut shared = shared.lock().expect("redis readings poisoned");
        // Queues no longer asked for are forgotten.
        let asked: std::collections::BTreeSet<&QueueRef> = queues.iter().collect();
        shared.readings.retain(|queue, _| asked.contains(queue));
        match states {
            Ok(states) => {
                metrics.record_source_ok(REDIS, SystemTime::now());
                for (queue, state) in queues.iter().zip(states) {
                    let reading = shared.readings.entry(queue.clone()).or_default();
                    match state {
                        Ok(state) => {
                            metrics.record_queue(&queue.name, &state);
                            *reading = QueueReading { last: Some((state, started)), error: None, queue_error: false };
                        }
                        Err(e) => {
                            tracing::warn!("{e}");
                            metrics.record_source_error(REDIS);
                            metrics.forget_queue(&queue.name);
                            reading.error = Some(e.to_string());
                            reading.queue_error = true;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                metrics.record_source_error(REDIS);
                for queue in &queues {
                    metrics.forget_queue(&queue.name);
                    let reading = shared.readings.entry(queue.clone()).or_default();
                    // The counts read before stay usable until they are too old: the queue itself is fine.
                    reading.error = Some(e.to_string());
                    reading.queue_error = false;
                }
            }
        }
        drop(shared);
        done.send_replace(Some(started));
    }
}

/// Reads the Secrets the latest tick wanted (each again every `secret_refresh`) and keeps one Redis connection
/// per Secret, rebuilt when its data changes; connections no longer wanted are dropped. Only `get` on the named
/// Secret of the policy's own namespace is ever asked for.
async fn refresh_secret_connections(
    client: kube::Client,
    shared: Arc<Mutex<SecretShared>>,
    wake: Arc<Notify>,
    settings: RedisSettings,
    metrics: Arc<Metrics>,
) {
    use k8s_openapi::api::core::v1::Secret;
    let refresh = settings.secret_refresh;
    let mut next_due = Duration::ZERO;
    loop {
        // Asleep until a tick asks for a new Secret or the first read comes due (a Secret no longer asked for is
        // let go at the latest one refresh period later).
        let _ = tokio::time::timeout(next_due, wake.notified()).await;
        let due: Vec<SecretKey> = {
            let mut shared = shared.lock().expect("secret connections poisoned");
            // A Secret no policy has asked for in two refresh periods (the policy went, or names another) is let go.
            shared.wanted.retain(|_, asked| asked.elapsed() < 2 * refresh);
            let SecretShared { wanted, connections } = &mut *shared;
            connections.retain(|key, _| wanted.contains_key(key));
            let fresh = |key: &SecretKey| connections.get(key).is_some_and(|c| c.read.elapsed() < refresh);
            wanted.keys().filter(|key| !fresh(key)).cloned().collect()
        };
        next_due = refresh;
        for (namespace, name) in due {
            let what = format!("Secret {namespace}/{name}");
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &namespace);
            let read = match api.get_opt(&name).await {
                Ok(Some(secret)) => {
                    Ok(secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect::<BTreeMap<_, _>>())
                }
                Ok(None) => Err(SecretConnectionError::Missing { namespace: namespace.clone(), name: name.clone() }),
                Err(source) => {
                    Err(SecretConnectionError::Read { namespace: namespace.clone(), name: name.clone(), source })
                }
            };
            let mut shared = shared.lock().expect("secret connections poisoned");
            let key = (namespace, name);
            let connection = match read {
                Ok(data) => match shared.connections.remove(&key) {
                    // Unchanged: keep the connection (and its readings).
                    Some(mut same) if same.data == data && same.refresher.is_ok() => {
                        same.read = Instant::now();
                        same
                    }
                    _ => {
                        let refresher = BullmqSource::from_secret(&what, &data, settings.timeout)
                            .map(|source| Arc::new(RedisRefresher::start(source, metrics.clone())))
                            .map_err(|e| Arc::new(SecretConnectionError::from(e)));
                        if let Err(e) = &refresher {
                            tracing::warn!("{e}");
                        }
                        SecretConnection { refresher, data, read: Instant::now() }
                    }
                },
                Err(why) => {
                    tracing::warn!("{why}");
                    SecretConnection { refresher: Err(Arc::new(why)), data: BTreeMap::new(), read: Instant::now() }
                }
            };
            shared.connections.insert(key, connection);
        }
        let shared = shared.lock().expect("secret connections poisoned");
        if let Some(oldest) = shared.connections.values().map(|c| c.read.elapsed()).max() {
            next_due = refresh.saturating_sub(oldest);
        }
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
