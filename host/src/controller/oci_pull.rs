//! The cluster side of an OCI plugin pull: the registry credentials of the policy's pull Secret, read through the
//! API.

use k8s_openapi::api::core::v1::Secret;

use crate::oci::{OciError, OciStore, RegistryAccess};
use crate::policy::plugins::{OciPull, PluginSource};

impl OciPull {
    /// Pulls the artifact (registry credentials from `spec.pullSecret`, read with `client`) into `store`.
    pub(crate) async fn pull(
        &self,
        store: &OciStore,
        client: &kube::Client,
        namespace: &str,
    ) -> Result<PluginSource, OciError> {
        // Credentials only when the registry is needed: a restarted host finds its pulls on disk.
        let artifact = match store.local(&self.reference).await {
            Some(artifact) => artifact,
            None => {
                let mut access = RegistryAccess { insecure: self.spec.insecure, ..RegistryAccess::default() };
                if let Some(secret) = &self.spec.pull_secret {
                    access.auth = pull_secret_auth(client, namespace, secret, self.reference.registry()).await?;
                }
                store.pull(&self.reference, &access).await?
            }
        };
        Ok(PluginSource { name: self.name.clone(), bytes: artifact.component.clone(), digest: artifact.digest.clone() })
    }
}

/// Registry credentials from a `kubernetes.io/dockerconfigjson` Secret.
async fn pull_secret_auth(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    registry: &str,
) -> Result<oci_client::secrets::RegistryAuth, OciError> {
    let what = format!("Secret {namespace}/{name}");
    let fail = |why: String| OciError::Credentials { what: what.clone(), why };
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| {
            fail(format!("cannot be read: {e}; the controller needs `get` on secrets (deploy/base/rbac.yaml)"))
        })?
        .ok_or_else(|| {
            fail(format!(
                "does not exist; create it with `kubectl -n {namespace} create secret docker-registry {name} \
             --docker-server={registry} --docker-username=... --docker-password=...`"
            ))
        })?;
    let json = secret.data.as_ref().and_then(|d| d.get(".dockerconfigjson")).ok_or_else(|| {
        fail("has no `.dockerconfigjson` key; it must be of type kubernetes.io/dockerconfigjson".into())
    })?;
    crate::oci::auth_from_docker_config(&what, &json.0, registry)
}
