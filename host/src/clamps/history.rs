//! The per-workload memory of the HPA controller (`recommendations`, `scaleUpEvents`, `scaleDownEvents`), kept as
//! plain data with millisecond timestamps so it can live in the ScalingPolicy status and survive restarts.
//!
//! Time comparisons follow the Go code exactly: `ts.After(now - d)` is "age < d" ([`within`]) and
//! `ts.Before(now - d)` is "age > d" ([`older_than`]); an entry exactly `d` old is neither.

use serde::{Deserialize, Serialize};

use super::types::{Behavior, ResolvedRules};

/// A raw (unstabilized) desired replica count the controller saw at `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampedRecommendation {
    pub(crate) replicas: u32,
    pub(crate) timestamp_ms: u64,
}

/// A scale of the target by `replica_change` pods (positive in both directions) at `timestamp_ms`. `outdated`
/// marks a slot older than the direction's longest policy period, free for reuse (`markScaleEventsOutdated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleEvent {
    pub(crate) replica_change: u32,
    pub(crate) timestamp_ms: u64,
    #[serde(default)]
    pub(crate) outdated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleHistory {
    #[serde(default)]
    pub(crate) recommendations: Vec<TimestampedRecommendation>,
    #[serde(default)]
    pub scale_up_events: Vec<ScaleEvent>,
    #[serde(default)]
    pub(crate) scale_down_events: Vec<ScaleEvent>,
}

/// Milliseconds from `timestamp_ms` to `now_ms`; negative for a timestamp in the future (clock skew).
fn age_ms(now_ms: u64, timestamp_ms: u64) -> i128 {
    i128::from(now_ms) - i128::from(timestamp_ms)
}

/// Go's `timestamp.After(now - seconds)`.
pub(crate) fn within(now_ms: u64, timestamp_ms: u64, seconds: i32) -> bool {
    age_ms(now_ms, timestamp_ms) < i128::from(seconds) * 1000
}

/// Go's `timestamp.Before(now - seconds)`.
pub(crate) fn older_than(now_ms: u64, timestamp_ms: u64, seconds: i32) -> bool {
    age_ms(now_ms, timestamp_ms) > i128::from(seconds) * 1000
}

/// `getReplicasChangePerPeriod`: pods added (or removed) by the events younger than `period_seconds`.
pub fn replicas_change_per_period(period_seconds: i32, events: &[ScaleEvent], now_ms: u64) -> i64 {
    events
        .iter()
        .filter(|event| within(now_ms, event.timestamp_ms, period_seconds))
        .map(|event| i64::from(event.replica_change))
        .sum()
}

/// `storeScaleEvent` for one direction: mark events older than the longest policy period outdated, then overwrite
/// the last outdated slot with the new event, or append.
fn store_scale_event(events: &mut Vec<ScaleEvent>, rules: &ResolvedRules<'_>, replica_change: u32, now_ms: u64) {
    let longest_period = rules.longest_policy_period_seconds();
    for event in events.iter_mut() {
        if older_than(now_ms, event.timestamp_ms, longest_period) {
            event.outdated = true;
        }
    }
    let new_event = ScaleEvent { replica_change, timestamp_ms: now_ms, outdated: false };
    match events.iter().rposition(|event| event.outdated) {
        Some(slot) => events[slot] = new_event,
        None => events.push(new_event),
    }
}

/// Record that the target was scaled from `from` to `to` replicas at `now_ms` (call after a successful `/scale`
/// write). Like the controller, events are kept only when `behavior` is set (the legacy limits never read them),
/// and only for an actual change (the controller stores an event only when it rescales).
pub fn record_scale(history: &mut ScaleHistory, behavior: Option<&Behavior>, from: u32, to: u32, now_ms: u64) {
    let Some(behavior) = behavior else { return };
    if to > from {
        store_scale_event(&mut history.scale_up_events, &behavior.resolved_scale_up(), to - from, now_ms);
    } else if to < from {
        store_scale_event(&mut history.scale_down_events, &behavior.resolved_scale_down(), from - to, now_ms);
    }
}
