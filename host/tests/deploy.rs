//! The plugin ConfigMaps shipped in `deploy/policies/` are the plugins built from this checkout (the builds are
//! reproducible), the policies beside them pin exactly those components, and both the controller's reader and the
//! simulator load them.
//!
//! After changing a plugin, regenerate the ConfigMaps and pins with
//! `BALLAST_BLESS=1 cargo test -p ballast --test deploy shipped`.

use std::path::{Path, PathBuf};

use ballast::authoring::pack::{self, DEFAULT_KEY, PackTarget};
use ballast::controller::crd::documents_from_yaml;
use ballast::controller::plugins::config_map_component;
use ballast::runtime::{self, PolicyEngine, RuntimeLimits};
use ballast::sim::config::PolicySet;
use ballast::sim::demo;
use k8s_openapi::api::core::v1::ConfigMap;

/// Each policy set of `deploy/policies/`: its directory, the built-in it ships, the ConfigMap carrying it.
const SETS: [(&str, &str); 2] = [("hpa", "ballast-plugin-hpa"), ("queue-drain", "ballast-plugin-queue-drain")];
const NAMESPACE: &str = "ai-models";
const BLESS: &str = "BALLAST_BLESS=1 cargo test -p ballast --test deploy shipped";

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
    let engine = PolicyEngine::new(RuntimeLimits::default()).unwrap();
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
