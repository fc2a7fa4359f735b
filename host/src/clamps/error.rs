//! Errors of the clamps module: only bad input (a `behavior` Kubernetes would reject, a malformed `ballast behavior`
//! document). Clamping itself never fails.

#[derive(Debug, thiserror::Error)]
pub enum ClampError {
    #[error("{field}: {problem}")]
    InvalidField { field: String, problem: String },
    #[error("input is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl ClampError {
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ClampError::InvalidField { field: field.into(), problem: problem.into() }
    }
}
