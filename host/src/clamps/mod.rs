//! Safety clamps: min/max and the Kubernetes HPA `behavior` semantics (autoscaling/v2), applied to every plugin
//! decision before it reaches `/scale`.

mod types;

pub use types::{Behavior, ScalingPolicy, ScalingPolicyType, ScalingRules, SelectPolicy};
