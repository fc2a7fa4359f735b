//! The plugin ConfigMaps shipped in `deploy/policies/` are the plugins built from this checkout (the builds are
//! reproducible), the policies beside them pin exactly those components, and both the controller's reader and the
//! simulator load them.
//!
//! After changing a plugin, regenerate the ConfigMaps and pins with
//! `BALLAST_BLESS=1 cargo test -p ballast --test it deploy::shipped`.
//!
//! The host image: the Dockerfile's runtime stage, built with buildah, runs the host as non-root with no shell.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ballast::authoring::pack::{self, DEFAULT_KEY, PackTarget};
use ballast::policy::documents::documents_from_yaml;
use ballast::policy::plugins::config_map_component;
use ballast::runtime::{self, RuntimeLimits};
use ballast::sim::config::PolicySet;
use ballast::sim::demo;
use ballast::testing;
use k8s_openapi::api::core::v1::ConfigMap;

/// Each policy set of `deploy/policies/`: its directory, the built-in it ships, the ConfigMap carrying it.
const SETS: [(&str, &str); 2] = [("hpa", "ballast-plugin-hpa"), ("queue-drain", "ballast-plugin-queue-drain")];
const NAMESPACE: &str = "ai-models";
const BLESS: &str = "BALLAST_BLESS=1 cargo test -p ballast --test it deploy::shipped";

fn set_dir(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policies").join(set)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ConfigMap YAML `ballast plugin pack` prints for the plugin built from this checkout.
fn packed(plugin: &str, config_map: &str) -> (String, String) {
    let target = PackTarget { name: config_map.into(), namespace: NAMESPACE.into(), key: DEFAULT_KEY.into() };
    let what = format!("plugins/{plugin}");
    let component = runtime::builtin(plugin).expect("built-in plugin");
    let packed = pack::pack(&what, component, &target).unwrap();
    (packed.to_yaml(&what, &target).unwrap(), packed.digest)
}

/// Writes the fresh ConfigMap and points every `sha256:` pin of the set's policies at it.
fn bless(dir: &Path, yaml: &str, digest: &str) {
    std::fs::write(dir.join("plugin.yaml"), yaml).unwrap();
    let policies = read(&dir.join("policies.yaml"));
    let pinned: String = policies
        .split_inclusive('\n')
        .map(|line| match line.split_once("sha256: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}sha256: {digest}\n"),
            _ => line.to_owned(),
        })
        .collect();
    std::fs::write(dir.join("policies.yaml"), pinned).unwrap();
}

#[test]
fn shipped_plugin_config_maps_are_this_checkouts_plugins_and_the_policies_pin_them() {
    for (set, config_map) in SETS {
        let dir = set_dir(set);
        let (fresh, digest) = packed(set, config_map);
        if std::env::var_os("BALLAST_BLESS").is_some() {
            bless(&dir, &fresh, &digest);
        }
        let shipped = read(&dir.join("plugin.yaml"));
        assert!(
            shipped == fresh,
            "deploy/policies/{set}/plugin.yaml is not the `{set}` plugin built from this checkout (sha256 {digest}); \
             regenerate it and the pins with `{BLESS}`"
        );

        let parsed: ConfigMap = serde_saphyr::from_str(&shipped).unwrap();
        assert_eq!(runtime::digest(&config_map_component(&parsed, DEFAULT_KEY).unwrap()), digest);
        assert_eq!(parsed.metadata.namespace.as_deref(), Some(NAMESPACE));

        let path = dir.join("policies.yaml");
        let policies = documents_from_yaml(&path.display().to_string(), &read(&path), None).unwrap().policies;
        assert_eq!(policies.len(), 5, "{set}: the five model services");
        for policy in &policies {
            let name = policy.metadata.name.as_deref().unwrap();
            assert_eq!(policy.metadata.namespace.as_deref(), Some(NAMESPACE), "{set}/{name}");
            let plugin = &policy.spec.plugin;
            assert_eq!(plugin.config_map.as_ref().map(|c| c.name.as_str()), Some(config_map), "{set}/{name}");
            assert_eq!(plugin.config_map.as_ref().map(|c| c.key.as_str()), Some(DEFAULT_KEY), "{set}/{name}");
            assert_eq!(plugin.sha256.as_deref(), Some(digest.as_str()), "{set}/{name}: pin; regenerate with `{BLESS}`");
            // Every trigger the plugin is configured with has its metric gathered.
            let metrics = &policy.spec.metrics;
            let config = &policy.spec.config;
            if config.get("gpuUtilization").is_some() {
                assert!(metrics.prometheus.is_some(), "{set}/{name}: gpuUtilization needs metrics.prometheus");
            }
            if config.get("cpuUtilization").is_some() {
                assert!(metrics.resources, "{set}/{name}: cpuUtilization needs metrics.resources");
            }
            if config.get("jobsPerPod").is_some() || set == "queue-drain" {
                assert!(!metrics.queues.is_empty(), "{set}/{name}: a queue trigger needs metrics.queues");
            }
        }
    }
}

#[test]
fn the_simulator_runs_each_set_from_its_directory_on_the_shipped_component() {
    let engine = testing::engine(RuntimeLimits::default());
    let simulation = demo::simulation().unwrap();
    for (set, config_map) in SETS {
        let policies = PolicySet::read(&set_dir(set), Some(&simulation)).unwrap();
        assert_eq!(policies.label, set);
        assert_eq!(policies.services.len(), 5);
        assert!(policies.config_map(NAMESPACE, config_map).is_some(), "{set}: the ConfigMap is part of the set");
        for service in &policies.services {
            let plugin = ballast::autoscaler::load_plugin(&engine, &service.key, &service.spec, |ns, name| {
                policies.config_map(ns, name)
            })
            .unwrap();
            assert_eq!(plugin.digest(), runtime::digest(runtime::builtin(set).unwrap()), "{}", service.key);
        }
    }
}

#[test]
fn the_host_deployment_elects_its_leader_with_the_lease_rbac_lets_it_update() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base");
    let deployment: serde_json::Value = serde_saphyr::from_str(&read(&base.join("deployment.yaml"))).unwrap();
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let arg = |flag: &str| args.iter().find_map(|a| a.strip_prefix(&format!("--{flag}=")));
    let lease_name = arg("lease-name").unwrap_or(ballast::controller::lease::DEFAULT_LEASE_NAME);
    let lease_namespace = arg("lease-namespace").expect("--lease-namespace in deployment.yaml");

    let rbac = read(&base.join("rbac.yaml"));
    let role: serde_json::Value = rbac
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "Role")
        .expect("the leader-election Role");
    assert_eq!(role["metadata"]["namespace"], lease_namespace, "the Role is in the lease's namespace");
    let updatable = role["rules"].as_array().unwrap().iter().any(|rule| {
        rule["resources"][0] == "leases"
            && rule["verbs"].as_array().unwrap().iter().any(|v| v == "update")
            && rule["resourceNames"].as_array().unwrap().iter().any(|n| n == lease_name)
    });
    assert!(updatable, "rbac.yaml lets the host update Lease {lease_namespace}/{lease_name}");
}

/// Runs a command and returns its stdout, failing the test with its stderr.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A blob of an OCI image layout by its `sha256:` digest.
fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&read(path)).unwrap()
}

/// The files of a layer tarball, as `tar -tv` lists them (`mode owner/group ... path`).
fn layer_entries(layer: &Path) -> Vec<(String, String, String)> {
    run(Command::new("tar").arg("-tvf").arg(layer).arg("--numeric-owner"))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[0].to_owned(), fields[1].to_owned(), fields[5..].join(" ").trim_start_matches("./").to_owned())
        })
        .collect()
}

/// The Dockerfile's runtime stage, built by buildah (no Docker engine runs here, and base images cannot be pulled):
/// the distroless base is replaced by a stand-in holding what `gcr.io/distroless/cc-debian12:nonroot` holds for
/// this binary (the Debian 12 glibc and libgcc it links, CA certificates, the nonroot user, no shell), and the
/// `build` stage by this test's binary. The image must add only the binary, run it as 65532 (the Deployment's
/// securityContext), and the binary must start there with nothing else: `--version` prints the Deployment's tag.
#[test]
fn the_image_adds_only_the_host_binary_and_runs_it_as_the_deployments_non_root_user() {
    common::require("buildah", "apt-get install -y buildah");
    common::require("strip", "apt-get install -y binutils");
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let buildah = |args: &[&str]| {
        let mut command = Command::new("buildah");
        command.arg("--root").arg(work.join("storage")).arg("--runroot").arg(work.join("run"));
        command.args(["--storage-driver", "vfs"]).args(args);
        run(&mut command)
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_ballast"));

    // The runtime stand-in: the libraries the binary links, CA certificates, passwd/group with nonroot.
    let base = work.join("base");
    let rootfs = base.join("rootfs");
    for library in run(Command::new("ldd").arg(binary)).lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| PathBuf::from(path))
    }) {
        let into = rootfs.join(library.strip_prefix("/").unwrap());
        std::fs::create_dir_all(into.parent().unwrap()).unwrap();
        std::fs::copy(&library, &into).unwrap();
    }
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(etc.join("ssl/certs")).unwrap();
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", etc.join("ssl/certs/ca-certificates.crt")).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    std::fs::create_dir_all(rootfs.join("home/nonroot")).unwrap();
    std::fs::write(base.join("Containerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let build = ["bud", "--isolation", "chroot", "--pull=never", "--layers=false"];
    let stand_in = "localhost/distroless-stand-in:test";
    buildah(&[&build[..], &["-t", stand_in, &base.display().to_string()]].concat());

    // The Dockerfile itself, with an empty context: the runtime stage may copy nothing but the built binary.
    let built = work.join("build");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::copy(binary, built.join("ballast")).unwrap();
    run(Command::new("strip").arg(built.join("ballast"))); // debug info only; keeps the layers small
    let context = work.join("context");
    std::fs::create_dir_all(&context).unwrap();
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    buildah(
        &[
            &build[..],
            &[
                "--build-context",
                &format!("build={}", built.display()),
                "--build-arg",
                &format!("RUNTIME_IMAGE={stand_in}"),
                "-f",
                &dockerfile.display().to_string(),
                "-t",
                "localhost/ballast:test",
                &context.display().to_string(),
            ],
        ]
        .concat(),
    );
    let layout = work.join("oci");
    buildah(&["push", "localhost/ballast:test", &format!("oci:{}:ballast", layout.display())]);

    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(&layout, index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(&blob(&layout, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "65532:65532", "the image's user");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/ballast"]));
    let layers: Vec<PathBuf> =
        manifest["layers"].as_array().unwrap().iter().map(|l| blob(&layout, l["digest"].as_str().unwrap())).collect();
    assert_eq!(layers.len(), 2, "the base's layer and the binary's");
    let added = layer_entries(&layers[1]);
    let files: Vec<&(String, String, String)> = added.iter().filter(|(mode, ..)| !mode.starts_with('d')).collect();
    assert_eq!(files.len(), 1, "the Dockerfile adds only the binary: {added:?}");
    let (mode, owner, path) = files[0];
    assert_eq!((mode.as_str(), owner.as_str(), path.as_str()), ("-rwxr-xr-x", "0/0", "usr/local/bin/ballast"));

    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    for layer in &layers {
        run(Command::new("tar").arg("-xf").arg(layer).arg("-C").arg(&unpacked).arg("--same-owner"));
    }
    for shell in ["bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "bin/busybox", "usr/bin/apt", "usr/bin/dpkg"] {
        assert!(unpacked.join(shell).symlink_metadata().is_err(), "the image holds /{shell}");
    }
    // What the kubelet would run: the entrypoint as the image's user, in the image's root, with no environment.
    let version = run(Command::new("/usr/sbin/chroot")
        .arg("--userspec=65532:65532")
        .arg(&unpacked)
        .args(["/usr/local/bin/ballast", "--version"])
        .env_clear());
    assert_eq!(version.trim(), format!("ballast {}", env!("CARGO_PKG_VERSION")));

    let deployment: serde_json::Value =
        serde_saphyr::from_str(&read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/deployment.yaml")))
            .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], format!("ballast:{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let user = format!("{}:{}", pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]);
    assert_eq!(config["config"]["User"], user.as_str(), "the image's user is the Deployment's");
}
