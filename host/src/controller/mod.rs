//! The Kubernetes controller (`ballast run`): ScalingPolicy custom resources in, `/scale` writes and status out.
//!
//! One module per concern: [`crd`] (the resource and its schema), [`status`] (what the controller reports and
//! persists), [`scale`] (the `/scale` actuator), [`plugins`] (plugins in ConfigMaps, validated and hot-swapped),
//! [`events`] (Events, one per distinct note), [`lease`] (leader election), [`metrics_api`] (is metrics-server
//! there), [`conflicts`] (other autoscalers of a policy's workload), [`doctor`] (what a cluster lacks), [`reconcile`] (the loop that drives [`crate::autoscaler::Fleet`]) and [`report`] (`ballast status` / `ballast explain`). Decisions are made only by
//! [`crate::decision::decide`] through the fleet.

pub mod conflicts;
pub mod crd;
pub mod doctor;
mod error;
pub mod events;
pub mod lease;
/// The state machine of loading a policy's plugins, which [`reconcile`] drives.
mod loading;
pub mod metrics_api;
pub mod plugins;
pub mod reconcile;
pub mod report;
pub mod scale;
pub mod schema;
pub mod status;

pub use error::ControllerError;
