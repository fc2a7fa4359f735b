//! Ports of the HPA controller's normalization functions (kubernetes/kubernetes
//! pkg/controller/podautoscaler/horizontal.go), one Rust function per Go function, same names in snake_case.
//! Arithmetic is in i64 instead of Go's int32 so hostile inputs (desired = u32::MAX) cannot overflow; for every
//! value Kubernetes accepts the results are identical.

use super::account::{Direction, PolicyProposal, RateDetail};
use super::history::{ScaleEvent, TimestampedRecommendation, older_than, replicas_change_per_period, within};
use super::reason::Reason;
use super::types::{ResolvedRules, ScalingPolicyType, SelectPolicy};

/// The legacy path's cap on one scale-up: `max(scaleUpLimitFactor * current, scaleUpLimitMinimum)`.
const SCALE_UP_LIMIT_FACTOR: i64 = 2;
const SCALE_UP_LIMIT_MINIMUM: i64 = 4;

/// A limited (or not) replica count with the ScalingLimited reason and a human account of the computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Converted {
    pub(crate) replicas: i64,
    pub(crate) reason: Reason,
    pub(crate) detail: RateDetail,
}

fn record(recommendations: &mut Vec<TimestampedRecommendation>, slot: Option<usize>, desired: i64, now_ms: u64) {
    let entry = TimestampedRecommendation { replicas: saturate_u32(desired), timestamp_ms: now_ms };
    match slot {
        Some(index) => recommendations[index] = entry,
        None => recommendations.push(entry),
    }
}

pub(crate) fn saturate_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// `stabilizeRecommendation` (no `behavior`): the highest recommendation not older than the downscale window,
/// recording `desired` in place of the last obsolete entry or appended.
pub(crate) fn stabilize_recommendation(
    recommendations: &mut Vec<TimestampedRecommendation>,
    desired: i64,
    window_seconds: i32,
    now_ms: u64,
) -> i64 {
    let mut max_recommendation = desired;
    let mut old_slot = None;
    for (index, recommendation) in recommendations.iter().enumerate() {
        if older_than(now_ms, recommendation.timestamp_ms, window_seconds) {
            old_slot = Some(index);
        } else {
            max_recommendation = max_recommendation.max(i64::from(recommendation.replicas));
        }
    }
    record(recommendations, old_slot, desired, now_ms);
    max_recommendation
}

/// The result of `stabilizeRecommendationWithBehaviors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stabilized {
    pub(crate) replicas: i64,
    /// The reason to report if `replicas` differs from the desired count.
    pub(crate) reason: Reason,
    /// Lowest recommendation in the scale-up window (the desired count included).
    pub(crate) floor: i64,
    /// Highest recommendation in the scale-down window (the desired count included).
    pub(crate) ceiling: i64,
}

/// `stabilizeRecommendationWithBehaviors`: the current count clamped into [lowest recommendation of the scale-up
/// window, highest of the scale-down window] (both including `desired`), recording `desired` in place of the last
/// entry obsolete for both windows or appended.
pub(crate) fn stabilize_recommendation_with_behaviors(
    recommendations: &mut Vec<TimestampedRecommendation>,
    current: i64,
    desired: i64,
    up_window_seconds: i32,
    down_window_seconds: i32,
    now_ms: u64,
) -> Stabilized {
    let mut up_recommendation = desired;
    let mut down_recommendation = desired;
    let mut old_slot = None;
    for (index, recommendation) in recommendations.iter().enumerate() {
        let replicas = i64::from(recommendation.replicas);
        if within(now_ms, recommendation.timestamp_ms, up_window_seconds) {
            up_recommendation = up_recommendation.min(replicas);
        }
        if within(now_ms, recommendation.timestamp_ms, down_window_seconds) {
            down_recommendation = down_recommendation.max(replicas);
        }
        if older_than(now_ms, recommendation.timestamp_ms, up_window_seconds)
            && older_than(now_ms, recommendation.timestamp_ms, down_window_seconds)
        {
            old_slot = Some(index);
        }
    }
    // Same order as Go: raise to the up floor first, then cap at the down ceiling.
    let mut recommendation = current;
    if recommendation < up_recommendation {
        recommendation = up_recommendation;
    }
    if recommendation > down_recommendation {
        recommendation = down_recommendation;
    }
    record(recommendations, old_slot, desired, now_ms);
    let reason = if desired >= current { Reason::ScaleUpStabilized } else { Reason::ScaleDownStabilized };
    Stabilized { replicas: recommendation, reason, floor: up_recommendation, ceiling: down_recommendation }
}

/// Each policy's proposal: from the count at its period's start (the current count minus pods added plus pods
/// removed within the period), `propose` gives the count the policy allows.
fn policy_proposals(
    current: i64,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ResolvedRules<'_>,
    now_ms: u64,
    propose: impl Fn(i64, ScalingPolicyType, i64) -> i64,
) -> Vec<PolicyProposal> {
    rules
        .policies
        .iter()
        .map(|policy| {
            let added = replicas_change_per_period(policy.period_seconds, up_events, now_ms);
            let deleted = replicas_change_per_period(policy.period_seconds, down_events, now_ms);
            let start = current - added + deleted;
            PolicyProposal {
                kind: policy.kind,
                value: policy.value,
                period_seconds: policy.period_seconds,
                start,
                proposed: propose(start, policy.kind, i64::from(policy.value)),
            }
        })
        .collect()
}

/// `calculateScaleUpLimitWithScalingRules`: the most replicas the scale-up policies allow now. The period's start
/// is the current count minus pods added plus pods removed within the period.
pub(crate) fn calculate_scale_up_limit_with_scaling_rules(
    current: i64,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ResolvedRules<'_>,
    now_ms: u64,
) -> (i64, RateDetail) {
    let select: fn(i64, i64) -> i64 = match rules.select_policy {
        SelectPolicy::Disabled => return (current, RateDetail::Disabled { direction: Direction::Up }),
        // For scaling up, the smallest change is the smallest value.
        SelectPolicy::Min => i64::min,
        SelectPolicy::Max => i64::max,
    };
    let mut result = match rules.select_policy {
        SelectPolicy::Min => i64::MAX,
        _ => i64::MIN,
    };
    let proposals = policy_proposals(current, up_events, down_events, rules, now_ms, |start, kind, value| match kind {
        ScalingPolicyType::Pods => start.saturating_add(value),
        // Rounded up so that a small percentage still adds at least one pod.
        ScalingPolicyType::Percent => (start as f64 * (1.0 + value as f64 / 100.0)).ceil() as i64,
    });
    for proposal in &proposals {
        result = select(result, proposal.proposed);
    }
    (result, RateDetail::Policies { direction: Direction::Up, limit: result, select: rules.select_policy, proposals })
}

/// `calculateScaleDownLimitWithBehaviors`: the fewest replicas the scale-down policies allow now.
pub(crate) fn calculate_scale_down_limit_with_behaviors(
    current: i64,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ResolvedRules<'_>,
    now_ms: u64,
) -> (i64, RateDetail) {
    let select: fn(i64, i64) -> i64 = match rules.select_policy {
        SelectPolicy::Disabled => return (current, RateDetail::Disabled { direction: Direction::Down }),
        // For scaling down, the smallest change is the largest value.
        SelectPolicy::Min => i64::max,
        SelectPolicy::Max => i64::min,
    };
    let mut result = match rules.select_policy {
        SelectPolicy::Min => i64::MIN,
        _ => i64::MAX,
    };
    let proposals = policy_proposals(current, up_events, down_events, rules, now_ms, |start, kind, value| match kind {
        ScalingPolicyType::Pods => start.saturating_sub(value),
        // Go's int32(float64(...)): truncation toward zero.
        ScalingPolicyType::Percent => (start as f64 * (1.0 - value as f64 / 100.0)) as i64,
    });
    for proposal in &proposals {
        result = select(result, proposal.proposed);
    }
    (result, RateDetail::Policies { direction: Direction::Down, limit: result, select: rules.select_policy, proposals })
}

/// The inputs of `convertDesiredReplicasWithBehaviorRate` (Go's `NormalizationArg`).
pub(crate) struct RateArgs<'a> {
    pub(crate) current: i64,
    pub(crate) desired: i64,
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) scale_up: &'a ResolvedRules<'a>,
    pub(crate) scale_down: &'a ResolvedRules<'a>,
    pub(crate) up_events: &'a [ScaleEvent],
    pub(crate) down_events: &'a [ScaleEvent],
    pub(crate) now_ms: u64,
}

/// `convertDesiredReplicasWithBehaviorRate`: cap a scale-up at min(max, rate limit) and a scale-down at
/// max(min, rate limit); a rate limit on the wrong side of the current count means "stay".
pub(crate) fn convert_desired_replicas_with_behavior_rate(args: &RateArgs) -> Converted {
    let within_range =
        |detail: RateDetail| Converted { replicas: args.desired, reason: Reason::DesiredWithinRange, detail };
    if args.desired > args.current {
        let (limit, detail) = calculate_scale_up_limit_with_scaling_rules(
            args.current,
            args.up_events,
            args.down_events,
            args.scale_up,
            args.now_ms,
        );
        // Recent scale-ups already used the budget: don't scale up until they leave the period.
        let scale_up_limit = limit.max(args.current);
        let (maximum_allowed, reason) = if args.max > scale_up_limit {
            (scale_up_limit, Reason::ScaleUpLimit)
        } else {
            (args.max, Reason::TooManyReplicas)
        };
        if args.desired > maximum_allowed {
            return Converted { replicas: maximum_allowed, reason, detail };
        }
        within_range(detail)
    } else if args.desired < args.current {
        let (limit, detail) = calculate_scale_down_limit_with_behaviors(
            args.current,
            args.up_events,
            args.down_events,
            args.scale_down,
            args.now_ms,
        );
        let scale_down_limit = limit.min(args.current);
        let (minimum_allowed, reason) = if args.min < scale_down_limit {
            (scale_down_limit, Reason::ScaleDownLimit)
        } else {
            (args.min, Reason::TooFewReplicas)
        };
        if args.desired < minimum_allowed {
            return Converted { replicas: minimum_allowed, reason, detail };
        }
        within_range(detail)
    } else {
        within_range(RateDetail::NoChange)
    }
}

/// `calculateScaleUpLimit` (no `behavior`).
pub(crate) fn calculate_scale_up_limit(current: i64) -> i64 {
    (SCALE_UP_LIMIT_FACTOR * current).max(SCALE_UP_LIMIT_MINIMUM)
}

/// `convertDesiredReplicasWithRules` (no `behavior`): min first, then max(2 x current, 4) or maxReplicas.
pub(crate) fn convert_desired_replicas_with_rules(current: i64, desired: i64, min: i64, max: i64) -> Converted {
    let scale_up_limit = calculate_scale_up_limit(current);
    let detail = RateDetail::Legacy { limit: scale_up_limit, current };
    let (maximum_allowed, limiting_reason) =
        if max > scale_up_limit { (scale_up_limit, Reason::ScaleUpLimit) } else { (max, Reason::TooManyReplicas) };
    if desired < min {
        Converted { replicas: min, reason: Reason::TooFewReplicas, detail }
    } else if desired > maximum_allowed {
        Converted { replicas: maximum_allowed, reason: limiting_reason, detail }
    } else {
        Converted { replicas: desired, reason: Reason::DesiredWithinRange, detail }
    }
}
