//! A policy's target workload in the Kubernetes API: the API of its kind, shared by the `/scale` actuator
//! (`controller::scale`) and the metrics.k8s.io source (`sources::resources`), and how messages name it.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::spec::{ServiceKey, TargetRef};

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkloadError {
    #[error("{target}: apiVersion {api_version:?} is not group/version or version")]
    BadApiVersion { target: String, api_version: String },
}

/// The API of a target's kind in the policy's namespace: any kind with a `/scale` subresource.
pub(crate) fn target_api(
    client: &kube::Client,
    key: &ServiceKey,
    target: &TargetRef,
) -> Result<Api<DynamicObject>, WorkloadError> {
    Ok(Api::namespaced_with(client.clone(), &key.namespace, &target_resource(key, target)?))
}

/// The target's kind as an API resource. The plural is derived from the kind (Deployment -> deployments), as for
/// every built-in scalable kind; this avoids a discovery round trip per target.
pub(crate) fn target_resource(key: &ServiceKey, target: &TargetRef) -> Result<ApiResource, WorkloadError> {
    let (group, version) = match target.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", target.api_version.as_str()),
    };
    if version.is_empty() || version.contains('/') {
        return Err(WorkloadError::BadApiVersion {
            target: describe_target(key, target),
            api_version: target.api_version.clone(),
        });
    }
    Ok(ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &target.kind)))
}

/// `Deployment default/whisper (policy default/whisper)`: how messages name a target.
pub(crate) fn describe_target(key: &ServiceKey, target: &TargetRef) -> String {
    format!("{} {}/{} (policy {key})", target.kind, key.namespace, target.name)
}
