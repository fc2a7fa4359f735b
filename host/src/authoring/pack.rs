//! `ballast plugin pack FILE`: the ConfigMap that carries a plugin, in the format the controller reads
//! (`policy::plugins`: `binaryData[key]`, gunzipped when it starts with the gzip magic, found through the
//! `ballast.dev/plugin=true` label), or (with `--oci`) a push to an OCI registry (see [`crate::oci`]).

use std::collections::BTreeMap;
use std::io::Write as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::policy::plugins::PLUGIN_LABEL;

/// The API server refuses a ConfigMap whose data (keys and values of `data` and `binaryData`, raw bytes) exceeds
/// 1 MiB.
pub(crate) const CONFIG_MAP_MAX_BYTES: usize = 1 << 20;
/// The annotation carrying the component's sha256 (of the uncompressed component).
pub(crate) const SHA256_ANNOTATION: &str = "ballast.dev/plugin-sha256";
pub const DEFAULT_KEY: &str = "plugin.wasm";

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "{what}: the ConfigMap would hold {bytes} bytes ({stored}), over the API server's limit of {limit} bytes \
         (1 MiB); publish it to an OCI registry instead: `ballast plugin pack {what} --oci REGISTRY/REPOSITORY:TAG`"
    )]
    TooLarge { what: String, bytes: usize, stored: &'static str, limit: usize },
    #[error("rendering the ConfigMap: {0}")]
    Yaml(#[source] serde_saphyr::SerializeError),
    #[error("`{0}` is not a valid ConfigMap {1} (lowercase letters, digits, '-', '.', '_'; at most 253 characters)")]
    InvalidName(String, &'static str),
}

/// Gzip at the best level: what the ConfigMap stores when it is smaller.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Where the ConfigMap goes.
#[derive(Debug, Clone)]
pub struct PackTarget {
    pub name: String,
    pub namespace: String,
    pub key: String,
}

/// The packed ConfigMap, and facts for the comment above it.
#[derive(Debug, Clone)]
pub struct Packed {
    pub(crate) config_map: ConfigMap,
    pub digest: String,
    pub(crate) size: usize,
    pub(crate) stored_size: usize,
    pub(crate) gzipped: bool,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_'))
}

/// Builds the ConfigMap: gzip when that is smaller, the plugin label, the sha256 annotation. Refuses a result the
/// API server would refuse.
pub fn pack(what: &str, component: &[u8], target: &PackTarget) -> Result<Packed, PackError> {
    if !valid_name(&target.name) {
        return Err(PackError::InvalidName(target.name.clone(), "name"));
    }
    if !valid_name(&target.namespace) {
        return Err(PackError::InvalidName(target.namespace.clone(), "namespace"));
    }
    if target.key.is_empty()
        || !target.key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(PackError::InvalidName(target.key.clone(), "key"));
    }
    let compressed = gzip(component);
    let gzipped = compressed.len() < component.len();
    let stored = if gzipped { compressed } else { component.to_vec() };
    let bytes = stored.len() + target.key.len();
    if bytes > CONFIG_MAP_MAX_BYTES {
        let stored = if gzipped { "gzip-compressed" } else { "uncompressed; gzip does not make it smaller" };
        return Err(PackError::TooLarge { what: what.into(), bytes, stored, limit: CONFIG_MAP_MAX_BYTES });
    }
    let digest = crate::runtime::digest(component);
    let stored_size = stored.len();
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(target.name.clone()),
            namespace: Some(target.namespace.clone()),
            labels: Some(BTreeMap::from([(PLUGIN_LABEL.to_owned(), "true".to_owned())])),
            annotations: Some(BTreeMap::from([(SHA256_ANNOTATION.to_owned(), digest.clone())])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(target.key.clone(), ByteString(stored))])),
        ..ConfigMap::default()
    };
    Ok(Packed { config_map, digest, size: component.len(), stored_size, gzipped })
}

impl Packed {
    /// The YAML to `kubectl apply`, headed by a comment with the ScalingPolicy reference (sha256-pinned).
    /// The advice printed above the ConfigMap. A client-side apply copies the object into the
    /// last-applied-configuration annotation, and the API server refuses more than 256 KiB of annotations: big
    /// plugins need a server-side apply.
    pub fn apply_note(&self) -> String {
        format!(
            "# Apply with `kubectl apply --server-side -f FILE` (a plain `kubectl apply` also stores the whole \
             object, {} bytes here, in an annotation, and annotations are limited to 256 KiB; see \
             deploy/README.md).\n",
            self.stored_size
        )
    }

    pub fn to_yaml(&self, what: &str, target: &PackTarget) -> Result<String, PackError> {
        let body = serde_saphyr::to_string(&self.config_map).map_err(PackError::Yaml)?;
        let stored = if self.gzipped {
            format!("stored gzip-compressed: {} bytes", self.stored_size)
        } else {
            "stored uncompressed (gzip would not make it smaller)".to_owned()
        };
        Ok(format!(
            "# Ballast policy plugin {what}: {} bytes, sha256 {}, {stored}.\n\
             # Reference it from a ScalingPolicy in namespace {}:\n\
             #   plugin:\n\
             #     configMap:\n\
             #       name: {}\n\
             #       key: {}\n\
             #     sha256: {}\n\
             {body}",
            self.size, self.digest, target.namespace, target.name, target.key, self.digest
        ))
    }
}

/// `ballast plugin pack --oci`'s output: what was pushed, its tag, and the ScalingPolicy snippet.
pub fn pushed_summary(what: &str, size: usize, pushed: &crate::oci::Pushed) -> String {
    let mut text = format!("# pushed {what} ({size} bytes) as {}\n", crate::oci::LAYER_MEDIA_TYPE);
    if let Some(tag) = &pushed.tag {
        text += &format!("# tag {tag} -> {}\n", pushed.manifest_digest);
    }
    text + &oci_snippet(pushed)
}

/// The ScalingPolicy snippet for a pushed OCI artifact.
fn oci_snippet(pushed: &crate::oci::Pushed) -> String {
    format!(
        "# Reference it from a ScalingPolicy (add `pullSecret: NAME` for a private registry):\n\
         plugin:\n  oci:\n    reference: {}\n  sha256: {}\n",
        pushed.reference, pushed.component_digest
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::oci::OciStore;
    use crate::policy::plugins::{self, Resolved};
    use crate::spec::{ConfigMapKeyRef, ScalingPolicySpec, ServiceKey};

    fn target() -> PackTarget {
        PackTarget { name: "hpa-plugin".into(), namespace: "ai-models".into(), key: DEFAULT_KEY.into() }
    }

    /// The printed YAML, read back as a ConfigMap and resolved by the controller's own code.
    fn round_trip(component: &[u8]) -> (Packed, plugins::PluginSource) {
        let packed = pack("hpa.wasm", component, &target()).unwrap();
        let yaml = packed.to_yaml("hpa.wasm", &target()).unwrap();
        let config_map: ConfigMap = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(config_map.metadata.labels.as_ref().unwrap()[PLUGIN_LABEL], "true");
        let mut spec: ScalingPolicySpec = super::super::check::sample_spec(1, 4);
        spec.plugin.config_map = Some(ConfigMapKeyRef { name: "hpa-plugin".into(), key: DEFAULT_KEY.into() });
        spec.plugin.sha256 = Some(packed.digest.clone());
        let key = ServiceKey { namespace: "ai-models".into(), name: "stt".into() };
        let config_map = Arc::new(config_map);
        let lookup = |namespace: &str, name: &str| {
            (namespace == "ai-models" && name == "hpa-plugin").then(|| config_map.clone())
        };
        let Resolved::Ready(source) = plugins::resolve(&key, &spec, lookup, &OciStore::new(None)).unwrap() else {
            panic!("a ConfigMap plugin resolves at once")
        };
        (packed, source)
    }

    #[test]
    fn a_packed_component_round_trips_through_the_controller_gzipped() {
        let component = crate::runtime::builtin("hpa").unwrap();
        let (packed, source) = round_trip(component);
        assert!(packed.gzipped && packed.stored_size < component.len());
        assert_eq!(source.bytes.as_slice(), component);
        assert_eq!(source.digest, packed.digest);
        let yaml = packed.to_yaml("hpa.wasm", &target()).unwrap();
        assert!(yaml.contains(&format!("ballast.dev/plugin-sha256: {}", packed.digest)), "{yaml}");
        assert!(yaml.contains(&format!("#     sha256: {}", packed.digest)), "{yaml}");
    }

    #[test]
    fn incompressible_components_are_stored_as_they_are() {
        // Pseudo-random bytes: gzip only adds its header.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (packed, source) = round_trip(&noise);
        assert!(!packed.gzipped);
        assert_eq!(source.bytes.as_slice(), noise.as_slice());
    }

    #[test]
    fn over_a_mebibyte_is_refused_with_the_oci_hint() {
        let mut x: u64 = 1;
        let big: Vec<u8> = (0..CONFIG_MAP_MAX_BYTES + 10)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) as u8
            })
            .collect();
        let text = pack("big.wasm", &big, &target()).unwrap_err().to_string();
        assert!(text.contains("1 MiB") && text.contains("--oci"), "{text}");
        // Compressible: 2 MiB of zeros gzip to a few KiB and fit.
        assert!(pack("zeros.wasm", &vec![0; 2 << 20], &target()).unwrap().gzipped);
    }

    #[test]
    fn invalid_names_are_refused() {
        let bad = PackTarget { name: "Hpa Plugin".into(), ..target() };
        assert!(pack("x", b"\0asm", &bad).unwrap_err().to_string().contains("`Hpa Plugin`"));
    }
}
