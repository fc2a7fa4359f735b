//! Plugins and how they are (re)loaded: built-ins, files (e.g. a mounted volume; for cluster policies only inside the
//! operator's `--plugin-dir`s, see [`PluginFiles`], and read off the reconcile loop), components in ConfigMaps labelled
//! `ballast.dev/plugin=true` (`binaryData[key]`, optionally gzip-compressed so ~1 MiB compressed fits a
//! ConfigMap), and OCI artifacts pinned by digest (see [`crate::oci`]), pulled off the reconcile loop.
//!
//! A new version is compiled off the async runtime, type-checked against the world, pinned by sha256 if the policy
//! says so, and must pass a canary decision (on the service's last observation) before it replaces the running one.
//! A refused version changes nothing: the old plugin keeps deciding.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use crate::autoscaler::config_text;
use crate::decision::{self, Moment, ServiceMemory};
use crate::observation::Observation;
use crate::oci::{OciError, OciStore, PinnedReference, RegistryAccess};
use crate::runtime::{self, CANARY_ATTEMPTS, FailureKind, MAX_COMPONENT_BYTES, Plugin, PolicyEngine};
use crate::spec::{OciPluginRef, ScalingPolicySpec, ServiceKey};

/// The label a ConfigMap carries to be watched for plugins.
pub const PLUGIN_LABEL: &str = "ballast.dev/plugin";
pub const PLUGIN_LABEL_SELECTOR: &str = "ballast.dev/plugin=true";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

#[derive(Debug, thiserror::Error)]
pub enum PluginSourceError {
    #[error("{what}: {why}")]
    Unavailable { what: String, why: String },
}

/// The component a policy asks for, with where it came from.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// `builtin:hpa`, `configmap:NS/NAME/KEY`, `oci:REGISTRY/REPO@sha256:...`, or a path: names the plugin in
    /// status, events and errors.
    pub name: String,
    pub bytes: Arc<Vec<u8>>,
    pub digest: String,
}

/// What a spec's plugin reference resolves to now.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// The component's bytes are at hand.
    Ready(PluginSource),
    /// An OCI artifact this process has not pulled yet: pull it off the reconcile loop, then load it.
    Pull(OciPull),
}

/// An OCI plugin to pull.
#[derive(Debug, Clone)]
pub struct OciPull {
    /// `oci:REGISTRY/REPO@sha256:...`
    pub name: String,
    pub reference: PinnedReference,
    pub spec: OciPluginRef,
}

impl OciPull {
    /// Pulls the artifact (registry credentials from `spec.pullSecret`, read with `client`) into `store`.
    pub async fn pull(
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

/// Resolves a spec's plugin reference, reading a plugin file at once and from anywhere: for the files of the
/// operator (`ballast simulate`). `config_map` looks a ConfigMap up by namespace and name; `oci` holds the OCI
/// artifacts pulled so far (nothing here touches the network).
pub fn resolve(
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_map: impl Fn(&str, &str) -> Option<Arc<ConfigMap>>,
    oci: &OciStore,
) -> Result<Resolved, PluginSourceError> {
    match locate(key, spec, config_map, oci, &PluginFiles::Anywhere)? {
        Located::Ready(source) => Ok(Resolved::Ready(source)),
        Located::Pull(pull) => Ok(Resolved::Pull(pull)),
        Located::File(file) => file
            .read()
            .map(Resolved::Ready)
            .map_err(|why| PluginSourceError::Unavailable { what: file.name.clone(), why }),
    }
}

/// Where a spec's plugin is, without reading a file or pulling: what the controller's loop may do.
#[derive(Debug, Clone)]
pub enum Located {
    Ready(PluginSource),
    Pull(OciPull),
    /// A checked plugin file, to be read off the loop ([`PluginFile::read`]).
    File(PluginFile),
}

/// Like [`resolve`], but a plugin file is only found and checked against `files`, not read.
pub fn locate(
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_map: impl Fn(&str, &str) -> Option<Arc<ConfigMap>>,
    oci: &OciStore,
    files: &PluginFiles,
) -> Result<Located, PluginSourceError> {
    let plugin = &spec.plugin;
    let unavailable = |what: String, why: String| PluginSourceError::Unavailable { what, why };
    plugin.check("plugin").map_err(|why| unavailable(format!("{key}"), why))?;
    let (name, bytes) = if let Some(builtin) = &plugin.builtin {
        let bytes = runtime::builtin(builtin).ok_or_else(|| {
            let known: Vec<_> = runtime::BUILTINS.iter().map(|(n, _)| *n).collect();
            unavailable(
                format!("{key}"),
                format!("unknown built-in plugin `{builtin}`; built-ins are {}", known.join(", ")),
            )
        })?;
        (format!("builtin:{builtin}"), Arc::new(bytes.to_vec()))
    } else if let Some(cm_ref) = &plugin.config_map {
        let name = format!("configmap:{}/{}/{}", key.namespace, cm_ref.name, cm_ref.key);
        let cm = config_map(&key.namespace, &cm_ref.name).ok_or_else(|| {
            unavailable(
                name.clone(),
                format!(
                    "no ConfigMap {}/{} labelled {PLUGIN_LABEL_SELECTOR}; create it or label it",
                    key.namespace, cm_ref.name
                ),
            )
        })?;
        let bytes = config_map_component(&cm, &cm_ref.key).map_err(|why| unavailable(name.clone(), why))?;
        (name, Arc::new(bytes))
    } else if let Some(path) = &plugin.path {
        let file = files.locate(path).map_err(|why| unavailable(format!("{key}: plugin.path {path}"), why))?;
        return Ok(Located::File(file));
    } else {
        let oci_ref = plugin.oci.as_ref().expect("exactly one source is named");
        let reference = PinnedReference::parse(&oci_ref.reference)
            .map_err(|e| unavailable(format!("{key}: spec.plugin.oci.reference"), e.to_string()))?;
        let name = format!("oci:{reference}");
        match oci.cached(&reference) {
            Some(artifact) => {
                let digest = artifact.digest.clone();
                return Ok(Located::Ready(PluginSource { name, bytes: artifact.component.clone(), digest }));
            }
            None => return Ok(Located::Pull(OciPull { name, reference, spec: oci_ref.clone() })),
        }
    };
    let digest = runtime::digest(&bytes);
    Ok(Located::Ready(PluginSource { name, bytes, digest }))
}

/// Which files `plugin.path` may name.
#[derive(Debug, Clone)]
pub enum PluginFiles {
    /// Any path: the operator's own files (`ballast run --config`, `ballast simulate`).
    Anywhere,
    /// Only files under these directories: what a namespaced ScalingPolicy may name in cluster mode. Empty (the
    /// default) refuses every path.
    Within(Vec<PluginDir>),
}

/// A directory the operator named with `--plugin-dir`: as given, and with every symlink resolved.
#[derive(Debug, Clone)]
pub struct PluginDir {
    given: PathBuf,
    canonical: PathBuf,
}

impl PluginFiles {
    /// The directories of `--plugin-dir`, each of which must exist.
    pub fn within(dirs: &[PathBuf]) -> Result<Self, String> {
        let dirs = dirs
            .iter()
            .map(|given| {
                let canonical =
                    std::fs::canonicalize(given).map_err(|e| format!("--plugin-dir {}: {e}", given.display()))?;
                if !canonical.is_dir() {
                    return Err(format!("--plugin-dir {}: not a directory", given.display()));
                }
                Ok(PluginDir { given: given.clone(), canonical })
            })
            .collect::<Result<_, String>>()?;
        Ok(PluginFiles::Within(dirs))
    }

    /// Finds and checks the file `path` names: inside the plugin directories (no `..`, no symlink out), a regular
    /// file (no FIFO, device or directory), within the component size bound. Nothing is read, and a path outside
    /// the directories is refused before the filesystem is asked anything about it.
    pub fn locate(&self, path: &str) -> Result<PluginFile, String> {
        let requested = Path::new(path);
        let real = match self {
            PluginFiles::Anywhere => std::fs::canonicalize(requested).map_err(|e| e.to_string())?,
            PluginFiles::Within(dirs) => {
                if dirs.is_empty() {
                    return Err("plugin files are refused: this host reads them only from directories the cluster \
                                operator names with --plugin-dir, and it has none; use a ConfigMap or OCI plugin"
                        .into());
                }
                let shown: Vec<String> = dirs.iter().map(|d| d.given.display().to_string()).collect();
                let shown = shown.join(", ");
                if requested.components().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(format!("`..` is not allowed; name a file in the plugin directories ({shown})"));
                }
                let candidates: Vec<PathBuf> = if requested.is_absolute() {
                    let inside =
                        dirs.iter().any(|d| requested.starts_with(&d.given) || requested.starts_with(&d.canonical));
                    if !inside {
                        return Err(format!(
                            "outside the plugin directories ({shown}); only files there can be loaded"
                        ));
                    }
                    vec![requested.to_path_buf()]
                } else {
                    dirs.iter().map(|d| d.canonical.join(requested)).collect()
                };
                let found = candidates.iter().find(|c| c.symlink_metadata().is_ok());
                let found = found.ok_or_else(|| format!("no such file in the plugin directories ({shown})"))?;
                let real = std::fs::canonicalize(found).map_err(|e| e.to_string())?;
                if !dirs.iter().any(|d| real.starts_with(&d.canonical)) {
                    return Err(format!(
                        "resolves (through a symlink) outside the plugin directories ({shown}); refused"
                    ));
                }
                real
            }
        };
        let metadata = std::fs::metadata(&real).map_err(|e| e.to_string())?;
        let file = PluginFile::checked(path, real, &metadata)?;
        Ok(file)
    }
}

/// A plugin file that passed [`PluginFiles::locate`]'s checks, identified by what `stat` says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFile {
    /// The path as the spec gives it: names the plugin in status, events and errors.
    pub name: String,
    path: PathBuf,
    device: u64,
    inode: u64,
    len: u64,
    modified_ns: i128,
}

impl PluginFile {
    fn checked(name: &str, path: PathBuf, metadata: &std::fs::Metadata) -> Result<Self, String> {
        if !metadata.is_file() {
            return Err("not a regular file (a FIFO, device, socket or directory); refused".into());
        }
        if metadata.len() > MAX_COMPONENT_BYTES {
            return Err(format!("{} bytes, over the {MAX_COMPONENT_BYTES}-byte bound on a component", metadata.len()));
        }
        Ok(PluginFile {
            name: name.to_owned(),
            path,
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
        })
    }

    /// Stands for this version of the file until it is read: a change of content shows as a new size, time or
    /// inode (a ConfigMap volume swaps a symlink to a new file).
    pub fn token(&self) -> String {
        format!("file:{}:{}:{}:{}:{}", self.path.display(), self.device, self.inode, self.len, self.modified_ns)
    }

    /// Reads the file, checking again that what was opened is the file checked and no larger than the bound.
    /// Blocking: call it off the async runtime.
    pub fn read(&self) -> Result<PluginSource, String> {
        let file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let metadata = file.metadata().map_err(|e| e.to_string())?;
        let opened = PluginFile::checked(&self.name, self.path.clone(), &metadata)?;
        if (opened.device, opened.inode) != (self.device, self.inode) {
            return Err("the file was replaced while being loaded; it is tried again".into());
        }
        let mut bytes = Vec::with_capacity(opened.len as usize);
        file.take(MAX_COMPONENT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(format!("over the {MAX_COMPONENT_BYTES}-byte bound on a component; refused"));
        }
        let digest = runtime::digest(&bytes);
        Ok(PluginSource { name: self.name.clone(), bytes: Arc::new(bytes), digest })
    }
}

/// A ConfigMap the controller would see as a plugin (it watches only labelled ones), or why not.
pub fn check_plugin_label(config_map: &ConfigMap) -> Result<(), String> {
    let labelled = config_map.metadata.labels.as_ref().and_then(|l| l.get(PLUGIN_LABEL)).is_some_and(|v| v == "true");
    if labelled {
        Ok(())
    } else {
        Err(format!(
            "a ConfigMap without the label {PLUGIN_LABEL_SELECTOR}, which the controller would not see; label it \
             (`ballast plugin pack` does)"
        ))
    }
}

/// The component in `binaryData[key]`, gunzipped when it starts with the gzip magic.
pub fn config_map_component(cm: &ConfigMap, key: &str) -> Result<Vec<u8>, String> {
    let Some(raw) = cm.binary_data.as_ref().and_then(|data| data.get(key)) else {
        let keys: Vec<&String> = cm.binary_data.iter().flat_map(|d| d.keys()).collect();
        return Err(format!("no binaryData key `{key}` (binaryData keys: {keys:?}); put the component under `{key}`"));
    };
    decompress(&raw.0)
}

/// Gunzips `bytes` if they are gzip, bounded by [`MAX_COMPONENT_BYTES`].
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip data is corrupt: {e}"))?;
    if out.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(format!("decompresses to more than {MAX_COMPONENT_BYTES} bytes; refused"));
    }
    Ok(out)
}

/// What the canary decision runs on: the service's last observation and state, or a quiet default.
#[derive(Debug, Clone)]
pub struct CanaryInput {
    pub observation: Observation,
    pub memory: ServiceMemory,
    pub current: u32,
    pub ready: u32,
}

impl CanaryInput {
    /// For a service never decided: nothing observed, at its minimum.
    pub fn default_for(spec: &ScalingPolicySpec) -> Self {
        let current = spec.min_replicas.max(1).min(spec.max_replicas);
        CanaryInput { observation: Observation::default(), memory: ServiceMemory::default(), current, ready: current }
    }
}

/// A validated plugin, ready to swap in.
pub struct LoadedPlugin {
    pub source_name: String,
    pub plugin: Plugin,
    /// Compile, validation and canary time.
    pub load_time: Duration,
}

/// Why a component was not loaded.
#[derive(Debug)]
pub struct ValidationFailure {
    pub message: String,
    /// Only the clock failed it: every canary attempt ran out of time, which on a busy node says nothing about the
    /// plugin. Worth trying again later; anything else is refused until the plugin or the policy changes.
    pub transient: bool,
}

/// Compiles, validates (world type-check, sha256 pin) and canaries a component. Blocking: call it from
/// `spawn_blocking`.
pub fn load_and_validate(
    engine: &Arc<PolicyEngine>,
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    source: &PluginSource,
    canary: CanaryInput,
) -> Result<LoadedPlugin, ValidationFailure> {
    let started = Instant::now();
    let refused = |message: String| ValidationFailure { message, transient: false };
    let compiled = engine
        .load_digested(&source.name, &source.bytes, &source.digest, spec.plugin.sha256.as_deref())
        .map_err(|e| refused(e.to_string()))?;
    let mut plugin = spec.new_plugin(engine, compiled);
    let config = config_text(&spec.config);
    for attempt in 1..=CANARY_ATTEMPTS {
        let mut memory = canary.memory.clone();
        let at = Moment { now_ms: unix_ms(), current: canary.current, ready: canary.ready };
        let record = decision::decide(key, spec, &config, &mut plugin, &mut memory, &canary.observation, at);
        match &record.plugin {
            decision::PluginVerdict::Failed { kind, message } => {
                let timed_out = *kind == FailureKind::Timeout;
                if timed_out && attempt < CANARY_ATTEMPTS {
                    continue;
                }
                let next = if timed_out {
                    format!(" in each of {CANARY_ATTEMPTS} attempts; trying again after a backoff")
                } else {
                    String::new()
                };
                let message = format!("plugin {} failed its canary decision ({kind}): {message}{next}", source.name);
                return Err(ValidationFailure { message, transient: timed_out });
            }
            _ => break,
        }
    }
    Ok(LoadedPlugin { source_name: source.name.clone(), plugin, load_time: started.elapsed() })
}

/// Milliseconds since the Unix epoch: the decision clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
