//! Rust guest SDK for Ballast scaling policies (`ballast:policy@0.2.0`).
//!
//! A policy is a type implementing [`Guest`] plus one line, `ballast_policy_sdk::export_policy!(MyPolicy);`:
//!
//! ```ignore
//! use ballast_policy_sdk::{config, hpa, Decision, Guest, PolicyError, PolicyInput};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { jobs_per_pod: f64 }
//!
//! struct JobsPerPod;
//! impl Guest for JobsPerPod {
//!     fn decide(input: PolicyInput) -> Result<Decision, PolicyError> {
//!         let cfg = config::parse::<Config>(&input.config)?;
//!         let queue = input.observations.queue.as_ref().map(|q| q.backlog());
//!         let Some(jobs) = queue else { return Ok(Decision::hold(&input, "queue unavailable")) };
//!         let replicas = hpa::per_pod_proposal(input.current_replicas, jobs as f64, cfg.jobs_per_pod, hpa::TOLERANCE)
//!             .unwrap_or(input.current_replicas);
//!         Ok(Decision::new(replicas, format!("{jobs} jobs at {} per pod", cfg.jobs_per_pod)))
//!     }
//! }
//! ballast_policy_sdk::export_policy!(JobsPerPod);
//! ```
//!
//! The same code compiles natively (for unit tests and benchmarks); there `log` writes nothing.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "scaling-policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "ballast_policy_sdk::bindings",
    });
}

pub use bindings::ballast::policy::host::LogLevel;
pub use bindings::export_policy;
pub use bindings::exports::ballast::policy::policy::{
    CustomMetric, Decision, Guest, MetricProposal, Observations, PolicyError, PolicyInput, QueueCounts, ServiceId,
};

pub mod allocator;
pub mod config;
pub mod hpa;

#[cfg(all(target_arch = "wasm32", feature = "fast-alloc"))]
#[global_allocator]
static ALLOCATOR: allocator::SizeClasses = allocator::SizeClasses::new();

/// Writes a line to the host's log (tagged there with the service and plugin digest). A no-op in native builds.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::ballast::policy::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Appends `n` in decimal, as `{n}` would format it, without core::fmt (whose code and tables a plugin's call
/// would otherwise page in, cold, on a host running a thousand plugins).
pub fn push_decimal(text: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    text.extend(digits[at..].iter().map(|&d| char::from(d)));
}

impl QueueCounts {
    /// Jobs not yet finished: waiting, prioritized, active and delayed (what the old exporter called the total
    /// depth). Paused, failed and waiting-children jobs are not work the pods can take now.
    pub fn backlog(&self) -> u64 {
        self.waiting + self.prioritized + self.active + self.delayed
    }

    /// Jobs a pod could pick up right now: waiting and prioritized.
    pub fn ready_to_run(&self) -> u64 {
        self.waiting + self.prioritized
    }
}

impl Decision {
    /// A decision with no per-metric proposals and no state.
    pub fn new(replicas: u32, reason: impl Into<String>) -> Self {
        Decision { replicas, reason: reason.into(), proposals: Vec::new(), state: None }
    }

    /// Keep the current replica count.
    pub fn hold(input: &PolicyInput, why: &str) -> Self {
        Decision::new(input.current_replicas, format!("holding {} replicas: {why}", input.current_replicas))
    }
}

impl Observations {
    /// Observations with every metric unavailable.
    pub fn none() -> Self {
        Observations {
            gpu_duty_cycle_percent: None,
            cpu_percent_of_request: None,
            memory_percent_of_request: None,
            queue: None,
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
            request_rate: None,
            custom: Vec::new(),
        }
    }

    /// The value of a named custom metric, if the host had it.
    pub fn custom(&self, name: &str) -> Option<f64> {
        self.custom.iter().find(|m| m.name == name).map(|m| m.value)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals_read_as_formatted() {
        for n in [0, 7, 10, 99, 1000, 4_294_967_295, usize::MAX] {
            let mut text = String::from("x=");
            super::push_decimal(&mut text, n);
            assert_eq!(text, format!("x={n}"));
        }
    }
}
