//! The library's error type. Plugin misbehaviour is not an error here: it is data (`runtime::PluginFailure`) that
//! ends in a fallback decision.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("plugin {what} is refused: {why}")]
    PluginRefused { what: String, why: String },
    #[error("wasm runtime: {0}")]
    Runtime(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{what}: invalid JSON: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
