//! The policy runtime: the synchronous wasm world, kept apart from the async one.
//!
//! Components are compiled once per sha256 (cached in memory and on disk), pre-linked into an `InstancePre` and
//! type-checked against the `ballast:policy` world they export (0.2, or 0.1 for older plugins) before anything runs them (compiled in a child process
//! held to a memory and time budget, when the host names one). Each call runs under an epoch deadline and a memory
//! cap in a pooled instance, with a WASI whose every call returns at once; whatever a plugin does wrong comes back
//! as a [`PluginFailure`] value, never as a host error or crash, and its output is capped and escaped. All limits
//! live in [`RuntimeLimits`].

mod bindings;
mod builtin;
mod compiler;
mod engine;
mod instance;
mod limits;
mod log;
pub mod text;
mod wasi;

pub use bindings::{
    CustomMetric, Decision, MetricProposal, Observations, PolicyError, PolicyInput, QueueCounts, ServiceId, World,
};
pub use builtin::{BUILTINS, builtin, builtin_names};
pub use compiler::{COMPILE_COMMAND, ServeCompileError, serve_compile};
pub use engine::{CompiledPolicy, PolicyEngine, compile_engine};
pub(crate) use instance::empty_input;
pub use instance::{CallOutcome, FailureKind, Plugin, PluginFailure};
pub use limits::{CANARY_ATTEMPTS, MAX_COMPONENT_BYTES, RuntimeLimits};
pub(crate) use log::{LogRelay, PluginLog};
pub use wasi::off_async;

/// Lowercase hex sha256 of a component's bytes: its identity for caching, pinning and explanations.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
