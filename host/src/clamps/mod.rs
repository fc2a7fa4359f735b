//! Safety clamps: min/max and the Kubernetes HPA `behavior` semantics (autoscaling/v2), applied to every plugin
//! decision before it reaches `/scale`.
//!
//! [`clamp`] reproduces the HPA controller's `reconcileAutoscaler` from the point where the desired count is known:
//! the bounds rules (scaling disabled at 0 replicas, current outside [min, max]), then either the `behavior` path
//! (`normalizeDesiredReplicasWithBehaviors`: stabilization windows, rate policies) or the legacy path
//! (`normalizeDesiredReplicas`). Ballast allows `minReplicas: 0` (scale to zero): with min 0 and 0 replicas the
//! normal path applies. Everything is a pure function of the inputs and an explicit [`ScaleHistory`] (milliseconds,
//! no wall clock), which the caller persists.

mod account;
mod clamp;
pub mod cli;
mod error;
mod history;
mod normalize;
mod reason;
mod types;

#[cfg(test)]
mod tests;

pub use clamp::{ClampInput, ClampOutcome, ClampStage, ClampStep, clamp};
pub(crate) use error::ClampError;
pub use history::{ScaleEvent, ScaleHistory, TimestampedRecommendation, record_scale};
pub use reason::Reason;
pub use types::{
    Behavior, DOWNSCALE_STABILIZATION_WINDOW_SECONDS, HpaScalingPolicy, MAX_PERIOD_SECONDS,
    MAX_STABILIZATION_WINDOW_SECONDS, ResolvedRules, ScalingPolicyType, ScalingRules, SelectPolicy,
};
