//! Prometheus metrics and the HTTP server that serves them (`/metrics`, `/healthz`, `/readyz`).
//!
//! Two registries: [`Metrics`] for the autoscaler (queue series plus `ballast_*`), and [`ExporterMetrics`] for
//! `ballast exporter`, which serves only the queue series under the names of the Python queue exporter it replaces
//! (`redis_queue_depth{queue_name, queue_type}`, ...), so existing HPAs and Prometheus adapters keep working.
//! A queue whose counts are unavailable has its series removed, never set to 0.
//!
//! `ballast exporter`'s `/readyz` is about its source, Redis, not about each queue: 200 while the latest
//! collection reached Redis, whatever single queues gave (a misspelt or missing queue loses only its own series,
//! and is named in the body), 503 before the first collection and while Redis cannot be read.

use crate::runtime::FailureKind;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    CounterVec, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::sources::bullmq::{BullmqError, BullmqSource, QueueState};
use crate::spec::{QueueRef, ScalingPolicySpec};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("registering metric series: {0}")]
    Register(#[from] prometheus::Error),
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metrics server: {0}")]
    Serve(std::io::Error),
}

pub(crate) type Result<T, E = ExportError> = std::result::Result<T, E>;

/// `queue_type` label values of `redis_queue_depth`, besides `total`.
const QUEUE_STATES: [&str; 8] =
    ["waiting", "prioritized", "paused", "active", "delayed", "failed", "waiting-children", "completed"];

/// Plugin calls take microseconds to milliseconds; the buckets (seconds) span 5 µs to 100 ms.
const PLUGIN_CALL_BUCKETS: [f64; 14] =
    [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1];

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The queue exporter's series, plus `ballast_queue_paused`, the arrivals counter and the oldest wait.
struct QueueMetrics {
    depth: IntGaugeVec,
    waiting: IntGaugeVec,
    active: IntGaugeVec,
    delayed: IntGaugeVec,
    failed: IntGaugeVec,
    paused: IntGaugeVec,
    jobs_added: IntCounterVec,
    oldest_waiting: GaugeVec,
}

impl QueueMetrics {
    fn register(registry: &Registry) -> Result<Self> {
        let by_queue =
            |name: &str, help: &str| register(registry, IntGaugeVec::new(Opts::new(name, help), &["queue_name"])?);
        Ok(QueueMetrics {
            depth: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "redis_queue_depth",
                        "BullMQ jobs by state; queue_type=total is waiting+prioritized+active+delayed",
                    ),
                    &["queue_name", "queue_type"],
                )?,
            )?,
            waiting: by_queue("redis_queue_waiting", "BullMQ jobs waiting")?,
            active: by_queue("redis_queue_active", "BullMQ jobs being processed")?,
            delayed: by_queue("redis_queue_delayed", "BullMQ jobs delayed")?,
            failed: by_queue("redis_queue_failed", "BullMQ jobs failed and kept")?,
            paused: by_queue("ballast_queue_paused", "1 when the BullMQ queue is paused")?,
            jobs_added: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "ballast_queue_jobs_added_total",
                        "Jobs added to the BullMQ queue: its job id counter (jobs given a custom jobId are not counted)",
                    ),
                    &["queue_name"],
                )?,
            )?,
            oldest_waiting: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "ballast_queue_oldest_waiting_seconds",
                        "Seconds the oldest job of the BullMQ wait list has been ready (0 when none waits; absent \
                         when the list is too long for its end to be read)",
                    ),
                    &["queue_name"],
                )?,
            )?,
        })
    }

    fn record(&self, queue: &str, state: &QueueState) {
        let c = &state.counts;
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let total = c.waiting + c.prioritized + c.active + c.delayed;
        self.depth.with_label_values(&[queue, "total"]).set(as_gauge(total));
        let by_state =
            [c.waiting, c.prioritized, c.paused, c.active, c.delayed, c.failed, c.waiting_children, c.completed];
        for (state_name, n) in QUEUE_STATES.iter().zip(by_state) {
            self.depth.with_label_values(&[queue, state_name]).set(as_gauge(n));
        }
        self.waiting.with_label_values(&[queue]).set(as_gauge(c.waiting));
        self.active.with_label_values(&[queue]).set(as_gauge(c.active));
        self.delayed.with_label_values(&[queue]).set(as_gauge(c.delayed));
        self.failed.with_label_values(&[queue]).set(as_gauge(c.failed));
        self.paused.with_label_values(&[queue]).set(i64::from(state.is_paused));
        if let Some(added) = state.jobs_added {
            let counter = self.jobs_added.with_label_values(&[queue]);
            let seen = counter.get();
            if added < seen {
                // The queue was obliterated and used again: a counter reset, as Prometheus's rate() expects one.
                let _ = self.jobs_added.remove_label_values(&[queue]);
                self.jobs_added.with_label_values(&[queue]).inc_by(added);
            } else {
                counter.inc_by(added - seen);
            }
        }
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let oldest = match (c.waiting, state.oldest_waiting_since_ms) {
            (0, _) => Some(0.0),
            (_, Some(since)) => Some(now_ms.saturating_sub(u128::from(since)) as f64 / 1000.0),
            (_, None) => None,
        };
        match oldest {
            Some(seconds) => self.oldest_waiting.with_label_values(&[queue]).set(seconds),
            None => {
                let _ = self.oldest_waiting.remove_label_values(&[queue]);
            }
        }
    }

    /// Removes the queue's series: unknown is not 0. Absent series are fine to remove again.
    fn forget(&self, queue: &str) {
        for state_name in std::iter::once("total").chain(QUEUE_STATES) {
            let _ = self.depth.remove_label_values(&[queue, state_name]);
        }
        for gauge in [&self.waiting, &self.active, &self.delayed, &self.failed, &self.paused] {
            let _ = gauge.remove_label_values(&[queue]);
        }
        let _ = self.jobs_added.remove_label_values(&[queue]);
        let _ = self.oldest_waiting.remove_label_values(&[queue]);
    }
}

struct SourceMetrics {
    errors: IntCounterVec,
    last_success: GaugeVec,
}

impl SourceMetrics {
    fn register(registry: &Registry) -> Result<Self> {
        Ok(SourceMetrics {
            errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new("ballast_source_errors_total", "Failed collections by metric source"),
                    &["source"],
                )?,
            )?,
            last_success: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "ballast_source_last_success_timestamp_seconds",
                        "Unix time of the last successful collection by metric source",
                    ),
                    &["source"],
                )?,
            )?,
        })
    }

    fn record_error(&self, source: &str) {
        self.errors.with_label_values(&[source]).inc();
    }

    fn record_ok(&self, source: &str, now: SystemTime) {
        let seconds = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        self.last_success.with_label_values(&[source]).set(seconds);
    }
}

/// Removes the series of `vec` whose labels (name to value) `unwanted` picks.
fn remove_series<T: MetricVecBuilder>(vec: &MetricVec<T>, unwanted: impl Fn(&HashMap<&str, &str>) -> bool) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> =
                metric.get_label().iter().map(|pair| (pair.name(), pair.value())).collect();
            if unwanted(&labels) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Removes the series of `vec` labelled with this namespace and service, whatever their other labels.
fn remove_service<T: MetricVecBuilder>(vec: &MetricVec<T>, namespace: &str, service: &str) {
    remove_series(vec, |labels| labels.get("namespace") == Some(&namespace) && labels.get("service") == Some(&service));
}

/// Sets `vec` to exactly the `wanted` series (label values in the order of `names`) at 1, removing the others
/// one by one: a reset followed by the sets would let a scrape between them see a firing alert's series gone, and
/// restart the alert's `for`.
fn set_flags(vec: &IntGaugeVec, names: &[&str], wanted: &[Vec<&str>]) {
    remove_series(vec, |labels| {
        let values: Vec<&str> = names.iter().map(|name| labels.get(name).copied().unwrap_or_default()).collect();
        !wanted.contains(&values)
    });
    for values in wanted {
        vec.with_label_values(values).set(1);
    }
}

fn encode(registry: &Registry) -> String {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("the text encoder accepts every family the registry validated")
}

/// Everything the autoscaler exports.
pub struct Metrics {
    registry: Registry,
    queues: QueueMetrics,
    sources: SourceMetrics,
    replicas_current: IntGaugeVec,
    replicas_desired: IntGaugeVec,
    replicas_min: IntGaugeVec,
    replicas_max: IntGaugeVec,
    wait_objective: GaugeVec,
    shadow_replicas: IntGaugeVec,
    shadow_failures: IntCounterVec,
    decisions: IntCounterVec,
    plugin_call_duration: HistogramVec,
    plugin_failures: IntCounterVec,
    pod_seconds: CounterVec,
    leader: prometheus::IntGauge,
    plugin_not_ready: IntGaugeVec,
    autoscaler_conflict: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let service = ["namespace", "service"];
        let gauge = |name: &str, help: &str| register(&registry, IntGaugeVec::new(Opts::new(name, help), &service)?);
        Ok(Metrics {
            queues: QueueMetrics::register(&registry)?,
            sources: SourceMetrics::register(&registry)?,
            replicas_current: gauge("ballast_replicas_current", "Replicas the Deployment has")?,
            replicas_desired: gauge("ballast_replicas_desired", "Replicas the last decision asked for")?,
            replicas_min: gauge("ballast_replicas_min", "The policy's minReplicas")?,
            replicas_max: gauge("ballast_replicas_max", "The policy's maxReplicas")?,
            wait_objective: register(
                &registry,
                GaugeVec::new(
                    Opts::new("ballast_wait_objective_seconds", "The policy's waitObjectiveSeconds, per queue"),
                    &["namespace", "service", "queue_name"],
                )?,
            )?,
            shadow_replicas: gauge(
                "ballast_shadow_replicas_desired",
                "Replicas the shadow plugin would have set (after the clamps); never applied",
            )?,
            shadow_failures: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "ballast_shadow_plugin_failures_total",
                        "Shadow plugin calls that failed, by failure kind",
                    ),
                    &["namespace", "service", "kind"],
                )?,
            )?,
            decisions: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("ballast_decisions_total", "Scaling decisions by reason kind"),
                    &["namespace", "service", "reason"],
                )?,
            )?,
            plugin_call_duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("ballast_plugin_call_duration_seconds", "Wall time of one policy plugin call")
                        .buckets(PLUGIN_CALL_BUCKETS.to_vec()),
                    &["namespace", "service", "outcome"],
                )?,
            )?,
            plugin_failures: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("ballast_plugin_failures_total", "Policy plugin calls that failed, by failure kind"),
                    &["namespace", "service", "kind"],
                )?,
            )?,
            pod_seconds: register(
                &registry,
                CounterVec::new(
                    Opts::new("ballast_pod_seconds_total", "Replica-seconds run, for cost accounting"),
                    &service,
                )?,
            )?,
            leader: register(
                &registry,
                prometheus::IntGauge::new(
                    "ballast_leader",
                    "1 while this host holds the leader lease (only it scales)",
                )?,
            )?,
            plugin_not_ready: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "ballast_plugin_not_ready",
                        "1 while a policy's plugin (role live or shadow) is not the one its spec names: refused, \
                         not pulled, not read (reason as in the PluginReady condition)",
                    ),
                    &["namespace", "service", "role", "reason"],
                )?,
            )?,
            autoscaler_conflict: gauge(
                "ballast_autoscaler_conflict",
                "1 while another autoscaler (an HPA, a KEDA ScaledObject) scales the policy's target, so Ballast holds it",
            )?,
            registry,
        })
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Replaces the per-policy problem series with these: each policy whose plugin is not ready (namespace, service,
    /// role, reason), and each policy held by another autoscaler.
    pub(crate) fn set_policy_problems<'a>(
        &self,
        not_ready: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
        conflicts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let not_ready: Vec<Vec<&str>> =
            not_ready.into_iter().map(|(n, s, role, reason)| vec![n, s, role, reason]).collect();
        set_flags(&self.plugin_not_ready, &["namespace", "service", "role", "reason"], &not_ready);
        let conflicts: Vec<Vec<&str>> = conflicts.into_iter().map(|(n, s)| vec![n, s]).collect();
        set_flags(&self.autoscaler_conflict, &["namespace", "service"], &conflicts);
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets the queue's series from a successful read.
    pub fn record_queue(&self, queue: &str, state: &QueueState) {
        self.queues.record(queue, state);
    }

    /// Removes the queue's series after a failed read.
    pub fn forget_queue(&self, queue: &str) {
        self.queues.forget(queue);
    }

    /// What a policy's spec says that its series show: its bounds (so alerts can tell a service pinned at its
    /// maximum) and its wait objective beside each of its queues (the dashboard's wait panel). Recorded when the
    /// spec is first seen and whenever it changes; a queue the spec no longer names loses its objective.
    pub fn record_spec(&self, namespace: &str, service: &str, spec: &ScalingPolicySpec) {
        self.replicas_min.with_label_values(&[namespace, service]).set(i64::from(spec.min_replicas));
        self.replicas_max.with_label_values(&[namespace, service]).set(i64::from(spec.max_replicas));
        remove_service(&self.wait_objective, namespace, service);
        if let Some(seconds) = spec.wait_objective_seconds {
            for queue in &spec.metrics.queues {
                self.wait_objective.with_label_values(&[namespace, service, queue.name.as_str()]).set(seconds);
            }
        }
    }

    /// Removes every series of a deleted policy: a dashboard would show it scaling still, and the alerts on its
    /// bounds would keep firing.
    pub(crate) fn forget_service(&self, namespace: &str, service: &str) {
        for gauge in [
            &self.replicas_current,
            &self.replicas_desired,
            &self.replicas_min,
            &self.replicas_max,
            &self.shadow_replicas,
            &self.plugin_not_ready,
            &self.autoscaler_conflict,
        ] {
            remove_service(gauge, namespace, service);
        }
        for counter in [&self.shadow_failures, &self.decisions, &self.plugin_failures] {
            remove_service(counter, namespace, service);
        }
        remove_service(&self.wait_objective, namespace, service);
        remove_service(&self.plugin_call_duration, namespace, service);
        remove_service(&self.pod_seconds, namespace, service);
    }

    /// `reason` is a short kind (`plugin`, `fallback`, `clamped`, ...), never free text: each value is a series.
    pub fn record_decision(&self, namespace: &str, service: &str, current: u32, desired: u32, reason: &'static str) {
        self.replicas_current.with_label_values(&[namespace, service]).set(i64::from(current));
        self.replicas_desired.with_label_values(&[namespace, service]).set(i64::from(desired));
        self.decisions.with_label_values(&[namespace, service, reason]).inc();
    }

    /// What the shadow plugin would have done; `failure` as for [`Metrics::record_plugin_call`].
    pub(crate) fn record_shadow(&self, namespace: &str, service: &str, replicas: u32, failure: Option<FailureKind>) {
        self.shadow_replicas.with_label_values(&[namespace, service]).set(i64::from(replicas));
        if let Some(kind) = failure {
            self.shadow_failures.with_label_values(&[namespace, service, kind.label()]).inc();
        }
    }

    /// `failure` is how the call failed, or `None` for a call that returned a decision.
    pub fn record_plugin_call(&self, namespace: &str, service: &str, duration: Duration, failure: Option<FailureKind>) {
        let outcome = if failure.is_some() { "failed" } else { "ok" };
        self.plugin_call_duration.with_label_values(&[namespace, service, outcome]).observe(duration.as_secs_f64());
        if let Some(kind) = failure {
            self.plugin_failures.with_label_values(&[namespace, service, kind.label()]).inc();
        }
    }

    pub fn record_source_error(&self, source: &str) {
        self.sources.record_error(source);
    }

    pub fn record_source_ok(&self, source: &str, now: SystemTime) {
        self.sources.record_ok(source, now);
    }

    pub fn add_pod_seconds(&self, namespace: &str, service: &str, seconds: f64) {
        self.pod_seconds.with_label_values(&[namespace, service]).inc_by(seconds);
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// What `ballast exporter` serves: the queue series and the BullMQ source's health.
pub(crate) struct ExporterMetrics {
    registry: Registry,
    queues: QueueMetrics,
    sources: SourceMetrics,
}

impl ExporterMetrics {
    pub(crate) fn new() -> Result<Self> {
        let registry = Registry::new();
        Ok(ExporterMetrics {
            queues: QueueMetrics::register(&registry)?,
            sources: SourceMetrics::register(&registry)?,
            registry,
        })
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Whether `/readyz` answers 200, and what its body adds.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    detail: Arc<Mutex<String>>,
}

impl Readiness {
    pub(crate) fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Sets readiness and a line for the body (what is degraded, or why not ready).
    pub(crate) fn set_with_detail(&self, ready: bool, detail: String) {
        *self.detail.lock().expect("readiness detail poisoned") = detail;
        self.set(ready);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn detail(&self) -> String {
        self.detail.lock().expect("readiness detail poisoned").clone()
    }
}

/// Binds `addr` (bound here so a busy port is reported before any collection starts).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| ExportError::Bind { addr, source })
}

/// Serves `/metrics` from `registry`, `/healthz` (always 200 while the process runs) and `/readyz`, until
/// `shutdown` completes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], encode(&registry)) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let (ready, detail) = (readiness.is_ready(), readiness.detail());
                let (status, body) = match (ready, detail.is_empty()) {
                    (true, true) => (StatusCode::OK, "ready\n".to_string()),
                    (true, false) => (StatusCode::OK, format!("ready: {detail}\n")),
                    (false, true) => (StatusCode::SERVICE_UNAVAILABLE, "no successful collection yet\n".to_string()),
                    (false, false) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {detail}\n")),
                };
                async move { (status, body).into_response() }
            }),
        );
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await.map_err(ExportError::Serve)
}

/// One collection into the exporter's series, labelled by bare queue name as the Python exporter did. `Ok` when
/// Redis answered, with the errors of the queues that could not be read; `Err` when Redis could not be read.
pub(crate) async fn collect_queues(
    source: &BullmqSource,
    queues: &[QueueRef],
    metrics: &ExporterMetrics,
) -> std::result::Result<Vec<BullmqError>, BullmqError> {
    const SOURCE: &str = "bullmq";
    match source.counts(queues).await {
        Ok(states) => {
            let mut failing = Vec::new();
            for (queue, state) in queues.iter().zip(states) {
                match state {
                    Ok(state) => metrics.queues.record(&queue.name, &state),
                    Err(e) => {
                        tracing::warn!("{e}");
                        metrics.queues.forget(&queue.name);
                        failing.push(e);
                    }
                }
            }
            if failing.is_empty() {
                metrics.sources.record_ok(SOURCE, SystemTime::now());
            } else {
                metrics.sources.record_error(SOURCE);
            }
            Ok(failing)
        }
        Err(e) => {
            tracing::warn!("{e}");
            for queue in queues {
                metrics.queues.forget(&queue.name);
            }
            metrics.sources.record_error(SOURCE);
            Err(e)
        }
    }
}

fn join_errors(errors: &[BullmqError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// `ballast exporter`: collects every `interval` and serves the queue series on `listener` until `shutdown`.
pub async fn run_queue_exporter(
    source: BullmqSource,
    queues: Vec<QueueRef>,
    listener: tokio::net::TcpListener,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = ExporterMetrics::new()?;
    let readiness = Readiness::default();
    let mut server = tokio::spawn(serve(listener, metrics.registry().clone(), readiness.clone(), shutdown));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            served = &mut server => {
                return served.map_err(|e| ExportError::Serve(std::io::Error::other(e)))?;
            }
            _ = ticks.tick() => match collect_queues(&source, &queues, &metrics).await {
                Ok(failing) => readiness.set_with_detail(true, join_errors(&failing)),
                Err(error) => readiness.set_with_detail(false, error.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn policy_problems_are_set_exactly_and_a_standing_one_is_never_removed() {
        let metrics = Metrics::new().unwrap();
        metrics.set_policy_problems([("ns", "a", "live", "PluginRejected"), ("ns", "b", "shadow", "X")], [("ns", "a")]);
        let before = metrics.plugin_not_ready.with_label_values(&["ns", "a", "live", "PluginRejected"]);
        metrics.set_policy_problems([("ns", "a", "live", "PluginRejected")], []);
        let text = metrics.encode();
        assert!(text.contains(
            "ballast_plugin_not_ready{namespace=\"ns\",reason=\"PluginRejected\",role=\"live\",service=\"a\"} 1"
        ));
        assert!(!text.contains("service=\"b\"") && !text.contains("ballast_autoscaler_conflict{"), "{text}");
        // The standing series is the same one throughout: never removed and added back.
        before.set(7);
        assert_eq!(metrics.plugin_not_ready.with_label_values(&["ns", "a", "live", "PluginRejected"]).get(), 7);
    }

    fn spec_with_objective(queues: &[&str], seconds: Option<f64>) -> ScalingPolicySpec {
        let mut spec: ScalingPolicySpec = serde_json::from_value(serde_json::json!({
            "target": {"name": "svc"}, "minReplicas": 1, "maxReplicas": 2, "plugin": {"builtin": "hpa"}
        }))
        .unwrap();
        spec.metrics.queues = queues.iter().map(|name| QueueRef { name: name.to_string(), prefix: None }).collect();
        spec.wait_objective_seconds = seconds;
        spec
    }

    /// A spec's series follow its changes: a queue dropped from the spec, or an objective removed, leaves no
    /// objective behind for the dashboard to draw.
    #[test]
    fn spec_series_follow_the_spec() {
        let metrics = Metrics::new().unwrap();
        let objective = |queue: &str| {
            let wanted = [("namespace", "ns"), ("queue_name", queue), ("service", "svc")];
            metrics.registry().gather().iter().any(|f| {
                f.name() == "ballast_wait_objective_seconds"
                    && f.get_metric().iter().any(|m| {
                        let got: Vec<(&str, &str)> = m.get_label().iter().map(|l| (l.name(), l.value())).collect();
                        wanted.iter().all(|pair| got.contains(pair))
                    })
            })
        };
        metrics.record_spec("ns", "svc", &spec_with_objective(&["a", "b"], Some(30.0)));
        assert!(objective("a") && objective("b"));
        assert_eq!(metrics.replicas_max.with_label_values(&["ns", "svc"]).get(), 2);
        metrics.record_spec("ns", "svc", &spec_with_objective(&["a"], Some(30.0)));
        assert!(objective("a") && !objective("b"), "a queue the spec no longer names keeps no objective");
        metrics.record_spec("ns", "svc", &spec_with_objective(&["a"], None));
        assert!(!objective("a"), "an objective removed from the spec is gone");
    }

    /// Every series the shipped dashboard and alerts read is one the host exports: a renamed metric would leave a
    /// panel blank or an alert silent, and nobody would notice until the day it mattered.
    #[test]
    fn the_dashboard_and_the_alerts_read_only_series_the_host_exports() {
        let metrics = Metrics::new().unwrap();
        // One sample in every family (families without samples are not gathered).
        let state = QueueState { jobs_added: Some(1), ..Default::default() };
        metrics.record_queue("q", &state);
        metrics.record_spec("ns", "svc", &spec_with_objective(&["q"], Some(1.0)));
        metrics.record_decision("ns", "svc", 1, 2, "plugin");
        metrics.record_shadow("ns", "svc", 2, Some(FailureKind::Trap));
        metrics.record_plugin_call("ns", "svc", Duration::from_millis(1), Some(FailureKind::Timeout));
        metrics.record_source_error("redis");
        metrics.record_source_ok("redis", SystemTime::now());
        metrics.add_pod_seconds("ns", "svc", 1.0);
        metrics.set_leader(true);
        metrics.set_policy_problems([("ns", "svc", "live", "PluginRejected")], [("ns", "svc")]);
        let mut exported = BTreeSet::new();
        for family in metrics.registry().gather() {
            let name = family.name().to_owned();
            if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                exported.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
            }
            exported.insert(name);
        }
        let shipped = [
            ("deploy/base/ballast-dashboard.json", include_str!("../../deploy/base/ballast-dashboard.json")),
            (
                "deploy/components/monitoring/prometheusrule.yaml",
                include_str!("../../deploy/components/monitoring/prometheusrule.yaml"),
            ),
        ];
        for (file, text) in shipped {
            let mut read = BTreeSet::new();
            for start in text.match_indices("ballast_").chain(text.match_indices("redis_")).map(|(at, _)| at) {
                let preceded = text[..start].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !preceded {
                    read.insert(name);
                }
            }
            assert!(read.len() >= 5, "{file}: found only {read:?}");
            let unknown: Vec<_> = read.difference(&exported).collect();
            assert!(unknown.is_empty(), "{file} reads series the host does not export: {unknown:?}");
        }
    }
}
