//! The policy core's errors: a policy file that cannot be read, or a document in it that is not what it says.

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    /// A YAML document that does not parse as what it says it is. (`error`, not `source`: the message already says
    /// it, and would be said twice as a cause.)
    #[error("{what}: {error}")]
    Document { what: String, error: serde_yaml_ng::Error },
}
