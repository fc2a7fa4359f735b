//! The canary: a new plugin version is compiled off the async runtime, type-checked against the world, pinned by
//! sha256 if the policy says so, and must pass a decision on the service's last observation before it replaces the
//! running one. A refused version changes nothing: the old plugin keeps deciding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plugins::PluginSource;
use crate::decision::{self, Decider, Moment, ServiceMemory, unix_ms};
use crate::observation::Observation;
use crate::runtime::{CANARY_ATTEMPTS, FailureKind, Plugin, PolicyEngine};
use crate::spec::{ScalingPolicySpec, ServiceKey};

/// What the canary decision runs on: the service's last observation and state, or a quiet default.
#[derive(Debug, Clone)]
pub(crate) struct CanaryInput {
    pub(crate) observation: Observation,
    pub(crate) memory: ServiceMemory,
    pub(crate) current: u32,
    pub(crate) ready: u32,
}

impl CanaryInput {
    /// For a service never decided: nothing observed, at its minimum.
    pub(crate) fn default_for(spec: &ScalingPolicySpec) -> Self {
        let current = spec.min_replicas.max(1).min(spec.max_replicas);
        CanaryInput { observation: Observation::default(), memory: ServiceMemory::default(), current, ready: current }
    }
}

/// A validated plugin, ready to swap in.
pub(crate) struct LoadedPlugin {
    pub(crate) source_name: String,
    pub(crate) plugin: Plugin,
    /// Compile, validation and canary time.
    pub(crate) load_time: Duration,
}

/// Why a component was not loaded.
#[derive(Debug)]
pub(crate) struct ValidationFailure {
    pub(crate) message: String,
    /// Only the clock failed it: every canary attempt ran out of time, which on a busy node says nothing about the
    /// plugin. Worth trying again later; anything else is refused until the plugin or the policy changes.
    pub(crate) transient: bool,
}

/// Compiles, validates (world type-check, sha256 pin) and canaries a component. Blocking: call it from
/// `spawn_blocking`.
pub(crate) fn load_and_validate(
    engine: &Arc<PolicyEngine>,
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    source: &PluginSource,
    canary: CanaryInput,
) -> Result<LoadedPlugin, ValidationFailure> {
    let started = Instant::now();
    let refused = |message: String| ValidationFailure { message, transient: false };
    let compiled = engine
        .load_digested(&source.name, &source.bytes, &source.digest, spec.plugin.sha256.as_deref())
        .map_err(|e| refused(e.to_string()))?;
    let mut decider = Decider::new(spec.clone(), spec.new_plugin(engine, compiled));
    for attempt in 1..=CANARY_ATTEMPTS {
        let mut memory = canary.memory.clone();
        let at = Moment { now_ms: unix_ms(), current: canary.current, ready: canary.ready };
        let record = decider.decide(key, &mut memory, canary.observation.clone(), at);
        match &record.plugin {
            decision::PluginVerdict::Failed { kind, message } => {
                let timed_out = *kind == FailureKind::Timeout;
                if timed_out && attempt < CANARY_ATTEMPTS {
                    continue;
                }
                let next = if timed_out {
                    format!(" in each of {CANARY_ATTEMPTS} attempts; trying again after a backoff")
                } else {
                    String::new()
                };
                let message = format!("plugin {} failed its canary decision ({kind}): {message}{next}", source.name);
                return Err(ValidationFailure { message, transient: timed_out });
            }
            _ => break,
        }
    }
    Ok(LoadedPlugin { source_name: source.name.clone(), plugin: decider.plugin, load_time: started.elapsed() })
}
