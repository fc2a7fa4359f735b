//! Hot-swap latency: from a plugin ConfigMap update to the first decision by the new version visible in the
//! policy's status, through the API stand-in with the production controller code. Baseline, measured in the same
//! run: compiling and validating the same component directly (`PolicyEngine::load`), the floor of any swap.
//!
//! `cargo bench -p ballast --bench hotswap`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::controller::crd::ScalingPolicy;
use ballast::controller::lease::Leadership;
use ballast::controller::reconcile::{Controller, PolicySource, RunOptions};
use ballast::export::{Metrics, Readiness};
use ballast::runtime::{PolicyEngine, RuntimeLimits};
use ballast::sources::live::LiveObserver;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::json;

const ROUNDS: usize = 7;

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

async fn put(api: &Api<ConfigMap>, bytes: Vec<u8>) {
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("policy".into()),
            labels: Some(BTreeMap::from([("ballast.dev/plugin".to_owned(), "true".to_owned())])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([("plugin.wasm".to_owned(), ByteString(bytes))])),
        ..ConfigMap::default()
    };
    match api.get_opt("policy").await.expect("get") {
        Some(existing) => {
            cm.metadata.resource_version = existing.resource_version();
            api.replace("policy", &PostParams::default(), &cm).await.expect("replace");
        }
        None => {
            api.create(&PostParams::default(), &cm).await.expect("create");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let component = ballast::runtime::builtin("queue-drain").expect("queue-drain");

    let engine = PolicyEngine::new(RuntimeLimits::default()).expect("engine");
    let baseline = median(
        (0..ROUNDS)
            .map(|i| {
                let bytes = rebuilt(component, &format!("baseline-{i}"));
                let started = Instant::now();
                engine.load("bench", &bytes).expect("load");
                started.elapsed()
            })
            .collect(),
    );

    let standin = kube_standin::StandIn::start().await.expect("stand-in");
    let client = kube::Client::try_from(kube::Config::new(standin.url().parse().expect("url"))).expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &ScalingPolicy::crd()).await.expect("CRD");
    standin
        .insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "model", "image": "m:1" }] } } }
        }))
        .expect("deployment");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    put(&config_maps, rebuilt(component, "start")).await;
    let policy: ScalingPolicy = serde_json::from_value(json!({
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "target": { "name": "web" }, "maxReplicas": 3,
            "plugin": { "configMap": { "name": "policy", "key": "plugin.wasm" } },
            "config": { "initialJobsPerPodPerSecond": 1 } }
    }))
    .expect("policy");
    Api::<ScalingPolicy>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let observer = LiveObserver::new(None, None, Duration::from_secs(5), Duration::from_secs(60), metrics.clone());
    let options = RunOptions {
        tick: Duration::from_secs(1),
        status_every: Duration::from_secs(10),
        policies: PolicySource::Cluster,
        instance: "bench".into(),
    };
    let controller = Controller::new(
        client.clone(),
        PolicyEngine::new(RuntimeLimits::default()).expect("engine"),
        observer,
        Leadership::always(),
        metrics,
        options,
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(controller.run(Readiness::default(), shutdown));
    let decided_by = |digest: &str| {
        standin
            .get("/apis/ballast.dev/v1alpha1/namespaces/default/scalingpolicies/web")
            .is_some_and(|p| p["status"]["lastDecision"]["pluginDigest"] == digest)
    };
    let start_digest = ballast::runtime::digest(&rebuilt(component, "start"));
    while !decided_by(&start_digest) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut swaps = Vec::new();
    for round in 0..ROUNDS {
        let bytes = rebuilt(component, &format!("swap-{round}"));
        let digest = ballast::runtime::digest(&bytes);
        let started = Instant::now();
        put(&config_maps, bytes).await;
        while !decided_by(&digest) {
            assert!(started.elapsed() < Duration::from_secs(30), "swap {round} never decided");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        swaps.push(started.elapsed());
    }
    let swap = median(swaps.clone());
    println!("hot-swap (ConfigMap update -> first status-visible decision), median of {ROUNDS}: {swap:?}");
    println!("baseline (compile + validate the same component directly), median of {ROUNDS}: {baseline:?}");
    println!("ratio swap / baseline: {:.2}  (all swaps: {swaps:?})", swap.as_secs_f64() / baseline.as_secs_f64());
    let _ = stop.send(true);
    let _ = task.await;
}
