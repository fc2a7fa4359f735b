//! autoscaling/v2 `HorizontalPodAutoscalerBehavior` as serde types, field names as in the Kubernetes JSON schema,
//! with the API server's defaulting (`SetDefaults_HorizontalPodAutoscalerBehavior`) and validation
//! (`validateScalingRules`).

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ClampError;

/// The controller's `--horizontal-pod-autoscaler-downscale-stabilization` default (5 minutes): the scale-down window
/// when `behavior.scaleDown.stabilizationWindowSeconds` is unset, and the legacy (no `behavior`) window.
pub const DOWNSCALE_STABILIZATION_WINDOW_SECONDS: i32 = 300;
/// Validation bound of `stabilizationWindowSeconds` (one hour).
pub const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;
/// Validation bound of `periodSeconds` (half an hour).
pub const MAX_PERIOD_SECONDS: i32 = 1800;

/// Unknown fields are refused (a misspelt `stabilizationWindowSecond` would otherwise silently mean the default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<HpaScalingPolicy>>,
    /// Kubernetes 1.33+ (HPAConfigurableTolerance): accepted for schema compatibility; metric tolerance is the
    /// plugin's business in Ballast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::policy::schema::quantity")]
    pub tolerance: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

// One rate policy of HPA `behavior` (autoscaling/v2 `HPAScalingPolicy`): at most `value` pods or percent per
// `periodSeconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingPolicy {
    #[serde(rename = "type")]
    pub kind: ScalingPolicyType,
    pub value: i32,
    pub period_seconds: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScalingPolicyType {
    Pods,
    Percent,
}

/// One direction's rules with every default filled in: what the controller actually uses. The policies are
/// borrowed from the `behavior` (or the defaults), not copied: the control loop resolves them on every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRules<'a> {
    pub(crate) stabilization_window_seconds: i32,
    pub(crate) select_policy: SelectPolicy,
    pub(crate) policies: Cow<'a, [HpaScalingPolicy]>,
}

/// `GenerateHPAScaleUpRules`' policies: 4 Pods or 100 Percent per 15 s.
const DEFAULT_SCALE_UP_POLICIES: &[HpaScalingPolicy] = &[
    HpaScalingPolicy { kind: ScalingPolicyType::Pods, value: 4, period_seconds: 15 },
    HpaScalingPolicy { kind: ScalingPolicyType::Percent, value: 100, period_seconds: 15 },
];
/// `GenerateHPAScaleDownRules`' policy: 100 Percent per 15 s.
const DEFAULT_SCALE_DOWN_POLICIES: &[HpaScalingPolicy] =
    &[HpaScalingPolicy { kind: ScalingPolicyType::Percent, value: 100, period_seconds: 15 }];

impl<'a> ResolvedRules<'a> {
    /// `GenerateHPAScaleUpRules` with no user rules: no stabilization, Max of {4 Pods, 100 Percent} per 15 s.
    pub(crate) fn default_scale_up() -> Self {
        ResolvedRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: Cow::Borrowed(DEFAULT_SCALE_UP_POLICIES),
        }
    }

    /// `GenerateHPAScaleDownRules` plus `maybeInitScaleDownStabilizationWindow`: 300 s window, 100 Percent per 15 s.
    pub(crate) fn default_scale_down() -> Self {
        ResolvedRules {
            stabilization_window_seconds: DOWNSCALE_STABILIZATION_WINDOW_SECONDS,
            select_policy: SelectPolicy::Max,
            policies: Cow::Borrowed(DEFAULT_SCALE_DOWN_POLICIES),
        }
    }

    /// `copyHPAScalingRules`: every field the user set replaces the default, field by field.
    fn overlaid(mut self, user: Option<&'a ScalingRules>) -> Self {
        if let Some(user) = user {
            if let Some(window) = user.stabilization_window_seconds {
                self.stabilization_window_seconds = window;
            }
            if let Some(select) = user.select_policy {
                self.select_policy = select;
            }
            if let Some(policies) = &user.policies {
                self.policies = Cow::Borrowed(policies);
            }
        }
        self
    }

    /// `getLongestPolicyPeriod`: how far back scale events of this direction can matter.
    pub(crate) fn longest_policy_period_seconds(&self) -> i32 {
        self.policies.iter().map(|policy| policy.period_seconds).fold(0, i32::max)
    }
}

impl Behavior {
    /// The scale-up rules after Kubernetes defaulting.
    pub fn resolved_scale_up(&self) -> ResolvedRules<'_> {
        ResolvedRules::default_scale_up().overlaid(self.scale_up.as_ref())
    }

    /// The scale-down rules after Kubernetes defaulting (window 300 s when unset).
    pub fn resolved_scale_down(&self) -> ResolvedRules<'_> {
        ResolvedRules::default_scale_down().overlaid(self.scale_down.as_ref())
    }

    /// The API server's checks (`validateBehavior`), so a spec Kubernetes would reject is rejected here too. The
    /// error names the field path under `behavior` and the allowed range.
    pub fn validate(&self) -> Result<(), ClampError> {
        for (direction, rules) in [("scaleUp", &self.scale_up), ("scaleDown", &self.scale_down)] {
            if let Some(rules) = rules {
                validate_rules(rules, &format!("behavior.{direction}"))?;
            }
        }
        Ok(())
    }
}

fn validate_rules(rules: &ScalingRules, path: &str) -> Result<(), ClampError> {
    if let Some(window) = rules.stabilization_window_seconds
        && !(0..=MAX_STABILIZATION_WINDOW_SECONDS).contains(&window)
    {
        return Err(ClampError::invalid(
            format!("{path}.stabilizationWindowSeconds"),
            format!("{window} is out of range: use 0 to {MAX_STABILIZATION_WINDOW_SECONDS} seconds"),
        ));
    }
    let Some(policies) = &rules.policies else { return Ok(()) };
    if policies.is_empty() {
        return Err(ClampError::invalid(
            format!("{path}.policies"),
            "must specify at least one policy (omit `policies` to get the Kubernetes defaults)",
        ));
    }
    for (index, policy) in policies.iter().enumerate() {
        if policy.value <= 0 {
            return Err(ClampError::invalid(
                format!("{path}.policies[{index}].value"),
                format!("{} is invalid: must be greater than zero", policy.value),
            ));
        }
        if !(1..=MAX_PERIOD_SECONDS).contains(&policy.period_seconds) {
            return Err(ClampError::invalid(
                format!("{path}.policies[{index}].periodSeconds"),
                format!("{} is out of range: use 1 to {MAX_PERIOD_SECONDS} seconds", policy.period_seconds),
            ));
        }
    }
    Ok(())
}
