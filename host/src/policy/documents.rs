//! The one reader of policy files: [`parse_documents`] reads a YAML stream of ScalingPolicies
//! ([`crate::spec::ScalingPolicy`]) and plugin ConfigMaps for `ballast run --config` ([`documents_from_yaml`]) and
//! for `ballast simulate`, which adds what only it needs (the `simulation:` sections, read as the reader's `S`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::spec::{API_VERSION, ScalingPolicy, ScalingPolicySpec, ServiceKey};

use super::status::ScalingPolicyStatus;
use super::{PolicyError, plugins};

/// The service a policy scales: its namespace (`default` when it has none) and name.
pub(crate) fn service_key(policy: &ScalingPolicy) -> ServiceKey {
    let metadata = &policy.metadata;
    ServiceKey {
        namespace: metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: metadata.name.clone().or_else(|| metadata.generate_name.clone()).unwrap_or_default(),
    }
}

/// What a policy file (or a `kubectl apply -k` directory of them) holds: ScalingPolicies, and the plugin ConfigMaps
/// they name. `ballast run --config` and `ballast simulate` read the same files ([`Documents`]).
#[derive(Debug, Clone, Default)]
pub struct PolicyDocuments {
    pub policies: Vec<ScalingPolicy>,
    pub config_maps: Vec<Arc<ConfigMap>>,
}

impl<S> From<Documents<S>> for PolicyDocuments {
    fn from(documents: Documents<S>) -> Self {
        let policies = documents.policies.into_iter().map(|document| document.policy).collect();
        PolicyDocuments { policies, config_maps: documents.config_maps }
    }
}

/// The documents of one or more YAML streams, in order: ScalingPolicies with their `simulation:` sections read as
/// `S` (the simulator's physics; [`IgnoredAny`] for the controller, which ignores them), and plugin ConfigMaps.
#[derive(Debug, Clone)]
pub(crate) struct Documents<S> {
    pub(crate) policies: Vec<PolicyDocument<S>>,
    pub(crate) config_maps: Vec<Arc<ConfigMap>>,
}

impl<S> Default for Documents<S> {
    fn default() -> Self {
        Documents { policies: Vec::new(), config_maps: Vec::new() }
    }
}

impl<S> Documents<S> {
    pub(crate) fn extend(&mut self, more: Documents<S>) {
        self.policies.extend(more.policies);
        self.config_maps.extend(more.config_maps);
    }
}

/// A ScalingPolicy document, its spec validated, its relative plugin path resolved.
#[derive(Debug, Clone)]
pub(crate) struct PolicyDocument<S> {
    /// Names the document in messages: "`{file}: document {N} (`{name}`, from line {L})`".
    pub(crate) what: String,
    pub(crate) policy: ScalingPolicy,
    pub(crate) simulation: Option<S>,
}

/// The YAML files of `path`: the file itself, or a directory's `*.yaml`/`*.yml` files but its `kustomization.yaml`,
/// in name order.
pub(crate) fn manifest_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
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
pub fn read_documents(path: &Path) -> Result<PolicyDocuments, PolicyError> {
    read_manifests::<IgnoredAny>(path).map(PolicyDocuments::from)
}

/// [`PolicyDocuments`] from YAML text; relative plugin paths are resolved against `base`.
pub fn documents_from_yaml(what: &str, text: &str, base: Option<&Path>) -> Result<PolicyDocuments, PolicyError> {
    parse_documents::<IgnoredAny>(what, text, base).map(PolicyDocuments::from)
}

/// Reads the documents of a file or of a directory's files ([`manifest_files`]), as [`parse_documents`] does.
pub(crate) fn read_manifests<S: DeserializeOwned>(path: &Path) -> Result<Documents<S>, PolicyError> {
    let io = |path: &Path, e: std::io::Error| PolicyError::Invalid(format!("reading {}: {e}", path.display()));
    let mut documents = Documents::default();
    for file in manifest_files(path).map_err(|e| io(path, e))? {
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        documents.extend(parse_documents(&file.display().to_string(), &text, file.parent())?);
    }
    Ok(documents)
}

/// ScalingPolicy and plugin ConfigMap documents from `---`-separated YAML text; `what` names the text in errors.
/// Each document is read strictly, as the API server's strict field validation reads it (an unknown or misspelt
/// field is refused with its line and the closest known field; `simulation:` sections are read as `S` says), and
/// checked as far as it can be without a cluster: its apiVersion and kind, its name, a ScalingPolicy's spec (bounds,
/// `behavior`, one plugin source), a ConfigMap's plugin label. Messages name the
/// document by number, name and first line, and YAML errors give lines of the whole text. Relative plugin paths are resolved against
/// `base`; ConfigMaps without a namespace get `default`, as `kubectl apply` without `-n` would place them.
pub(crate) fn parse_documents<S: DeserializeOwned>(
    what: &str,
    text: &str,
    base: Option<&Path>,
) -> Result<Documents<S>, PolicyError> {
    let mut documents = Documents::default();
    for (index, document) in split_documents(text).into_iter().enumerate() {
        let (number, first_line) = (index + 1, document.first_line);
        let header: serde_yaml_ng::Value = document.parse().map_err(|error| PolicyError::Document {
            what: format!("{what}: document {number} (from line {first_line})"),
            error,
        })?;
        let field = |key: &str| header.get(key).and_then(|v| v.as_str());
        let Some(name) = header.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()) else {
            return Err(PolicyError::Invalid(format!(
                "{what}: document {number} (from line {first_line}) has no metadata.name; name it"
            )));
        };
        let doc_what = format!("{what}: document {number} (`{name}`, from line {first_line})");
        let parse_error = |error| PolicyError::Document { what: doc_what.clone(), error };
        match field("kind") {
            Some("ConfigMap") => {
                check_api_version(&doc_what, field("apiVersion"), "v1")?;
                let mut config_map: ConfigMap = document.parse().map_err(parse_error)?;
                plugins::check_plugin_label(&config_map)
                    .map_err(|why| PolicyError::Invalid(format!("{doc_what}: {why}")))?;
                config_map.metadata.namespace.get_or_insert_with(|| "default".into());
                documents.config_maps.push(Arc::new(config_map));
            }
            Some("ScalingPolicy") => {
                check_api_version(&doc_what, field("apiVersion"), API_VERSION)?;
                let manifest: PolicyManifest<S> = document.parse().map_err(parse_error)?;
                let mut spec = manifest.spec;
                spec.check().map_err(|e| PolicyError::Invalid(format!("{doc_what}: {e}")))?;
                if let (Some(base), Some(path)) = (base, &spec.plugin.path)
                    && Path::new(path).is_relative()
                {
                    spec.plugin.path = Some(base.join(path).display().to_string());
                }
                let policy = ScalingPolicy { metadata: manifest.metadata, spec, status: manifest.status };
                documents.policies.push(PolicyDocument { what: doc_what, policy, simulation: manifest.simulation });
            }
            kind => {
                return Err(PolicyError::Invalid(format!(
                    "{doc_what}: {} {} is neither a ScalingPolicy ({}) nor a plugin ConfigMap (v1)",
                    field("apiVersion").unwrap_or("no apiVersion"),
                    kind.unwrap_or("no kind"),
                    API_VERSION
                )));
            }
        }
    }
    Ok(documents)
}

/// A ScalingPolicy document as written: the resource and, for the simulator, a `simulation` section.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyManifest<S> {
    /// `apiVersion` and `kind` are checked before the document is parsed; named here so that they are not unknown.
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    metadata: ObjectMeta,
    spec: ScalingPolicySpec,
    /// As `kubectl get -o yaml` writes it: a `--config` file can carry the memory a previous run persisted.
    #[serde(default)]
    status: Option<ScalingPolicyStatus>,
    /// Absent is `None` (serde's rule for `Option`; `#[serde(default)]` would ask `S: Default`).
    simulation: Option<S>,
}

fn check_api_version(what: &str, api_version: Option<&str>, expected: &str) -> Result<(), PolicyError> {
    match api_version {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(PolicyError::Invalid(format!("{what}: apiVersion is `{found}`; use `{expected}`"))),
        None => Err(PolicyError::Invalid(format!("{what}: no apiVersion; use `{expected}`"))),
    }
}

/// What a spec must satisfy before anything runs it: bounds that admit a replica count, a valid `behavior`, and
/// exactly one plugin source.
/// One document of a `---`-separated YAML stream and the line of the stream it starts at.
struct Document<'a> {
    first_line: usize,
    text: &'a str,
}

impl Document<'_> {
    /// Parses the document as `T`, refusing unknown fields at any depth ([`crate::strict`]), its error locations
    /// counted in lines of the whole stream (as an editor shows them): the document is parsed behind as many empty
    /// lines as precede it.
    fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_yaml_ng::Error> {
        let mut placed = "\n".repeat(self.first_line - 1);
        placed.push_str(self.text);
        crate::strict::from_yaml_str(&placed)
    }
}

/// Splits multi-document YAML at `---` lines; documents of only comments and blank lines are dropped.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(Document { first_line: start_line, text: &text[start..offset] });
            start = offset + line.len();
            start_line = number + 2;
        }
        offset += line.len();
    }
    docs.push(Document { first_line: start_line, text: &text[start..] });
    docs.retain(|doc| doc.text.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str) -> String {
        format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: {name}}}\nspec:\n  \
             target: {{name: {name}}}\n  maxReplicas: 3\n  plugin: {{builtin: hpa}}\n"
        )
    }

    fn error(text: &str) -> String {
        documents_from_yaml("p.yaml", text, None).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_document_its_first_line_and_the_line_in_the_file() {
        let text = format!("# policies\n---\n{}---\n{}", policy("a"), policy("b").replace("  maxReplicas: 3\n", ""));
        let err = error(&text);
        assert!(err.starts_with("p.yaml: document 2 (`b`, from line 11): spec: missing field `maxReplicas`"), "{err}");
        assert!(err.ends_with("at line 15 column 3"), "{err}");
    }

    #[test]
    fn the_controller_checks_what_the_simulator_checks() {
        let err = error(&policy("a").replace("v1alpha1", "v1"));
        assert!(
            err.contains("document 1 (`a`, from line 1): apiVersion is `ballast.dev/v1`; use `ballast.dev/v1alpha1`")
        );
        let err = error(&policy("a").replace("maxReplicas: 3", "maxReplicas: 3\n  minReplicas: 4"));
        assert!(err.contains("spec.minReplicas (4) is above spec.maxReplicas (3); lower minReplicas"), "{err}");
        let err = error(&policy("a").replace("maxReplicas: 3", "maxReplicas: 0\n  minReplicas: 0"));
        assert!(err.contains("spec.maxReplicas is 0; it must be at least 1"), "{err}");
        let objective = |seconds: &str| {
            policy("a").replace("maxReplicas: 3", &format!("maxReplicas: 3\n  waitObjectiveSeconds: {seconds}"))
        };
        let read =
            |text: &str| documents_from_yaml("p.yaml", text, None).map(|d| d.policies[0].spec.wait_objective_seconds);
        assert_eq!(read(&objective("86400")).unwrap(), Some(86_400.0));
        assert_eq!(read(&objective("0.001")).unwrap(), Some(0.001));
        for over in ["86400.5", "0.0009", "-1", ".nan"] {
            let err = error(&objective(over));
            assert!(
                err.contains("spec.waitObjectiveSeconds") && err.contains("outside 0.001..=86400"),
                "{over}: {err}"
            );
        }
        let shadow = "{builtin: hpa}\n  shadow: {plugin: {}}";
        let err = error(&policy("a").replace("{builtin: hpa}", shadow));
        assert!(err.contains("(`a`, from line 1): spec.shadow.plugin must name exactly one of"), "{err}");
        let err = error(&policy("a").replace("{builtin: hpa}", "{builtin: hpa, path: x.wasm}"));
        assert!(err.contains("spec.plugin must name exactly one of `builtin` (hpa, queue-drain)"), "{err}");
        let err = error(&format!("{}specs: {{}}\n", policy("a")));
        assert!(err.contains("unknown field `specs`") && err.contains("at line 8 column 1"), "{err}");
        let err = error(&policy("a").replace("kind: ScalingPolicy", "kind: Deployment"));
        assert!(err.contains("ballast.dev/v1alpha1 Deployment is neither a ScalingPolicy"), "{err}");
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Physics {
        seconds: f64,
    }

    #[test]
    fn simulation_sections_are_read_as_the_caller_asks_and_ignored_by_the_controller() {
        let text = format!("{}simulation: {{seconds: 2}}\n---\n{}", policy("a"), policy("b"));
        let read: Documents<Physics> = parse_documents("p.yaml", &text, None).unwrap();
        let simulations: Vec<_> = read.policies.iter().map(|p| p.simulation.as_ref()).collect();
        assert_eq!(simulations, [Some(&Physics { seconds: 2.0 }), None]);

        let text = format!("{}simulation: {{anything: here}}\n", policy("a"));
        assert_eq!(documents_from_yaml("p.yaml", &text, None).unwrap().policies.len(), 1);
        let err = parse_documents::<Physics>("p.yaml", &text, None).unwrap_err().to_string();
        assert!(err.contains("simulation: unknown field `anything`") && err.contains("line 8"), "{err}");
    }
}
