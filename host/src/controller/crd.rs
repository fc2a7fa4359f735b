//! The `ScalingPolicy` custom resource (`ballast.dev/v1alpha1`, short name `sp`). Its spec is
//! [`crate::spec::ScalingPolicySpec`] (the same document the simulator and `ballast run --config` read); the
//! derive lives there. Its status is [`super::status::ScalingPolicyStatus`].

use kube::{CustomResourceExt, ResourceExt};

pub use crate::spec::ScalingPolicy;
use crate::spec::ServiceKey;

use super::ControllerError;

/// The CustomResourceDefinition as YAML (`ballast crd`, committed as deploy/base/crd.yaml).
pub fn crd_yaml() -> Result<String, ControllerError> {
    serde_saphyr::to_string(&ScalingPolicy::crd()).map_err(|e| ControllerError::Yaml(e.to_string()))
}

/// The service a policy scales: its namespace and name.
pub fn service_key(policy: &ScalingPolicy) -> ServiceKey {
    ServiceKey { namespace: policy.namespace().unwrap_or_else(|| "default".into()), name: policy.name_any() }
}

/// ScalingPolicy documents from YAML text (`---`-separated), for `ballast run --config FILE`: the simulator's
/// format (its `simulation:` sections are ignored). Relative plugin paths are resolved against `base`.
pub fn policies_from_yaml(
    what: &str,
    text: &str,
    base: Option<&std::path::Path>,
) -> Result<Vec<ScalingPolicy>, ControllerError> {
    let mut docs: Vec<ScalingPolicy> = serde_saphyr::from_multiple(text).map_err(|e| {
        ControllerError::Invalid(format!("{what}: not a list of ScalingPolicy documents (ballast.dev/v1alpha1): {e}"))
    })?;
    for doc in &mut docs {
        if doc.metadata.name.is_none() {
            return Err(ControllerError::Invalid(format!("{what}: a ScalingPolicy has no metadata.name; name it")));
        }
        if let (Some(base), Some(path)) = (base, &doc.spec.plugin.path)
            && std::path::Path::new(path).is_relative()
        {
            doc.spec.plugin.path = Some(base.join(path).display().to_string());
        }
    }
    Ok(docs)
}
