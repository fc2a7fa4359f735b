//! The reconcile loop of `ballast run`: watches ScalingPolicies and plugin ConfigMaps, keeps a [`Fleet`] in step
//! with them, ticks it while this host leads, and reports each decision in the policy's status and in Events.
//!
//! Everything that changes the fleet (spec changes, deletions, plugin swaps) happens on this one task between
//! ticks, so a decision in flight always finishes on the plugin it started with. One bad policy (invalid spec,
//! missing or refused plugin) gets conditions and Events and is skipped; the others go on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, mpsc, watch};

use super::ControllerError;
use super::conflicts::Claims;
use super::events::EventRecorder;
use super::lease::Leadership;
use super::metrics_api::MetricsApi;
use super::scale::KubeScaleTarget;
use crate::autoscaler::{Fleet, ManagedService, Observer, TickResult};
use crate::config::ClusterChecks;
use crate::decision::{self, DecisionRecord, ServiceMemory};
use crate::export::{Metrics, Readiness};
use crate::observation::Observation;
use crate::oci::OciStore;
use crate::policy::canary::{self, CanaryInput, LoadedPlugin};
use crate::policy::documents::{PolicyDocuments, service_key};
use crate::policy::plugins::{self, Located, OciPull, PLUGIN_LABEL_SELECTOR, PluginFile, PluginFiles, PluginSource};
use crate::policy::status::{
    self, ABLE_TO_SCALE, PLUGIN_READY, RESOURCE_METRICS, SCALING_ACTIVE, SHADOW_READY, ScalingPolicyStatus,
};
use crate::runtime::{LogRelay, Plugin, PolicyEngine};
use crate::spec::{ScalingPolicy, ScalingPolicySpec, ServiceKey};

/// The `reportingController` of Events and the field manager of status writes.
pub const CONTROLLER_NAME: &str = "ballast.dev/controller";

/// Where the policies come from.
pub enum PolicySource {
    /// Watch ScalingPolicy objects; status and Events are written to them.
    Cluster,
    /// The policies of a file (`ballast run --config FILE|DIR`); nothing is written back but `/scale`. Plugin
    /// ConfigMaps given with them take precedence over the cluster's.
    Fixed(PolicyDocuments),
}

pub struct RunOptions {
    /// Time between decisions.
    pub tick: Duration,
    /// Status is written after any decision that changed something, and at least this often.
    pub status_every: Duration,
    pub policies: PolicySource,
    /// This host's name in Events (the pod name in a cluster).
    pub instance: String,
    /// How often the metrics API and other autoscalers are looked for.
    pub checks: ClusterChecks,
}

/// Which of a policy's plugins a load is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Live,
    Shadow,
}

/// A plugin load (and, for OCI plugins, the pull before it) that finished off the runtime.
struct LoadDone {
    key: ServiceKey,
    role: Role,
    /// What the slot's `loading` was set to: the component's digest, or an OCI manifest digest while pulling.
    digest: String,
    noticed: Instant,
    result: Result<LoadedPlugin, LoadFailure>,
}

struct LoadFailure {
    message: String,
    /// The digest not to load again until something changes: the component's once it is known.
    digest: String,
    /// A failed pull (registry unreachable, credentials missing) or a canary that only ran out of time is retried
    /// after a backoff; a refused component is not.
    retry: bool,
    /// The Event's and the condition's reason: `PluginPullFailed`, `PluginUnavailable` (a file not read) or
    /// `PluginRejected`.
    reason: &'static str,
}

/// A version that was refused, so it is not retried until the spec changes (or, for a retryable failure, `retry_at`).
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    digest: String,
    pin: Option<String>,
    retry_at: Option<Instant>,
}

impl Refusal {
    fn holds(&self, digest: &str, pin: &Option<String>) -> bool {
        self.digest == digest && self.pin == *pin && self.retry_at.is_none_or(|at| Instant::now() < at)
    }
}

/// Wait before trying again after `failures` retryable failures in a row: 5 s doubling up to 5 minutes.
fn retry_backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)).min(300))
}

/// Loading progress of one plugin of a policy.
#[derive(Default)]
struct PluginSlot {
    /// Digest being loaded (or pulled).
    loading: Option<String>,
    refused: Option<Refusal>,
    /// Retryable failures (pulls, canary timeouts) in a row, for the backoff.
    failures: u32,
    /// What the running plugin was loaded from (its digest, or a plugin file's version), so an unchanged file is
    /// not read again.
    loaded_from: Option<String>,
}

/// What the loop tracks per policy besides the fleet's [`ManagedService`].
struct ServiceState {
    spec: ScalingPolicySpec,
    generation: Option<i64>,
    object: Option<ObjectReference>,
    status: ScalingPolicyStatus,
    /// Memory restored from status, used when the service's first plugin is loaded.
    restored: Option<ServiceMemory>,
    live: PluginSlot,
    shadow: PluginSlot,
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
    options: RunOptions,
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
        options: RunOptions,
    ) -> Self {
        // Pulled OCI plugins are cached beside the compiled ones.
        let oci = Arc::new(OciStore::new(engine.limits().cache_dir.as_deref()));
        Controller {
            target: KubeScaleTarget::new(client.clone(), leadership.clone(), format!("ballast-{}", options.instance)),
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
                Some(done) = self.loads.1.recv() => tick_now = self.apply_load(done).await,
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
        let due = |slot: &PluginSlot| {
            slot.loading.is_none() && slot.refused.as_ref().and_then(|r| r.retry_at).is_some_and(|at| at <= now)
        };
        self.states.values().any(|s| due(&s.live) || due(&s.shadow))
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
            let state = self.states.entry(key.clone()).or_insert_with(|| {
                let status = policy.status.clone().unwrap_or_default();
                ServiceState {
                    spec: policy.spec.clone(),
                    generation: None,
                    object: Some(policy.object_ref(&())),
                    restored: status.memory.clone(),
                    status,
                    live: PluginSlot::default(),
                    shadow: PluginSlot::default(),
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
            if state.spec != policy.spec {
                state.spec = policy.spec.clone();
                state.live.refused = None;
                state.shadow.refused = None;
                state.live.loaded_from = None;
                state.shadow.loaded_from = None;
                state.dirty = true;
                if let Some(old) = self.fleet.services.remove(&key) {
                    let mut service = ManagedService::new(policy.spec.clone(), old.plugin)
                        .with_shadow(old.shadow.map(|shadow| shadow.plugin));
                    service.memory = old.memory;
                    self.fleet.services.insert(key.clone(), service);
                }
            }
            self.sync_plugin(&key, Role::Live);
            self.sync_plugin(&key, Role::Shadow);
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

    /// The policies' problems as metrics, for alerts: a plugin that is not the one the spec names (its condition's
    /// reason), and a target another autoscaler scales.
    fn export_problems(&self) {
        let not_ready = self.states.iter().flat_map(|(key, state)| {
            [(PLUGIN_READY, "live"), (SHADOW_READY, "shadow")].into_iter().filter_map(move |(type_, role)| {
                let condition = state.status.condition(type_).filter(|c| c.status == "False")?;
                Some((key.namespace.as_str(), key.name.as_str(), role, condition.reason.as_str()))
            })
        });
        let conflicts = self.states.iter().filter(|(_, state)| state.conflict.is_some());
        self.metrics.set_policy_problems(not_ready, conflicts.map(|(k, _)| (k.namespace.as_str(), k.name.as_str())));
    }

    /// Holds every policy whose target another autoscaler (an HPA, a KEDA ScaledObject) scales, with a condition
    /// and an Event naming it and the fix, and lets it go on once the other is gone.
    fn report_conflicts(&mut self) {
        let mut events = Vec::new();
        for (key, state) in &mut self.states {
            let conflict = self.claims.conflict(key, &state.spec.target);
            if conflict != state.conflict {
                let object = state.object.clone();
                match &conflict {
                    Some(why) => {
                        tracing::warn!(policy = %key, "{why}");
                        state.status.set_condition(SCALING_ACTIVE, false, "ConflictingAutoscaler", why);
                        events.push((object, EventType::Warning, "ConflictingAutoscaler", why.clone()));
                    }
                    None => {
                        let note = format!(
                            "no other autoscaler scales {}/{} any more; Ballast scales it again",
                            state.spec.target.kind, state.spec.target.name
                        );
                        tracing::info!(policy = %key, "{note}");
                        state.status.set_condition(SCALING_ACTIVE, true, "ConflictResolved", &note);
                        events.push((object, EventType::Normal, "ConflictResolved", note));
                    }
                }
                state.dirty = true;
                state.conflict = conflict;
            }
            if let Some(service) = self.fleet.services.get_mut(key) {
                service.hold.clone_from(&state.conflict);
            }
        }
        for (object, kind, reason, note) in events {
            self.publish(object, kind, reason, note);
        }
    }

    /// Tells each policy that reads CPU and memory when metrics.k8s.io cannot give them (and when it can again).
    fn report_metrics_api(&mut self) {
        let Some(api) = &self.metrics_api else { return };
        for state in self.states.values_mut() {
            let shown = state.status.condition(RESOURCE_METRICS).is_some();
            let changed = match api {
                MetricsApi::Unusable(why) if state.spec.metrics.resources => {
                    state.status.set_condition(RESOURCE_METRICS, false, "MetricsApiUnavailable", why)
                }
                MetricsApi::Served if state.spec.metrics.resources && shown => state.status.set_condition(
                    RESOURCE_METRICS,
                    true,
                    "MetricsApiServed",
                    "metrics.k8s.io answers: CPU and memory are read",
                ),
                _ if !state.spec.metrics.resources && shown => {
                    state.status.conditions.retain(|c| c.type_ != RESOURCE_METRICS);
                    true
                }
                _ => false,
            };
            state.dirty |= changed;
        }
    }

    /// Starts loading the policy's live or shadow plugin when the version its spec names is not the one running
    /// (nor already loading, nor refused before). A shadow the spec no longer names is dropped.
    fn sync_plugin(&mut self, key: &ServiceKey, role: Role) {
        let Some(state) = self.states.get_mut(key) else { return };
        let service = self.fleet.services.get_mut(key);
        let spec = match role {
            Role::Live => state.spec.clone(),
            Role::Shadow => match state.spec.shadow_spec() {
                Some(spec) => spec,
                None => {
                    state.pending_shadow = None;
                    if let Some(service) = service {
                        service.shadow = None;
                        service.memory.shadow = None;
                    }
                    if state.status.conditions.iter().any(|c| c.type_ == SHADOW_READY) {
                        state.status.conditions.retain(|c| c.type_ != SHADOW_READY);
                        state.dirty = true;
                    }
                    return;
                }
            },
        };
        let running = match role {
            Role::Live => service.as_ref().map(|s| s.plugin.digest().to_owned()),
            Role::Shadow => service
                .as_ref()
                .and_then(|s| s.shadow.as_ref())
                .map(|s| s.plugin.digest().to_owned())
                .or_else(|| state.pending_shadow.as_ref().map(|p| p.digest().to_owned())),
        };
        let (condition, slot) = match role {
            Role::Live => (PLUGIN_READY, &mut state.live),
            Role::Shadow => (SHADOW_READY, &mut state.shadow),
        };
        let config_maps = &self.config_maps;
        let (given, files): (&[Arc<ConfigMap>], _) = match &self.options.policies {
            PolicySource::Fixed(documents) => (&documents.config_maps, &PluginFiles::Anywhere),
            PolicySource::Cluster => (&[], &self.plugin_files),
        };
        let source = plugins::locate(
            key,
            &spec,
            |namespace, name| {
                let object = ObjectRef::new(name).within(namespace);
                given
                    .iter()
                    .find(|cm| ObjectRef::from_obj(cm.as_ref()) == object)
                    .cloned()
                    .or_else(|| config_maps.get(&object))
            },
            &self.oci,
            files,
        );
        let pin = spec.plugin.sha256.clone();
        let (token, resolved) = match source {
            Err(e) => {
                slot.refused = None;
                let why = format!("{}{e}", role.prefix());
                let message = match &running {
                    Some(_) => format!("{why}; the previous plugin keeps running"),
                    None => why,
                };
                if state.status.set_condition(condition, false, "PluginUnavailable", &message) {
                    tracing::warn!(policy = %key, "{message}");
                    state.dirty = true;
                    let object = state.object.clone();
                    self.publish(object, EventType::Warning, "PluginRejected", message);
                }
                return;
            }
            Ok(Located::Ready(source)) => {
                let pin_ok = pin.as_deref().is_none_or(|p| p.trim().eq_ignore_ascii_case(&source.digest));
                if running.as_deref() == Some(source.digest.as_str()) && pin_ok {
                    let message = format!("{}{} (sha256 {}) is running", role.prefix(), source.name, source.digest);
                    Self::running_again(state, role, message);
                    return;
                }
                (source.digest.clone(), Located::Ready(source))
            }
            // Not pulled yet: the manifest digest stands for the component until the pull tells it.
            Ok(Located::Pull(pull)) => (pull.reference.manifest_digest().to_owned(), Located::Pull(pull)),
            // Not read yet: the file's identity stands for it until it is read off the loop.
            Ok(Located::File(file)) => {
                let token = file.token();
                if running.is_some() && slot.loaded_from.as_deref() == Some(token.as_str()) {
                    let message = format!("{}{} is running", role.prefix(), file.name);
                    Self::running_again(state, role, message);
                    return;
                }
                (token, Located::File(file))
            }
        };
        let pending = slot.loading.as_deref() == Some(token.as_str());
        let refused = slot.refused.as_ref().is_some_and(|r| r.holds(&token, &pin));
        if pending || refused {
            return;
        }
        let memory = service.map(|s| match role {
            Role::Live => s.memory.clone(),
            Role::Shadow => s.memory.shadow.as_deref().cloned().unwrap_or_default(),
        });
        let canary = match (memory, state.last_canary.clone()) {
            (Some(memory), Some(canary)) => CanaryInput { memory, ..canary },
            (None, Some(canary)) => canary,
            (_, None) => CanaryInput::default_for(&spec),
        };
        slot.loading = Some(token.clone());
        let load = Load {
            engine: self.engine.clone(),
            key: key.clone(),
            role,
            spec,
            canary,
            token,
            done: self.loads.0.clone(),
        };
        match resolved {
            Located::Ready(source) => load.spawn(source),
            Located::Pull(pull) => load.spawn_pull(pull, self.oci.clone(), self.client.clone()),
            Located::File(file) => load.spawn_read(file),
        }
    }

    /// The spec names the version that is running (again, e.g. after a refused update was rolled back): nothing to
    /// load, and a condition that still reports the refusal is stale.
    fn running_again(state: &mut ServiceState, role: Role, message: String) {
        let (condition, slot) = match role {
            Role::Live => (PLUGIN_READY, &mut state.live),
            Role::Shadow => (SHADOW_READY, &mut state.shadow),
        };
        slot.refused = None;
        slot.failures = 0;
        let stale = state.status.condition(condition).is_some_and(|c| c.status != "True");
        if stale && state.status.set_condition(condition, true, "PluginLoaded", &message) {
            tracing::info!("{message}");
            state.dirty = true;
        }
    }

    /// Swaps in a validated plugin, or records why it was refused. Returns whether to decide right away.
    async fn apply_load(&mut self, done: LoadDone) -> bool {
        let Some(state) = self.states.get_mut(&done.key) else { return false };
        let slot = match done.role {
            Role::Live => &mut state.live,
            Role::Shadow => &mut state.shadow,
        };
        if slot.loading.as_deref() != Some(done.digest.as_str()) {
            return false;
        }
        slot.loading = None;
        if done.role == Role::Shadow {
            self.apply_shadow_load(done);
            return false;
        }
        match done.result {
            Ok(loaded) => {
                // For an OCI plugin `done.digest` is the manifest's; status shows the component's.
                let digest = loaded.plugin.shared_digest().clone();
                let message = loaded_message(Role::Live, &loaded, &digest);
                let (memory, shadow) = match self.fleet.services.remove(&done.key) {
                    Some(old) => (old.memory, old.shadow.map(|s| s.plugin)),
                    None => (state.restored.take().unwrap_or_default(), state.pending_shadow.take()),
                };
                let mut service = ManagedService::new(state.spec.clone(), loaded.plugin).with_shadow(shadow);
                service.memory = memory;
                service.hold.clone_from(&state.conflict);
                self.fleet.services.insert(done.key.clone(), service);
                tracing::info!(policy = %done.key, "{message}");
                state.status.plugin_name = Some(loaded.source_name);
                state.status.plugin_digest = Some(digest.to_string());
                state.status.set_condition(PLUGIN_READY, true, "PluginLoaded", &message);
                state.swapped = Some((digest, done.noticed));
                state.live.refused = None;
                state.live.failures = 0;
                state.live.loaded_from = Some(done.digest);
                state.dirty = true;
                true
            }
            Err(failure) => {
                let running = self.fleet.services.contains_key(&done.key);
                self.refuse(done.key, Role::Live, failure, running);
                false
            }
        }
    }

    /// Attaches a validated shadow plugin (to the running service, or until the live plugin arrives), or records
    /// why it was refused. The live plugin is never affected.
    fn apply_shadow_load(&mut self, done: LoadDone) {
        let Some(state) = self.states.get_mut(&done.key) else { return };
        let service = self.fleet.services.get_mut(&done.key);
        match done.result {
            Ok(loaded) => {
                let message = loaded_message(Role::Shadow, &loaded, loaded.plugin.digest())
                    + "; it is evaluated and reported, never applied";
                tracing::info!(policy = %done.key, "{message}");
                match service {
                    Some(service) => service.set_shadow(Some(loaded.plugin)),
                    None => state.pending_shadow = Some(loaded.plugin),
                }
                state.shadow.refused = None;
                state.shadow.failures = 0;
                state.shadow.loaded_from = Some(done.digest);
                state.status.set_condition(SHADOW_READY, true, "PluginLoaded", &message);
                state.dirty = true;
            }
            Err(failure) => {
                let running = service.is_some_and(|s| s.shadow.is_some()) || state.pending_shadow.is_some();
                self.refuse(done.key, Role::Shadow, failure, running);
            }
        }
    }

    /// Records a plugin version that was refused (or could not be pulled): condition, log and Event. The running
    /// version stays. A failed pull is retried after a backoff; a refused component is not.
    fn refuse(&mut self, key: ServiceKey, role: Role, failure: LoadFailure, running: bool) {
        let Some(state) = self.states.get_mut(&key) else { return };
        let why = format!("{}{}", role.prefix(), failure.message);
        let message = if running { format!("{why}; the previous plugin keeps running") } else { why };
        let (condition, slot, pin) = match role {
            Role::Live => (PLUGIN_READY, &mut state.live, state.spec.plugin.sha256.clone()),
            Role::Shadow => {
                let pin = state.spec.shadow.as_ref().and_then(|s| s.plugin.sha256.clone());
                (SHADOW_READY, &mut state.shadow, pin)
            }
        };
        let reason = failure.reason;
        let retry_at = failure.retry.then(|| {
            let wait = retry_backoff(slot.failures);
            slot.failures = slot.failures.saturating_add(1);
            Instant::now() + wait
        });
        tracing::warn!(policy = %key, "plugin not loaded ({reason}): {message}");
        slot.refused = Some(Refusal { digest: failure.digest, pin, retry_at });
        state.status.set_condition(condition, false, reason, &message);
        state.dirty = true;
        let object = state.object.clone();
        self.publish(object, EventType::Warning, reason, message);
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
                Err((key, message)) => {
                    tracing::warn!("{message}");
                    if let Some(state) = self.states.get_mut(&key)
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

    fn after_decision(&mut self, tick: TickResult) {
        let record = tick.record;
        let key = record.service.clone();
        let Some(state) = self.states.get_mut(&key) else { return };
        record_metrics(&self.metrics, &record);
        if let Some(service) = self.fleet.services.get(&key) {
            let (namespace, name, spec) = (key.namespace.as_str(), key.name.as_str(), &service.spec);
            self.metrics.record_bounds(namespace, name, spec.min_replicas, spec.max_replicas);
            self.metrics.record_objective(namespace, name, &spec.metrics.queues, spec.wait_objective_seconds);
        }
        state.log_relay.relay(&key, &record.plugin_digest, &record.logs);
        // The canary of a new version decides on exactly what its first real call will see: this observation and
        // the service's memory (whose plugin state it gets only if it is the version that wrote it).
        let memory = self.fleet.services.get(&key).map(|s| s.memory.clone()).unwrap_or_default();
        state.last_canary = Some(CanaryInput {
            observation: record.observation.clone(),
            memory,
            current: record.current,
            ready: record.ready,
        });
        if let Some((digest, noticed)) = &state.swapped
            && *digest == record.plugin_digest
        {
            tracing::info!(
                policy = %key,
                "first decision by plugin sha256 {digest}: {} ms after its change was seen",
                noticed.elapsed().as_millis()
            );
            state.swapped = None;
        }
        let scaled = record.replicas != record.current && tick.write_error.is_none();
        let current_after = if scaled { record.replicas } else { record.current };
        let digest_changed =
            state.status.last_decision.as_ref().map(|d| d.plugin_digest.as_str()) != Some(&*record.plugin_digest);
        state.dirty |= state.status.record_decision(&record, current_after) || digest_changed;
        state.status.reference = Some(format!("{}/{}", state.spec.target.kind, state.spec.target.name));
        let object = state.object.clone();
        let mut events = Vec::new();
        if scaled {
            state.status.last_scale_time = Some(status::now_rfc3339());
            events.push((
                EventType::Normal,
                "SuccessfulRescale",
                format!("New size: {}; reason: {}", record.replicas, record.summary()),
            ));
        }
        if let Some(error) = tick.write_error {
            state.dirty |= state.status.set_condition(ABLE_TO_SCALE, false, "FailedUpdateScale", &error);
            events.push((EventType::Warning, "FailedRescale", error));
        }
        let failing = record.failure().is_some();
        if failing && !state.plugin_failing {
            let message = record.fallback.clone().unwrap_or_else(|| record.summary());
            events.push((EventType::Warning, "PluginFailed", message));
        }
        state.plugin_failing = failing;
        let missing = missing_metrics(&state.spec, &record.observation);
        if let Some(what) = &missing
            && !state.metrics_missing
        {
            events.push((EventType::Warning, "MetricsUnavailable", what.clone()));
        }
        state.metrics_missing = missing.is_some();
        for (kind, reason, note) in events {
            self.publish(object.clone(), kind, reason, note);
        }
    }

    /// Patches the policy's status (merge) with its conditions, last decision and memory. Leader only.
    async fn write_status(&mut self, key: &ServiceKey) {
        if !self.writes_objects() || !self.leadership.is_leader() {
            return;
        }
        let Some(state) = self.states.get_mut(key) else { return };
        let mut status = state.status.clone();
        status.observed_generation = state.generation;
        status.memory = self.fleet.services.get(key).map(|s| s.memory.clone()).or_else(|| state.restored.clone());
        let api: Api<ScalingPolicy> = Api::namespaced(self.client.clone(), &key.namespace);
        // The whole status is replaced (a JSON patch `add` of /status): a merge patch would keep fields this
        // status no longer has, such as a shadow verdict or a plugin state blob that are gone.
        let value = match serde_json::to_value(&status) {
            Ok(value) => value,
            Err(e) => return tracing::warn!("serializing the status of ScalingPolicy {key}: {e}"),
        };
        let patch = json_patch::Patch(vec![json_patch::PatchOperation::Add(json_patch::AddOperation {
            path: json_patch::jsonptr::PointerBuf::parse("/status").expect("a valid pointer"),
            value,
        })]);
        let params = PatchParams { field_manager: Some(CONTROLLER_NAME.replace('/', "-")), ..PatchParams::default() };
        match api.patch_status(&key.name, &params, &Patch::<()>::Json(patch)).await {
            Ok(_) => {
                state.dirty = false;
                state.last_write = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!("{}", ControllerError::kube(format!("writing the status of ScalingPolicy {key}"), e))
            }
        }
    }

    /// Publishes an Event about a policy in the background (leader only; an Event that fails is only logged).
    fn publish(&self, object: Option<ObjectReference>, type_: EventType, reason: &'static str, note: String) {
        let Some(object) = object else { return };
        if !self.writes_objects() || !self.leadership.is_leader() {
            return;
        }
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&object, type_, reason, "Scale", truncate_note(note)).await {
                tracing::warn!("publishing Event {reason} for {:?}/{:?}: {e}", object.namespace, object.name);
            }
        });
    }
}

/// The API server refuses an Event whose note is over 1024 bytes (bytes, not characters): cut at a character
/// boundary.
fn truncate_note(mut note: String) -> String {
    const NOTE_LIMIT_BYTES: usize = 1024;
    note.truncate(note.floor_char_boundary(NOTE_LIMIT_BYTES));
    note
}

/// Which configured metric sources gave nothing for this observation.
fn missing_metrics(spec: &ScalingPolicySpec, observation: &Observation) -> Option<String> {
    let mut missing = Vec::new();
    if !spec.metrics.queues.is_empty() && observation.queue.is_none() {
        missing.push("queue depth (Redis)");
    }
    if spec.metrics.prometheus.is_some()
        && observation.gpu_duty_cycle_percent.is_none()
        && observation.latency_p95_ms.is_none()
        && observation.request_rate.is_none()
    {
        missing.push("Prometheus metrics");
    }
    (!missing.is_empty()).then(|| format!("unavailable: {}; the plugin decides without them", missing.join(", ")))
}

fn record_metrics(metrics: &Metrics, record: &DecisionRecord) {
    let (namespace, name) = (record.service.namespace.as_str(), record.service.name.as_str());
    let kind = match (&record.clamp, record.failure()) {
        (None, _) => "paused",
        (Some(_), Some(_)) => "fallback",
        (Some(clamp), None) if clamp.replicas != record.desired => "clamped",
        _ => "plugin",
    };
    metrics.record_decision(namespace, name, record.current, record.replicas, kind);
    if record.clamp.is_some() {
        metrics.record_plugin_call(namespace, name, Duration::from_micros(record.call_micros), record.failure());
    }
    if let Some(shadow) = &record.shadow {
        metrics.record_shadow(namespace, name, shadow.replicas, shadow.failure);
    }
}

/// What the log and the `PluginReady`/`ShadowReady` condition say about a plugin that passed validation.
fn loaded_message(role: Role, loaded: &LoadedPlugin, digest: &str) -> String {
    format!(
        "{}{} (sha256 {digest}) loaded and validated in {} ms",
        role.prefix(),
        loaded.source_name,
        loaded.load_time.as_millis()
    )
}

impl Role {
    /// How messages about this plugin start.
    fn prefix(self) -> &'static str {
        match self {
            Role::Live => "",
            Role::Shadow => "shadow plugin: ",
        }
    }
}

/// A plugin version to load off the reconcile loop; the outcome comes back as a [`LoadDone`].
struct Load {
    engine: Arc<PolicyEngine>,
    key: ServiceKey,
    role: Role,
    spec: ScalingPolicySpec,
    canary: CanaryInput,
    token: String,
    done: mpsc::UnboundedSender<LoadDone>,
}

impl Load {
    fn spawn(self, source: PluginSource) {
        let noticed = Instant::now();
        tokio::spawn(async move {
            let result = self.validate(source).await;
            let _ = self.done.send(LoadDone { key: self.key, role: self.role, digest: self.token, noticed, result });
        });
    }

    /// Pulls an OCI artifact (async, never on the loop), then loads it like any other source.
    fn spawn_pull(self, pull: OciPull, store: Arc<OciStore>, client: kube::Client) {
        let noticed = Instant::now();
        tokio::spawn(async move {
            let result = match pull.pull(&store, &client, &self.key.namespace).await {
                Ok(source) => self.validate(source).await,
                Err(e) => Err(LoadFailure {
                    message: pull_failure_message(&pull, &e),
                    digest: self.token.clone(),
                    retry: e.is_retryable(),
                    reason: "PluginPullFailed",
                }),
            };
            let _ = self.done.send(LoadDone { key: self.key, role: self.role, digest: self.token, noticed, result });
        });
    }

    /// Reads a plugin file (blocking, never on the loop), then loads it like any other source.
    fn spawn_read(self, file: PluginFile) {
        let noticed = Instant::now();
        tokio::spawn(async move {
            let name = file.name.clone();
            let read = tokio::task::spawn_blocking(move || file.read())
                .await
                .unwrap_or_else(|e| Err(format!("reading the file panicked: {e}")));
            let result = match read {
                Ok(source) => self.validate(source).await,
                // Nothing of the file is in the message: only its name and why it was not read.
                Err(why) => Err(LoadFailure {
                    message: format!("plugin file {name}: {why}"),
                    digest: self.token.clone(),
                    retry: true,
                    reason: "PluginUnavailable",
                }),
            };
            let _ = self.done.send(LoadDone { key: self.key, role: self.role, digest: self.token, noticed, result });
        });
    }

    async fn validate(&self, source: PluginSource) -> Result<LoadedPlugin, LoadFailure> {
        let digest = source.digest.clone();
        let (engine, key, spec, canary) =
            (self.engine.clone(), self.key.clone(), self.spec.clone(), self.canary.clone());
        tokio::task::spawn_blocking(move || canary::load_and_validate(&engine, &key, &spec, &source, canary))
            .await
            .unwrap_or_else(|e| {
                Err(canary::ValidationFailure {
                    message: format!("loading the plugin panicked: {e}"),
                    transient: false,
                })
            })
            .map_err(|failure| LoadFailure {
                message: failure.message,
                digest,
                retry: failure.transient,
                reason: "PluginRejected",
            })
    }
}

/// A failed pull, with the reference and (from the OCI error) what to do about it.
fn pull_failure_message(pull: &OciPull, error: &crate::oci::OciError) -> String {
    let next = if error.is_retryable() { "; retrying with backoff" } else { "; fix the plugin's oci.reference" };
    format!("plugin {}: {error}{next}", pull.name)
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
