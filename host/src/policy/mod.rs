//! The policy core: everything about a policy that needs no cluster, shared by the controller, `ballast run
//! --config`, the simulator and the authoring kit.
//!
//! [`documents`] (the one reader of policy files: ScalingPolicy and plugin ConfigMap documents), [`status`] (what is
//! reported and persisted of a policy), [`schema`] (hand-written CRD schema pieces), [`plugins`] (plugin references
//! resolved to bytes: built-in, file, ConfigMap, OCI; decompression) and [`canary`] (compile, validate and canary a
//! component before it replaces the running one).

pub mod canary;
pub mod documents;
mod error;
pub mod plugins;
pub mod schema;
pub mod status;

pub(crate) use error::PolicyError;
