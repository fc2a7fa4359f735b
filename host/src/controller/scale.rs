//! The `/scale` actuator: [`KubeScaleTarget`] reads and writes the scale subresource of any workload that has one
//! (Deployment, StatefulSet, custom resources) through the Kubernetes API.
//!
//! Deployments, StatefulSets and ReplicaSets are read from a watch cache (one watch per kind and namespace that has
//! policies), so a 1 s decision interval costs the API server nothing per tick; other kinds are read through
//! `GET /scale`, since only their `/scale` knows where their replica count lives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::lease::Leadership;
use crate::autoscaler::{ScaleState, ScaleTarget};
use crate::spec::{ScalingPolicySpec, ServiceKey};
use crate::workload::{WorkloadError, describe_target, target_api, target_resource};

/// Attempts for one read or write when the API server answers 409, 429 or 5xx.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ScaleError {
    #[error("{target}: {action}: {source}")]
    Api { target: String, action: &'static str, source: kube::Error },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("{target}: not written: this host is not the leader")]
    NotLeader { target: String },
}

/// Scales workloads through their `/scale` subresource. Writes only while `leadership` says this host leads.
pub(crate) struct KubeScaleTarget {
    client: kube::Client,
    leadership: Leadership,
    field_manager: String,
    first_retry: Duration,
    /// Watch caches of workload objects by (apiVersion, kind, namespace), started on first use.
    caches: HashMap<(String, String, String), WatchCache>,
    /// Replica counts this host wrote that the cache may not show yet, with the resourceVersion the cached object
    /// had before the write: while the cache still has that version, the written count is the current one.
    written: HashMap<ServiceKey, (u32, Option<String>)>,
}

/// Workload objects of one kind in one namespace, kept current by a watch.
struct WatchCache {
    resource: ApiResource,
    store: Store<DynamicObject>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The kinds whose replica count and readiness are known fields (`spec.replicas`, `status.readyReplicas`).
const CACHED_KINDS: [(&str, &str); 3] =
    [("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "ReplicaSet")];

impl KubeScaleTarget {
    /// `field_manager` names this host in the API server's records of `/scale` writes (e.g. `ballast-POD`).
    /// A request that conflicted or could not connect is retried after `first_retry`, doubled each time.
    pub(crate) fn new(
        client: kube::Client,
        leadership: Leadership,
        field_manager: String,
        first_retry: Duration,
    ) -> Self {
        KubeScaleTarget {
            client,
            leadership,
            field_manager,
            first_retry,
            caches: HashMap::new(),
            written: HashMap::new(),
        }
    }

    fn api(&self, key: &ServiceKey, spec: &ScalingPolicySpec) -> Result<Api<DynamicObject>, ScaleError> {
        Ok(target_api(&self.client, key, &spec.target)?)
    }

    /// The target object from the watch cache, starting the watch of its kind and namespace on first use. `None`
    /// for kinds that are not cached, and until the watch has listed.
    fn cached(&mut self, key: &ServiceKey, spec: &ScalingPolicySpec) -> Option<Arc<DynamicObject>> {
        let target = &spec.target;
        if !CACHED_KINDS.contains(&(target.api_version.as_str(), target.kind.as_str())) {
            return None;
        }
        let id = (target.api_version.clone(), target.kind.clone(), key.namespace.clone());
        let cache = match self.caches.get(&id) {
            Some(cache) => cache,
            None => {
                let resource = target_resource(key, target).ok()?;
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &key.namespace, &resource);
                let writer = reflector::store::Writer::new(resource.clone());
                let store = writer.as_reader();
                let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
                let what = format!("{} in namespace {}", target.kind, key.namespace);
                let task = tokio::spawn(async move {
                    let mut stream = std::pin::pin!(stream);
                    while let Some(event) = stream.next().await {
                        if let Err(e) = event {
                            tracing::warn!("watching {what}: {e}");
                        }
                    }
                });
                self.caches.entry(id).or_insert(WatchCache { resource, store, task })
            }
        };
        cache.store.get(&ObjectRef::new_with(&target.name, cache.resource.clone()).within(&key.namespace))
    }
}

/// Replica counts from a cached Deployment, StatefulSet or ReplicaSet (`readyReplicas` is omitted when 0).
fn state_of(object: &DynamicObject) -> Option<ScaleState> {
    let current = object.data.pointer("/spec/replicas")?.as_u64()?;
    let ready = object.data.pointer("/status/readyReplicas").and_then(|v| v.as_u64()).unwrap_or(0);
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Some(ScaleState { current: count(current), ready: count(ready) })
}

/// `Deployment default/whisper (policy default/whisper)`: how errors name the target.
fn describe(key: &ServiceKey, spec: &ScalingPolicySpec) -> String {
    describe_target(key, &spec.target)
}

/// Whether an API error is worth another attempt: conflicts, throttling and server errors.
fn retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500..=599),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `call` until it succeeds, fails with a non-retryable error, or [`ATTEMPTS`] are spent.
async fn with_retries<T, F: Future<Output = kube::Result<T>>>(
    first_retry: Duration,
    mut call: impl FnMut() -> F,
) -> kube::Result<T> {
    let mut backoff = first_retry;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::debug!("retrying after {e} (attempt {attempt} of {ATTEMPTS})");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

impl ScaleTarget for KubeScaleTarget {
    type Error = ScaleError;

    async fn read(&mut self, key: &ServiceKey, spec: &ScalingPolicySpec) -> Result<ScaleState, ScaleError> {
        let api = self.api(key, spec)?;
        if let Some(object) = self.cached(key, spec)
            && let Some(mut state) = state_of(&object)
        {
            match self.written.get(key) {
                Some((replicas, before)) if object.resource_version() == *before => state.current = *replicas,
                _ => {
                    self.written.remove(key);
                }
            }
            return Ok(state);
        }
        let name = spec.target.name.as_str();
        let api_error = |action, source| ScaleError::Api { target: describe(key, spec), action, source };
        let scale =
            with_retries(self.first_retry, || api.get_scale(name)).await.map_err(|e| api_error("reading /scale", e))?;
        let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32;
        let object =
            with_retries(self.first_retry, || api.get(name)).await.map_err(|e| api_error("reading status", e))?;
        // Workloads without `readyReplicas` (custom resources) count the scale's observed replicas as ready.
        let ready = object
            .data
            .pointer("/status/readyReplicas")
            .and_then(|v| v.as_u64())
            .or_else(|| scale.status.map(|s| s.replicas.max(0) as u64))
            .unwrap_or(0);
        Ok(ScaleState { current, ready: u32::try_from(ready).unwrap_or(u32::MAX) })
    }

    async fn write(&mut self, key: &ServiceKey, spec: &ScalingPolicySpec, replicas: u32) -> Result<(), ScaleError> {
        if !self.leadership.is_leader() {
            return Err(ScaleError::NotLeader { target: describe(key, spec) });
        }
        let api = self.api(key, spec)?;
        let before = self.cached(key, spec).map(|object| object.resource_version());
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        let params = PatchParams { field_manager: Some(self.field_manager.clone()), ..PatchParams::default() };
        with_retries(self.first_retry, || api.patch_scale(&spec.target.name, &params, &patch))
            .await
            .map_err(|source| ScaleError::Api { target: describe(key, spec), action: "writing /scale", source })?;
        match before {
            Some(before) => self.written.insert(key.clone(), (replicas, before)),
            None => self.written.remove(key),
        };
        Ok(())
    }
}
