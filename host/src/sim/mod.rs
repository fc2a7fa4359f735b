//! `ballast simulate` and `ballast demo`: replay load against scaling policies on a simulated cluster and compare
//! them. The simulated cluster implements the live host's [`Observer`](crate::autoscaler::Observer) and
//! [`ScaleTarget`](crate::autoscaler::ScaleTarget) and every decision goes through the same
//! [`Fleet::tick`](crate::autoscaler::Fleet::tick): the policy under test is the real plugin behind the real clamps.
//!
//! Everything is deterministic: time is simulated, randomness comes from a seeded [`rng::SplitMix64`] per service
//! and purpose, and outputs iterate ordered maps only, so one seed gives byte-identical outputs.

pub mod bound;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod history;
pub mod report;
pub mod rng;
pub mod run;
pub mod trace;

use std::path::PathBuf;

pub use cluster::{SimCluster, SimHandle, SimService};
pub use config::{Pipeline, PolicySet, ServiceSetup, SimulationFile, SimulationSpec};
pub use run::{RunResult, Sample, ServiceSummary, SimOptions, StepHook, run, run_sets};
pub use trace::Trace;

/// What one run may be asked for, so that absurd input is a clear error before the run rather than a panic, an
/// abort or memory without end during it (README.md, `ballast simulate`). The simulator keeps every job (about 30
/// bytes each until the run ends) and every timeline row (about 150 bytes), so jobs and rows are what is bounded.
///
/// Simulated time of one run: `--duration`, and the last second of a CSV trace.
pub const MAX_DURATION_S: u64 = 31 * 86_400;
/// Arrivals of one service in one second of a CSV trace (its rows for that second summed).
pub(crate) const MAX_ARRIVALS_PER_SECOND: u64 = 10_000;
/// `baseRate` in jobs per second: the built-in shapes peak at 3x it, well within [`MAX_ARRIVALS_PER_SECOND`].
pub(crate) const MAX_BASE_RATE: f64 = 1_000.0;
/// Jobs one run may bring, all services together: the CSV trace's rows within the run, or the built-in shape's
/// expected count. A month of the demo's five services is about 23 million.
pub const MAX_RUN_ARRIVALS: u64 = 30_000_000;
/// Timeline rows of one run: services x (duration / `--sample`).
pub(crate) const MAX_TIMELINE_ROWS: u64 = 1_000_000;
/// Worker slots of one service (`maxReplicas` x `concurrency`): each is simulated, and each job start looks at
/// every slot.
pub(crate) const MAX_WORKER_SLOTS: u64 = 2_000;
/// Any time in a `simulation:` section (service, start-up, backoff, decision interval, metrics delay): a day.
pub(crate) const MAX_SECONDS: u64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{what}: {source}")]
    Yaml { what: String, source: serde_yaml_ng::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("drawing the chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("simulating {label}")]
    Run { label: String, source: Box<SimError> },
    #[error(transparent)]
    Host(#[from] crate::Error),
    #[error(transparent)]
    Documents(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Prometheus(#[from] crate::sources::prometheus::PromError),
}
