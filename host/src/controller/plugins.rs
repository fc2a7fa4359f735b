//! Plugins and how they are (re)loaded: built-ins, files, and components in ConfigMaps labelled
//! `ballast.dev/plugin=true` (`binaryData[key]`, optionally gzip-compressed so ~1 MiB compressed fits a
//! ConfigMap).
//!
//! A new version is compiled off the async runtime, type-checked against the world, pinned by sha256 if the policy
//! says so, and must pass a canary decision (on the service's last observation) before it replaces the running one.
//! A refused version changes nothing: the old plugin keeps deciding.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;

use crate::autoscaler::config_text;
use crate::decision::{self, Moment, ServiceMemory};
use crate::observation::Observation;
use crate::runtime::{self, Plugin, PolicyEngine};
use crate::spec::{ScalingPolicySpec, ServiceKey};

/// The label a ConfigMap carries to be watched for plugins.
pub const PLUGIN_LABEL: &str = "ballast.dev/plugin";
pub const PLUGIN_LABEL_SELECTOR: &str = "ballast.dev/plugin=true";
/// Bound on a decompressed component: a gzip bomb is refused, not inflated.
const MAX_COMPONENT_BYTES: u64 = 64 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

#[derive(Debug, thiserror::Error)]
pub enum PluginSourceError {
    #[error("{what}: {why}")]
    Unavailable { what: String, why: String },
}

/// The component a policy asks for, with where it came from.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// `builtin:hpa`, `configmap:NS/NAME/KEY`, or a path: names the plugin in status, events and errors.
    pub name: String,
    pub bytes: Arc<Vec<u8>>,
    pub digest: String,
}

/// Resolves a spec's plugin reference to component bytes. `config_map` looks a ConfigMap up by namespace and name.
pub fn resolve(
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_map: impl Fn(&str, &str) -> Option<Arc<ConfigMap>>,
) -> Result<PluginSource, PluginSourceError> {
    let plugin = &spec.plugin;
    let unavailable = |what: String, why: String| PluginSourceError::Unavailable { what, why };
    let (name, bytes) = match (&plugin.builtin, &plugin.config_map, &plugin.path) {
        (Some(builtin), None, None) => {
            let bytes = runtime::builtin(builtin).ok_or_else(|| {
                let known: Vec<_> = runtime::BUILTINS.iter().map(|(n, _)| *n).collect();
                unavailable(
                    format!("{key}"),
                    format!("unknown built-in plugin `{builtin}`; built-ins are {}", known.join(", ")),
                )
            })?;
            (format!("builtin:{builtin}"), bytes.to_vec())
        }
        (None, Some(cm_ref), None) => {
            let name = format!("configmap:{}/{}/{}", key.namespace, cm_ref.name, cm_ref.key);
            let cm = config_map(&key.namespace, &cm_ref.name).ok_or_else(|| {
                unavailable(
                    name.clone(),
                    format!(
                        "no ConfigMap {}/{} labelled {PLUGIN_LABEL_SELECTOR}; create it or label it",
                        key.namespace, cm_ref.name
                    ),
                )
            })?;
            let bytes = config_map_component(&cm, &cm_ref.key).map_err(|why| unavailable(name.clone(), why))?;
            (name, bytes)
        }
        (None, None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| unavailable(path.clone(), e.to_string()))?;
            (path.clone(), bytes)
        }
        _ => {
            return Err(unavailable(
                format!("{key}"),
                "spec.plugin must name exactly one of `builtin`, `configMap` or `path`".into(),
            ));
        }
    };
    let digest = runtime::digest(&bytes);
    Ok(PluginSource { name, bytes: Arc::new(bytes), digest })
}

/// The component in `binaryData[key]`, gunzipped when it starts with the gzip magic.
pub fn config_map_component(cm: &ConfigMap, key: &str) -> Result<Vec<u8>, String> {
    let Some(raw) = cm.binary_data.as_ref().and_then(|data| data.get(key)) else {
        let keys: Vec<&String> = cm.binary_data.iter().flat_map(|d| d.keys()).collect();
        return Err(format!("no binaryData key `{key}` (binaryData keys: {keys:?}); put the component under `{key}`"));
    };
    decompress(&raw.0)
}

/// Gunzips `bytes` if they are gzip, bounded by [`MAX_COMPONENT_BYTES`].
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip data is corrupt: {e}"))?;
    if out.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(format!("decompresses to more than {MAX_COMPONENT_BYTES} bytes; refused"));
    }
    Ok(out)
}

/// What the canary decision runs on: the service's last observation and state, or a quiet default.
#[derive(Debug, Clone)]
pub struct CanaryInput {
    pub observation: Observation,
    pub memory: ServiceMemory,
    pub current: u32,
    pub ready: u32,
}

impl CanaryInput {
    /// For a service never decided: nothing observed, at its minimum.
    pub fn default_for(spec: &ScalingPolicySpec) -> Self {
        let current = spec.min_replicas.max(1).min(spec.max_replicas);
        CanaryInput { observation: Observation::default(), memory: ServiceMemory::default(), current, ready: current }
    }
}

/// A validated plugin, ready to swap in.
pub struct LoadedPlugin {
    pub source_name: String,
    pub plugin: Plugin,
    /// Compile, validation and canary time.
    pub load_time: Duration,
}

/// Compiles, validates (world type-check, sha256 pin) and canaries a component. Blocking: call it from
/// `spawn_blocking`.
pub fn load_and_validate(
    engine: &Arc<PolicyEngine>,
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    source: &PluginSource,
    canary: CanaryInput,
) -> Result<LoadedPlugin, String> {
    let started = Instant::now();
    let compiled =
        engine.load_pinned(&source.name, &source.bytes, spec.plugin.sha256.as_deref()).map_err(|e| e.to_string())?;
    let mut plugin = Plugin::new(engine.clone(), compiled);
    let mut memory = canary.memory;
    let at = Moment { now_ms: unix_ms(), current: canary.current, ready: canary.ready };
    let config = config_text(&spec.config);
    let record = decision::decide(key, spec, &config, &mut plugin, &mut memory, &canary.observation, at);
    if let decision::PluginVerdict::Failed { kind, message } = &record.plugin {
        return Err(format!("plugin {} failed its canary decision ({kind}): {message}", source.name));
    }
    Ok(LoadedPlugin { source_name: source.name.clone(), plugin, load_time: started.elapsed() })
}

/// Milliseconds since the Unix epoch: the decision clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
