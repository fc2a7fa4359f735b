//! The `ScalingPolicy` document: what to scale, between which bounds, with which plugin, config, metrics and
//! `behavior`. The same types serve the CRD (cluster), `ballast run --config FILE` and `ballast simulate`.

use std::collections::BTreeMap;

#[cfg(feature = "cluster")]
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clamps::{Behavior, ClampError};
use crate::policy::schema;

/// What is wrong with a spec beyond what its schema says, naming the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec.maxReplicas is 0; it must be at least 1 (to stop scaling, set spec.paused)")]
    NoMaxReplicas,
    #[error("spec.minReplicas ({min}) is above spec.maxReplicas ({max}); lower minReplicas or raise maxReplicas")]
    MinAboveMax { min: u32, max: u32 },
    #[error(
        "spec.waitObjectiveSeconds ({0}) is outside {min}..={max}; give the wait in seconds, e.g. 2.5",
        min = MIN_WAIT_OBJECTIVE_SECONDS,
        max = MAX_WAIT_OBJECTIVE_SECONDS
    )]
    WaitObjective(f64),
    #[error("spec.{0}")]
    Behavior(#[source] ClampError),
    #[error(
        "{field} must name exactly one of `builtin` ({builtins}), `path` (a component file), `oci` (a digest-pinned \
         OCI reference) or `configMap` (a ConfigMap labelled {label})",
        builtins = crate::runtime::builtin_names(),
        label = crate::policy::plugins::PLUGIN_LABEL_SELECTOR
    )]
    PluginSources { field: String },
}

/// Identifies one scaled workload: the ScalingPolicy's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The `apiVersion` of ScalingPolicy documents (the group and version of the custom resource).
pub(crate) const API_VERSION: &str = "ballast.dev/v1alpha1";

/// A ScalingPolicy as policy files hold it, in a build without the Kubernetes client: the fields of the custom
/// resource type that the `cluster` feature derives from [`ScalingPolicySpec`] under the same name.
#[cfg(not(feature = "cluster"))]
#[derive(Debug, Clone)]
pub struct ScalingPolicy {
    pub(crate) metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub(crate) spec: ScalingPolicySpec,
    pub(crate) status: Option<crate::policy::status::ScalingPolicyStatus>,
}

/// What to scale, between which bounds, with which plugin, config, metrics and `behavior`. Also the spec of the
/// `ScalingPolicy` custom resource (`ballast.dev/v1alpha1`, see `controller::crd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(
    feature = "cluster",
    derive(CustomResource),
    kube(
        group = "ballast.dev",
        version = "v1alpha1",
        kind = "ScalingPolicy",
        namespaced,
        doc = "A Ballast scaling policy: a WebAssembly plugin decides the replica count of a workload's /scale",
        shortname = "sp",
        status = "crate::policy::status::ScalingPolicyStatus",
        printcolumn = r#"{"name": "Reference", "type": "string", "jsonPath": ".status.reference"}"#,
        printcolumn = r#"{"name": "MinPods", "type": "integer", "jsonPath": ".spec.minReplicas"}"#,
        printcolumn = r#"{"name": "MaxPods", "type": "integer", "jsonPath": ".spec.maxReplicas"}"#,
        printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".status.currentReplicas"}"#,
        printcolumn = r#"{"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"}"#,
        printcolumn = r#"{"name": "Plugin", "type": "string", "jsonPath": ".status.pluginName"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicySpec {
    pub target: TargetRef,
    #[serde(default = "one")]
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub plugin: PluginRef,
    /// Free-form plugin configuration, handed to the plugin as JSON text.
    #[serde(default)]
    #[schemars(schema_with = "schema::free_form")]
    pub config: serde_json::Value,
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// autoscaling/v2 `behavior`; absent means the HPA's legacy limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<Behavior>,
    #[serde(default)]
    pub fallback: Fallback,
    /// Evaluated and reported beside the live plugin, never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
    #[serde(default)]
    pub paused: bool,
    /// Seconds between this policy's decisions. Sources refresh on their own schedules, so a short interval costs
    /// a plugin call, not more load on Prometheus or the API server.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub decision_interval_seconds: u32,
    /// Tighter limits for this policy's plugins than the host's; a value above the host's limit gets the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PluginLimitsSpec>,
    /// The longest a job of this service's queues should wait, in seconds: exported per queue as
    /// `ballast_wait_objective_seconds` and drawn on the dashboard against the oldest waiting job. Plugins do not
    /// see it (theirs is in `config`, e.g. queue-drain's `targetWaitSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = MIN_WAIT_OBJECTIVE_SECONDS, max = MAX_WAIT_OBJECTIVE_SECONDS))]
    pub wait_objective_seconds: Option<f64>,
}

/// A policy's own plugin limits: it may lower the host's (`--plugin-deadline`, `--plugin-memory-mib`), never raise
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimitsSpec {
    /// Milliseconds one `decide` call may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub deadline_milliseconds: Option<u32>,
    /// MiB of linear memory the plugin may hold, all its memories together.
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory_mib: Option<u32>,
}

impl PluginLimitsSpec {
    pub(crate) fn deadline(&self) -> Option<std::time::Duration> {
        self.deadline_milliseconds.map(|ms| std::time::Duration::from_millis(u64::from(ms)))
    }

    pub(crate) fn memory_bytes(&self) -> Option<usize> {
        self.memory_mib.map(|mib| (mib as usize).saturating_mul(1 << 20))
    }
}

/// Bounds of `spec.waitObjectiveSeconds`: a millisecond to a day.
const MIN_WAIT_OBJECTIVE_SECONDS: f64 = 0.001;
const MAX_WAIT_OBJECTIVE_SECONDS: f64 = 86_400.0;

fn one() -> u32 {
    1
}

impl ScalingPolicySpec {
    /// What is wrong with the spec beyond what its schema says, naming the field and the fix. Every reader of
    /// ScalingPolicies (the cluster, `ballast run --config`, the simulator) refuses a spec on this, each adding
    /// which policy it is.
    pub(crate) fn check(&self) -> Result<(), SpecError> {
        if self.max_replicas == 0 {
            return Err(SpecError::NoMaxReplicas);
        }
        if self.min_replicas > self.max_replicas {
            return Err(SpecError::MinAboveMax { min: self.min_replicas, max: self.max_replicas });
        }
        if let Some(seconds) = self.wait_objective_seconds
            && !(MIN_WAIT_OBJECTIVE_SECONDS..=MAX_WAIT_OBJECTIVE_SECONDS).contains(&seconds)
        {
            return Err(SpecError::WaitObjective(seconds));
        }
        if let Some(behavior) = &self.behavior {
            behavior.validate().map_err(SpecError::Behavior)?;
        }
        self.plugin.check("spec.plugin")?;
        match &self.shadow {
            Some(shadow) => shadow.plugin.check("spec.shadow.plugin"),
            None => Ok(()),
        }
    }

    /// A plugin for this policy, held to its own limits where they are lower than the engine's.
    pub fn new_plugin(
        &self,
        engine: &std::sync::Arc<crate::runtime::PolicyEngine>,
        compiled: std::sync::Arc<crate::runtime::CompiledPolicy>,
    ) -> crate::runtime::Plugin {
        let mut plugin = crate::runtime::Plugin::new(engine.clone(), compiled);
        if let Some(limits) = &self.limits {
            plugin.lower_limits(limits.deadline(), limits.memory_bytes());
        }
        plugin
    }

    /// The time between decisions, in milliseconds (at least one second).
    pub(crate) fn decision_interval_ms(&self) -> u64 {
        u64::from(self.decision_interval_seconds.max(1)) * 1000
    }

    /// The spec the shadow plugin decides with: this one with the shadow's plugin and config. `None` without one.
    pub(crate) fn shadow_spec(&self) -> Option<ScalingPolicySpec> {
        let shadow = self.shadow.as_ref()?;
        Some(ScalingPolicySpec {
            plugin: shadow.plugin.clone(),
            config: shadow.config.clone(),
            shadow: None,
            ..self.clone()
        })
    }
}

/// Any resource with a `/scale` subresource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    #[serde(default = "apps_v1")]
    pub api_version: String,
    #[serde(default = "deployment")]
    pub kind: String,
    pub name: String,
}

fn apps_v1() -> String {
    "apps/v1".into()
}

fn deployment() -> String {
    "Deployment".into()
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginRef {
    /// A plugin compiled into the host: `hpa` or `queue-drain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// A component in a ConfigMap of the policy's namespace (`binaryData`, optionally gzip-compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKeyRef>,
    /// A component file on the host's filesystem (simulator, `ballast run --config`, or a mounted volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A component published as an OCI artifact (wasm media types), pulled by digest: for plugins too large for a
    /// ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciPluginRef>,
    /// Refuse any component whose sha256 differs (lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl PluginRef {
    /// Refuses a reference that names no source or more than one; `field` is where it sits in the spec.
    pub(crate) fn check(&self, field: &str) -> Result<(), SpecError> {
        let named = [self.builtin.is_some(), self.path.is_some(), self.oci.is_some(), self.config_map.is_some()];
        if named.iter().filter(|&&n| n).count() == 1 {
            return Ok(());
        }
        Err(SpecError::PluginSources { field: field.to_owned() })
    }
}

/// A plugin in an OCI registry, like Kubewarden's `registry://` references but always pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciPluginRef {
    /// `REGISTRY/REPOSITORY@sha256:DIGEST` (the manifest's digest, as `ballast plugin pack --oci` prints it). A tag
    /// alone is refused: it can move under a running policy.
    pub reference: String,
    /// A Secret of type `kubernetes.io/dockerconfigjson` in the policy's namespace with the registry's
    /// credentials (basic auth or a registry token). Anonymous pull when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pull_secret: Option<String>,
    /// Speak plain HTTP to the registry instead of HTTPS. Loopback registries always get plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapKeyRef {
    pub name: String,
    pub key: String,
}

/// Which metrics to gather for the service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// BullMQ queues feeding the service; their counts are summed.
    #[serde(default)]
    pub queues: Vec<QueueRef>,
    /// Where the queues live, when not in the host's Redis (`--redis`): a connection from a Secret in the policy's
    /// own namespace, as KEDA's TriggerAuthentication gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConnectionRef>,
    /// PromQL templates; placeholders `{namespace}`, `{deployment}` and `{pod_regex}` are filled in per service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetrics>,
    /// CPU and memory from metrics.k8s.io.
    #[serde(default = "yes")]
    pub resources: bool,
}

fn yes() -> bool {
    true
}

/// A Redis connection described by a Secret of the policy's namespace. Its keys: `url` (`redis://` or `rediss://`,
/// may carry user, password and database) or `host` and `port`; `username`, `password`, `database` (override the
/// URL's); `tls: "true"` and `ca.crt` (PEM) for TLS with a private CA; `sentinelMaster` and `sentinelAddresses`
/// (`host:port,host:port`) to find the master through Redis Sentinel, with `sentinelPassword` if the sentinels
/// need one; `cluster: "true"` and `addresses` for Redis Cluster (queues with a hash-tagged prefix such as `{bull}`).
/// The Secret is re-read every 30 s, so a rotated password is picked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisConnectionRef {
    pub(crate) secret_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueRef {
    pub name: String,
    /// BullMQ key prefix; `bull` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// PromQL templates for one service. The template language (placeholders `{namespace}`, `{deployment}`,
/// `{pod_regex}`, `{max_sample_age}`, and how series are split between services) is documented in
/// `sources::prometheus`. Services whose templates are identical share one query per refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetrics {
    /// GPU duty cycle in percent, averaged over the service's pods. Absent: the default template over
    /// dcgm-exporter's `DCGM_FI_DEV_GPU_UTIL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Base name of a latency histogram in seconds (without `_bucket`), e.g. `inference_request_duration_seconds`.
    /// Gives the default p50/p95/p99 templates where `latencyP50`/`latencyP95`/`latencyP99` are absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_histogram: Option<String>,
    /// Latency templates; they must yield milliseconds. Several series for one service: the largest counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<String>,
    /// Name of a request counter, e.g. `inference_requests_total`. Gives the default request-rate template where
    /// `requestRate` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_counter: Option<String>,
    /// Requests per second; the service's series are summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<String>,
    /// Further metrics handed to the plugin by name; the service's series are summed.
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
}

/// What to do when the plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "mode", try_from = "FallbackFields")]
#[schemars(schema_with = "schema::fallback")]
pub enum Fallback {
    /// Keep the current replica count.
    #[default]
    Hold,
    /// Go to a fixed replica count (still within min/max and behavior).
    Fixed { replicas: u32 },
}

/// `fallback` as written: a plain object, so that strict reading ([`crate::strict`]) sees its fields (serde reads
/// an internally tagged enum through a buffer that hides them). `replicas` beside `mode: hold` is ignored, as
/// before and as the CRD's schema allows.
#[derive(Deserialize)]
struct FallbackFields {
    mode: FallbackMode,
    #[serde(default)]
    replicas: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum FallbackMode {
    Hold,
    Fixed,
}

impl TryFrom<FallbackFields> for Fallback {
    type Error = &'static str;

    fn try_from(fields: FallbackFields) -> Result<Self, Self::Error> {
        match (fields.mode, fields.replicas) {
            (FallbackMode::Hold, _) => Ok(Fallback::Hold),
            (FallbackMode::Fixed, Some(replicas)) => Ok(Fallback::Fixed { replicas }),
            (FallbackMode::Fixed, None) => Err("missing field `replicas` (mode fixed goes to that many replicas)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSpec {
    pub(crate) plugin: PluginRef,
    #[serde(default)]
    #[schemars(schema_with = "schema::free_form")]
    pub(crate) config: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_reads_as_it_is_written_and_refuses_a_fixed_count_without_replicas() {
        let read = |text: &str| crate::strict::from_yaml_str::<Fallback>(text).map_err(|e| e.to_string());
        assert_eq!(read("{mode: fixed, replicas: 3}"), Ok(Fallback::Fixed { replicas: 3 }));
        assert_eq!(read("{mode: hold}"), Ok(Fallback::Hold));
        assert_eq!(read("{mode: hold, replicas: 3}"), Ok(Fallback::Hold), "the CRD's schema allows it");
        let err = read("{mode: fixed}").unwrap_err();
        assert!(err.starts_with("missing field `replicas` (mode fixed goes to that many replicas)"), "{err}");
        let err = read("{mode: fixed, replicas: 3, replica: 4}").unwrap_err();
        assert!(err.starts_with("unknown field `replica` (did you mean `replicas`?)"), "{err}");
        assert!(read("{mode: fixd}").unwrap_err().contains("unknown variant `fixd`"));
        let written = serde_json::to_value(Fallback::Fixed { replicas: 3 }).unwrap();
        assert_eq!(written, serde_json::json!({"mode": "fixed", "replicas": 3}));
        assert_eq!(serde_json::from_value::<Fallback>(written).unwrap(), Fallback::Fixed { replicas: 3 });
    }
}
