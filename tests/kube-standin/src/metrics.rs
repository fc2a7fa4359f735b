//! `metrics.k8s.io/v1beta1` PodMetrics as metrics-server (0.6 and later) serves them through the API server's
//! aggregation layer: a PodMetrics exists only for a pod that exists and has a sample; it carries the pod's current
//! labels and a `creationTimestamp` of the moment of the request; lists are sorted by namespace and name, have empty
//! list metadata (no resourceVersion, no pagination) and select by the pods' labels and metadata fields.
//! When metrics-server is down the aggregator answers 503 in plain text; when its APIService is not registered the
//! group is not served at all (404, absent from discovery).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::meta;
use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::store::{ListOptions, Store};

/// The group the aggregation layer proxies to metrics-server.
pub const GROUP: &str = "metrics.k8s.io";

/// The state of the `v1beta1.metrics.k8s.io` APIService.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricsApi {
    /// metrics-server answers.
    #[default]
    Available,
    /// Registered but its backend is down: every request under `/apis/metrics.k8s.io/v1beta1` gets the aggregator's
    /// `503 service unavailable` (text/plain, no `Status` body, no `Retry-After`).
    Unavailable,
    /// Not registered (metrics-server not installed): the group is absent from discovery and its paths are 404.
    NotRegistered,
}

/// The body of the aggregator's 503 (Go's `http.Error(w, "service unavailable", 503)`).
pub const UNAVAILABLE_BODY: &str = "service unavailable\n";
/// What a path of a group no APIService serves gets (Go's `http.NotFound`).
pub const NOT_REGISTERED_BODY: &str = "404 page not found\n";

/// `metav1.Duration` text, as Go's `time.Duration.String()` writes it: `15s`, `10.808s`, `1m0s`, `500ms`.
pub fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => (n as f64 / 1e3, "µs"),
            n => (n as f64 / 1e6, "ms"),
        };
        return format!("{value}{unit}");
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = (nanos % 60_000_000_000) as f64 / 1e9;
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// The stored sample of one pod (what [`crate::StandIn::set_pod_metrics_at`] records).
pub fn sample(namespace: &str, pod: &str, containers: Vec<Value>, timestamp: SystemTime, window: Duration) -> Value {
    json!({
        "metadata": {"name": pod, "namespace": namespace},
        "timestamp": meta::timestamp(timestamp),
        "window": go_duration(window),
        "containers": containers,
    })
}

/// The PodMetrics of `pod` built from its stored sample, as served at this moment.
fn pod_metrics(pod: &Value, sample: &Value) -> Value {
    let mut metadata = json!({
        "name": pod["metadata"]["name"],
        "namespace": pod["metadata"]["namespace"],
        "creationTimestamp": meta::timestamp(SystemTime::now()),
    });
    if pod["metadata"]["labels"].as_object().is_some_and(|labels| !labels.is_empty()) {
        metadata["labels"] = pod["metadata"]["labels"].clone();
    }
    json!({
        "metadata": metadata,
        "timestamp": sample["timestamp"],
        "window": sample["window"],
        "containers": sample["containers"],
    })
}

fn pods_type(store: &Store) -> ResourceType {
    store.find_type("", "v1", "pods").expect("pods are built in")
}

/// LIST PodMetrics: the selected pods that have a sample.
pub fn list(store: &Store, rt: &ResourceType, namespace: Option<&str>, options: &ListOptions) -> Value {
    let pods = pods_type(store);
    let items: Vec<Value> = store
        .objects_of(&pods, namespace)
        .filter(|(_, pod)| options.labels.matches(pod) && options.fields.matches(pod))
        .filter_map(|(key, pod)| {
            let sample = store.get(rt, Some(&key.3), &key.4).ok()?;
            Some(pod_metrics(pod, &sample))
        })
        .collect();
    json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": {}, "items": items})
}

/// GET one PodMetrics: 404 for a missing pod (`pods "x" not found`) or a pod without a sample
/// (`pods.metrics.k8s.io "ns/x" not found`), as metrics-server answers.
pub fn get(store: &Store, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let pods = pods_type(store);
    let pod = store.get(&pods, Some(namespace), name)?;
    let sample =
        store.get(rt, Some(namespace), name).map_err(|_| ApiError::not_found(rt, &format!("{namespace}/{name}")))?;
    let mut object = pod_metrics(&pod, &sample);
    object["kind"] = json!(rt.kind);
    object["apiVersion"] = json!(rt.api_version());
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(10_808)), "10.808s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3_725)), "1h2m5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
