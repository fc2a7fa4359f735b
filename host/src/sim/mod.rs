//! `ballast simulate` and `ballast demo`: replay load against scaling policies on a simulated cluster and compare
//! them. The simulated cluster implements the live host's [`Observer`](crate::autoscaler::Observer) and
//! [`ScaleTarget`](crate::autoscaler::ScaleTarget) and every decision goes through the same
//! [`Fleet::tick`](crate::autoscaler::Fleet::tick): the policy under test is the real plugin behind the real clamps.
//!
//! Everything is deterministic: time is simulated, randomness comes from a seeded [`rng::SplitMix64`] per service
//! and purpose, and outputs iterate ordered maps only, so one seed gives byte-identical outputs.

pub mod cluster;
pub mod config;
pub mod demo;
pub mod report;
pub mod rng;
pub mod run;
pub mod trace;

use std::path::PathBuf;

pub use cluster::{SimCluster, SimHandle, SimService};
pub use config::{PolicySet, ServiceSetup, SimulationFile, SimulationSpec};
pub use run::{RunOptions, RunResult, Sample, ServiceSummary, StepHook, run};
pub use trace::Trace;

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
    #[error(transparent)]
    Host(#[from] crate::Error),
    #[error(transparent)]
    Documents(#[from] crate::controller::ControllerError),
}
