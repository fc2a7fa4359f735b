//! What the metric sources measured for one service at one moment. Every metric is optional: `None` means
//! unavailable, which policies must never read as 0.
//!
//! Values outside a metric's sane range ([`RANGES`]) are unavailable too: a NaN, a negative latency or a GPU at
//! 1e308 percent says the source or the query is wrong, not that the service needs 1e306 pods.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// BullMQ job counts, as `Queue.getJobCounts()` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    pub waiting: u64,
    pub prioritized: u64,
    pub paused: u64,
    pub active: u64,
    pub delayed: u64,
    pub failed: u64,
    pub waiting_children: u64,
    pub completed: u64,
}

impl QueueCounts {
    /// Adds another queue's counts (a service fed by several queues sees their sum).
    pub fn add(&mut self, other: &QueueCounts) {
        self.waiting += other.waiting;
        self.prioritized += other.prioritized;
        self.paused += other.paused;
        self.active += other.active;
        self.delayed += other.delayed;
        self.failed += other.failed;
        self.waiting_children += other.waiting_children;
        self.completed += other.completed;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub gpu_duty_cycle_percent: Option<f64>,
    pub cpu_percent_of_request: Option<f64>,
    pub memory_percent_of_request: Option<f64>,
    pub queue: Option<QueueCounts>,
    /// Jobs completed since the previous decision for this service (from the change in the completed count, or
    /// counted directly by the simulator).
    pub completed_since_last: Option<u64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub request_rate: Option<f64>,
    #[serde(default)]
    pub custom: Vec<(String, f64)>,
    /// How old each source's samples were when observed, in ms, by source name (`redis`, `prometheus`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sample_age_ms: BTreeMap<String, u64>,
    /// Whether a BullMQ queue feeding the service is paused (BullMQ 6 keeps a paused queue's jobs in `waiting`);
    /// `None` when the queue counts are unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_paused: Option<bool>,
    /// Why a metric the service asked for is unavailable, by its name here (`queue`, `gpuDutyCyclePercent`,
    /// `custom.NAME`, ...): a missing queue, stale data, a value out of range.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unavailable: BTreeMap<String, String>,
}

/// The sane range of a metric, bounds included. Anything outside, NaN and infinities included, is unavailable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) metric: &'static str,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// GPU duty cycle is a share of time. CPU and memory are relative to the pods' requests, which may be tiny next
/// to the usage (10m of CPU requested, 8 cores used is 80,000 %), so only absurd values are refused. Latency up to
/// a day; request rates up to a billion a second; custom metrics may be negative but must stay where f64 still
/// counts in units (2^53).
pub(crate) const RANGES: [Range; 8] = [
    Range { metric: "gpuDutyCyclePercent", min: 0.0, max: 100.0 },
    Range { metric: "cpuPercentOfRequest", min: 0.0, max: 1e7 },
    Range { metric: "memoryPercentOfRequest", min: 0.0, max: 1e7 },
    Range { metric: "latencyP50Ms", min: 0.0, max: 86_400_000.0 },
    Range { metric: "latencyP95Ms", min: 0.0, max: 86_400_000.0 },
    Range { metric: "latencyP99Ms", min: 0.0, max: 86_400_000.0 },
    Range { metric: "requestRate", min: 0.0, max: 1e9 },
    Range { metric: "custom", min: -9_007_199_254_740_992.0, max: 9_007_199_254_740_992.0 },
];

/// A measured value outside its metric's [`Range`]: the reason the metric is unavailable.
#[derive(Debug, thiserror::Error)]
#[error("value {} is outside the sane range {} to {} of {}", shown(*.value), .range.min, .range.max, .range.metric)]
pub(crate) struct OutOfRange {
    value: f64,
    range: Range,
}

/// 1e308 in full is 309 digits.
fn shown(value: f64) -> String {
    if value.abs() >= 1e15 { format!("{value:e}") } else { format!("{value}") }
}

impl Range {
    fn check(&self, value: f64) -> Result<f64, OutOfRange> {
        if (self.min..=self.max).contains(&value) { Ok(value) } else { Err(OutOfRange { value, range: *self }) }
    }
}

impl Observation {
    /// Makes every value outside its metric's [`RANGES`] unavailable, recording why in `unavailable`.
    pub(crate) fn drop_out_of_range(&mut self) {
        let [gpu, cpu, memory, p50, p95, p99, rate, custom] = RANGES;
        let unavailable = &mut self.unavailable;
        let mut confine = |slot: &mut Option<f64>, range: Range| {
            if let Some(Err(reason)) = slot.map(|value| range.check(value)) {
                *slot = None;
                unavailable.insert(range.metric.to_string(), reason.to_string());
            }
        };
        confine(&mut self.gpu_duty_cycle_percent, gpu);
        confine(&mut self.cpu_percent_of_request, cpu);
        confine(&mut self.memory_percent_of_request, memory);
        confine(&mut self.latency_p50_ms, p50);
        confine(&mut self.latency_p95_ms, p95);
        confine(&mut self.latency_p99_ms, p99);
        confine(&mut self.request_rate, rate);
        self.custom.retain(|(name, value)| match custom.check(*value) {
            Ok(_) => true,
            Err(reason) => {
                unavailable.insert(format!("custom.{name}"), reason.to_string());
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_out_of_range_become_unavailable_with_a_reason() {
        let mut obs = Observation {
            gpu_duty_cycle_percent: Some(1e308),
            cpu_percent_of_request: Some(-5.0),
            memory_percent_of_request: Some(f64::NAN),
            latency_p50_ms: Some(f64::INFINITY),
            latency_p95_ms: Some(0.0),
            latency_p99_ms: Some(86_400_000.0),
            request_rate: Some(f64::NEG_INFINITY),
            custom: vec![("ok".into(), -3.0), ("huge".into(), 1e300), ("nan".into(), f64::NAN)],
            ..Observation::default()
        };
        obs.drop_out_of_range();
        assert_eq!(obs.gpu_duty_cycle_percent, None);
        assert_eq!(obs.cpu_percent_of_request, None);
        assert_eq!(obs.memory_percent_of_request, None);
        assert_eq!(obs.latency_p50_ms, None);
        assert_eq!(obs.latency_p95_ms, Some(0.0), "the bounds themselves are sane");
        assert_eq!(obs.latency_p99_ms, Some(86_400_000.0));
        assert_eq!(obs.request_rate, None);
        assert_eq!(obs.custom, [("ok".to_string(), -3.0)]);
        let reasons: Vec<&str> = obs.unavailable.keys().map(String::as_str).collect();
        assert_eq!(
            reasons,
            [
                "cpuPercentOfRequest",
                "custom.huge",
                "custom.nan",
                "gpuDutyCyclePercent",
                "latencyP50Ms",
                "memoryPercentOfRequest",
                "requestRate"
            ]
        );
        assert_eq!(
            obs.unavailable["gpuDutyCyclePercent"],
            "value 1e308 is outside the sane range 0 to 100 of gpuDutyCyclePercent"
        );
    }

    #[test]
    fn values_just_over_a_bound_are_refused() {
        for (metric, value) in [(0usize, 100.000_001), (0, -1e-9), (6, 1e9 + 1.0), (3, 86_400_000.5)] {
            let mut obs = Observation::default();
            let slot = match metric {
                0 => &mut obs.gpu_duty_cycle_percent,
                3 => &mut obs.latency_p50_ms,
                _ => &mut obs.request_rate,
            };
            *slot = Some(value);
            obs.drop_out_of_range();
            assert!(obs.unavailable.contains_key(RANGES[metric].metric), "{value} for {}", RANGES[metric].metric);
        }
    }
}
