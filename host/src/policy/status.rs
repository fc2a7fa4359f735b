//! What the controller reports in `ScalingPolicy.status`, and what it persists there: the service's
//! [`ServiceMemory`] (plugin state and behavior history), so a restart or a fail-over resumes where it stopped.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decision::{DecisionRecord, PluginVerdict, ServiceMemory, ShadowRecord};

pub(crate) const ABLE_TO_SCALE: &str = "AbleToScale";
pub(crate) const SCALING_ACTIVE: &str = "ScalingActive";
pub(crate) const SCALING_LIMITED: &str = "ScalingLimited";
pub(crate) const PLUGIN_READY: &str = "PluginReady";
/// Whether the shadow plugin (if the spec names one) is loaded and deciding beside the live one.
pub(crate) const SHADOW_READY: &str = "ShadowReady";
/// Whether CPU and memory can be read (metrics.k8s.io served): on policies with `metrics.resources`, once known to be
/// a problem.
pub(crate) const RESOURCE_METRICS: &str = "ResourceMetricsAvailable";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicyStatus {
    /// `Kind/name` of the scaled target, as `kubectl get hpa` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) desired_replicas: Option<u32>,
    /// RFC 3339 time of the last `/scale` write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_scale_time: Option<String>,
    /// Where the running plugin came from (`builtin:hpa`, `configmap:NAME/KEY`, a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plugin_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plugin_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_decision: Option<LastDecision>,
    #[serde(default)]
    pub(crate) conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) observed_generation: Option<i64>,
    /// Plugin state blob and behavior history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_optional")]
    pub(crate) memory: Option<ServiceMemory>,
}

/// The last decision, explained: `ballast explain` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastDecision {
    /// RFC 3339 time of the decision.
    pub(crate) time: String,
    /// One line: `current -> replicas (plugin reason; clamp reason)`.
    pub(crate) summary: String,
    pub(crate) current: u32,
    /// What the plugin (or the fallback) asked for, before the clamps.
    pub(crate) desired: u32,
    /// What the clamps allowed: the count written to `/scale`.
    pub(crate) replicas: u32,
    pub(crate) plugin_digest: String,
    #[serde(default)]
    pub(crate) proposals: Vec<Proposal>,
    /// The clamp's reason (`ScaleUpLimit`, `DesiredWithinRange`, ...), absent while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) clamp_reason: Option<String>,
    /// What the shadow plugin would have done on the same observation (never applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shadow: Option<ShadowRecord>,
    /// The whole decision record: observation, plugin verdict, fallback, each clamp step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_optional")]
    pub(crate) record: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Proposal {
    pub(crate) metric: String,
    pub(crate) replicas: u32,
}

/// A Kubernetes condition (`metav1.Condition` shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Condition {
    #[serde(rename = "type")]
    pub(crate) type_: String,
    /// `True`, `False` or `Unknown`.
    pub(crate) status: String,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) last_transition_time: String,
}

/// RFC 3339 now.
pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl ScalingPolicyStatus {
    /// Sets a condition, keeping its transition time when its status did not change. Returns whether anything
    /// changed.
    pub(crate) fn set_condition(&mut self, type_: &str, ok: bool, reason: &str, message: &str) -> bool {
        let status = if ok { "True" } else { "False" };
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == status && c.reason == reason && c.message == message => false,
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now_rfc3339();
                }
                c.status = status.into();
                c.reason = reason.into();
                c.message = message.into();
                true
            }
            None => {
                self.conditions.push(Condition {
                    type_: type_.into(),
                    status: status.into(),
                    reason: reason.into(),
                    message: message.into(),
                    last_transition_time: now_rfc3339(),
                });
                true
            }
        }
    }

    pub(crate) fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Records a decision: replicas, last decision and the HPA conditions. Returns whether something a reader
    /// cares about changed (counts, reason, conditions), as opposed to only the time and memory.
    pub(crate) fn record_decision(&mut self, record: &DecisionRecord, current_after: u32) -> bool {
        let before =
            (self.current_replicas, self.desired_replicas, self.last_decision.as_ref().map(|d| d.summary.clone()));
        let proposals = match &record.plugin {
            PluginVerdict::Decided { proposals, .. } => proposals
                .iter()
                .map(|(metric, replicas)| Proposal { metric: metric.clone(), replicas: *replicas })
                .collect(),
            _ => Vec::new(),
        };
        self.last_decision = Some(LastDecision {
            time: now_rfc3339(),
            summary: record.summary(),
            current: record.current,
            desired: record.desired,
            replicas: record.replicas,
            plugin_digest: record.plugin_digest.to_string(),
            proposals,
            clamp_reason: record.clamp.as_ref().map(|c| c.reason.as_str().to_owned()),
            shadow: record.shadow.clone(),
            record: serde_json::to_value(record).ok(),
        });
        self.current_replicas = Some(current_after);
        self.desired_replicas = Some(record.replicas);
        self.plugin_digest = Some(record.plugin_digest.to_string());
        let mut changed = before != (self.current_replicas, self.desired_replicas, Some(record.summary()));
        if let Some(clamp) = &record.clamp {
            let able = clamp.able_to_scale_reason.unwrap_or(crate::clamps::Reason::ReadyForNewScale);
            changed |= self.set_condition(ABLE_TO_SCALE, true, able.as_str(), able.message());
            let disabled = clamp.reason == crate::clamps::Reason::ScalingDisabled;
            changed |= if disabled {
                self.set_condition(SCALING_ACTIVE, false, clamp.reason.as_str(), clamp.reason.message())
            } else {
                self.set_condition(
                    SCALING_ACTIVE,
                    true,
                    "ValidMetricFound",
                    "the policy plugin computed a replica count",
                )
            };
            let limited = !matches!(
                clamp.reason,
                crate::clamps::Reason::DesiredWithinRange
                    | crate::clamps::Reason::ScaleUpStabilized
                    | crate::clamps::Reason::ScaleDownStabilized
                    | crate::clamps::Reason::ReadyForNewScale
                    | crate::clamps::Reason::ScalingDisabled
            );
            changed |= self.set_condition(SCALING_LIMITED, limited, clamp.reason.as_str(), clamp.reason.message());
        } else {
            changed |= self.set_condition(SCALING_ACTIVE, false, "ScalingPaused", "spec.paused is true");
        }
        changed
    }
}
