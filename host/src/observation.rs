//! What the metric sources measured for one service at one moment. Every metric is optional: `None` means
//! unavailable, which policies must never read as 0.

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
}
