//! The `ScalingPolicy` custom resource (`ballast.dev/v1alpha1`, short name `sp`). Its spec is
//! [`crate::spec::ScalingPolicySpec`] (the same document the simulator and `ballast run --config` read); the
//! derive lives there. Its status is [`super::status::ScalingPolicyStatus`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{CustomResourceExt, ResourceExt};

pub use crate::spec::ScalingPolicy;
use crate::spec::ServiceKey;

use super::{ControllerError, plugins};

/// The CustomResourceDefinition as YAML (`ballast crd`, committed as deploy/base/crd.yaml).
pub fn crd_yaml() -> Result<String, ControllerError> {
    serde_saphyr::to_string(&ScalingPolicy::crd()).map_err(|e| ControllerError::Yaml(e.to_string()))
}

/// The service a policy scales: its namespace and name.
pub fn service_key(policy: &ScalingPolicy) -> ServiceKey {
    ServiceKey { namespace: policy.namespace().unwrap_or_else(|| "default".into()), name: policy.name_any() }
}

/// What a policy file (or a `kubectl apply -k` directory of them) holds: ScalingPolicies, and the plugin ConfigMaps
/// they name. `ballast run --config` and `ballast simulate` read the same files.
#[derive(Debug, Clone, Default)]
pub struct PolicyDocuments {
    pub policies: Vec<ScalingPolicy>,
    pub config_maps: Vec<Arc<ConfigMap>>,
}

/// The YAML files of `path`: the file itself, or a directory's `*.yaml`/`*.yml` files but its `kustomization.yaml`,
/// in name order.
pub fn manifest_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|ext| ext == "yaml" || ext == "yml")
                && p.file_stem().is_some_and(|stem| stem != "kustomization")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads [`PolicyDocuments`] from a file or directory ([`manifest_files`]).
pub fn read_documents(path: &Path) -> Result<PolicyDocuments, ControllerError> {
    let io = |path: &Path, e: std::io::Error| ControllerError::Invalid(format!("reading {}: {e}", path.display()));
    let mut documents = PolicyDocuments::default();
    for file in manifest_files(path).map_err(|e| io(path, e))? {
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        let read = documents_from_yaml(&file.display().to_string(), &text, file.parent())?;
        documents.policies.extend(read.policies);
        documents.config_maps.extend(read.config_maps);
    }
    Ok(documents)
}

/// ScalingPolicy and plugin ConfigMap documents from YAML text (`---`-separated): the simulator's format (its
/// `simulation:` sections are ignored). Relative plugin paths are resolved against `base`.
pub fn documents_from_yaml(what: &str, text: &str, base: Option<&Path>) -> Result<PolicyDocuments, ControllerError> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ControllerError::Invalid(format!("{what}: not YAML documents: {e}")))?;
    let mut documents = PolicyDocuments::default();
    for (index, doc) in docs.into_iter().filter(|doc| !doc.is_null()).enumerate() {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let doc_what = format!("{what}: document {} (`{name}`)", index + 1);
        if name.is_empty() {
            return Err(ControllerError::Invalid(format!("{doc_what} has no metadata.name; name it")));
        }
        match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
            (Some("v1"), Some("ConfigMap")) => {
                let mut config_map: ConfigMap = serde_json::from_value(doc)
                    .map_err(|e| ControllerError::Invalid(format!("{doc_what}: not a ConfigMap: {e}")))?;
                plugins::check_plugin_label(&config_map)
                    .map_err(|why| ControllerError::Invalid(format!("{doc_what}: {why}")))?;
                // As `kubectl apply` without `-n` would place it, and as policies without a namespace are read.
                config_map.metadata.namespace.get_or_insert_with(|| "default".into());
                documents.config_maps.push(Arc::new(config_map));
            }
            (Some("ballast.dev/v1alpha1"), Some("ScalingPolicy")) => {
                let mut policy: ScalingPolicy = serde_json::from_value(doc)
                    .map_err(|e| ControllerError::Invalid(format!("{doc_what}: not a valid ScalingPolicy: {e}")))?;
                if let (Some(base), Some(path)) = (base, &policy.spec.plugin.path)
                    && Path::new(path).is_relative()
                {
                    policy.spec.plugin.path = Some(base.join(path).display().to_string());
                }
                documents.policies.push(policy);
            }
            (api_version, kind) => {
                return Err(ControllerError::Invalid(format!(
                    "{doc_what}: {} {} is neither a ScalingPolicy (ballast.dev/v1alpha1) nor a plugin ConfigMap (v1)",
                    api_version.unwrap_or("no apiVersion"),
                    kind.unwrap_or("no kind")
                )));
            }
        }
    }
    Ok(documents)
}
