//! The human account of a clamp: what each stage computed, kept as numbers and rendered as text only when it is
//! shown or serialized. The control loop clamps every service every tick and almost never looks at the account,
//! so building its sentences on every decision was most of a clamp's cost.

use std::fmt;

use super::types::{ScalingPolicyType, SelectPolicy};

/// How a clamp stage computed its bound (the `detail` of a [`ClampStep`](super::ClampStep)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepDetail {
    /// The bounds rules: the current count against [min, max].
    Bounds { current: i64, min: i64, max: i64 },
    /// `behavior` stabilization: the current count kept within [floor, ceiling] of the two windows.
    Stabilized { current: i64, floor: i64, ceiling: i64, up_window_seconds: i32, down_window_seconds: i32 },
    /// The legacy stabilization: the highest recommendation of the downscale window.
    LegacyStabilized { window_seconds: i32, stabilized: i64 },
    /// Rate limits, then min/max.
    Limits { rate: RateDetail, min: i64, max: i64 },
}

/// How the rate limit of a clamp was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RateDetail {
    /// The stabilized count equals the current one: no rate applies.
    NoChange,
    /// The direction's `selectPolicy` is `Disabled`.
    Disabled { direction: Direction },
    /// The direction's policies, each with its proposal, and the one selected.
    Policies { direction: Direction, limit: i64, select: SelectPolicy, proposals: Vec<PolicyProposal> },
    /// The legacy scale-up limit, max(2 x current, 4).
    Legacy { limit: i64, current: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
}

/// What one rate policy allows: `value` pods or percent per `period_seconds`, from the period's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicyProposal {
    pub(crate) kind: ScalingPolicyType,
    pub(crate) value: i32,
    pub(crate) period_seconds: i32,
    pub(crate) start: i64,
    pub(crate) proposed: i64,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "scale-up",
            Direction::Down => "scale-down",
        })
    }
}

impl fmt::Display for PolicyProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.kind {
            ScalingPolicyType::Pods => " pods",
            ScalingPolicyType::Percent => "%",
        };
        let PolicyProposal { value, period_seconds, start, proposed, .. } = self;
        write!(f, "{value}{unit} per {period_seconds}s from {start} -> {proposed}")
    }
}

impl fmt::Display for RateDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateDetail::NoChange => f.write_str("no change"),
            RateDetail::Disabled { direction } => write!(f, "{direction} disabled (selectPolicy Disabled)"),
            RateDetail::Policies { direction, limit, select, proposals } => {
                write!(f, "{direction} limit {limit} (selectPolicy {select:?} over: ")?;
                for (index, proposal) in proposals.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{proposal}")?;
                }
                f.write_str(")")
            }
            RateDetail::Legacy { limit, current } => write!(f, "scale-up limit {limit} (max(2 x {current}, 4))"),
        }
    }
}

impl fmt::Display for StepDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepDetail::Bounds { current, min, max } => {
                write!(f, "current {current}, minReplicas {min}, maxReplicas {max}")
            }
            StepDetail::Stabilized { current, floor, ceiling, up_window_seconds, down_window_seconds } => write!(
                f,
                "current {current} kept within [{floor}, {ceiling}]: lowest recommendation of the last \
                 {up_window_seconds}s, highest of the last {down_window_seconds}s"
            ),
            StepDetail::LegacyStabilized { window_seconds, stabilized } => {
                write!(f, "highest recommendation of the last {window_seconds}s: {stabilized}")
            }
            StepDetail::Limits { rate, min, max } => write!(f, "{rate}; minReplicas {min}, maxReplicas {max}"),
        }
    }
}
