//! The controller's errors. Each names the object it concerns.

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{what}: Kubernetes API: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("ConfigMap {namespace}/{name}: {why}")]
    ConfigMap { namespace: String, name: String, why: String },
    #[error("rendering YAML: {0}")]
    Yaml(String),
}

impl ControllerError {
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        ControllerError::Kube { what: what.into(), source }
    }
}
