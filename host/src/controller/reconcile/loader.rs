//! The loop's side of plugin loading: finds what each role's reference names, feeds it to the role's [`Slot`], and
//! executes the commands that come back. Loads (and the pull or file read before them) run off the loop; their
//! outcome comes back as a [`LoadDone`].
//!
//! [`Slot`]: crate::controller::loading::Slot

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::output::loaded_message;
use super::{Controller, PolicySource};
use crate::autoscaler::{ManagedService, Observer};
use crate::controller::loading::{Command, Found, LoadFailure, Role};
use crate::oci::OciStore;
use crate::policy::canary::{self, CanaryInput, LoadedPlugin};
use crate::policy::plugins::{self, Located, OciPull, PluginFile, PluginFiles, PluginSource};
use crate::runtime::{Plugin, PolicyEngine};
use crate::spec::{ScalingPolicySpec, ServiceKey};

/// A plugin load (and, for OCI plugins, the pull before it) that finished off the runtime.
pub(super) struct LoadDone {
    key: ServiceKey,
    role: Role,
    /// The version the slot's load was for: the component's digest, or an OCI manifest digest while pulling.
    token: String,
    noticed: Instant,
    result: Result<LoadedPlugin, LoadFailure>,
}

/// A validated plugin, and when the change that brought it was noticed.
struct Loaded {
    plugin: LoadedPlugin,
    noticed: Instant,
}

/// The spec a role's plugin decides with, if the policy names one.
fn role_spec(spec: &ScalingPolicySpec, role: Role) -> Option<ScalingPolicySpec> {
    match role {
        Role::Live => Some(spec.clone()),
        Role::Shadow => spec.shadow_spec(),
    }
}

/// The digest of the plugin running in a role (a shadow may wait for the live plugin in `pending_shadow`).
fn running_digest(service: Option<&ManagedService>, pending_shadow: Option<&Plugin>, role: Role) -> Option<String> {
    match role {
        Role::Live => service.map(|s| s.decider.plugin.digest().to_owned()),
        Role::Shadow => service
            .and_then(|s| s.shadow.as_ref())
            .map(|s| &s.decider.plugin)
            .or(pending_shadow)
            .map(|p| p.digest().to_owned()),
    }
}

impl<O: Observer> Controller<O> {
    /// Starts loading the policy's live or shadow plugin when the version its spec names is not the one running
    /// (nor already loading, nor refused before). A shadow the spec no longer names is dropped.
    pub(super) fn sync_plugin(&mut self, key: &ServiceKey, role: Role) {
        let Some(state) = self.states.get(key) else { return };
        let spec = role_spec(&state.spec, role);
        let found = match &spec {
            Some(spec) => self.locate(key, spec),
            None => Found::Unnamed,
        };
        let Some(state) = self.states.get_mut(key) else { return };
        let running = running_digest(self.fleet.services.get(key), state.pending_shadow.as_ref(), role);
        let pin = spec.and_then(|spec| spec.plugin.sha256);
        if let Some(command) = state.slots[role].found(role, found, running.as_deref(), pin.as_deref(), Instant::now())
        {
            self.execute(key, role, command);
        }
    }

    /// Where the spec's plugin is, without reading a file or pulling.
    fn locate(&self, key: &ServiceKey, spec: &ScalingPolicySpec) -> Found<Located> {
        let config_maps = &self.config_maps;
        let (given, files): (&[Arc<ConfigMap>], _) = match &self.options.policies {
            PolicySource::Fixed(documents) => (&documents.config_maps, &PluginFiles::Anywhere),
            PolicySource::Cluster => (&[], &self.plugin_files),
        };
        let located = plugins::locate(
            key,
            spec,
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
        match located {
            Err(e) => Found::Unavailable(e.to_string()),
            Ok(Located::Ready(source)) => Found::Component {
                name: source.name.clone(),
                digest: source.digest.clone(),
                source: Located::Ready(source),
            },
            // Not pulled yet: the manifest digest stands for the component until the pull tells it.
            Ok(Located::Pull(pull)) => {
                Found::Pull { token: pull.reference.manifest_digest().to_owned(), source: Located::Pull(pull) }
            }
            // Not read yet: the file's identity stands for it until it is read off the loop.
            Ok(Located::File(file)) => {
                Found::File { name: file.name.clone(), token: file.token(), source: Located::File(file) }
            }
        }
    }

    /// Swaps in a validated plugin, or records why it was refused. Returns whether to decide right away.
    pub(super) fn apply_load(&mut self, done: LoadDone) -> bool {
        let Some(state) = self.states.get_mut(&done.key) else { return false };
        let service = self.fleet.services.get(&done.key);
        let (running, pin) = match done.role {
            Role::Live => (service.is_some(), state.spec.plugin.sha256.clone()),
            Role::Shadow => (
                service.is_some_and(|s| s.shadow.is_some()) || state.pending_shadow.is_some(),
                state.spec.shadow.as_ref().and_then(|s| s.plugin.sha256.clone()),
            ),
        };
        let result = done.result.map(|plugin| Loaded { plugin, noticed: done.noticed });
        let command =
            state.slots[done.role].finished(done.role, &done.token, result, running, pin.as_deref(), Instant::now());
        command.is_some_and(|command| self.execute(&done.key, done.role, command))
    }

    /// Carries out what a role's slot asked for. Returns whether to decide right away (a new live plugin).
    fn execute(&mut self, key: &ServiceKey, role: Role, command: Command<Located, Loaded>) -> bool {
        let Some(state) = self.states.get_mut(key) else { return false };
        let condition = role.condition();
        let event = match command {
            Command::Load { token, source } => {
                let Some(spec) = role_spec(&state.spec, role) else { return false };
                let memory = self.fleet.services.get(key).map(|s| match role {
                    Role::Live => s.memory.clone(),
                    Role::Shadow => s.memory.shadow.as_deref().cloned().unwrap_or_default(),
                });
                let canary = match (memory, state.last_canary.clone()) {
                    (Some(memory), Some(canary)) => CanaryInput { memory, ..canary },
                    (None, Some(canary)) => canary,
                    (_, None) => CanaryInput::default_for(&spec),
                };
                let load = Load {
                    engine: self.engine.clone(),
                    key: key.clone(),
                    role,
                    spec,
                    canary,
                    token,
                    done: self.loads.0.clone(),
                };
                match source {
                    Located::Ready(source) => load.spawn(source),
                    Located::Pull(pull) => load.spawn_pull(pull, self.oci.clone(), self.client.clone()),
                    Located::File(file) => load.spawn_read(file),
                }
                None
            }
            Command::Install(loaded) => {
                match role {
                    Role::Live => self.install(key, loaded),
                    Role::Shadow => self.attach_shadow(key, loaded.plugin),
                }
                return role == Role::Live;
            }
            Command::Running { message } => {
                let stale = state.status.condition(condition).is_some_and(|c| c.status != "True");
                if stale && state.status.set_condition(condition, true, "PluginLoaded", &message) {
                    tracing::info!("{message}");
                    state.dirty = true;
                }
                None
            }
            Command::Unavailable { message } => {
                if state.status.set_condition(condition, false, "PluginUnavailable", &message) {
                    tracing::warn!(policy = %key, "{message}");
                    state.dirty = true;
                    Some(("PluginRejected", message))
                } else {
                    None
                }
            }
            Command::Refused { reason, message } => {
                tracing::warn!(policy = %key, "plugin not loaded ({reason}): {message}");
                state.status.set_condition(condition, false, reason, &message);
                state.dirty = true;
                Some((reason, message))
            }
            Command::Drop => {
                state.pending_shadow = None;
                if let Some(service) = self.fleet.services.get_mut(key) {
                    service.shadow = None;
                    service.memory.shadow = None;
                }
                if state.status.condition(condition).is_some() {
                    state.status.conditions.retain(|c| c.type_ != condition);
                    state.dirty = true;
                }
                None
            }
        };
        if let Some((reason, message)) = event {
            let object = state.object.clone();
            self.publish(object, EventType::Warning, reason, message);
        }
        false
    }

    /// Makes a validated plugin the policy's live one, keeping its memory and shadow.
    fn install(&mut self, key: &ServiceKey, loaded: Loaded) {
        let Some(state) = self.states.get_mut(key) else { return };
        let Loaded { plugin: loaded, noticed } = loaded;
        // For an OCI plugin the load was for the manifest's digest; status shows the component's.
        let digest = loaded.plugin.shared_digest().clone();
        let message = loaded_message(Role::Live, &loaded, &digest);
        let (memory, shadow) = match self.fleet.services.remove(key) {
            Some(old) => (old.memory, old.shadow.map(|s| s.decider.plugin)),
            None => (state.restored.take().unwrap_or_default(), state.pending_shadow.take()),
        };
        let mut service = ManagedService::new(state.spec.clone(), loaded.plugin).with_shadow(shadow);
        service.memory = memory;
        service.hold.clone_from(&state.conflict);
        self.fleet.services.insert(key.clone(), service);
        tracing::info!(policy = %key, "{message}");
        state.status.plugin_name = Some(loaded.source_name);
        state.status.plugin_digest = Some(digest.to_string());
        state.status.set_condition(Role::Live.condition(), true, "PluginLoaded", &message);
        state.swapped = Some((digest, noticed));
        state.dirty = true;
    }

    /// Attaches a validated shadow plugin (to the running service, or until the live plugin arrives). The live
    /// plugin is never affected.
    fn attach_shadow(&mut self, key: &ServiceKey, loaded: LoadedPlugin) {
        let Some(state) = self.states.get_mut(key) else { return };
        let message = loaded_message(Role::Shadow, &loaded, loaded.plugin.digest())
            + "; it is evaluated and reported, never applied";
        tracing::info!(policy = %key, "{message}");
        match self.fleet.services.get_mut(key) {
            Some(service) => service.set_shadow(Some(loaded.plugin)),
            None => state.pending_shadow = Some(loaded.plugin),
        }
        state.status.set_condition(Role::Shadow.condition(), true, "PluginLoaded", &message);
        state.dirty = true;
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
            self.finish(noticed, result);
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
            self.finish(noticed, result);
        });
    }

    /// Reads a plugin file (blocking, never on the loop), then loads it like any other source.
    fn spawn_read(self, file: PluginFile) {
        let noticed = Instant::now();
        tokio::spawn(async move {
            let name = file.name.clone();
            let read = match tokio::task::spawn_blocking(move || file.read()).await {
                Ok(read) => read.map_err(|why| why.to_string()),
                Err(e) => Err(format!("reading the file panicked: {e}")),
            };
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
            self.finish(noticed, result);
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

    fn finish(self, noticed: Instant, result: Result<LoadedPlugin, LoadFailure>) {
        let _ = self.done.send(LoadDone { key: self.key, role: self.role, token: self.token, noticed, result });
    }
}

/// A failed pull, with the reference and (from the OCI error) what to do about it.
fn pull_failure_message(pull: &OciPull, error: &crate::oci::OciError) -> String {
    let next = if error.is_retryable() { "; retrying with backoff" } else { "; fix the plugin's oci.reference" };
    format!("plugin {}: {error}{next}", pull.name)
}
