//! The reconcile loop of `ballast run`: watches ScalingPolicies and plugin ConfigMaps, keeps a [`Fleet`] in step
//! with them, ticks it while this host leads, and reports each decision in the policy's status and in Events.
//!
//! Everything that changes the fleet (spec changes, deletions, plugin swaps) happens on this one task between
//! ticks, so a decision in flight always finishes on the plugin it started with. One bad policy (invalid spec,
//! missing or refused plugin) gets conditions and Events and is skipped; the others go on.
//!
//! This file is the loop (watches -> sync -> tick -> status); `loader` carries out what each plugin's loading
//! state machine (`loading`) asks for and runs the loads off the loop; `output` writes status, Events
//! and the decision metrics.

mod loader;
mod output;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::Resource;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, mpsc, watch};

use super::ControllerError;
use super::conflicts::Claims;
use super::events::EventRecorder;
use super::lease::Leadership;
use super::loading::{Role, Roles, Slot};
use super::metrics_api::MetricsApi;
use super::scale::KubeScaleTarget;
use crate::autoscaler::{Fleet, ManagedService, Observer};
use crate::config::{ClusterChecks, Requests};
use crate::decision::{self, ServiceMemory};
use crate::export::{Metrics, Readiness};
use crate::oci::OciStore;
use crate::policy::canary::CanaryInput;
use crate::policy::documents::{PolicyDocuments, service_key};
use crate::policy::plugins::{PLUGIN_LABEL_SELECTOR, PluginFiles};
use crate::policy::status::{ABLE_TO_SCALE, SCALING_ACTIVE, ScalingPolicyStatus};
use crate::runtime::{LogRelay, Plugin, PolicyEngine};
use crate::spec::{ScalingPolicy, ScalingPolicySpec, ServiceKey};
use loader::LoadDone;

/// The `reportingController` of Events and the field manager of status writes.
pub(crate) const CONTROLLER_NAME: &str = "ballast.dev/controller";

/// Where the policies come from.
pub enum PolicySource {
    /// Watch ScalingPolicy objects; status and Events are written to them.
    Cluster,
    /// The policies of a file (`ballast run --config FILE|DIR`); nothing is written back but `/scale`. Plugin
    /// ConfigMaps given with them take precedence over the cluster's.
    Fixed(PolicyDocuments),
}

/// How the controller runs: its tick, how often status is written, where policies come from, its name in Events
/// and the cluster checks.
pub struct ControllerOptions {
    /// Time between decisions.
    pub tick: Duration,
    /// Status is written after any decision that changed something, and at least this often.
    pub status_every: Duration,
    pub policies: PolicySource,
    /// This host's name in Events (the pod name in a cluster).
    pub instance: String,
    /// How often the metrics API and other autoscalers are looked for.
    pub checks: ClusterChecks,
    /// `/scale` retries and registry timeouts.
    pub requests: Requests,
}

/// What the loop tracks per policy besides the fleet's [`ManagedService`].
struct ServiceState {
    spec: ScalingPolicySpec,
    generation: Option<i64>,
    object: Option<ObjectReference>,
    status: ScalingPolicyStatus,
    /// Memory restored from status, used when the service's first plugin is loaded.
    restored: Option<ServiceMemory>,
    /// Loading progress of the live and the shadow plugin.
    slots: Roles<Slot>,
    /// A shadow plugin loaded before the live one, attached when the live one arrives.
    pending_shadow: Option<Plugin>,
    /// A new plugin version and when its change was noticed, until its first decision.
    swapped: Option<(Arc<str>, Instant)>,
    last_canary: Option<CanaryInput>,
    dirty: bool,
    last_write: Option<Instant>,
    plugin_failing: bool,
    metrics_missing: bool,
    invalid: Option<String>,
    /// Why another autoscaler's claim on the target keeps this policy from scaling it.
    conflict: Option<String>,
    /// The plugin's log lines, on their way to the host's log.
    log_relay: LogRelay,
}

pub struct Controller<O> {
    client: kube::Client,
    engine: Arc<PolicyEngine>,
    observer: O,
    target: KubeScaleTarget,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    recorder: EventRecorder,
    options: ControllerOptions,
    fleet: Fleet,
    states: BTreeMap<ServiceKey, ServiceState>,
    policies: Option<Store<ScalingPolicy>>,
    config_maps: Store<ConfigMap>,
    oci: Arc<OciStore>,
    /// Where a cluster policy's `plugin.path` may point.
    plugin_files: PluginFiles,
    /// Whether metrics.k8s.io is served, once known.
    metrics_api: Option<MetricsApi>,
    /// Other autoscalers' workloads, once listed.
    claims: Claims,
    loads: (mpsc::UnboundedSender<LoadDone>, mpsc::UnboundedReceiver<LoadDone>),
    was_leader: bool,
}

impl<O: Observer> Controller<O> {
    pub fn new(
        client: kube::Client,
        engine: Arc<PolicyEngine>,
        observer: O,
        leadership: Leadership,
        metrics: Arc<Metrics>,
        options: ControllerOptions,
    ) -> Self {
        // Pulled OCI plugins are cached beside the compiled ones.
        let oci =
            Arc::new(OciStore::new(engine.limits().cache_dir.as_deref()).with_timeouts(options.requests.registry));
        Controller {
            target: KubeScaleTarget::new(
                client.clone(),
                leadership.clone(),
                format!("ballast-{}", options.instance),
                options.requests.scale_retry,
            ),
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME, options.instance.clone()),
            client,
            engine,
            observer,
            leadership,
            metrics,
            options,
            fleet: Fleet::default(),
            states: BTreeMap::new(),
            policies: None,
            config_maps: reflector::store().0,
            oci,
            plugin_files: PluginFiles::Within(Vec::new()),
            metrics_api: None,
            claims: Claims::default(),
            loads: mpsc::unbounded_channel(),
            was_leader: false,
        }
    }

    /// Lets cluster policies load plugin files from these directories (`--plugin-dir`); by default they may not.
    /// Policies given with `--config` are the operator's and may name any file.
    pub fn with_plugin_files(mut self, files: PluginFiles) -> Self {
        self.plugin_files = files;
        self
    }

    /// Runs until `shutdown` turns true, then writes the last status of every policy (if leading).
    pub async fn run(
        mut self,
        readiness: Readiness,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ControllerError> {
        let changed = Arc::new(Notify::new());
        let mut watches = Vec::new();
        if matches!(self.options.policies, PolicySource::Cluster) {
            let api: Api<ScalingPolicy> = Api::all(self.client.clone());
            let (store, task) = watch_into_store(api, watcher::Config::default(), changed.clone());
            self.policies = Some(store);
            watches.push(task);
        }
        let api: Api<ConfigMap> = Api::all(self.client.clone());
        let (store, task) =
            watch_into_store(api, watcher::Config::default().labels(PLUGIN_LABEL_SELECTOR), changed.clone());
        self.config_maps = store;
        watches.push(task);
        let (mut metrics_api, task) = MetricsApi::watch(self.client.clone(), self.options.checks.metrics_api_every);
        watches.push(task);
        let (mut claims, task) = Claims::watch(self.client.clone(), self.options.checks.conflicts_every);
        watches.push(task);
        if let Some(store) = &self.policies {
            let _ = store.wait_until_ready().await;
        }
        let _ = self.config_maps.wait_until_ready().await;
        // Nothing is written before it is known which workloads other autoscalers scale (unless listing them
        // fails for longer than this: then the warning says why, and Ballast scales as if there were none).
        let first_wait = self.options.checks.conflicts_first_wait;
        if tokio::time::timeout(first_wait, claims.wait_for(Option::is_some)).await.is_err() {
            tracing::warn!("no list of HPAs and ScaledObjects after {first_wait:?}; scaling without it");
        }
        self.claims = claims.borrow_and_update().clone().unwrap_or_default();
        readiness.set(true);
        self.sync();

        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut tick_now = false;
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = changed.notified() => self.sync(),
                Ok(()) = metrics_api.changed() => {
                    self.metrics_api = metrics_api.borrow_and_update().clone();
                    self.report_metrics_api();
                }
                Ok(()) = claims.changed() => {
                    self.claims = claims.borrow_and_update().clone().unwrap_or_default();
                    self.report_conflicts();
                }
                Some(done) = self.loads.1.recv() => tick_now = self.apply_load(done),
                _ = ticker.tick() => {
                    tick_now = true;
                    if self.retry_due() {
                        self.sync();
                    }
                }
            }
            let leader = self.leadership.is_leader();
            self.metrics.set_leader(leader);
            if leader && !self.was_leader {
                self.restore_memory();
                // The status restored from the previous leader does not know what this host found out.
                self.report_metrics_api();
            }
            self.was_leader = leader;
            if tick_now && leader {
                self.tick().await;
            }
        }
        if self.leadership.is_leader() {
            let keys: Vec<ServiceKey> = self.states.keys().cloned().collect();
            for key in keys {
                self.write_status(&key).await;
            }
        }
        watches.iter().for_each(|task| task.abort());
        Ok(())
    }

    /// Whether a retryable failure's backoff has run out (nothing else would trigger the retry).
    fn retry_due(&self) -> bool {
        let now = Instant::now();
        self.states.values().any(|s| s.slots.iter().any(|slot| slot.retry_due(now)))
    }

    fn policy_list(&self) -> Vec<Arc<ScalingPolicy>> {
        match (&self.policies, &self.options.policies) {
            (Some(store), _) => store.state(),
            (None, PolicySource::Fixed(documents)) => documents.policies.iter().cloned().map(Arc::new).collect(),
            (None, PolicySource::Cluster) => Vec::new(),
        }
    }

    fn writes_objects(&self) -> bool {
        matches!(self.options.policies, PolicySource::Cluster)
    }

    /// Brings the fleet in line with the policies and ConfigMaps: new and changed specs, deleted policies,
    /// plugin versions to load.
    fn sync(&mut self) {
        let policies = self.policy_list();
        let mut seen = Vec::with_capacity(policies.len());
        for policy in policies {
            let key = service_key(&policy);
            seen.push(key.clone());
            let mut first_seen = false;
            let state = self.states.entry(key.clone()).or_insert_with(|| {
                first_seen = true;
                let status = policy.status.clone().unwrap_or_default();
                ServiceState {
                    spec: policy.spec.clone(),
                    generation: None,
                    object: Some(policy.object_ref(&())),
                    restored: status.memory.clone(),
                    status,
                    slots: Roles::default(),
                    pending_shadow: None,
                    swapped: None,
                    last_canary: None,
                    dirty: true,
                    last_write: None,
                    plugin_failing: false,
                    metrics_missing: false,
                    invalid: None,
                    conflict: None,
                    log_relay: LogRelay::default(),
                }
            });
            state.generation = policy.metadata.generation;
            state.object = Some(policy.object_ref(&()));
            if let Err(why) = policy.spec.check().map_err(|e| format!("ScalingPolicy {key}: {e}")) {
                if state.invalid.as_ref() != Some(&why) {
                    tracing::warn!("{why}");
                    state.status.set_condition(SCALING_ACTIVE, false, "InvalidSpec", &why);
                    state.dirty = true;
                    state.invalid = Some(why);
                }
                if let Some(service) = self.fleet.services.remove(&key) {
                    state.restored = Some(service.memory);
                }
                continue;
            }
            state.invalid = None;
            if first_seen || state.spec != policy.spec {
                self.metrics.record_spec(&key.namespace, &key.name, &policy.spec);
            }
            if state.spec != policy.spec {
                state.spec = policy.spec.clone();
                state.slots[Role::Live].spec_changed();
                state.slots[Role::Shadow].spec_changed();
                state.dirty = true;
                if let Some(old) = self.fleet.services.remove(&key) {
                    let mut service = ManagedService::new(policy.spec.clone(), old.decider.plugin)
                        .with_shadow(old.shadow.map(|shadow| shadow.decider.plugin));
                    service.memory = old.memory;
                    self.fleet.services.insert(key.clone(), service);
                }
            }
            for role in Role::ALL {
                self.sync_plugin(&key, role);
            }
        }
        let gone: Vec<ServiceKey> = self.states.keys().filter(|k| !seen.contains(k)).cloned().collect();
        for key in gone {
            tracing::info!(policy = %key, "policy deleted; no longer scaling it");
            self.metrics.forget_service(&key.namespace, &key.name);
            self.states.remove(&key);
            self.fleet.services.remove(&key);
        }
        self.report_metrics_api();
        self.report_conflicts();
    }

    /// After a fail-over: continue from the memory the previous leader left in status.
    fn restore_memory(&mut self) {
        let policies = self.policy_list();
        for policy in policies {
            let key = service_key(&policy);
            let Some(memory) = policy.status.as_ref().and_then(|s| s.memory.clone()) else { continue };
            if let Some(service) = self.fleet.services.get_mut(&key) {
                service.memory = memory;
            } else if let Some(state) = self.states.get_mut(&key) {
                state.restored = Some(memory);
            }
            if let (Some(state), Some(status)) = (self.states.get_mut(&key), policy.status.clone()) {
                let memory = state.status.memory.take();
                state.status = ScalingPolicyStatus { memory, ..status };
            }
        }
    }

    async fn tick(&mut self) {
        let now_ms = decision::unix_ms();
        let results = self.fleet.tick(&mut self.observer, &mut self.target, now_ms).await;
        for result in results {
            match result {
                Ok(tick) => self.after_decision(tick),
                Err(failure) => {
                    let message = failure.to_string();
                    tracing::warn!("{message}");
                    if let Some(state) = self.states.get_mut(failure.key())
                        && state.status.set_condition(ABLE_TO_SCALE, false, "FailedGetScale", &message)
                    {
                        state.dirty = true;
                        let object = state.object.clone();
                        self.publish(object, EventType::Warning, "FailedGetScale", message);
                    }
                }
            }
        }
        self.export_problems();
        let keys: Vec<ServiceKey> = self.states.keys().cloned().collect();
        for key in keys {
            let Some(state) = self.states.get(&key) else { continue };
            let due = state.last_write.is_none_or(|at| at.elapsed() >= self.options.status_every);
            if state.dirty || (due && self.fleet.services.contains_key(&key)) {
                self.write_status(&key).await;
            }
        }
    }
}

/// Watches `api` into a reflector store, notifying `changed` after every event. The watch retries with backoff.
fn watch_into_store<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!("watch: {e}"),
            }
        }
    });
    (store, task)
}
