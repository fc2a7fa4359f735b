//! Builders for this crate's tests and benchmarks: a plugin's input and a policy engine. Built only for them (the
//! `test-support` feature, which they turn on through the crate's dev-dependency on itself), never in a release.

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{self, PolicyEngine, PolicyInput, QueueCounts, RuntimeLimits};

/// The limits of a test engine of `max_instances` instances. A call gets a second rather than the production
/// 10 ms: a loaded CI machine can preempt a call for longer (tests of the deadline itself set their own).
pub fn limits(max_instances: u32) -> RuntimeLimits {
    RuntimeLimits { max_instances, deadline: Duration::from_secs(1), ..RuntimeLimits::default() }
}

/// A policy engine with `limits`.
pub fn engine(limits: RuntimeLimits) -> Arc<PolicyEngine> {
    PolicyEngine::new(limits).expect("a policy engine")
}

/// Queue counts of `waiting` and `active` jobs, no others, nothing completed counted, not paused.
pub fn queue(waiting: u64, active: u64) -> QueueCounts {
    QueueCounts {
        waiting,
        prioritized: 0,
        paused: 0,
        active,
        delayed: 0,
        failed: 0,
        waiting_children: 0,
        completed_since_last: None,
        is_paused: false,
    }
}

/// A plugin's input: the service `ai-models/stt` at 3 of 3 replicas within 2..=8 at `now_ms` 1000, with
/// nothing measured until a method says what.
pub struct InputBuilder(PolicyInput);

impl InputBuilder {
    pub fn new(config: &str) -> InputBuilder {
        let mut input = runtime::empty_input();
        input.service.namespace = "ai-models".into();
        input.service.name = "stt".into();
        input.now_ms = 1_000;
        input.current_replicas = 3;
        input.ready_replicas = 3;
        input.min_replicas = 2;
        input.max_replicas = 8;
        input.config = config.into();
        InputBuilder(input)
    }

    pub fn service(mut self, name: &str) -> InputBuilder {
        self.0.service.name = name.into();
        self
    }

    pub fn now_ms(mut self, now_ms: u64) -> InputBuilder {
        self.0.now_ms = now_ms;
        self
    }

    pub fn min_replicas(mut self, min: u32) -> InputBuilder {
        self.0.min_replicas = min;
        self
    }

    pub fn gpu(mut self, percent: f64) -> InputBuilder {
        self.0.observations.gpu_duty_cycle_percent = Some(percent);
        self
    }

    pub fn cpu(mut self, percent_of_request: f64) -> InputBuilder {
        self.0.observations.cpu_percent_of_request = Some(percent_of_request);
        self
    }

    pub fn memory(mut self, percent_of_request: f64) -> InputBuilder {
        self.0.observations.memory_percent_of_request = Some(percent_of_request);
        self
    }

    pub fn queue(mut self, counts: QueueCounts) -> InputBuilder {
        self.0.observations.queue = Some(counts);
        self
    }

    pub fn latencies_ms(mut self, p50: f64, p95: f64, p99: f64) -> InputBuilder {
        let o = &mut self.0.observations;
        (o.latency_p50_ms, o.latency_p95_ms, o.latency_p99_ms) = (Some(p50), Some(p95), Some(p99));
        self
    }

    pub fn request_rate(mut self, per_second: f64) -> InputBuilder {
        self.0.observations.request_rate = Some(per_second);
        self
    }

    pub fn build(self) -> PolicyInput {
        self.0
    }
}

/// The benchmarks' input: a busy `whisper-pyannote-stt` with every built-in metric measured and the `hpa` plugin's
/// `config`.
pub fn busy_input(config: &str) -> PolicyInput {
    InputBuilder::new(config)
        .service("whisper-pyannote-stt")
        .now_ms(1_700_000_000_000)
        .gpu(91.5)
        .cpu(55.0)
        .memory(60.0)
        .queue(QueueCounts { delayed: 1, completed_since_last: Some(2), ..queue(21, 3) })
        .latencies_ms(800.0, 2400.0, 4000.0)
        .request_rate(0.4)
        .build()
}
