//! `ballast behavior`: evaluate one decision against an HPA `behavior` and an explicit history, JSON in, JSON out.
//!
//! Input: `{currentReplicas, desiredReplicas, minReplicas (default 1), maxReplicas, behavior (null: legacy limits),
//! scaleUpEvents: [{replicaChange, secondsAgo}], scaleDownEvents: [...], recommendations: [{replicas, secondsAgo}]}`.
//! Output: the [`ClampOutcome`](super::ClampOutcome) as camelCase JSON plus `message`. As in the controller, an
//! empty `recommendations` list means a fresh controller, which first records `currentReplicas` as a
//! recommendation.

use serde_json::{Map, Value};

use super::clamp::{ClampInput, clamp};
use super::error::ClampError;
use super::history::{ScaleEvent, ScaleHistory, TimestampedRecommendation};
use super::types::{Behavior, HpaScalingPolicy, ScalingRules};

const FIELDS: [&str; 8] = [
    "currentReplicas",
    "desiredReplicas",
    "minReplicas",
    "maxReplicas",
    "behavior",
    "scaleUpEvents",
    "scaleDownEvents",
    "recommendations",
];
/// 100 years: enough for any history, small enough that milliseconds stay exact in u64.
const MAX_SECONDS_AGO: f64 = 100.0 * 365.0 * 86400.0;

/// Evaluate a `ballast behavior` input document; the error names the offending field.
pub fn evaluate_json(input: &str) -> Result<String, ClampError> {
    let document: Value = serde_json::from_str(input).map_err(ClampError::Json)?;
    let Value::Object(fields) = document else {
        return Err(ClampError::invalid(
            "input",
            "must be a JSON object with currentReplicas, desiredReplicas and maxReplicas",
        ));
    };
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(ClampError::invalid(
            unknown.as_str(),
            format!("unknown field; expected one of {}", FIELDS.join(", ")),
        ));
    }
    let current = required_count(&fields, "currentReplicas")?;
    let desired = required_count(&fields, "desiredReplicas")?;
    let max = required_count(&fields, "maxReplicas")?;
    let min = match fields.get("minReplicas") {
        None => 1,
        Some(value) => count(value, "minReplicas")?,
    };
    if min > max {
        return Err(ClampError::invalid("minReplicas", format!("{min} is above maxReplicas {max}")));
    }
    let behavior = match fields.get("behavior") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_behavior(value)?),
    };
    if let Some(behavior) = &behavior {
        behavior.validate()?;
    }

    let up_events = timed_entries(&fields, "scaleUpEvents", "replicaChange")?;
    let down_events = timed_entries(&fields, "scaleDownEvents", "replicaChange")?;
    let recommendations = timed_entries(&fields, "recommendations", "replicas")?;
    // "Now" is the oldest entry's age, so every timestamp is a non-negative number of milliseconds.
    let now_ms = up_events.iter().chain(&down_events).chain(&recommendations).map(|(_, ago)| *ago).max().unwrap_or(0);
    let events = |entries: Vec<(u32, u64)>| -> Vec<ScaleEvent> {
        entries
            .into_iter()
            .map(|(replica_change, ago)| ScaleEvent { replica_change, timestamp_ms: now_ms - ago, outdated: false })
            .collect()
    };
    let mut history = ScaleHistory {
        recommendations: recommendations
            .iter()
            .map(|&(replicas, ago)| TimestampedRecommendation { replicas, timestamp_ms: now_ms - ago })
            .collect(),
        scale_up_events: events(up_events),
        scale_down_events: events(down_events),
    };

    let outcome = clamp(&ClampInput { current, desired, min, max, behavior: behavior.as_ref(), now_ms }, &mut history);
    let mut output = serde_json::to_value(&outcome).map_err(ClampError::Json)?;
    if let Value::Object(map) = &mut output {
        map.insert("message".into(), Value::String(outcome.reason.message().into()));
    }
    serde_json::to_string_pretty(&output).map_err(ClampError::Json)
}

fn required_count(fields: &Map<String, Value>, name: &str) -> Result<u32, ClampError> {
    let value = fields.get(name).ok_or_else(|| ClampError::invalid(name, "is required"))?;
    count(value, name)
}

fn count(value: &Value, path: &str) -> Result<u32, ClampError> {
    value
        .as_u64()
        .and_then(|number| u32::try_from(number).ok())
        .ok_or_else(|| ClampError::invalid(path, format!("must be a whole number from 0 to {}, got {value}", u32::MAX)))
}

/// An optional array of `{<count_name>, secondsAgo}` objects, as (count, milliseconds ago).
fn timed_entries(fields: &Map<String, Value>, name: &str, count_name: &str) -> Result<Vec<(u32, u64)>, ClampError> {
    let entries = match fields.get(name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(ClampError::invalid(
                name,
                format!("must be an array of {{\"{count_name}\": N, \"secondsAgo\": S}}, got {other}"),
            ));
        }
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let path = format!("{name}[{index}]");
            let Value::Object(entry) = entry else {
                return Err(ClampError::invalid(
                    path,
                    format!("must be an object {{\"{count_name}\": N, \"secondsAgo\": S}}"),
                ));
            };
            if let Some(unknown) = entry.keys().find(|key| *key != count_name && *key != "secondsAgo") {
                return Err(ClampError::invalid(
                    format!("{path}.{unknown}"),
                    format!("unknown field; expected {count_name} and secondsAgo"),
                ));
            }
            let amount = match entry.get(count_name) {
                Some(value) => count(value, &format!("{path}.{count_name}"))?,
                None => return Err(ClampError::invalid(format!("{path}.{count_name}"), "is required")),
            };
            let seconds_ago = entry
                .get("secondsAgo")
                .and_then(Value::as_f64)
                .filter(|seconds| (0.0..=MAX_SECONDS_AGO).contains(seconds))
                .ok_or_else(|| {
                    ClampError::invalid(
                        format!("{path}.secondsAgo"),
                        format!("must be a number of seconds from 0 to {MAX_SECONDS_AGO}"),
                    )
                })?;
            Ok((amount, (seconds_ago * 1000.0).round() as u64))
        })
        .collect()
}

fn parse_behavior(value: &Value) -> Result<Behavior, ClampError> {
    // Strictly, for the closest field's name in the message ([`crate::strict`]).
    crate::strict::deserialize::<Behavior, _>(value.clone())
        .map_err(|error| ClampError::invalid(locate_behavior_error(value), error.to_string()))
}

/// The deepest part of `behavior` that fails to parse, so the error names `behavior.scaleUp.policies[1]` rather
/// than just `behavior`.
fn locate_behavior_error(behavior: &Value) -> String {
    for direction in ["scaleUp", "scaleDown"] {
        let Some(rules) = behavior.get(direction) else { continue };
        if serde_json::from_value::<Option<ScalingRules>>(rules.clone()).is_ok() {
            continue;
        }
        let path = format!("behavior.{direction}");
        if let Some(policies) = rules.get("policies").and_then(Value::as_array) {
            for (index, policy) in policies.iter().enumerate() {
                if serde_json::from_value::<HpaScalingPolicy>(policy.clone()).is_err() {
                    return format!("{path}.policies[{index}]");
                }
            }
        }
        return path;
    }
    "behavior".into()
}
