//! What the reconcile loop reports: each policy's status (conditions, last decision, memory) and Events, and the
//! decision metrics.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;

use super::{CONTROLLER_NAME, Controller};
use crate::autoscaler::{Observer, TickResult};
use crate::controller::ControllerError;
use crate::controller::loading::Role;
use crate::controller::metrics_api::MetricsApi;
use crate::decision::DecisionRecord;
use crate::export::Metrics;
use crate::observation::Observation;
use crate::policy::canary::{CanaryInput, LoadedPlugin};
use crate::policy::status::{self, ABLE_TO_SCALE, PLUGIN_READY, RESOURCE_METRICS, SCALING_ACTIVE, SHADOW_READY};
use crate::spec::{ScalingPolicy, ScalingPolicySpec, ServiceKey};

impl<O: Observer> Controller<O> {
    /// The policies' problems as metrics, for alerts: a plugin that is not the one the spec names (its condition's
    /// reason), and a target another autoscaler scales.
    pub(super) fn export_problems(&self) {
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
    pub(super) fn report_conflicts(&mut self) {
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
    pub(super) fn report_metrics_api(&mut self) {
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

    pub(super) fn after_decision(&mut self, tick: TickResult) {
        let record = tick.record;
        let key = record.service.clone();
        let Some(state) = self.states.get_mut(&key) else { return };
        record_metrics(&self.metrics, &record);
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
        if let Some(error) = tick.write_error.map(|e| e.to_string()) {
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
    pub(super) async fn write_status(&mut self, key: &ServiceKey) {
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
    pub(super) fn publish(
        &self,
        object: Option<ObjectReference>,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) {
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
pub(super) fn loaded_message(role: Role, loaded: &LoadedPlugin, digest: &str) -> String {
    format!(
        "{}{} (sha256 {digest}) loaded and validated in {} ms",
        role.prefix(),
        loaded.source_name,
        loaded.load_time.as_millis()
    )
}
