//! Hot-swap latency: from a plugin ConfigMap update to the first decision by the new version visible in the
//! policy's status, through the API stand-in with the production controller code, for the `hpa` policy built in
//! Rust and in JavaScript (plugins/hpa-js, a 1 MB QuickJS component). Baseline, measured in the same run right
//! before each swap: compiling and validating the same component directly (`PolicyEngine::load`), the floor of any
//! swap.
//!
//! `cargo bench -p ballast --bench hotswap` (the JavaScript build comes from scripts/test.sh or
//! `ballast plugin build plugins/hpa-js --out target/wasm-plugins/wasm32-wasip2/plugin/hpa_js.wasm`)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::controller::lease::Leadership;
use ballast::controller::reconcile::{Controller, ControllerOptions, PolicySource};
use ballast::export::{Metrics, Readiness};
use ballast::runtime::RuntimeLimits;
use ballast::sources::live::LiveObserver;
use ballast::spec::ScalingPolicy;
use ballast::testing;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::json;

#[path = "common/quick.rs"]
mod quick;

const ROUNDS: usize = 7;
/// Rounds when the benchmark only shows it works (see [`quick`]).
const QUICK_ROUNDS: usize = 1;

/// The component with a custom section appended: the same plugin, a different build (and digest).
fn rebuilt(component: &[u8], build: &str) -> Vec<u8> {
    let name = b"ballast-bench-build";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(build.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Stores `bytes` gzipped, as `ballast plugin pack` does: the JavaScript plugin is over a ConfigMap's 1 MiB as it is.
async fn put(api: &Api<ConfigMap>, name: &str, bytes: Vec<u8>) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &bytes).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("ballast.dev/plugin".to_owned(), "true".to_owned())])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([("plugin.wasm".to_owned(), ByteString(bytes))])),
        ..ConfigMap::default()
    };
    match api.get_opt(name).await.expect("get") {
        Some(existing) => {
            cm.metadata.resource_version = existing.resource_version();
            api.replace(name, &PostParams::default(), &cm).await.expect("replace");
        }
        None => {
            api.create(&PostParams::default(), &cm).await.expect("create");
        }
    }
}

/// A Deployment `name`, its plugin ConfigMap `name` and a ScalingPolicy `name` that runs the plugin.
async fn deploy(standin: &kube_standin::StandIn, client: &kube::Client, name: &str, component: &[u8]) {
    standin
        .insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "replicas": 1, "selector": { "matchLabels": { "app": name } },
                "template": { "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "model", "image": "m:1" }] } } }
        }))
        .expect("deployment");
    put(&Api::namespaced(client.clone(), "default"), name, rebuilt(component, "start")).await;
    let policy: ScalingPolicy = serde_json::from_value(json!({
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "target": { "name": name }, "maxReplicas": 3,
            "plugin": { "configMap": { "name": name, "key": "plugin.wasm" } },
            "config": { "gpuUtilization": 80, "jobsPerPod": 5 } }
    }))
    .expect("policy");
    Api::<ScalingPolicy>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
}

fn decided_by(standin: &kube_standin::StandIn, name: &str, digest: &str) -> bool {
    standin
        .get(&format!("/apis/ballast.dev/v1alpha1/namespaces/default/scalingpolicies/{name}"))
        .is_some_and(|p| p["status"]["lastDecision"]["pluginDigest"] == digest)
}

/// `ROUNDS` ConfigMap updates of policy `name`, each timed to the first decision by the new version, and each
/// preceded by the baseline: compiling and validating another build of the component directly, so that both see
/// the same machine load. Returns (swap, baseline) pairs.
async fn swaps(
    standin: &kube_standin::StandIn,
    client: &kube::Client,
    name: &str,
    component: &[u8],
) -> Vec<(Duration, Duration)> {
    let engine = testing::engine(RuntimeLimits::default());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_digest = ballast::runtime::digest(&rebuilt(component, "start"));
    while !decided_by(standin, name, &start_digest) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut swaps = Vec::new();
    let rounds = if quick::quick() { QUICK_ROUNDS } else { ROUNDS };
    for round in 0..rounds {
        let direct = rebuilt(component, &format!("baseline-{round}"));
        let started = Instant::now();
        engine.load("bench", &direct).expect("load");
        let baseline = started.elapsed();
        let bytes = rebuilt(component, &format!("swap-{round}"));
        let digest = ballast::runtime::digest(&bytes);
        let started = Instant::now();
        put(&config_maps, name, bytes).await;
        while !decided_by(standin, name, &digest) {
            assert!(started.elapsed() < Duration::from_secs(30), "{name}: swap {round} never decided");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        swaps.push((started.elapsed(), baseline));
    }
    swaps
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let js_path = format!("{}/hpa_js.wasm", ballast_test_plugins::DIR);
    let js = std::fs::read(&js_path).unwrap_or_else(|e| {
        panic!("{js_path}: {e}; build it with `cargo run -p ballast -- plugin build plugins/hpa-js --out {js_path}`")
    });
    let plugins: [(&str, &str, &[u8]); 2] =
        [("Rust hpa", "hpa-rust", ballast::runtime::builtin("hpa").expect("hpa")), ("JavaScript hpa", "hpa-js", &js)];

    let standin = kube_standin::StandIn::start().await.expect("stand-in");
    let client = kube::Client::try_from(kube::Config::new(standin.url().parse().expect("url"))).expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScalingPolicy::crd()).await.expect("CRD");
    for (_, name, component) in &plugins {
        deploy(&standin, &client, name, component).await;
    }
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let observer = LiveObserver::new(None, None, Duration::from_secs(5), Duration::from_secs(60), metrics.clone());
    let options = ControllerOptions {
        tick: Duration::from_secs(1),
        status_every: Duration::from_secs(10),
        policies: PolicySource::Cluster,
        instance: "bench".into(),
        checks: ballast::config::ClusterChecks::default(),
        requests: ballast::config::Requests::default(),
    };
    let controller = Controller::new(
        client.clone(),
        testing::engine(RuntimeLimits::default()),
        observer,
        Leadership::always(),
        metrics,
        options,
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(controller.run(Readiness::default(), shutdown));
    for (what, name, component) in &plugins {
        let rounds = swaps(&standin, &client, name, component).await;
        let swap = median(rounds.iter().map(|(swap, _)| *swap).collect());
        let baseline = median(rounds.iter().map(|(_, baseline)| *baseline).collect());
        println!(
            "{what} ({:.2} MiB): hot-swap (ConfigMap update -> first status-visible decision), median of {}: \
             {swap:?}; baseline (compile + validate another build directly, before each swap): {baseline:?}; \
             ratio {:.2} (all swaps: {:?})",
            component.len() as f64 / f64::from(1 << 20),
            rounds.len(),
            swap.as_secs_f64() / baseline.as_secs_f64(),
            rounds.iter().map(|(swap, _)| *swap).collect::<Vec<_>>()
        );
    }
    let _ = stop.send(true);
    let _ = task.await;
}
