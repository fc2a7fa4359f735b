//! Plugin references and what they resolve to: built-ins, files (e.g. a mounted volume; for cluster policies only
//! inside the operator's `--plugin-dir`s, see [`PluginFiles`], and read off the reconcile loop), components in
//! ConfigMaps labelled `ballast.dev/plugin=true` (`binaryData[key]`, optionally gzip-compressed so ~1 MiB compressed
//! fits a ConfigMap), and OCI artifacts pinned by digest (see [`crate::oci`]), pulled off the reconcile loop.
//!
//! Nothing here talks to a cluster: ConfigMaps are handed in (the controller's watch cache, or the documents of a
//! policy file), and an OCI pull's registry credentials are read by the controller (`controller::oci_pull`).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;

use crate::oci::{OciError, OciStore, PinnedReference};
use crate::runtime::{self, MAX_COMPONENT_BYTES};
use crate::spec::{OciPluginRef, ScalingPolicySpec, ServiceKey, SpecError};

/// The label a ConfigMap carries to be watched for plugins.
pub(crate) const PLUGIN_LABEL: &str = "ballast.dev/plugin";
pub(crate) const PLUGIN_LABEL_SELECTOR: &str = "ballast.dev/plugin=true";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a spec's plugin cannot be had; `what` names the policy or the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginSourceError {
    #[error("{what}: {source}")]
    Unavailable { what: String, source: Unavailable },
}

/// Why a plugin reference resolves to no component.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("unknown built-in plugin `{0}`; built-ins are {known}", known = runtime::builtin_names())]
    UnknownBuiltin(String),
    #[error("no ConfigMap {namespace}/{name} labelled {PLUGIN_LABEL_SELECTOR}; create it or label it")]
    NoConfigMap { namespace: String, name: String },
    #[error(transparent)]
    ConfigMap(#[from] ConfigMapError),
    #[error(transparent)]
    File(#[from] PluginFileError),
    #[error(transparent)]
    Reference(#[from] OciError),
}

/// Why a ConfigMap holds no usable component.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error(
        "a ConfigMap without the label {PLUGIN_LABEL_SELECTOR}, which the controller would not see; label it \
         (`ballast plugin pack` does)"
    )]
    NotLabelled,
    #[error("no binaryData key `{key}` (binaryData keys: {keys:?}); put the component under `{key}`")]
    NoKey { key: String, keys: Vec<String> },
    #[error("gzip data is corrupt: {0}")]
    Corrupt(#[source] std::io::Error),
    #[error("decompresses to more than {MAX_COMPONENT_BYTES} bytes; refused")]
    TooLarge,
}

/// Why a `--plugin-dir` cannot serve plugin files.
#[derive(Debug, thiserror::Error)]
pub enum PluginDirError {
    #[error("--plugin-dir {}: {source}", dir.display())]
    Unreadable { dir: PathBuf, source: std::io::Error },
    #[error("--plugin-dir {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
}

/// Why a plugin file is refused or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PluginFileError {
    #[error(
        "plugin files are refused: this host reads them only from directories the cluster operator names with \
         --plugin-dir, and it has none; use a ConfigMap or OCI plugin"
    )]
    NoPluginDirs,
    #[error("`..` is not allowed; name a file in the plugin directories ({0})")]
    ParentDir(String),
    #[error("outside the plugin directories ({0}); only files there can be loaded")]
    Outside(String),
    #[error("no such file in the plugin directories ({0})")]
    NotFound(String),
    #[error("resolves (through a symlink) outside the plugin directories ({0}); refused")]
    SymlinkOutside(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a regular file (a FIFO, device, socket or directory); refused")]
    NotAFile,
    #[error("{0} bytes, over the {MAX_COMPONENT_BYTES}-byte bound on a component")]
    TooLarge(u64),
    #[error("the file was replaced while being loaded; it is tried again")]
    Replaced,
    #[error("over the {MAX_COMPONENT_BYTES}-byte bound on a component; refused")]
    ReadTooLarge,
}

/// The component a policy asks for, with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct PluginSource {
    /// `builtin:hpa`, `configmap:NS/NAME/KEY`, `oci:REGISTRY/REPO@sha256:...`, or a path: names the plugin in
    /// status, events and errors.
    pub(crate) name: String,
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) digest: String,
}

/// What a spec's plugin reference resolves to now.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// The component's bytes are at hand.
    Ready(PluginSource),
    /// An OCI artifact this process has not pulled yet: pull it off the reconcile loop, then load it.
    Pull(OciPull),
}

/// An OCI plugin to pull.
#[derive(Debug, Clone)]
pub(crate) struct OciPull {
    /// `oci:REGISTRY/REPO@sha256:...`
    pub(crate) name: String,
    pub(crate) reference: PinnedReference,
    pub(crate) spec: OciPluginRef,
}

/// Resolves a spec's plugin reference, reading a plugin file at once and from anywhere: for the files of the
/// operator (`ballast simulate`). `config_map` looks a ConfigMap up by namespace and name; `oci` holds the OCI
/// artifacts pulled so far (nothing here touches the network).
pub(crate) fn resolve(
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
            .map_err(|e| PluginSourceError::Unavailable { what: file.name.clone(), source: e.into() }),
    }
}

/// Where a spec's plugin is, without reading a file or pulling: what the controller's loop may do.
#[derive(Debug, Clone)]
pub(crate) enum Located {
    Ready(PluginSource),
    Pull(OciPull),
    /// A checked plugin file, to be read off the loop ([`PluginFile::read`]).
    File(PluginFile),
}

/// Like [`resolve`], but a plugin file is only found and checked against `files`, not read.
pub(crate) fn locate(
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_map: impl Fn(&str, &str) -> Option<Arc<ConfigMap>>,
    oci: &OciStore,
    files: &PluginFiles,
) -> Result<Located, PluginSourceError> {
    let plugin = &spec.plugin;
    let unavailable = |what: String, why: Unavailable| PluginSourceError::Unavailable { what, source: why };
    plugin.check("plugin").map_err(|e| unavailable(format!("{key}"), e.into()))?;
    let (name, bytes) = if let Some(builtin) = &plugin.builtin {
        let bytes = runtime::builtin(builtin)
            .ok_or_else(|| unavailable(format!("{key}"), Unavailable::UnknownBuiltin(builtin.clone())))?;
        (format!("builtin:{builtin}"), Arc::new(bytes.to_vec()))
    } else if let Some(cm_ref) = &plugin.config_map {
        let name = format!("configmap:{}/{}/{}", key.namespace, cm_ref.name, cm_ref.key);
        let cm = config_map(&key.namespace, &cm_ref.name).ok_or_else(|| {
            let missing = Unavailable::NoConfigMap { namespace: key.namespace.clone(), name: cm_ref.name.clone() };
            unavailable(name.clone(), missing)
        })?;
        let bytes = config_map_component(&cm, &cm_ref.key).map_err(|e| unavailable(name.clone(), e.into()))?;
        (name, Arc::new(bytes))
    } else if let Some(path) = &plugin.path {
        let file = files.locate(path).map_err(|e| unavailable(format!("{key}: plugin.path {path}"), e.into()))?;
        return Ok(Located::File(file));
    } else {
        let oci_ref = plugin.oci.as_ref().expect("exactly one source is named");
        let reference = PinnedReference::parse(&oci_ref.reference)
            .map_err(|e| unavailable(format!("{key}: spec.plugin.oci.reference"), e.into()))?;
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
    pub fn within(dirs: &[PathBuf]) -> Result<Self, PluginDirError> {
        let dirs = dirs
            .iter()
            .map(|given| {
                let canonical = std::fs::canonicalize(given)
                    .map_err(|source| PluginDirError::Unreadable { dir: given.clone(), source })?;
                if !canonical.is_dir() {
                    return Err(PluginDirError::NotADirectory(given.clone()));
                }
                Ok(PluginDir { given: given.clone(), canonical })
            })
            .collect::<Result<_, PluginDirError>>()?;
        Ok(PluginFiles::Within(dirs))
    }

    /// Finds and checks the file `path` names: inside the plugin directories (no `..`, no symlink out), a regular
    /// file (no FIFO, device or directory), within the component size bound. Nothing is read, and a path outside
    /// the directories is refused before the filesystem is asked anything about it.
    pub(crate) fn locate(&self, path: &str) -> Result<PluginFile, PluginFileError> {
        let requested = Path::new(path);
        let real = match self {
            PluginFiles::Anywhere => std::fs::canonicalize(requested)?,
            PluginFiles::Within(dirs) => {
                if dirs.is_empty() {
                    return Err(PluginFileError::NoPluginDirs);
                }
                let shown: Vec<String> = dirs.iter().map(|d| d.given.display().to_string()).collect();
                let shown = shown.join(", ");
                if requested.components().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(PluginFileError::ParentDir(shown));
                }
                let candidates: Vec<PathBuf> = if requested.is_absolute() {
                    let inside =
                        dirs.iter().any(|d| requested.starts_with(&d.given) || requested.starts_with(&d.canonical));
                    if !inside {
                        return Err(PluginFileError::Outside(shown));
                    }
                    vec![requested.to_path_buf()]
                } else {
                    dirs.iter().map(|d| d.canonical.join(requested)).collect()
                };
                let found = candidates.iter().find(|c| c.symlink_metadata().is_ok());
                let Some(found) = found else { return Err(PluginFileError::NotFound(shown)) };
                let real = std::fs::canonicalize(found)?;
                if !dirs.iter().any(|d| real.starts_with(&d.canonical)) {
                    return Err(PluginFileError::SymlinkOutside(shown));
                }
                real
            }
        };
        let metadata = std::fs::metadata(&real)?;
        let file = PluginFile::checked(path, real, &metadata)?;
        Ok(file)
    }
}

/// A plugin file that passed [`PluginFiles::locate`]'s checks, identified by what `stat` says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginFile {
    /// The path as the spec gives it: names the plugin in status, events and errors.
    pub(crate) name: String,
    path: PathBuf,
    device: u64,
    inode: u64,
    len: u64,
    modified_ns: i128,
}

impl PluginFile {
    fn checked(name: &str, path: PathBuf, metadata: &std::fs::Metadata) -> Result<Self, PluginFileError> {
        if !metadata.is_file() {
            return Err(PluginFileError::NotAFile);
        }
        if metadata.len() > MAX_COMPONENT_BYTES {
            return Err(PluginFileError::TooLarge(metadata.len()));
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
    pub(crate) fn token(&self) -> String {
        format!("file:{}:{}:{}:{}:{}", self.path.display(), self.device, self.inode, self.len, self.modified_ns)
    }

    /// Reads the file, checking again that what was opened is the file checked and no larger than the bound.
    /// Blocking: call it off the async runtime.
    pub(crate) fn read(&self) -> Result<PluginSource, PluginFileError> {
        let file = std::fs::File::open(&self.path)?;
        let metadata = file.metadata()?;
        let opened = PluginFile::checked(&self.name, self.path.clone(), &metadata)?;
        if (opened.device, opened.inode) != (self.device, self.inode) {
            return Err(PluginFileError::Replaced);
        }
        let mut bytes = Vec::with_capacity(opened.len as usize);
        file.take(MAX_COMPONENT_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(PluginFileError::ReadTooLarge);
        }
        let digest = runtime::digest(&bytes);
        Ok(PluginSource { name: self.name.clone(), bytes: Arc::new(bytes), digest })
    }
}

/// A ConfigMap the controller would see as a plugin (it watches only labelled ones), or why not.
pub(crate) fn check_plugin_label(config_map: &ConfigMap) -> Result<(), ConfigMapError> {
    let labelled = config_map.metadata.labels.as_ref().and_then(|l| l.get(PLUGIN_LABEL)).is_some_and(|v| v == "true");
    if labelled { Ok(()) } else { Err(ConfigMapError::NotLabelled) }
}

/// The component in `binaryData[key]`, gunzipped when it starts with the gzip magic.
pub fn config_map_component(cm: &ConfigMap, key: &str) -> Result<Vec<u8>, ConfigMapError> {
    let Some(raw) = cm.binary_data.as_ref().and_then(|data| data.get(key)) else {
        let keys = cm.binary_data.iter().flat_map(|d| d.keys()).cloned().collect();
        return Err(ConfigMapError::NoKey { key: key.to_owned(), keys });
    };
    decompress(&raw.0)
}

/// Gunzips `bytes` if they are gzip, bounded by [`MAX_COMPONENT_BYTES`].
pub(crate) fn decompress(bytes: &[u8]) -> Result<Vec<u8>, ConfigMapError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(ConfigMapError::Corrupt)?;
    if out.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(ConfigMapError::TooLarge);
    }
    Ok(out)
}
