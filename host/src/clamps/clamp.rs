//! The entry point of the decision pipeline: one plugin decision in, the replica count the HPA controller would
//! set out, with every stage recorded for `ballast explain`. Mirrors `reconcileAutoscaler` from the scale read to
//! the `/scale` write.

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use super::account::StepDetail;
use super::history::{ScaleHistory, TimestampedRecommendation};
use super::normalize::{
    self, Converted, RateArgs, convert_desired_replicas_with_behavior_rate, convert_desired_replicas_with_rules,
    saturate_u32,
};
use super::reason::Reason;
use super::types::{Behavior, DOWNSCALE_STABILIZATION_WINDOW_SECONDS};

#[derive(Debug, Clone, Copy)]
pub struct ClampInput<'a> {
    /// The target's `/scale` `spec.replicas` now.
    pub current: u32,
    /// The plugin's (unclamped) decision.
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// `None`: the HPA's legacy limits (300 s downscale stabilization, scale-up capped at max(2 x current, 4)).
    pub behavior: Option<&'a Behavior>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClampStage {
    /// The rules applied before any metric is looked at: scaling disabled at 0 replicas, or the current count
    /// outside [min, max]. They bypass stabilization and rate limits.
    Bounds,
    /// The stabilization window(s).
    Stabilization,
    /// Rate limits and min/max.
    Limits,
}

/// One stage of a clamp. Serialized with its `message` and its `detail` as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClampStep {
    pub(crate) stage: ClampStage,
    pub(crate) replicas_in: u32,
    pub(crate) replicas_out: u32,
    pub(crate) reason: Reason,
    /// How the stage computed its bound (windows, policies, period starts); its `Display` is the text.
    pub(crate) detail: StepDetail,
}

impl ClampStep {
    /// The condition message Kubernetes would show.
    pub(crate) fn message(&self) -> &'static str {
        match (self.stage, self.reason) {
            (ClampStage::Bounds, Reason::TooManyReplicas) => "Current number of replicas above Spec.MaxReplicas",
            (ClampStage::Bounds, Reason::TooFewReplicas) => "Current number of replicas below Spec.MinReplicas",
            (_, reason) => reason.message(),
        }
    }
}

impl Serialize for ClampStep {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut step = serializer.serialize_struct("ClampStep", 6)?;
        step.serialize_field("stage", &self.stage)?;
        step.serialize_field("replicasIn", &self.replicas_in)?;
        step.serialize_field("replicasOut", &self.replicas_out)?;
        step.serialize_field("reason", &self.reason)?;
        step.serialize_field("message", self.message())?;
        step.serialize_field("detail", &Displayed(&self.detail))?;
        step.end()
    }
}

/// Serializes a value as the string its `Display` writes, without building the string first.
struct Displayed<'a, T>(&'a T);

impl<T: std::fmt::Display> Serialize for Displayed<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClampOutcome {
    /// The replica count to write to `/scale` (equal to `current` means: do not scale).
    pub replicas: u32,
    /// The limiting reason if min/max/rate changed the stabilized count, else the stabilization reason if
    /// stabilization changed the desired count, else `DesiredWithinRange`; `ScalingDisabled`, `TooManyReplicas` or
    /// `TooFewReplicas` when the bounds rules decided.
    pub reason: Reason,
    /// The count after stabilization (`None` when the bounds rules decided).
    pub stabilized_replicas: Option<u32>,
    /// The AbleToScale reason: `ScaleUpStabilized`, `ScaleDownStabilized` or `ReadyForNewScale`.
    pub able_to_scale_reason: Option<Reason>,
    pub(crate) steps: Vec<ClampStep>,
}

/// Clamp one decision as the HPA controller would and record the raw decision in `history` (the controller's
/// recommendation log). Call [`super::record_scale`] after the `/scale` write succeeds.
///
/// An empty recommendation log is a freshly started controller: the current count is recorded first as the initial
/// recommendation (`recordInitialRecommendation`), so a new policy does not scale down before the scale-down window
/// has passed. A `min` above `max` is treated as `max` (validation should have refused it).
pub fn clamp(input: &ClampInput, history: &mut ScaleHistory) -> ClampOutcome {
    let current = i64::from(input.current);
    let desired = i64::from(input.desired);
    let max = i64::from(input.max);
    let min = i64::from(input.min.min(input.max));
    if history.recommendations.is_empty() {
        history.recommendations.push(TimestampedRecommendation { replicas: input.current, timestamp_ms: input.now_ms });
    }

    let bounds = if current == 0 && min != 0 {
        Some((0, Reason::ScalingDisabled))
    } else if current > max {
        Some((max, Reason::TooManyReplicas))
    } else if current < min {
        Some((min, Reason::TooFewReplicas))
    } else {
        None
    };
    if let Some((replicas, reason)) = bounds {
        let replicas = saturate_u32(replicas);
        return ClampOutcome {
            replicas,
            reason,
            stabilized_replicas: None,
            able_to_scale_reason: None,
            steps: vec![ClampStep {
                stage: ClampStage::Bounds,
                replicas_in: input.desired,
                replicas_out: replicas,
                reason,
                detail: StepDetail::Bounds { current, min, max },
            }],
        };
    }

    let (stabilized, stabilization_reason, stabilization_detail, converted) = match input.behavior {
        Some(behavior) => {
            let scale_up = behavior.resolved_scale_up();
            let scale_down = behavior.resolved_scale_down();
            let stabilized = normalize::stabilize_recommendation_with_behaviors(
                &mut history.recommendations,
                current,
                desired,
                scale_up.stabilization_window_seconds,
                scale_down.stabilization_window_seconds,
                input.now_ms,
            );
            let detail = StepDetail::Stabilized {
                current,
                floor: stabilized.floor,
                ceiling: stabilized.ceiling,
                up_window_seconds: scale_up.stabilization_window_seconds,
                down_window_seconds: scale_down.stabilization_window_seconds,
            };
            let converted = convert_desired_replicas_with_behavior_rate(&RateArgs {
                current,
                desired: stabilized.replicas,
                min,
                max,
                scale_up: &scale_up,
                scale_down: &scale_down,
                up_events: &history.scale_up_events,
                down_events: &history.scale_down_events,
                now_ms: input.now_ms,
            });
            (stabilized.replicas, stabilized.reason, detail, converted)
        }
        None => {
            let window = DOWNSCALE_STABILIZATION_WINDOW_SECONDS;
            let stabilized =
                normalize::stabilize_recommendation(&mut history.recommendations, desired, window, input.now_ms);
            let detail = StepDetail::LegacyStabilized { window_seconds: window, stabilized };
            let converted = convert_desired_replicas_with_rules(current, stabilized, min, max);
            (stabilized, Reason::ScaleDownStabilized, detail, converted)
        }
    };

    let able_to_scale_reason = if stabilized != desired { stabilization_reason } else { Reason::ReadyForNewScale };
    let Converted { replicas, reason: limiting_reason, detail: rate } = converted;
    let reason = if limiting_reason != Reason::DesiredWithinRange {
        limiting_reason
    } else if stabilized != desired {
        stabilization_reason
    } else {
        Reason::DesiredWithinRange
    };
    let replicas = saturate_u32(replicas);
    let stabilized = saturate_u32(stabilized);
    ClampOutcome {
        replicas,
        reason,
        stabilized_replicas: Some(stabilized),
        able_to_scale_reason: Some(able_to_scale_reason),
        steps: vec![
            ClampStep {
                stage: ClampStage::Stabilization,
                replicas_in: input.desired,
                replicas_out: stabilized,
                reason: able_to_scale_reason,
                detail: stabilization_detail,
            },
            ClampStep {
                stage: ClampStage::Limits,
                replicas_in: stabilized,
                replicas_out: replicas,
                reason: limiting_reason,
                detail: StepDetail::Limits { rate, min, max },
            },
        ],
    }
}
