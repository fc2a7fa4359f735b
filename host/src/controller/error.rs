//! The controller's errors. Each names the object it concerns.

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{what}: Kubernetes API: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("rendering YAML: {0}")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

impl ControllerError {
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        ControllerError::Kube { what: what.into(), source }
    }
}
