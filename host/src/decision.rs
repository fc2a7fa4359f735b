//! One decision for one service: observation -> plugin -> fallback -> safety clamps, with everything needed to
//! explain it. The live host and the simulator both decide through [`decide`]; only where observations come from
//! and where replica counts go differ.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clamps::{self, ClampInput, ClampOutcome, ScaleHistory};
use crate::observation::Observation;
use crate::runtime::{self, FailureKind, Plugin, PluginLog};
use crate::spec::{Fallback, ScalingPolicySpec, ServiceKey};

/// What Ballast remembers per service between ticks; persisted (in the ScalingPolicy status) so a restart or
/// fail-over loses nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMemory {
    /// The state blob the plugin returned last (base64 in JSON).
    #[serde(default, with = "base64_opt", skip_serializing_if = "Option::is_none")]
    pub(crate) plugin_state: Option<Vec<u8>>,
    /// Digest of the plugin that wrote `plugin_state`; a different plugin starts from no state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_digest: Option<Arc<str>>,
    #[serde(default)]
    pub history: ScaleHistory,
    /// Total completed jobs seen last time, to derive completions since the previous decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_completed: Option<u64>,
    /// The shadow plugin's own memory (its state and completion count; it borrows the live scale history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shadow: Option<Box<ServiceMemory>>,
}

impl ServiceMemory {
    /// Records that the target was actually scaled, for the `behavior` rate limits.
    pub fn record_scale(&mut self, spec: &ScalingPolicySpec, from: u32, to: u32, now_ms: u64) {
        clamps::record_scale(&mut self.history, spec.behavior.as_ref(), from, to, now_ms);
    }
}

/// The moment and the target's state the decision is made for.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub now_ms: u64,
    /// Replicas the target's `/scale` asks for now.
    pub current: u32,
    /// Replicas ready and taking work.
    pub ready: u32,
}

/// What the plugin said, or why it said nothing usable.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum PluginVerdict {
    Decided { replicas: u32, reason: String, proposals: Vec<(String, u32)> },
    Failed { kind: FailureKind, message: String },
    Paused,
}

/// A complete, explainable decision.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub service: ServiceKey,
    pub(crate) now_ms: u64,
    pub(crate) current: u32,
    pub(crate) ready: u32,
    pub observation: Observation,
    pub(crate) plugin_digest: Arc<str>,
    pub plugin: PluginVerdict,
    /// Set when the plugin failed: what the fallback did and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The replica count handed to the clamps (the plugin's answer, or the fallback's).
    pub desired: u32,
    /// What the clamps did; `None` when the policy is paused.
    pub(crate) clamp: Option<ClampOutcome>,
    /// What should be written to `/scale`.
    pub replicas: u32,
    pub(crate) logs: Vec<PluginLog>,
    pub(crate) call_micros: u64,
    /// What the shadow plugin would have done, when the spec has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shadow: Option<ShadowRecord>,
}

/// The shadow plugin's decision on the same observation and history: reported, never applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShadowRecord {
    pub(crate) plugin_digest: String,
    /// The plugin's answer, or the fallback's when it failed.
    pub(crate) desired: u32,
    /// What the shadow would have written after the clamps.
    pub(crate) replicas: u32,
    /// The plugin's reason, or why it failed.
    pub(crate) reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<FailureKind>,
    pub(crate) call_micros: u64,
}

impl From<DecisionRecord> for ShadowRecord {
    fn from(record: DecisionRecord) -> Self {
        let (reason, failure) = match record.plugin {
            PluginVerdict::Decided { reason, .. } => (reason, None),
            PluginVerdict::Failed { kind, message } => (message, Some(kind)),
            PluginVerdict::Paused => ("paused".into(), None),
        };
        ShadowRecord {
            plugin_digest: record.plugin_digest.to_string(),
            desired: record.desired,
            replicas: record.replicas,
            reason,
            failure,
            call_micros: record.call_micros,
        }
    }
}

impl DecisionRecord {
    /// One line for logs, events and tables.
    pub fn summary(&self) -> String {
        let said = match &self.plugin {
            PluginVerdict::Decided { reason, .. } => reason.clone(),
            PluginVerdict::Failed { kind, message } => format!("plugin failed ({kind}): {message}"),
            PluginVerdict::Paused => "paused".into(),
        };
        match &self.clamp {
            Some(clamp) => format!("{} -> {} ({said}; {})", self.current, self.replicas, clamp.reason),
            None => format!("{} -> {} ({said})", self.current, self.replicas),
        }
    }

    pub fn failure(&self) -> Option<FailureKind> {
        match &self.plugin {
            PluginVerdict::Failed { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// What a service decides with: its spec, the config text its plugin receives, and the plugin. A service has one
/// for its live plugin and one for its shadow (with the shadow's spec); the memory is the caller's.
pub struct Decider {
    pub(crate) spec: ScalingPolicySpec,
    config_json: String,
    pub(crate) plugin: Plugin,
}

impl Decider {
    pub fn new(spec: ScalingPolicySpec, plugin: Plugin) -> Self {
        Decider { config_json: config_text(&spec.config), spec, plugin }
    }

    /// The config text the plugin receives.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// Decides the service's replica count on `observation`, with and into its `memory`. Never fails: a plugin
    /// failure becomes the spec's fallback.
    pub fn decide(
        &mut self,
        key: &ServiceKey,
        memory: &mut ServiceMemory,
        mut observation: Observation,
        at: Moment,
    ) -> DecisionRecord {
        let Decider { spec, config_json, plugin } = self;
        let digest = plugin.shared_digest();
        match &memory.plugin_digest {
            // The same compiled plugin: a pointer comparison, not a read of each service's own copy of the digest.
            Some(written_by) if Arc::ptr_eq(written_by, digest) => {}
            // The same plugin, loaded again (after a restart, from the persisted status): share the loaded digest.
            Some(written_by) if written_by == digest => memory.plugin_digest = Some(digest.clone()),
            _ => {
                memory.plugin_state = None;
                memory.plugin_digest = Some(digest.clone());
            }
        }
        if let Some(queue) = observation.queue {
            // Completions since last time, when the source gives only a running total. A total that went down
            // (BullMQ trimmed its completed set) says nothing.
            if observation.completed_since_last.is_none() {
                observation.completed_since_last =
                    memory.last_completed.filter(|last| *last <= queue.completed).map(|last| queue.completed - last);
            }
            memory.last_completed = Some(queue.completed);
        }

        let (plugin_verdict, fallback, desired, logs, call_micros) = if spec.paused {
            (PluginVerdict::Paused, None, at.current, Vec::new(), 0)
        } else {
            let outcome = plugin
                .decide_in_place(|input| fill_policy_input(input, key, spec, config_json, memory, &observation, at));
            let micros = outcome.duration.as_micros() as u64;
            match outcome.result {
                Ok(d) => {
                    memory.plugin_state = d.state;
                    let proposals = d.proposals.into_iter().map(|p| (p.metric, p.replicas)).collect();
                    (
                        PluginVerdict::Decided { replicas: d.replicas, reason: d.reason, proposals },
                        None,
                        d.replicas,
                        outcome.logs,
                        micros,
                    )
                }
                Err(failure) => {
                    let (desired, what) = fallback_replicas(spec.fallback, at.current);
                    let verdict = PluginVerdict::Failed { kind: failure.kind(), message: failure.to_string() };
                    (verdict, Some(format!("{what}: plugin {failure}")), desired, outcome.logs, micros)
                }
            }
        };
        let clamp = if spec.paused {
            None
        } else {
            let input = ClampInput {
                current: at.current,
                desired,
                min: spec.min_replicas,
                max: spec.max_replicas,
                behavior: spec.behavior.as_ref(),
                now_ms: at.now_ms,
            };
            Some(clamps::clamp(&input, &mut memory.history))
        };
        DecisionRecord {
            service: key.clone(),
            now_ms: at.now_ms,
            current: at.current,
            ready: at.ready,
            observation,
            plugin_digest: plugin.shared_digest().clone(),
            plugin: plugin_verdict,
            fallback,
            desired,
            replicas: clamp.as_ref().map_or(at.current, |c| c.replicas),
            clamp,
            logs,
            call_micros,
            shadow: None,
        }
    }
}

fn fallback_replicas(fallback: Fallback, current: u32) -> (u32, String) {
    match fallback {
        Fallback::Hold => (current, format!("holding {current} replicas")),
        Fallback::Fixed { replicas } => (replicas, format!("falling back to {replicas} replicas")),
    }
}

/// The plugin's view of the service, in the WIT world's types.
pub fn policy_input(
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_json: &str,
    memory: &ServiceMemory,
    obs: &Observation,
    at: Moment,
) -> runtime::PolicyInput {
    let mut input = runtime::empty_input();
    fill_policy_input(&mut input, key, spec, config_json, memory, obs, at);
    input
}

/// Writes the plugin's view of the service over `input`, reusing its strings and buffers (the control loop calls
/// every plugin every second; this way the input costs no allocation once the buffers have grown).
fn fill_policy_input(
    input: &mut runtime::PolicyInput,
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_json: &str,
    memory: &ServiceMemory,
    obs: &Observation,
    at: Moment,
) {
    let overwrite = |text: &mut String, with: &str| {
        text.clear();
        text.push_str(with);
    };
    overwrite(&mut input.service.namespace, &key.namespace);
    overwrite(&mut input.service.name, &key.name);
    overwrite(&mut input.config, config_json);
    input.now_ms = at.now_ms;
    input.current_replicas = at.current;
    input.ready_replicas = at.ready;
    input.min_replicas = spec.min_replicas;
    input.max_replicas = spec.max_replicas;
    match (&mut input.state, &memory.plugin_state) {
        (Some(buffer), Some(state)) => {
            buffer.clear();
            buffer.extend_from_slice(state);
        }
        (slot, state) => *slot = state.clone(),
    }
    let o = &mut input.observations;
    o.gpu_duty_cycle_percent = obs.gpu_duty_cycle_percent;
    o.cpu_percent_of_request = obs.cpu_percent_of_request;
    o.memory_percent_of_request = obs.memory_percent_of_request;
    o.queue = obs.queue.map(|q| runtime::QueueCounts {
        waiting: q.waiting,
        prioritized: q.prioritized,
        paused: q.paused,
        active: q.active,
        delayed: q.delayed,
        failed: q.failed,
        waiting_children: q.waiting_children,
        completed_since_last: obs.completed_since_last,
        is_paused: obs.queue_paused.unwrap_or(false),
    });
    o.latency_p50_ms = obs.latency_p50_ms;
    o.latency_p95_ms = obs.latency_p95_ms;
    o.latency_p99_ms = obs.latency_p99_ms;
    o.request_rate = obs.request_rate;
    o.custom.clear();
    o.custom.extend(obs.custom.iter().map(|(name, value)| runtime::CustomMetric { name: name.clone(), value: *value }));
}

mod base64_opt {
    //! Plugin state in JSON: standard base64, as Kubernetes encodes `[]byte`.
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| STANDARD.decode(t).map_err(|e| serde::de::Error::custom(format!("plugin state: {e}")))).transpose()
    }
}

/// The plugin's config as the JSON text it receives (`{}` when the spec has none).
pub(crate) fn config_text(config: &serde_json::Value) -> String {
    if config.is_null() { "{}".into() } else { config.to_string() }
}

/// Milliseconds since the Unix epoch: the decision clock.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::QueueCounts;

    #[test]
    fn an_input_filled_in_place_is_the_input_built_anew() {
        let spec: ScalingPolicySpec = serde_json::from_value(serde_json::json!({
            "target": {"name": "stt"}, "minReplicas": 2, "maxReplicas": 8, "plugin": {"builtin": "hpa"}
        }))
        .unwrap();
        let first_key = ServiceKey { namespace: "ai-models".into(), name: "whisper-pyannote-stt".into() };
        let first_memory = ServiceMemory { plugin_state: Some(vec![1; 40]), ..ServiceMemory::default() };
        let first_obs = Observation {
            queue: Some(QueueCounts { waiting: 9, ..QueueCounts::default() }),
            custom: vec![("jobs_in_flight".into(), 3.0)],
            latency_p95_ms: Some(800.0),
            ..Observation::default()
        };
        let first_at = Moment { now_ms: 1000, current: 3, ready: 2 };
        let mut input = policy_input(&first_key, &spec, r#"{"jobsPerPod": 5}"#, &first_memory, &first_obs, first_at);

        // A shorter name and config, a smaller state, then none, fewer metrics: nothing of the first may remain.
        let key = ServiceKey { namespace: "ai".into(), name: "mt".into() };
        let obs = Observation { completed_since_last: Some(4), ..Observation::default() };
        let at = Moment { now_ms: 2000, current: 4, ready: 4 };
        for state in [Some(vec![2; 3]), None, Some(vec![5])] {
            let memory = ServiceMemory { plugin_state: state, ..ServiceMemory::default() };
            fill_policy_input(&mut input, &key, &spec, "{}", &memory, &obs, at);
            assert_eq!(input, policy_input(&key, &spec, "{}", &memory, &obs, at));
        }
    }
}
