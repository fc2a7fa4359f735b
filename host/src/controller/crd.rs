//! The `ScalingPolicy` custom resource (`ballast.dev/v1alpha1`, short name `sp`). Its spec is
//! [`crate::spec::ScalingPolicySpec`] (the same document the simulator and `ballast run --config` read, through
//! [`crate::policy::documents`]); the derive lives there. Its status is [`crate::policy::status::ScalingPolicyStatus`].

use kube::CustomResourceExt;

use super::ControllerError;
use crate::spec::ScalingPolicy;

/// The CustomResourceDefinition as YAML (`ballast crd`, committed as deploy/base/crd.yaml).
pub fn crd_yaml() -> Result<String, ControllerError> {
    serde_saphyr::to_string(&ScalingPolicy::crd()).map_err(ControllerError::Yaml)
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    #[test]
    fn the_document_reader_expects_the_resources_api_version() {
        assert_eq!(ScalingPolicy::api_version(&()), crate::spec::API_VERSION);
    }
}
