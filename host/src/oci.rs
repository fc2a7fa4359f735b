//! Plugins as OCI artifacts: pushed by `ballast plugin pack --oci`, pulled by the controller and the simulator.
//!
//! Format pushed: the CNCF TAG Runtime Wasm working group's artifact (what `wkg oci push` writes): an OCI image
//! manifest whose config has media type `application/vnd.wasm.config.v0+json` and whose single layer is the
//! component itself as `application/wasm`. Pulls also accept the layer types of the older conventions:
//! `application/vnd.wasm.content.layer.v1+wasm` (Kubewarden, oci-distribution) and
//! `application/vnd.module.wasm.content.layer.v1+wasm` (Istio WasmPlugin's "oci" variant). Istio's "compat" variant
//! (a tar.gz layer holding `plugin.wasm`) is not read.
//!
//! A reference is always pinned by digest (`registry/repo@sha256:...`): a tag can move, a digest cannot. The
//! manifest is checked against that digest and the layer against the manifest's, so an artifact is cached by
//! manifest digest and a cache entry never goes stale: in memory, and on disk under `<cache dir>/oci/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::config::RegistryTimeouts;
use crate::runtime::MAX_COMPONENT_BYTES;

/// The config media type pushed (CNCF TAG Runtime Wasm artifact, v0).
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type pushed: the component's bytes, uncompressed.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Layer media types accepted on pull: the CNCF one, Kubewarden's and Istio's.
pub(crate) const ACCEPTED_LAYER_MEDIA_TYPES: &[&str] = &[
    LAYER_MEDIA_TYPE,
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("OCI reference `{reference}`: {why}")]
    Reference { reference: String, why: String },
    #[error("pulling {reference}: {why}")]
    Pull { reference: String, why: String },
    #[error("pulling {reference}: {why}")]
    Content { reference: String, why: String },
    #[error("pulling {reference}: {source}")]
    Artifact { reference: String, source: ContentError },
    #[error("pushing to {reference}: {why}")]
    Push { reference: String, why: String },
    #[error("registry credentials in {what}: {why}")]
    Credentials { what: String, why: String },
}

/// What is wrong with an artifact's manifest or layer: content that will never be accepted, however often pulled.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("manifest is not JSON: {0}")]
    ManifestNotJson(serde_json::Error),
    #[error("the reference names an image index, not a wasm artifact; use the digest of the artifact's manifest")]
    ImageIndex,
    #[error("not an OCI image manifest: {0}")]
    NotManifest(serde_json::Error),
    #[error("its wasm layer declares {} bytes; at most {} are loaded", .0, MAX_COMPONENT_BYTES)]
    LayerTooLarge(i64),
    #[error(
        "not a wasm artifact: no layer of media type {} (layers: {layers:?}); push it with `ballast plugin pack \
         --oci`",
        ACCEPTED_LAYER_MEDIA_TYPES.join(", ")
    )]
    NoWasmLayer { layers: Vec<String> },
    #[error("{count} wasm layers (layers: {layers:?}); a plugin artifact has exactly one")]
    WasmLayers { count: usize, layers: Vec<String> },
    #[error("layer content has digest sha256:{actual}, but the manifest says {declared}")]
    LayerDigest { actual: String, declared: String },
}

impl OciError {
    /// Whether trying again later may work (registry down, credentials missing) as opposed to content that will
    /// never be accepted (digest mismatch, not a wasm artifact).
    pub fn is_retryable(&self) -> bool {
        matches!(self, OciError::Pull { .. } | OciError::Credentials { .. })
    }
}

/// A reference pinned by digest, e.g. `registry.example.com/plugins/hpa@sha256:0123...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedReference {
    reference: Reference,
}

impl PinnedReference {
    /// Parses a reference and refuses it unless it carries a sha256 digest.
    pub fn parse(text: &str) -> Result<Self, OciError> {
        let refuse = |why: String| OciError::Reference { reference: text.into(), why };
        let reference = Reference::try_from(text.trim())
            .map_err(|e| refuse(format!("{e}; write it as REGISTRY/REPOSITORY@sha256:DIGEST")))?;
        match reference.digest() {
            None => Err(refuse(
                "has no digest: a tag can move under a running policy, so plugins are pulled only by digest; \
                 write REGISTRY/REPOSITORY@sha256:DIGEST (`ballast plugin pack --oci` prints it)"
                    .into(),
            )),
            Some(digest) if !is_sha256_digest(digest) => {
                Err(refuse(format!("digest `{digest}` is not sha256:<64 lowercase hex digits>")))
            }
            Some(_) => Ok(PinnedReference { reference }),
        }
    }

    /// `sha256:<hex>` of the manifest.
    pub(crate) fn manifest_digest(&self) -> &str {
        self.reference.digest().expect("checked at parse")
    }

    pub fn registry(&self) -> &str {
        self.reference.registry()
    }
}

impl std::fmt::Display for PinnedReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.reference.registry(), self.reference.repository(), self.manifest_digest())
    }
}

/// The registry a reference (pinned or not) names, as credentials are looked up by it.
pub fn registry_of(reference: &str) -> Option<String> {
    Reference::try_from(reference.trim()).ok().map(|r| r.registry().to_owned())
}

fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// How to reach a registry: credentials, and whether to speak plain HTTP.
#[derive(Debug, Clone)]
pub struct RegistryAccess {
    pub auth: RegistryAuth,
    /// Plain HTTP. Loopback registries (127.0.0.0/8, localhost, ::1) always get plain HTTP, as Docker does.
    pub insecure: bool,
}

impl Default for RegistryAccess {
    fn default() -> Self {
        RegistryAccess { auth: RegistryAuth::Anonymous, insecure: false }
    }
}

/// The credentials for `registry` in a Docker `config.json` (the format of a `kubernetes.io/dockerconfigjson`
/// Secret and of `docker login`): `auth` (base64 of `user:password`) or `username`/`password` give basic auth,
/// `registrytoken` a bearer token. `what` names the file or Secret in errors.
pub fn auth_from_docker_config(what: &str, json: &[u8], registry: &str) -> Result<RegistryAuth, OciError> {
    let fail = |why: String| OciError::Credentials { what: what.into(), why };
    let config: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| fail(format!("not Docker config JSON: {e}")))?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Err(fail("has no `auths` object; create it with `kubectl create secret docker-registry`".into()));
    };
    let entry = auths.iter().find(|(key, _)| registry_key_matches(key, registry)).map(|(_, entry)| entry);
    let Some(entry) = entry else {
        let keys: Vec<&String> = auths.keys().collect();
        return Err(fail(format!("has no entry for registry `{registry}` (entries: {keys:?}); add one")));
    };
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    if let Some(token) = field("registrytoken") {
        return Ok(RegistryAuth::Bearer(token.into()));
    }
    if let (Some(user), Some(password)) = (field("username"), field("password")) {
        return Ok(RegistryAuth::Basic(user.into(), password.into()));
    }
    if let Some(auth) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|e| fail(format!("`auth` for `{registry}` is not base64: {e}")))?;
        let text = String::from_utf8(decoded).map_err(|_| fail(format!("`auth` for `{registry}` is not UTF-8")))?;
        let Some((user, password)) = text.split_once(':') else {
            return Err(fail(format!("`auth` for `{registry}` is not base64 of USER:PASSWORD")));
        };
        return Ok(RegistryAuth::Basic(user.into(), password.into()));
    }
    Err(fail(format!(
        "the entry for `{registry}` has none of `auth`, `username`/`password` or `registrytoken` \
         (identity tokens are not supported)"
    )))
}

/// Docker config keys are host[:port], sometimes written as a URL (`https://index.docker.io/v1/`).
fn registry_key_matches(key: &str, registry: &str) -> bool {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    let docker_hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (docker_hub(host) && docker_hub(registry))
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn client(registry: &str, access: &RegistryAccess, timeouts: RegistryTimeouts) -> Client {
    // reqwest's rustls needs a process-wide crypto provider, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if access.insecure || is_loopback(registry) { ClientProtocol::Http } else { ClientProtocol::Https };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(timeouts.connect),
        read_timeout: Some(timeouts.read),
        ..ClientConfig::default()
    })
}

/// The client's error, with what to do about it.
fn describe(error: &OciDistributionError) -> String {
    let text = match error {
        OciDistributionError::RequestError(e) => format!("{error} ({})", error_chain(e)),
        _ => error.to_string(),
    };
    let lower = text.to_ascii_lowercase();
    let has = |markers: &[&str]| markers.iter().any(|m| lower.contains(m));
    if matches!(error, OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_))
        || has(&["unauthorized", "denied", "code: 401", "code: 403"])
    {
        format!(
            "{text}: the registry wants credentials; give a pull secret (spec.plugin.oci.pullSecret, a \
             kubernetes.io/dockerconfigjson Secret) or, on the command line, --registry-auth FILE"
        )
    } else if has(&["manifest unknown", "name unknown", "blob unknown", "code: 404"]) {
        format!(
            "{text}: the registry has no such artifact; push it with `ballast plugin pack --oci` and use the \
             reference it prints"
        )
    } else if matches!(error, OciDistributionError::RequestError(_)) {
        format!(
            "{text}: the registry did not answer; check its host and port, and set `insecure: true` for a \
             plain-HTTP registry"
        )
    } else {
        text
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

/// A pulled, verified component.
#[derive(Debug)]
pub struct Artifact {
    pub(crate) manifest_digest: String,
    pub layer_media_type: String,
    pub component: Arc<Vec<u8>>,
    /// Lowercase hex sha256 of the component (the runtime's identity of a plugin).
    pub digest: String,
}

/// Pulled artifacts, in memory and (with a directory) on disk, keyed by manifest digest.
pub struct OciStore {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, Arc<Artifact>>>,
    timeouts: RegistryTimeouts,
}

impl OciStore {
    /// A store caching on disk under `cache_dir/oci` (the engine's cache directory), or in memory only.
    pub fn new(cache_dir: Option<&Path>) -> Self {
        OciStore {
            dir: cache_dir.map(|d| d.join("oci")),
            memory: Mutex::new(HashMap::new()),
            timeouts: RegistryTimeouts::default(),
        }
    }

    /// Pulls bounded by `timeouts` instead of the defaults.
    pub(crate) fn with_timeouts(mut self, timeouts: RegistryTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The artifact if it was pulled already by this process. Never touches disk or network.
    pub(crate) fn cached(&self, reference: &PinnedReference) -> Option<Arc<Artifact>> {
        self.memory.lock().expect("OCI cache poisoned").get(reference.manifest_digest()).cloned()
    }

    /// The artifact from memory or the disk cache (re-verified), without touching the network.
    pub(crate) async fn local(&self, reference: &PinnedReference) -> Option<Arc<Artifact>> {
        if let Some(hit) = self.cached(reference) {
            return Some(hit);
        }
        let (dir, pinned) = (self.dir.clone()?, reference.clone());
        let artifact = tokio::task::spawn_blocking(move || read_disk(&dir, &pinned)).await.ok().flatten()?;
        Some(self.remember(artifact))
    }

    /// The artifact from memory, the disk cache, or the registry (verified against the reference's digest).
    pub async fn pull(&self, reference: &PinnedReference, access: &RegistryAccess) -> Result<Arc<Artifact>, OciError> {
        if let Some(hit) = self.local(reference).await {
            return Ok(hit);
        }
        let (manifest_bytes, artifact) = fetch(reference, access, self.timeouts).await?;
        if let Some(dir) = &self.dir
            && let Err(e) = write_disk(dir, &manifest_bytes, &artifact)
        {
            // A cache that cannot be written only costs a pull next time.
            tracing::warn!(dir = %dir.display(), "cannot write the OCI plugin cache: {e}");
        }
        Ok(self.remember(artifact))
    }

    fn remember(&self, artifact: Artifact) -> Arc<Artifact> {
        let artifact = Arc::new(artifact);
        self.memory.lock().expect("OCI cache poisoned").insert(artifact.manifest_digest.clone(), artifact.clone());
        artifact
    }
}

/// For the simulator, which loads plugins from files: pulls an `oci` plugin reference into the store's disk cache
/// and rewrites it as a `path` to the pulled component, pinned by the component's sha256.
pub async fn localize(
    plugin: &mut crate::spec::PluginRef,
    store: &OciStore,
    access: &RegistryAccess,
) -> Result<(), OciError> {
    let Some(oci) = plugin.oci.take() else { return Ok(()) };
    let reference = PinnedReference::parse(&oci.reference)?;
    let artifact = store.pull(&reference, access).await?;
    let Some(dir) = &store.dir else {
        return Err(OciError::Pull {
            reference: reference.to_string(),
            why: "the store has no cache directory".into(),
        });
    };
    plugin.path = Some(cache_path(dir, "blobs", &format!("sha256:{}", artifact.digest)).display().to_string());
    if plugin.sha256.is_none() {
        plugin.sha256 = Some(artifact.digest.clone());
    }
    Ok(())
}

/// Pulls and verifies the manifest and the component layer. Returns the raw manifest too, for the disk cache.
async fn fetch(
    reference: &PinnedReference,
    access: &RegistryAccess,
    timeouts: RegistryTimeouts,
) -> Result<(Vec<u8>, Artifact), OciError> {
    let name = reference.to_string();
    let pull_error = |why: String| OciError::Pull { reference: name.clone(), why };
    let content_error = |why: String| OciError::Content { reference: name.clone(), why };
    let client = client(reference.registry(), access, timeouts);
    let (manifest_bytes, _) = client
        .pull_manifest_raw(&reference.reference, &access.auth, &[MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE])
        .await
        .map_err(|e| match e {
            OciDistributionError::DigestError(_) => content_error(format!("{e}: the registry served another manifest")),
            e => pull_error(describe(&e)),
        })?;
    let actual = format!("sha256:{}", crate::runtime::digest(&manifest_bytes));
    if actual != reference.manifest_digest() {
        return Err(content_error(format!("the registry served a manifest with digest {actual}; refused")));
    }
    let artifact_error = |source: ContentError| OciError::Artifact { reference: name.clone(), source };
    let manifest = parse_manifest(&manifest_bytes).map_err(artifact_error)?;
    let layer = component_layer(&manifest).map_err(artifact_error)?;
    let mut stream = client
        .pull_blob_stream(&reference.reference, &layer)
        .await
        .map_err(|e| pull_error(format!("layer {}: {}", layer.digest, describe(&e))))?;
    let mut component = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let why = format!("layer {}: {e}", layer.digest);
            // The client checks the digest as the bytes stream in: a mismatch is bad content, not bad luck.
            match e.get_ref().is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()) {
                true => content_error(format!("{why}; the registry served other bytes than the manifest names")),
                false => pull_error(why),
            }
        })?;
        component.extend_from_slice(&chunk);
        if component.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(content_error(format!("layer {} is larger than {MAX_COMPONENT_BYTES} bytes", layer.digest)));
        }
    }
    let artifact = verified_artifact(&manifest_bytes, &layer, component).map_err(artifact_error)?;
    Ok((manifest_bytes.to_vec(), artifact))
}

fn parse_manifest(bytes: &[u8]) -> Result<OciImageManifest, ContentError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(ContentError::ManifestNotJson)?;
    if value.get("manifests").is_some() {
        return Err(ContentError::ImageIndex);
    }
    serde_json::from_value(value).map_err(ContentError::NotManifest)
}

/// The single wasm layer of a manifest.
fn component_layer(manifest: &OciImageManifest) -> Result<OciDescriptor, ContentError> {
    let wasm: Vec<&OciDescriptor> =
        manifest.layers.iter().filter(|l| ACCEPTED_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str())).collect();
    let layers = || manifest.layers.iter().map(|l| l.media_type.clone()).collect();
    match wasm.as_slice() {
        [layer] if layer.size >= 0 && layer.size as u64 <= MAX_COMPONENT_BYTES => Ok((*layer).clone()),
        [layer] => Err(ContentError::LayerTooLarge(layer.size)),
        [] => Err(ContentError::NoWasmLayer { layers: layers() }),
        _ => Err(ContentError::WasmLayers { count: wasm.len(), layers: layers() }),
    }
}

fn verified_artifact(
    manifest_bytes: &[u8],
    layer: &OciDescriptor,
    component: Vec<u8>,
) -> Result<Artifact, ContentError> {
    let digest = crate::runtime::digest(&component);
    if layer.digest != format!("sha256:{digest}") {
        return Err(ContentError::LayerDigest { actual: digest, declared: layer.digest.clone() });
    }
    Ok(Artifact {
        manifest_digest: format!("sha256:{}", crate::runtime::digest(manifest_bytes)),
        layer_media_type: layer.media_type.clone(),
        component: Arc::new(component),
        digest,
    })
}

fn cache_path(dir: &Path, kind: &str, digest: &str) -> PathBuf {
    dir.join(kind).join(digest.replace(':', "-"))
}

/// The artifact from the disk cache, re-verified; `None` on any miss or mismatch (then it is pulled again).
fn read_disk(dir: &Path, reference: &PinnedReference) -> Option<Artifact> {
    let manifest_bytes = std::fs::read(cache_path(dir, "manifests", reference.manifest_digest())).ok()?;
    if format!("sha256:{}", crate::runtime::digest(&manifest_bytes)) != reference.manifest_digest() {
        return None;
    }
    let layer = component_layer(&parse_manifest(&manifest_bytes).ok()?).ok()?;
    let component = std::fs::read(cache_path(dir, "blobs", &layer.digest)).ok()?;
    verified_artifact(&manifest_bytes, &layer, component).ok()
}

fn write_disk(dir: &Path, manifest_bytes: &[u8], artifact: &Artifact) -> std::io::Result<()> {
    let write = |path: PathBuf, bytes: &[u8]| -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, path)
    };
    // The blob first: a manifest on disk promises its blob is there too.
    write(cache_path(dir, "blobs", &format!("sha256:{}", artifact.digest)), &artifact.component)?;
    write(cache_path(dir, "manifests", &artifact.manifest_digest), manifest_bytes)
}

/// What a component imports and exports, recorded in the pushed artifact's config.
#[derive(Debug, Clone, Default)]
pub struct ComponentWorld {
    /// The `ballast:policy` world the component implements.
    pub target: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `registry/repository@sha256:...`: what a ScalingPolicy's `plugin.oci.reference` should say.
    pub reference: String,
    pub(crate) manifest_digest: String,
    /// Lowercase hex sha256 of the component (`plugin.sha256`).
    pub(crate) component_digest: String,
    /// The tag also pointed at the manifest, when the target named one.
    pub(crate) tag: Option<String>,
}

/// The artifact's manifest and config blob for a component: deterministic (no timestamps), so the same component
/// always gets the same manifest digest.
pub(crate) fn artifact_documents(component: &[u8], world: &ComponentWorld) -> (Vec<u8>, Vec<u8>) {
    let layer_digest = format!("sha256:{}", crate::runtime::digest(component));
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": {
            "target": world.target,
            "imports": world.imports,
            "exports": world.exports,
        },
    });
    let config = serde_json::to_vec(&config).expect("JSON values serialize");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": format!("sha256:{}", crate::runtime::digest(&config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest,
            "size": component.len(),
            "annotations": { "org.opencontainers.image.title": "plugin.wasm" },
        }],
    });
    (serde_json::to_vec(&manifest).expect("JSON values serialize"), config)
}

/// Pushes a component to `target` (`registry/repository` or `registry/repository:tag`) and returns the
/// digest-pinned reference.
pub async fn push(
    target: &str,
    component: &[u8],
    world: &ComponentWorld,
    access: &RegistryAccess,
) -> Result<Pushed, OciError> {
    let refuse = |why: String| OciError::Reference { reference: target.into(), why };
    let parsed = Reference::try_from(target.trim()).map_err(|e| refuse(format!("{e}; write REGISTRY/REPOSITORY")))?;
    if parsed.digest().is_some() {
        return Err(refuse("names a digest; push to REGISTRY/REPOSITORY or REGISTRY/REPOSITORY:TAG".into()));
    }
    // The parser fills in `latest` for a missing tag; only a tag the user wrote is pushed.
    let last_segment = target.trim().rsplit('/').next().unwrap_or_default();
    let tag = last_segment.contains(':').then(|| parsed.tag().unwrap_or_default().to_owned());
    let fail = |e: OciDistributionError| OciError::Push { reference: target.into(), why: describe(&e) };
    let (manifest, config) = artifact_documents(component, world);
    let manifest_digest = format!("sha256:{}", crate::runtime::digest(&manifest));
    let component_digest = crate::runtime::digest(component);
    let by_digest =
        Reference::with_digest(parsed.registry().to_owned(), parsed.repository().to_owned(), manifest_digest.clone());
    let client = client(parsed.registry(), access, RegistryTimeouts::default());
    client.store_auth_if_needed(parsed.resolve_registry(), &access.auth).await;
    client.push_blob(&by_digest, component.to_vec(), &format!("sha256:{component_digest}")).await.map_err(fail)?;
    let config_digest = format!("sha256:{}", crate::runtime::digest(&config));
    client.push_blob(&by_digest, config, &config_digest).await.map_err(fail)?;
    let content_type = reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
    client.push_manifest_raw(&by_digest, manifest.clone(), content_type.clone()).await.map_err(fail)?;
    if let Some(tag) = &tag {
        let by_tag = Reference::with_tag(parsed.registry().to_owned(), parsed.repository().to_owned(), tag.clone());
        client.push_manifest_raw(&by_tag, manifest, content_type).await.map_err(fail)?;
    }
    Ok(Pushed { reference: by_digest.to_string(), manifest_digest, component_digest, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_reference_must_be_pinned_by_sha256() {
        let pinned = PinnedReference::parse(&format!("127.0.0.1:5000/plugins/hpa@{DIGEST}")).unwrap();
        assert_eq!(pinned.manifest_digest(), DIGEST);
        assert_eq!(pinned.registry(), "127.0.0.1:5000");
        assert_eq!(pinned.to_string(), format!("127.0.0.1:5000/plugins/hpa@{DIGEST}"));
        let tagged = PinnedReference::parse(&format!("registry.example.com/plugins/hpa:v1@{DIGEST}")).unwrap();
        assert_eq!(tagged.to_string(), format!("registry.example.com/plugins/hpa@{DIGEST}"));

        let tag_only = PinnedReference::parse("registry.example.com/plugins/hpa:v1").unwrap_err().to_string();
        assert!(tag_only.contains("has no digest") && tag_only.contains("@sha256:"), "{tag_only}");
        let bare = PinnedReference::parse("registry.example.com/plugins/hpa").unwrap_err().to_string();
        assert!(bare.contains("has no digest"), "{bare}");
        let upper = PinnedReference::parse(&format!("r.example.com/p@{}", DIGEST.to_uppercase().replace("SHA", "sha")));
        assert!(upper.is_err(), "uppercase hex is not a canonical digest");
    }

    #[test]
    fn loopback_registries_speak_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn docker_config_credentials() {
        let config = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "registry.example.com": {"username": "robot", "password": "s3cret"},
            "token.example.com:5000": {"registrytoken": "abc"}
        }}"#;
        let get = |registry| auth_from_docker_config("secret default/pull", config, registry).unwrap();
        assert!(matches!(get("docker.io"), RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        assert!(matches!(get("registry.example.com"), RegistryAuth::Basic(u, p) if u == "robot" && p == "s3cret"));
        assert!(matches!(get("token.example.com:5000"), RegistryAuth::Bearer(t) if t == "abc"));
        let missing = auth_from_docker_config("secret default/pull", config, "other.example.com").unwrap_err();
        assert!(missing.to_string().contains("no entry for registry `other.example.com`"), "{missing}");
        assert!(auth_from_docker_config("f", b"{}", "x").unwrap_err().to_string().contains("auths"));
    }

    #[test]
    fn artifact_documents_are_deterministic_and_name_the_layer() {
        let world = ComponentWorld {
            target: crate::runtime::World::CURRENT.name().into(),
            imports: vec!["ballast:policy/host@0.2.0".into()],
            exports: vec![],
        };
        let (manifest, config) = artifact_documents(b"\0asm component", &world);
        assert_eq!(artifact_documents(b"\0asm component", &world), (manifest.clone(), config.clone()));
        let parsed = parse_manifest(&manifest).unwrap();
        assert_eq!(parsed.config.media_type, CONFIG_MEDIA_TYPE);
        let layer = component_layer(&parsed).unwrap();
        assert_eq!(layer.media_type, LAYER_MEDIA_TYPE);
        assert_eq!(layer.digest, format!("sha256:{}", crate::runtime::digest(b"\0asm component")));
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["component"]["target"], crate::runtime::World::CURRENT.name());
    }

    #[test]
    fn manifests_without_exactly_one_wasm_layer_are_refused() {
        let manifest = |layers: &str| {
            format!(
                r#"{{"schemaVersion": 2, "config": {{"mediaType": "x", "digest": "{DIGEST}", "size": 2}},
                "layers": [{layers}]}}"#
            )
        };
        let layer = |media: &str| format!(r#"{{"mediaType": "{media}", "digest": "{DIGEST}", "size": 10}}"#);
        let tar = parse_manifest(manifest(&layer("application/vnd.oci.image.layer.v1.tar+gzip")).as_bytes()).unwrap();
        assert!(component_layer(&tar).unwrap_err().to_string().contains("not a wasm artifact"));
        for accepted in ACCEPTED_LAYER_MEDIA_TYPES {
            let one = parse_manifest(manifest(&layer(accepted)).as_bytes()).unwrap();
            assert_eq!(component_layer(&one).unwrap().media_type, *accepted);
        }
        let two = format!("{},{}", layer(LAYER_MEDIA_TYPE), layer(LAYER_MEDIA_TYPE));
        assert!(
            component_layer(&parse_manifest(manifest(&two).as_bytes()).unwrap())
                .unwrap_err()
                .to_string()
                .contains("2 wasm")
        );
        let index = br#"{"schemaVersion": 2, "manifests": []}"#;
        assert!(parse_manifest(index).unwrap_err().to_string().contains("image index"));
    }
}
