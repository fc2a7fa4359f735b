//! HPA condition reasons, spelled as Kubernetes spells them in `ScalingLimited`, `AbleToScale` and `ScalingActive`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// ScalingLimited=False: nothing capped the stabilized count.
    DesiredWithinRange,
    /// Capped by the scale-up rate (policies, or 2 x current / 4 without `behavior`).
    ScaleUpLimit,
    /// Capped by the scale-down rate policies.
    ScaleDownLimit,
    /// Capped at maxReplicas (also: current above maxReplicas, brought down to it).
    TooManyReplicas,
    /// Raised to minReplicas (also: current below minReplicas, brought up to it).
    TooFewReplicas,
    /// AbleToScale: the scale-up stabilization window held the count below the desired one.
    ScaleUpStabilized,
    /// AbleToScale: the scale-down stabilization window held the count above the desired one.
    ScaleDownStabilized,
    /// AbleToScale: stabilization did not change the desired count.
    ReadyForNewScale,
    /// ScalingActive=False: the target has 0 replicas and minReplicas is not 0 (maintenance mode).
    ScalingDisabled,
}

impl Reason {
    /// The Kubernetes name, e.g. `ScaleUpLimit`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::DesiredWithinRange => "DesiredWithinRange",
            Reason::ScaleUpLimit => "ScaleUpLimit",
            Reason::ScaleDownLimit => "ScaleDownLimit",
            Reason::TooManyReplicas => "TooManyReplicas",
            Reason::TooFewReplicas => "TooFewReplicas",
            Reason::ScaleUpStabilized => "ScaleUpStabilized",
            Reason::ScaleDownStabilized => "ScaleDownStabilized",
            Reason::ReadyForNewScale => "ReadyForNewScale",
            Reason::ScalingDisabled => "ScalingDisabled",
        }
    }

    /// The condition message the controller sets with this reason.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Reason::DesiredWithinRange => "the desired count is within the acceptable range",
            Reason::ScaleUpLimit => "the desired replica count is increasing faster than the maximum scale rate",
            Reason::ScaleDownLimit => "the desired replica count is decreasing faster than the maximum scale rate",
            Reason::TooManyReplicas => "the desired replica count is more than the maximum replica count",
            Reason::TooFewReplicas => "the desired replica count is less than the minimum replica count",
            Reason::ScaleUpStabilized => {
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
            }
            Reason::ScaleDownStabilized => {
                "recent recommendations were higher than current one, applying the highest recent recommendation"
            }
            Reason::ReadyForNewScale => "recommended size matches current size",
            Reason::ScalingDisabled => "scaling is disabled since the replica count of the target is zero",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
