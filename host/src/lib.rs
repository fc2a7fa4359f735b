//! Ballast: a Kubernetes autoscaler whose scaling logic lives in WebAssembly plugins.
//!
//! The data flow, one module per stage: metric sources -> [`observation`] -> [`runtime`] (wasm policy) ->
//! [`clamps`] (min/max, HPA behavior) -> actuator -> export/explain. See ARCHITECTURE.md.

// Without `cluster` the library is built only to prove the core needs no Kubernetes client; the parts of the core
// that only the controller calls (status conditions, the canary, the log relay, the cluster's metrics) are unused
// there, and are not dead code.
#![cfg_attr(not(feature = "cluster"), allow(dead_code, unused_imports))]

pub mod authoring;
pub mod autoscaler;
pub mod clamps;
pub mod config;
#[cfg(feature = "cluster")]
pub mod controller;
pub mod decision;
pub mod error;
pub mod export;
pub mod observation;
pub mod oci;
pub mod policy;
pub mod runtime;
pub mod sim;
pub mod sources;
pub mod spec;
pub mod strict;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(feature = "cluster")]
pub mod workload;

pub use error::{Error, Result};
