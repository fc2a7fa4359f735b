//! Plugins as OCI artifacts against a real registry: Debian's `docker-registry` (CNCF Distribution) on a free
//! loopback port, pushed to by `ballast plugin pack --oci`, pulled by the controller (against the API stand-in),
//! the simulator and the store.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast::oci::{self, OciStore, PinnedReference, RegistryAccess};
use ballast::spec::ScalingPolicy;
use common::cluster::{Cluster, Host, HostConfig, cluster, condition, eventually, plugin_file, rebuilt};
use common::registry::Registry;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

fn ballast(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running ballast")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `ballast plugin pack FILE --oci TARGET`; returns the digest-pinned reference it printed.
fn pack_oci(component: &[u8], target: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plugin.wasm");
    std::fs::write(&file, component).expect("writing the component");
    let mut args = vec!["plugin", "pack", file.to_str().expect("UTF-8"), "--oci", target];
    args.extend_from_slice(extra);
    let output = ballast(&args, &[]);
    let out = text(&output);
    assert!(output.status.success(), "pack --oci {target} failed:\n{out}");
    assert!(out.contains(&format!("sha256: {}", ballast::runtime::digest(component))), "{out}");
    let reference = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("reference: "))
        .unwrap_or_else(|| panic!("no `reference:` line in:\n{out}"));
    reference.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_pushes_a_pinned_artifact_that_the_store_pulls_verifies_and_caches_on_disk() {
    let registry = Registry::start(None);
    let component = rebuilt(ballast::runtime::builtin("hpa").expect("hpa"), "store");
    let reference = pack_oci(&component, &format!("{}/plugins/hpa:v1", registry.host()), &[]);
    assert!(reference.starts_with(&format!("{}/plugins/hpa@sha256:", registry.host())), "{reference}");
    // The artifact is deterministic: the same component always gets the same manifest digest.
    assert_eq!(reference, pack_oci(&component, &format!("{}/plugins/hpa", registry.host()), &[]));

    let cache = tempfile::tempdir().expect("cache dir");
    let pinned = PinnedReference::parse(&reference).expect("pinned");
    let store = OciStore::new(Some(cache.path()));
    let artifact = store.pull(&pinned, &RegistryAccess::default()).await.expect("pull");
    assert_eq!(artifact.component.as_slice(), component.as_slice());
    assert_eq!(artifact.digest, ballast::runtime::digest(&component));
    assert_eq!(artifact.layer_media_type, oci::LAYER_MEDIA_TYPE);

    // A registry serving other bytes under the blob's digest is caught.
    let blob = registry.blob_file(&artifact.digest);
    let mut tampered = std::fs::read(&blob).expect("the registry's blob file");
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&blob, &tampered).expect("tampering with the blob");
    let error = OciStore::new(None).pull(&pinned, &RegistryAccess::default()).await.unwrap_err();
    assert!(!error.is_retryable() && error.to_string().contains("digest"), "{error}");

    // A fresh store (a restarted host) finds it on disk with the registry gone.
    drop(registry);
    let again = OciStore::new(Some(cache.path())).pull(&pinned, &RegistryAccess::default()).await.expect("from disk");
    assert_eq!(again.component.as_slice(), component.as_slice());
    // Without the disk cache, the same pull needs the registry, and says what failed.
    let error = OciStore::new(None).pull(&pinned, &RegistryAccess::default()).await.unwrap_err();
    assert!(error.is_retryable() && error.to_string().contains(&pinned.to_string()), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubewarden_and_istio_layer_media_types_are_pulled_and_non_wasm_or_missing_artifacts_are_refused() {
    let registry = Registry::start(None);
    let component = rebuilt(ballast::runtime::builtin("hpa").expect("hpa"), "media-types");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    for (repository, media_type) in [
        ("kubewarden", "application/vnd.wasm.content.layer.v1+wasm"),
        ("istio", "application/vnd.module.wasm.content.layer.v1+wasm"),
    ] {
        let image: oci_client::Reference = format!("{}/{repository}:v1", registry.host()).parse().expect("reference");
        let layer = oci_client::client::ImageLayer::new(component.clone(), media_type.into(), None);
        let config =
            oci_client::client::Config::new(b"{}".to_vec(), "application/vnd.wasm.config.v1+json".into(), None);
        let manifest = oci_client::manifest::OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        let pushed = client.push(&image, &[layer], config, &auth, Some(manifest)).await.expect("push");
        assert!(!pushed.manifest_url.is_empty());
        let (_, digest) = client
            .pull_manifest_raw(&image, &auth, &["application/vnd.oci.image.manifest.v1+json"])
            .await
            .expect("manifest");
        let pinned = PinnedReference::parse(&format!("{}/{repository}@{digest}", registry.host())).expect("pinned");
        let artifact = OciStore::new(None).pull(&pinned, &RegistryAccess::default()).await.expect("pull");
        assert_eq!(artifact.layer_media_type, media_type);
        assert_eq!(artifact.component.as_slice(), component.as_slice());
    }

    // An artifact whose only layer is not wasm (a container image, say) is refused as such.
    let image: oci_client::Reference = format!("{}/not-wasm:v1", registry.host()).parse().expect("reference");
    let layer =
        oci_client::client::ImageLayer::new(b"tar".to_vec(), "application/vnd.oci.image.layer.v1.tar".into(), None);
    let config =
        oci_client::client::Config::new(b"{}".to_vec(), "application/vnd.oci.image.config.v1+json".into(), None);
    client.push(&image, &[layer], config, &auth, None).await.expect("push");
    let (_, digest) = client
        .pull_manifest_raw(&image, &auth, &["application/vnd.oci.image.manifest.v1+json"])
        .await
        .expect("manifest");
    let pinned = PinnedReference::parse(&format!("{}/not-wasm@{digest}", registry.host())).expect("pinned");
    let error = OciStore::new(None).pull(&pinned, &RegistryAccess::default()).await.unwrap_err();
    assert!(!error.is_retryable() && error.to_string().contains("not a wasm artifact"), "{error}");

    // A digest the registry does not have.
    let missing = format!("{}/plugins/hpa@sha256:{}", registry.host(), "ab".repeat(32));
    let error = OciStore::new(None)
        .pull(&PinnedReference::parse(&missing).expect("pinned"), &RegistryAccess::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no such artifact"), "{error}");
}

fn last_digest(cluster: &Cluster) -> Option<String> {
    cluster.policy("web")["status"]["lastDecision"]["pluginDigest"].as_str().map(str::to_owned)
}

fn plugin_ready(cluster: &Cluster) -> Option<Value> {
    condition(&cluster.policy("web"), "PluginReady")
}

/// Policy `web` on the plugin the OCI reference `oci` names.
async fn create_oci_policy(cluster: &Cluster, oci: Value) {
    let spec = json!({
        "target": { "name": "web" },
        "minReplicas": 1, "maxReplicas": 5,
        "plugin": { "oci": oci },
        "config": { "gpuUtilization": 60 },
    });
    cluster.create_policy("web", spec).await;
}

async fn set_reference(cluster: &Cluster, reference: &str) {
    let api: Api<ScalingPolicy> = Api::namespaced(cluster.client.clone(), "default");
    let patch = json!({ "spec": { "plugin": { "oci": { "reference": reference } } } });
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patching the reference");
}

async fn event_notes(cluster: &Cluster, reason: &str) -> Vec<String> {
    cluster.events(reason).await.into_iter().filter_map(|e| e.note).collect()
}

/// A host that caches pulled artifacts and compiled plugins in `cache_dir`.
fn start_host(cluster: &Cluster, cache_dir: &Path) -> Host {
    Host::start_with(cluster, HostConfig { cache_dir: Some(cache_dir), ..HostConfig::new("host-a") })
}

/// A decision newer than the one in `before`, by the plugin `digest`.
async fn decides_again_with(cluster: &Cluster, digest: &str, what: &str) {
    let time_of = |p: &Value| p["status"]["lastDecision"]["time"].as_str().map(str::to_owned);
    let before = time_of(&cluster.policy("web"));
    eventually(Duration::from_secs(15), what, || (time_of(&cluster.policy("web")) != before).then_some(())).await;
    assert_eq!(last_digest(cluster).as_deref(), Some(digest), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_pulls_by_digest_hot_swaps_and_keeps_the_old_plugin_on_a_bad_reference() {
    let registry = Registry::start(None);
    let v1 = rebuilt(ballast::runtime::builtin("hpa").expect("hpa"), "v1");
    let v2 = rebuilt(ballast::runtime::builtin("hpa").expect("hpa"), "v2");
    let (v1_digest, v2_digest) = (ballast::runtime::digest(&v1), ballast::runtime::digest(&v2));
    let v1_ref = pack_oci(&v1, &format!("{}/plugins/hpa:v1", registry.host()), &[]);
    let v2_ref = pack_oci(&v2, &format!("{}/plugins/hpa:v2", registry.host()), &[]);
    // A component the host refuses, pushed as a well-formed artifact (pack itself would refuse it).
    let wrong = oci::push(
        &format!("{}/plugins/wrong", registry.host()),
        &plugin_file("wrong_world.wasm"),
        &oci::ComponentWorld::default(),
        &RegistryAccess::default(),
    )
    .await
    .expect("pushing the wrong-world component");

    let cluster = cluster().await;
    let cache = tempfile::tempdir().expect("cache dir");
    create_oci_policy(&cluster, json!({ "reference": v1_ref })).await;
    let host = start_host(&cluster, cache.path());
    eventually(Duration::from_secs(30), "a decision by v1, pulled from the registry", || {
        (last_digest(&cluster).as_deref() == Some(v1_digest.as_str())).then_some(())
    })
    .await;
    let ready = plugin_ready(&cluster).expect("PluginReady");
    assert_eq!(ready["status"], "True", "{ready}");
    assert!(ready["message"].as_str().unwrap_or_default().contains(&format!("oci:{v1_ref}")), "{ready}");
    let manifest_digest = v1_ref.split('@').nth(1).expect("digest").replace(':', "-");
    assert!(cache.path().join("oci/manifests").join(&manifest_digest).is_file(), "the pull is cached on disk");

    let changed = Instant::now();
    set_reference(&cluster, &v2_ref).await;
    eventually(Duration::from_secs(30), "a decision by v2 after the reference changed", || {
        (last_digest(&cluster).as_deref() == Some(v2_digest.as_str())).then_some(())
    })
    .await;
    println!(
        "OCI hot-swap: reference change to first status-visible decision by the new plugin: {:?}",
        changed.elapsed()
    );

    // A digest the registry does not have: the pull fails, v2 keeps deciding.
    let missing = format!("{}/plugins/hpa@sha256:{}", registry.host(), "0f".repeat(32));
    set_reference(&cluster, &missing).await;
    let failed = eventually(Duration::from_secs(30), "PluginReady=False for the missing digest", || {
        plugin_ready(&cluster).filter(|c| c["status"] == "False" && c["reason"] == "PluginPullFailed")
    })
    .await;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains(&missing) && message.contains("keeps running"), "{failed}");
    assert!(message.contains("ballast plugin pack --oci"), "the message names the fix: {failed}");
    assert!(event_notes(&cluster, "PluginPullFailed").await.iter().any(|note| note.contains(&missing)));
    decides_again_with(&cluster, &v2_digest, "v2 deciding after the failed pull").await;

    // A tag without a digest is refused before any pull.
    let tag_only = format!("{}/plugins/hpa:v1", registry.host());
    set_reference(&cluster, &tag_only).await;
    let refused = eventually(Duration::from_secs(30), "PluginReady=False for the tag-only reference", || {
        plugin_ready(&cluster).filter(|c| c["message"].as_str().unwrap_or_default().contains("has no digest"))
    })
    .await;
    assert_eq!(refused["status"], "False", "{refused}");
    decides_again_with(&cluster, &v2_digest, "v2 deciding after the tag-only reference").await;

    // A well-formed artifact holding a component of another world: pulled, then refused by validation.
    set_reference(&cluster, &wrong.reference).await;
    let rejected = eventually(Duration::from_secs(30), "PluginRejected for the wrong-world artifact", || {
        plugin_ready(&cluster).filter(|c| c["reason"] == "PluginRejected")
    })
    .await;
    assert!(rejected["message"].as_str().unwrap_or_default().contains("ballast:policy/policy@0.1.0"), "{rejected}");
    decides_again_with(&cluster, &v2_digest, "v2 deciding after the refused artifact").await;

    // Back to v1: already pulled and compiled, swapped in again.
    set_reference(&cluster, &v1_ref).await;
    eventually(Duration::from_secs(30), "v1 deciding again", || {
        (last_digest(&cluster).as_deref() == Some(v1_digest.as_str())).then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_registry_is_pulled_with_the_pull_secret() {
    let registry = Registry::start(Some(("robot", "s3cret-pass")));
    let dir = tempfile::tempdir().expect("temp dir");
    let auth_file = dir.path().join("config.json");
    let docker_config = json!({ "auths": { registry.host(): { "username": "robot", "password": "s3cret-pass" } } });
    std::fs::write(&auth_file, docker_config.to_string()).expect("writing the docker config");

    let component = rebuilt(ballast::runtime::builtin("hpa").expect("hpa"), "private");
    let target = format!("{}/private/hpa:v1", registry.host());
    let denied = {
        let file = dir.path().join("plugin.wasm");
        std::fs::write(&file, &component).expect("writing the component");
        ballast(&["plugin", "pack", file.to_str().expect("UTF-8"), "--oci", &target], &[])
    };
    assert!(!denied.status.success(), "an anonymous push to a private registry must fail");
    assert!(text(&denied).contains("--registry-auth"), "{}", text(&denied));
    let reference = pack_oci(&component, &target, &["--registry-auth", auth_file.to_str().expect("UTF-8")]);

    let cluster = cluster().await;
    create_oci_policy(&cluster, json!({ "reference": reference, "pullSecret": "registry-robot" })).await;
    let cache = tempfile::tempdir().expect("cache dir");
    let host = start_host(&cluster, cache.path());
    let missing = eventually(Duration::from_secs(30), "PluginPullFailed naming the missing Secret", || {
        plugin_ready(&cluster).filter(|c| c["reason"] == "PluginPullFailed")
    })
    .await;
    let message = missing["message"].as_str().unwrap_or_default();
    assert!(message.contains("Secret default/registry-robot: does not exist"), "{missing}");

    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(docker_config.to_string());
    cluster
        .standin
        .insert(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "registry-robot", "namespace": "default" },
            "type": "kubernetes.io/dockerconfigjson",
            "data": { ".dockerconfigjson": encoded },
        }))
        .expect("creating the pull Secret");
    // The failed pull is retried after its backoff (5 s), now with the Secret's credentials.
    let digest = ballast::runtime::digest(&component);
    eventually(Duration::from_secs(40), "a decision by the privately pulled plugin", || {
        (last_digest(&cluster).as_deref() == Some(digest.as_str())).then_some(())
    })
    .await;
    host.stop().await;
}

#[test]
fn simulate_pulls_an_oci_plugin_once() {
    let registry = Registry::start(None);
    let component = plugin_file("hpa.wasm");
    let reference = pack_oci(&component, &format!("{}/plugins/hpa:sim", registry.host()), &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = |plugin: &str| {
        format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: stt, namespace: ai}}\nspec:\n  \
             target: {{name: stt}}\n  minReplicas: 1\n  maxReplicas: 6\n  plugin: {plugin}\n  config: \
             {{gpuUtilization: 60}}\nsimulation: {{serviceSeconds: 2, startupSeconds: 30, baseRate: 1}}\n"
        )
    };
    // Labels of equal width ("from-oci", "built-in"), so the tables line up the same.
    let oci_file = dir.path().join("from-oci.yaml");
    std::fs::write(&oci_file, policy(&format!("{{oci: {{reference: \"{reference}\"}}}}"))).expect("policy");
    let builtin_file = dir.path().join("built-in.yaml");
    std::fs::write(&builtin_file, policy("{builtin: hpa}")).expect("policy");
    let cache = dir.path().join("cache");
    let run = |file: &PathBuf| {
        ballast(
            &["simulate", "--policies", file.to_str().expect("UTF-8"), "--trace", "builtin:burst", "--duration", "20m"],
            &[("BALLAST_CACHE_DIR", &cache)],
        )
    };
    let from_oci = run(&oci_file);
    assert!(from_oci.status.success(), "{}", text(&from_oci));
    let from_builtin = run(&builtin_file);
    // The same component, so the same simulated day: byte-identical tables but for the label.
    let table = |o: &Output| String::from_utf8_lossy(&o.stdout).replace("from-oci", "X").replace("built-in", "X");
    assert_eq!(table(&from_oci), table(&from_builtin));
    // Pulled once: a second run works from the disk cache with the registry gone.
    drop(registry);
    let cached = run(&oci_file);
    assert!(cached.status.success(), "{}", text(&cached));

    let tag_only = dir.path().join("tag.yaml");
    std::fs::write(&tag_only, policy("{oci: {reference: \"127.0.0.1:1/plugins/hpa:v1\"}}")).expect("policy");
    let refused = run(&tag_only);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("has no digest"), "{}", text(&refused));
}

#[test]
fn the_crd_schema_has_the_oci_reference() {
    // The committed CRD is checked against this in controller.rs.
    let crd = serde_json::to_value(ScalingPolicy::crd()).expect("CRD JSON");
    let plugin = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["plugin"];
    let oci = &plugin["properties"]["oci"];
    assert_eq!(oci["required"], json!(["reference"]), "{oci}");
    let fields: BTreeMap<String, Value> = serde_json::from_value(oci["properties"].clone()).expect("properties");
    assert_eq!(fields.keys().collect::<Vec<_>>(), ["insecure", "pullSecret", "reference"]);
}
