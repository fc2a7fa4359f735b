//! The Kubernetes controller (`ballast run`): ScalingPolicy custom resources in, `/scale` writes and status out.
//!
//! One module per concern: [`crd`] (the resource's definition), [`scale`] (the `/scale` actuator), [`oci_pull`] (an
//! OCI plugin's pull Secret, read through the API), [`events`] (Events, one per distinct note), [`host`] (`ballast
//! run`'s parts, from a `HostConfig`), [`lease`] (leader election), [`metrics_api`] (is metrics-server
//! there), [`conflicts`] (other autoscalers of a policy's workload), [`doctor`] (what a cluster lacks), [`reconcile`] (the loop that drives [`crate::autoscaler::Fleet`]) and [`report`] (`ballast status` / `ballast explain`). Decisions are made only by
//! [`crate::decision::Decider::decide`] through the fleet. What needs no cluster (documents, status, plugin resolution, the
//! canary) is in [`crate::policy`].

pub mod conflicts;
pub mod crd;
pub mod doctor;
mod error;
pub mod events;
pub mod host;
pub mod lease;
/// The state machine of loading a policy's plugins, which [`reconcile`] drives.
mod loading;
pub mod metrics_api;
pub mod oci_pull;
pub mod reconcile;
pub mod report;
pub mod scale;

pub(crate) use error::ControllerError;
