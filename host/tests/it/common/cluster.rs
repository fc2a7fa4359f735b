//! The controller's test bench: the in-repo API stand-in with the CRD installed, the production controller
//! running against it, and plugin components to put in ConfigMaps.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::controller::lease::{self, Leadership, LeaseConfig};
use ballast::controller::reconcile::{Controller, ControllerOptions, PolicySource};
use ballast::export::{Metrics, Readiness};
use ballast::policy::plugins::PluginFiles;
use ballast::runtime::RuntimeLimits;
use ballast::sources::bullmq::{BullmqSource, ConnectOptions};
use ballast::sources::live::LiveObserver;
use ballast::spec::ScalingPolicy;
use ballast::testing;
use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use kube_standin::StandIn;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The Deployment every test cluster has.
pub const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/web";

pub fn plugin_file(name: &str) -> Vec<u8> {
    ballast_test_plugins::read(name)
}

/// The component with a custom section appended: the same plugin, a different build (and digest).
pub fn rebuilt(component: &[u8], build: &str) -> Vec<u8> {
    let name = b"ballast-test-build";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(build.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 section size");
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The stand-in API server, a client for the test's own requests, and one for the host under test (its requests
/// carry the service account's token, so they can be told apart and checked against deploy/base/rbac.yaml).
pub struct Cluster {
    pub standin: StandIn,
    pub client: kube::Client,
    pub host_client: kube::Client,
}

/// Every cluster checks at its end that the host did nothing deploy/base/rbac.yaml would forbid, and that no write
/// (the host's or the test's) carried a field the CRD schema does not declare, which a real API server would drop.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            super::rbac::assert_allowed(&self.standin.requests(), HOST_USER);
            let unknown = self.standin.unknown_fields();
            assert!(unknown.is_empty(), "writes carried fields the CRD schema prunes: {unknown:?}");
        }
    }
}

/// The user the host's requests are made as: the service account of deploy/base.
pub const HOST_USER: &str = "system:serviceaccount:ballast-system:ballast";

/// A stand-in API server with the CRD installed and a Deployment `default/web` at 1 replica.
pub async fn cluster() -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BALLAST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let standin = StandIn::start().await.expect("starting the API stand-in");
    let config = kube::Config::new(standin.url().parse().expect("url"));
    let client = kube::Client::try_from(config.clone()).expect("client");
    let mut host_config = config;
    host_config.auth_info.token = Some(HOST_USER.to_owned().into());
    let host_client = kube::Client::try_from(host_config).expect("host client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScalingPolicy::crd()).await.expect("installing the CRD");
    // The host's own namespace, where its leader Lease lives (deploy/base/namespace.yaml).
    standin
        .insert(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "ballast-system" } }))
        .expect("creating namespace ballast-system");
    let cluster = Cluster { standin, client, host_client };
    cluster.insert_deployment("default", "web", 1);
    cluster
}

impl Cluster {
    /// A Deployment of one model container, labelled `app: NAME`.
    pub fn insert_deployment(&self, namespace: &str, name: &str, replicas: u32) {
        self.standin
            .insert(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": name, "namespace": namespace },
                "spec": {
                    "replicas": replicas,
                    "selector": { "matchLabels": { "app": name } },
                    "template": {
                        "metadata": { "labels": { "app": name } },
                        "spec": { "containers": [{ "name": "model", "image": "model:1" }] }
                    }
                }
            }))
            .unwrap_or_else(|e| panic!("creating Deployment {namespace}/{name}: {e}"));
    }

    pub fn replicas(&self) -> u64 {
        self.standin.get(DEPLOYMENT).expect("deployment")["spec"]["replicas"].as_u64().unwrap_or(0)
    }

    pub fn policy(&self, name: &str) -> Value {
        self.standin
            .get(&format!("/apis/ballast.dev/v1alpha1/namespaces/default/scalingpolicies/{name}"))
            .unwrap_or_default()
    }

    pub async fn create_policy(&self, name: &str, spec: Value) {
        let policy: ScalingPolicy = serde_json::from_value(json!({
            "apiVersion": "ballast.dev/v1alpha1", "kind": "ScalingPolicy",
            "metadata": { "name": name, "namespace": "default" },
            "spec": spec,
        }))
        .expect("a valid ScalingPolicy");
        let api: Api<ScalingPolicy> = Api::namespaced(self.client.clone(), "default");
        api.create(&PostParams::default(), &policy).await.expect("creating the ScalingPolicy");
    }

    pub async fn delete_policy(&self, name: &str) {
        let api: Api<ScalingPolicy> = Api::namespaced(self.client.clone(), "default");
        api.delete(name, &Default::default()).await.expect("deleting the ScalingPolicy");
    }

    /// A policy on Deployment `web` decided by the hostile test plugin (ConfigMap `hostile`) with fast `behavior`;
    /// `overrides` replaces or adds top-level spec fields (e.g. `config`, `maxReplicas`, `target`).
    pub async fn create_hostile_policy(&self, name: &str, overrides: Value) {
        self.put_plugin_config_map("hostile", "plugin.wasm", plugin_file("hostile.wasm")).await;
        let mut spec = json!({
            "target": { "name": "web" },
            "minReplicas": 1, "maxReplicas": 6,
            "plugin": { "configMap": { "name": "hostile", "key": "plugin.wasm" } },
            "behavior": fast_behavior(),
        });
        for (field, value) in overrides.as_object().expect("an object of spec fields") {
            spec[field] = value.clone();
        }
        self.create_policy(name, spec).await;
    }

    /// ConfigMap `default/NAME` labelled as a plugin, with the component under `key`.
    pub async fn put_plugin_config_map(&self, name: &str, key: &str, bytes: Vec<u8>) {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("ballast.dev/plugin".to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(key.to_owned(), ByteString(bytes))])),
            ..ConfigMap::default()
        };
        self.apply(&cm).await;
    }

    /// Creates a namespaced object, or replaces the one of that name (as `kubectl apply` does for whole objects).
    pub async fn apply<K>(&self, object: &K)
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let name = object.name_any();
        let what = format!("{} {name}", K::kind(&K::DynamicType::default()));
        let api: Api<K> = Api::namespaced(self.client.clone(), &object.namespace().unwrap_or_else(|| "default".into()));
        match api.get_opt(&name).await.unwrap_or_else(|e| panic!("reading {what}: {e}")) {
            Some(existing) => {
                let mut object = object.clone();
                object.meta_mut().resource_version = existing.resource_version();
                api.replace(&name, &PostParams::default(), &object)
                    .await
                    .unwrap_or_else(|e| panic!("updating {what}: {e}"));
            }
            None => {
                api.create(&PostParams::default(), object).await.unwrap_or_else(|e| panic!("creating {what}: {e}"));
            }
        }
    }

    pub async fn events(&self, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&Default::default()).await.expect("listing Events");
        list.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
    }

    /// Waits until Events of `reason` count at least `count` occurrences (a series counts its repeats), failing
    /// after `timeout` with `what` and the Events seen. Events are published in the background, so they may land
    /// after what they report.
    pub async fn await_events(&self, reason: &str, count: i32, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events(reason).await;
            if events.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum::<i32>() >= count {
                return;
            }
            assert!(Instant::now() < deadline, "expected {what}, got {events:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `check` every 20 ms until it returns Some, or fails naming `what` after `timeout`.
pub async fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How a test host runs: its identity, its Redis, its lease, where its policies come from, its compile cache.
pub struct HostConfig<'a> {
    pub identity: &'a str,
    pub redis_url: Option<&'a str>,
    pub lease: Option<LeaseConfig>,
    pub policies: PolicySource,
    pub cache_dir: Option<&'a Path>,
    /// Address space a plugin's compilation may take (the host's default when absent).
    pub compile_memory_bytes: Option<usize>,
    /// The host's `--plugin-dir`s.
    pub plugin_dirs: Vec<PathBuf>,
}

impl<'a> HostConfig<'a> {
    /// A host with no Redis, no lease (always the leader) and the cluster's policies.
    pub fn new(identity: &'a str) -> Self {
        HostConfig {
            identity,
            redis_url: None,
            lease: None,
            policies: PolicySource::Cluster,
            cache_dir: None,
            compile_memory_bytes: None,
            plugin_dirs: Vec::new(),
        }
    }
}

pub struct Host {
    /// What the host exports on /metrics.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    lease_task: Option<tokio::task::JoinHandle<()>>,
}

impl Host {
    pub fn start(cluster: &Cluster, identity: &str, redis_url: Option<&str>, lease: Option<LeaseConfig>) -> Host {
        Self::start_with(cluster, HostConfig { redis_url, lease, ..HostConfig::new(identity) })
    }

    /// A host on the cluster, as the service account of deploy/base.
    pub fn start_with(cluster: &Cluster, config: HostConfig) -> Host {
        let client = &cluster.host_client;
        let HostConfig { identity, redis_url, lease, policies, cache_dir, compile_memory_bytes, plugin_dirs } = config;
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let bullmq = redis_url.map(|url| {
            BullmqSource::new(url, ConnectOptions { timeout: Duration::from_secs(2), ca_cert_pem: None })
                .expect("redis url")
        });
        let observer =
            LiveObserver::new(bullmq, None, Duration::from_secs(5), Duration::from_secs(60), metrics.clone())
                .with_secret_connections(client.clone());
        // Plugins compile in the `ballast` binary's compile child, as in production.
        let limits = RuntimeLimits {
            cache_dir: cache_dir.map(Path::to_path_buf),
            compiler: Some(env!("CARGO_BIN_EXE_ballast").into()),
            compile_memory_bytes: compile_memory_bytes.unwrap_or(RuntimeLimits::default().compile_memory_bytes),
            ..RuntimeLimits::default()
        };
        let engine = testing::engine(limits);
        let (shutdown, stop) = watch::channel(false);
        let (leadership, lease_task) = match lease {
            Some(config) => {
                let (leadership, task) = lease::spawn(client.clone(), config, stop.clone());
                (leadership, Some(task))
            }
            None => (Leadership::always(), None),
        };
        let options = ControllerOptions {
            tick: Duration::from_millis(200),
            status_every: Duration::from_secs(1),
            policies,
            instance: identity.into(),
            checks: ballast::config::ClusterChecks::default(),
            requests: ballast::config::Requests::default(),
        };
        let files = PluginFiles::within(&plugin_dirs).expect("plugin dirs");
        let controller = Controller::new(client.clone(), engine, observer, leadership, metrics.clone(), options)
            .with_plugin_files(files);
        let task =
            tokio::spawn(async move { controller.run(Readiness::default(), stop).await.expect("controller run") });
        Host { metrics, shutdown, task, lease_task }
    }

    /// A clean stop: the last status is written and the lease released.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.task.await.expect("controller task");
        if let Some(task) = self.lease_task {
            task.await.expect("lease task");
        }
    }

    /// A crash: nothing is written or released.
    pub fn kill(self) {
        self.task.abort();
        if let Some(task) = self.lease_task {
            task.abort();
        }
    }
}

pub fn fast_behavior() -> Value {
    json!({
        "scaleUp": { "stabilizationWindowSeconds": 0, "policies": [{ "type": "Pods", "value": 20, "periodSeconds": 1 }] },
        "scaleDown": { "stabilizationWindowSeconds": 0, "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 1 }] }
    })
}

pub fn condition(policy: &Value, type_: &str) -> Option<Value> {
    policy["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
}
