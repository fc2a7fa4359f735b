//! The library's error type. Plugin misbehaviour is not an error here: it is data (`runtime::PluginFailure`) that
//! ends in a fallback decision.

use crate::policy::plugins::PluginSourceError;
use crate::spec::ServiceKey;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("plugin {what} is refused: {why}")]
    PluginRefused { what: String, why: String },
    #[error("wasm runtime: creating the wasm engine: {0:#}")]
    Engine(#[source] wasmtime::Error),
    #[error("wasm runtime: linking host functions: {0:#}")]
    Link(#[source] wasmtime::Error),
    #[error(transparent)]
    PluginSource(#[from] PluginSourceError),
    #[error("{key}: {name} must be pulled before it can be loaded")]
    NotPulled { key: ServiceKey, name: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
