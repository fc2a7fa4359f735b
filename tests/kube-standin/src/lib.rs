//! An in-process stand-in for the Kubernetes API server that speaks the real REST protocol (JSON over plain HTTP),
//! for testing controllers with the production `kube` client. See README.md for what it implements and how it
//! differs from a real API server.

mod controller;
mod events;
mod faults;
mod meta;
mod metrics;
mod patch;
mod resources;
mod schema;
mod selector;
mod server;
mod status;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use controller::ControllerSettings;
pub use faults::{Fault, FaultKind, RecordedRequest, UnknownField};
pub use metrics::MetricsApi;
pub use status::ApiError;

use crate::faults::Faults;
use crate::server::{Route, Shared};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot write the kubeconfig {path}: {source}")]
    WriteKubeconfig { path: PathBuf, source: std::io::Error },
    #[error("{path:?} is not the path of one object (expected e.g. /api/v1/namespaces/default/configmaps/NAME)")]
    NotAnObjectPath { path: String },
    #[error("object has no apiVersion/kind served by the stand-in: {api_version}/{kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("the stand-in refused the object: {0}")]
    Api(#[from] ApiError),
}

/// Start-up options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Watch events kept for resuming watches; older resourceVersions get 410 Expired.
    pub history_capacity: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (a real server: about a minute).
    pub bookmark_interval: Duration,
    pub controller: ControllerSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_capacity: 1000,
            bookmark_interval: Duration::from_secs(1),
            controller: ControllerSettings::default(),
        }
    }
}

/// One container's usage for `metrics.k8s.io` PodMetrics, in Kubernetes quantity strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    /// e.g. `"250m"`
    pub cpu: String,
    /// e.g. `"128Mi"`
    pub memory: String,
}

/// A running stand-in API server.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    kubeconfig_dir: PathBuf,
}

impl StandIn {
    /// Starts on a free loopback port with default options.
    pub async fn start() -> Result<Self, StandInError> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Result<Self, StandInError> {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| StandInError::Bind { addr: options.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StandInError::Bind { addr: options.listen, source })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_capacity)),
            faults: Mutex::new(Faults::default()),
            controller: Mutex::new(options.controller),
            metrics_api: Mutex::new(MetricsApi::default()),
            bookmark_interval: options.bookmark_interval,
            server_address: addr.to_string(),
            shutdown: shutdown_rx.clone(),
            watch_generation: watch::channel(0).0,
        });
        // The handler answers bodies over the API server's limit as it does (axum's own limit is lower).
        let router = axum::Router::new()
            .fallback(server::handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let graceful = async move {
                let _ = stop.changed().await;
            };
            // Serving only ends on shutdown; an accept error has nowhere better to go than the test's stderr.
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(graceful).await {
                eprintln!("kube-standin: server error: {error}");
            }
        });
        let controller = tokio::spawn(controller::run(shared.clone()));
        let kubeconfig_dir = std::env::temp_dir().join(format!("kube-standin-{}-{}", std::process::id(), addr.port()));
        Ok(Self { addr, shared, shutdown, tasks: vec![server, controller], kubeconfig_dir })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig pointing at the stand-in over plain HTTP, no credentials, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-standin\n  cluster:\n    server: {}\ncontexts:\n\
             - name: kube-standin\n  context:\n    cluster: kube-standin\n    user: kube-standin\n    namespace: default\n\
             current-context: kube-standin\nusers:\n- name: kube-standin\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to a file in the temp directory and returns its path.
    pub fn kubeconfig(&self) -> Result<PathBuf, StandInError> {
        let path = self.kubeconfig_dir.join("kubeconfig");
        std::fs::create_dir_all(&self.kubeconfig_dir)
            .and_then(|()| std::fs::write(&path, self.kubeconfig_yaml()))
            .map_err(|source| StandInError::WriteKubeconfig { path: path.clone(), source })?;
        Ok(path)
    }

    /// Creates an object as a POST would, except that its namespace is created if missing and its `status` is kept
    /// (so a test can seed e.g. a Running pod). Returns the stored object.
    pub fn insert(&self, object: Value) -> Result<Value, StandInError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let mut store = self.shared.store();
        let rt = store.type_for_kind(&api_version, &kind).ok_or(StandInError::UnknownKind { api_version, kind })?;
        let namespace = rt.namespaced.then(|| object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned());
        if let Some(namespace) = &namespace {
            store.ensure_namespace(namespace);
        }
        Ok(store.create(&rt, namespace.as_deref(), object, false, true)?)
    }

    fn object_target(store: &Store, path: &str) -> Result<server::ResourceTarget, StandInError> {
        match server::parse_route(store, path) {
            Ok(Route::Resource(target)) if target.name.is_some() && target.subresource.is_none() => Ok(*target),
            _ => Err(StandInError::NotAnObjectPath { path: path.to_owned() }),
        }
    }

    /// The object at a REST path such as `/apis/apps/v1/namespaces/default/deployments/web`, if it exists.
    pub fn get(&self, path: &str) -> Option<Value> {
        let store = self.shared.store();
        let target = Self::object_target(&store, path).ok()?;
        store.get(&target.rt, target.namespace.as_deref(), target.name.as_deref()?).ok()
    }

    /// Replaces the status of the object at `path` (bumps its resourceVersion, notifies watchers). For
    /// Deployments and StatefulSets, turn the controller off first or it will overwrite the status.
    pub fn set_status(&self, path: &str, status: Value) -> Result<Value, StandInError> {
        let mut store = self.shared.store();
        let target = Self::object_target(&store, path)?;
        let name = target.name.as_deref().unwrap_or_default();
        Ok(store.set_status(&target.rt, target.namespace.as_deref(), name, status)?)
    }

    /// Sets (or replaces) the `metrics.k8s.io/v1beta1` sample of one pod, taken now over a 15 s window. As with
    /// metrics-server, it is served only while the pod exists, with the pod's current labels (see `metrics.rs`).
    pub fn set_pod_metrics(&self, namespace: &str, pod: &str, containers: &[ContainerUsage]) -> Value {
        self.set_pod_metrics_at(namespace, pod, containers, SystemTime::now(), Duration::from_secs(15))
    }

    /// [`Self::set_pod_metrics`] with the sample's `timestamp` (end of the window) and `window` given.
    pub fn set_pod_metrics_at(
        &self,
        namespace: &str,
        pod: &str,
        containers: &[ContainerUsage],
        timestamp: SystemTime,
        window: Duration,
    ) -> Value {
        let containers: Vec<Value> =
            containers.iter().map(|c| json!({"name": c.name, "usage": {"cpu": c.cpu, "memory": c.memory}})).collect();
        let mut store = self.shared.store();
        let rt = store.find_type(metrics::GROUP, "v1beta1", "pods").expect("metrics are built in");
        store.upsert_unchecked(&rt, Some(namespace), metrics::sample(namespace, pod, containers, timestamp, window))
    }

    /// Makes metrics-server available, down (503 from the aggregator) or not installed (404, no discovery).
    pub fn set_metrics_api(&self, state: MetricsApi) {
        *self.shared.metrics_api.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Removes a pod's metrics (as metrics-server does once a pod is gone).
    pub fn remove_pod_metrics(&self, namespace: &str, pod: &str) {
        let mut store = self.shared.store();
        let rt = store.find_type(metrics::GROUP, "v1beta1", "pods").expect("metrics are built in");
        store.remove_unchecked(&rt, Some(namespace), pod);
    }

    /// Makes the next matching requests fail; see [`Fault`].
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.faults().inject(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// How many requests with this HTTP method (`"GET"`, `"PUT"`, ...) hit exactly this path (query excluded).
    /// Watches count as GETs on the collection path.
    pub fn request_count(&self, method: &str, path: &str) -> u64 {
        self.shared.faults().count(method, path)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.faults().log()
    }

    /// Every field a custom resource's schema pruned from a request body so far (what a real API server drops
    /// with an `unknown field` warning): a test can assert a client writes nothing the CRD does not declare.
    pub fn unknown_fields(&self) -> Vec<UnknownField> {
        self.shared.faults().unknown_fields()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().current_resource_version()
    }

    /// Drops the watch history, so resuming any earlier resourceVersion gets 410 Expired, and cuts every open
    /// watch, so clients resume now: what an etcd compaction plus an API server restart look like to a client.
    pub fn expire_watches(&self) {
        self.shared.store().compact();
        self.shared.watch_generation.send_modify(|generation| *generation += 1);
    }

    /// Cuts every open watch without touching the history (clients resume from their last resourceVersion).
    pub fn cut_watches(&self) {
        self.shared.watch_generation.send_modify(|generation| *generation += 1);
    }

    fn controller_settings(&self) -> std::sync::MutexGuard<'_, ControllerSettings> {
        self.shared.controller.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long scaled-up Deployment/StatefulSet replicas take to become ready and available.
    pub fn set_ready_delay(&self, delay: Duration) {
        self.controller_settings().ready_delay = delay;
    }

    /// Whether the workload controller's pods become ready (as if nodes ran them; the default) or never do (a
    /// cluster without nodes: `readyReplicas` absent).
    pub fn set_pods_run(&self, run: bool) {
        self.controller_settings().pods_run = run;
    }

    /// Turns the built-in workload controller on or off.
    pub fn set_controller_enabled(&self, enabled: bool) {
        self.controller_settings().enabled = enabled;
    }

    /// Stops serving: open watches end, the listener closes.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let _ = std::fs::remove_dir_all(&self.kubeconfig_dir);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Part;

    #[test]
    fn status_subresource_writes_only_status() {
        let mut store = Store::new(100);
        let rt = store.find_type("apps", "v1", "deployments").unwrap();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 9},
        });
        let created = store.create(&rt, Some("default"), deployment, false, false).unwrap();
        assert_eq!(created["status"], json!({}));
        assert_eq!(created["metadata"]["generation"], 1);
        let mut change = created.clone();
        change["spec"]["replicas"] = json!(3);
        change["status"] = json!({"replicas": 7});
        let written = store.write(&rt, Some("default"), "web", change, Part::Main, false).unwrap();
        assert_eq!(written["status"], json!({}));
        assert_eq!(written["metadata"]["generation"], 2);
        let mut status = written.clone();
        status["spec"]["replicas"] = json!(50);
        status["status"] = json!({"replicas": 3});
        let written = store.write(&rt, Some("default"), "web", status, Part::Status, false).unwrap();
        assert_eq!(written["spec"]["replicas"], 3);
        assert_eq!(written["status"]["replicas"], 3);
        assert_eq!(written["metadata"]["generation"], 2);
    }

    #[test]
    fn unchanged_writes_keep_the_resource_version() {
        let mut store = Store::new(100);
        let rt = store.find_type("", "v1", "configmaps").unwrap();
        let created = store
            .create(&rt, Some("default"), json!({"metadata": {"name": "c"}, "data": {"k": "v"}}), false, false)
            .unwrap();
        let again = store.write(&rt, Some("default"), "c", created.clone(), Part::Main, false).unwrap();
        assert_eq!(again["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    }
}
