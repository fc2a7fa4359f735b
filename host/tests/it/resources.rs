//! The metrics.k8s.io resource source through the production kube client against the stand-in API server: the HPA's
//! grouping of pods (missing, unready, pending, failed, being deleted), requests and quantities as the HPA reads
//! them, one pod list and one PodMetrics list per namespace, a clear error for a container without a request, a
//! down or missing metrics API leaving only CPU and memory unavailable, and the `hpa` plugin reproducing the HPA's
//! replica count from what the live observer hands it.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ballast::autoscaler::{Observer, load_plugin};
use ballast::decision::{Decider, Moment, PluginVerdict, ServiceMemory};
use ballast::export::Metrics;
use ballast::observation::Observation;
use ballast::runtime::RuntimeLimits;
use ballast::sources::bullmq::{BullmqSource, ConnectOptions};
use ballast::sources::live::{LiveObserver, RESOURCES};
use ballast::sources::resources::{
    PodGroups, Resource, ResourceConfig, ResourceError, ResourceSource, ResourceTarget, custom_metrics,
};
use ballast::spec::{MetricsSpec, PluginRef, QueueRef, ScalingPolicySpec, ServiceKey, TargetRef};
use ballast::testing;
use ballast_policy_sdk::hpa as sdk;
use common::RedisServer;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams};
use kube_standin::{ContainerUsage, MetricsApi, StandIn};
use serde_json::{Value, json};

const METRICS_LIST: &str = "/apis/metrics.k8s.io/v1beta1/namespaces/ai-models/pods";
const PODS_LIST: &str = "/api/v1/namespaces/ai-models/pods";
/// How long a test waits for a background refresh (a bound, not a speed target).
const WAIT: Duration = Duration::from_secs(20);

async fn client(standin: &StandIn) -> kube::Client {
    kube::Client::try_from(kube::Config::new(standin.url().parse().unwrap())).unwrap()
}

/// RFC 3339 at second precision, `seconds_ago` before now.
fn ago(seconds_ago: i64) -> String {
    (Timestamp::now() - SignedDuration::from_secs(seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn deployment(standin: &StandIn, namespace: &str, name: &str, replicas: u32) {
    standin
        .insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
        }))
        .unwrap();
}

/// A pod's state as the kubelet reports it.
#[derive(Clone, Copy)]
enum State {
    /// Running and Ready since long ago.
    Ready,
    /// Running, Ready since `ready_for` seconds, started `started` seconds ago.
    ReadySince {
        started: i64,
        ready_for: i64,
    },
    /// Running, never became Ready (started long ago).
    NotReady,
    Pending,
    Failed,
}

/// Inserts a pod of `app` with containers `(name, cpu request, memory request)`.
fn pod(
    standin: &StandIn,
    namespace: &str,
    name: &str,
    app: &str,
    state: State,
    containers: &[(&str, Option<&str>, &str)],
) {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, cpu, memory)| {
            let mut requests = json!({"memory": memory});
            if let Some(cpu) = cpu {
                requests["cpu"] = json!(cpu);
            }
            json!({"name": name, "image": "i", "resources": {"requests": requests}})
        })
        .collect();
    let ready =
        |status: &str, since: i64| json!([{"type": "Ready", "status": status, "lastTransitionTime": ago(since)}]);
    let status = match state {
        State::Ready => json!({"phase": "Running", "startTime": ago(3600), "conditions": ready("True", 3590)}),
        State::ReadySince { started, ready_for } => {
            json!({"phase": "Running", "startTime": ago(started), "conditions": ready("True", ready_for)})
        }
        State::NotReady => json!({"phase": "Running", "startTime": ago(3600), "conditions": ready("False", 3600)}),
        State::Pending => json!({"phase": "Pending"}),
        State::Failed => json!({"phase": "Failed", "startTime": ago(3600), "conditions": ready("False", 600)}),
    };
    standin
        .insert(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "spec": {"containers": containers},
            "status": status,
        }))
        .unwrap();
}

fn usage(containers: &[(&str, &str, &str)]) -> Vec<ContainerUsage> {
    containers
        .iter()
        .map(|(name, cpu, memory)| ContainerUsage {
            name: name.to_string(),
            cpu: cpu.to_string(),
            memory: memory.to_string(),
        })
        .collect()
}

fn target(namespace: &str, name: &str) -> ResourceTarget {
    ResourceTarget {
        key: ServiceKey { namespace: namespace.into(), name: name.into() },
        target: TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.into() },
    }
}

fn spec(name: &str, config: Value, queues: &[&str], resources: bool) -> ScalingPolicySpec {
    ScalingPolicySpec {
        target: TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.into() },
        min_replicas: 1,
        max_replicas: 10,
        plugin: PluginRef { builtin: Some("hpa".into()), ..PluginRef::default() },
        config,
        metrics: MetricsSpec {
            redis: None,
            queues: queues.iter().map(|q| QueueRef { name: q.to_string(), prefix: None }).collect(),
            prometheus: None,
            resources,
        },
        behavior: None,
        fallback: Default::default(),
        shadow: None,
        paused: false,
        decision_interval_seconds: 1,
        limits: None,
        wait_objective_seconds: None,
    }
}

const GI: u128 = 1024 * 1024 * 1024 * 1000;
const MI: u128 = 1024 * 1024 * 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_grouped_by_the_hpa_rules_with_one_list_per_namespace() {
    let standin = StandIn::start().await.unwrap();
    let ns = "ai-models";
    deployment(&standin, ns, "stt", 6);
    deployment(&standin, ns, "mt", 1);
    let two = [("server", Some("500m"), "1Gi"), ("sidecar", Some("250m"), "512Mi")];
    // Ready with samples; the second one's CPU in nanocores rounds up per container, as Quantity.MilliValue() does.
    pod(&standin, ns, "stt-a", "stt", State::Ready, &two);
    standin.set_pod_metrics(ns, "stt-a", &usage(&[("server", "300m", "512Mi"), ("sidecar", "150m", "128Mi")]));
    pod(&standin, ns, "stt-b", "stt", State::Ready, &two);
    standin.set_pod_metrics(ns, "stt-b", &usage(&[("server", "1234567n", "12345Ki"), ("sidecar", "1m", "1Mi")]));
    // No sample: missing.
    pod(&standin, ns, "stt-c", "stt", State::Ready, &two);
    // Started 60 s ago, ready for 10 s, with a sample whose 15 s window began before that: CPU ignores it (unready),
    // memory counts it.
    pod(&standin, ns, "stt-d", "stt", State::ReadySince { started: 60, ready_for: 10 }, &two);
    standin.set_pod_metrics(ns, "stt-d", &usage(&[("server", "900m", "256Mi"), ("sidecar", "100m", "256Mi")]));
    // Pending: unready for both resources.
    pod(&standin, ns, "stt-e", "stt", State::Pending, &two);
    // Failed and being deleted: ignored, samples or not.
    pod(&standin, ns, "stt-f", "stt", State::Failed, &two);
    standin.set_pod_metrics(ns, "stt-f", &usage(&[("server", "5", "5Gi"), ("sidecar", "5", "5Gi")]));
    standin
        .insert(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stt-g", "namespace": ns, "labels": {"app": "stt"}, "finalizers": ["example.com/hold"]},
            "spec": {"containers": [{"name": "server", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
            "status": {"phase": "Running", "startTime": ago(3600),
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ago(3600)}]},
        }))
        .unwrap();
    let client = client(&standin).await;
    Api::<Pod>::namespaced(client.clone(), ns).delete("stt-g", &DeleteParams::default()).await.unwrap();
    let deleting = standin.get(&format!("{PODS_LIST}/stt-g")).expect("kept by its finalizer");
    assert!(deleting["metadata"]["deletionTimestamp"].is_string(), "the finalizer keeps it, being deleted");
    standin.set_pod_metrics(ns, "stt-g", &usage(&[("server", "5", "5Gi")]));
    // Another service's pod in the same namespace, and a same-named pod elsewhere: never counted.
    pod(&standin, ns, "mt-a", "mt", State::Ready, &[("server", Some("1"), "2Gi")]);
    standin.set_pod_metrics(ns, "mt-a", &usage(&[("server", "250m", "1Gi")]));
    pod(&standin, "other", "stt-z", "stt", State::Ready, &two);
    standin.set_pod_metrics("other", "stt-z", &usage(&[("server", "5", "5Gi"), ("sidecar", "5", "5Gi")]));

    let source = ResourceSource::new(client, ResourceConfig::default());
    let collection = source.collect(&[target(ns, "stt"), target(ns, "mt")]).await;
    assert!(collection.failures.is_empty(), "{:?}", collection.failures);
    assert_eq!(collection.namespaces_read, 1);
    assert_eq!(standin.request_count("GET", PODS_LIST), 1, "one pod list for both services of the namespace");
    assert_eq!(standin.request_count("GET", METRICS_LIST), 1, "one PodMetrics list for both services");

    let stt = &collection.values[&target(ns, "stt").key];
    let cpu = stt.cpu.as_ref().unwrap();
    let per_pod = 750; // millicores requested by each stt pod
    assert_eq!(
        cpu.groups,
        PodGroups {
            ready_pods: 2,
            ready_usage_milli: 450 + 2 + 1,
            ready_request_milli: 2 * per_pod,
            unready_pods: 2,
            unready_request_milli: 2 * per_pod,
            missing_pods: 1,
            missing_request_milli: per_pod,
        }
    );
    assert!((cpu.percent_of_request() - 453.0 * 100.0 / 1500.0).abs() < 1e-9);
    assert!(cpu.sample_age < Duration::from_secs(10), "{:?}", cpu.sample_age);
    let memory = stt.memory.as_ref().unwrap();
    let pod_memory = GI + 512 * MI;
    assert_eq!(
        memory.groups,
        PodGroups {
            ready_pods: 3,
            ready_usage_milli: 640 * MI + 12_345 * 1024 * 1000 + MI + 512 * MI,
            ready_request_milli: 3 * pod_memory,
            unready_pods: 1,
            unready_request_milli: pod_memory,
            missing_pods: 1,
            missing_request_milli: pod_memory,
        }
    );
    let names: Vec<(String, f64)> = custom_metrics(Resource::Memory, memory);
    assert_eq!(names[0], ("resources.memory.ready_pods".to_owned(), 3.0));
    assert_eq!(names[2].1, (3 * pod_memory / 1000) as f64, "memory travels in bytes");
    let mt = collection.values[&target(ns, "mt").key].cpu.as_ref().unwrap();
    assert_eq!((mt.groups.ready_pods, mt.groups.ready_usage_milli, mt.groups.ready_request_milli), (1, 250, 1000));
    standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_without_a_request_leaves_that_resource_unavailable_and_names_pod_and_container() {
    let standin = StandIn::start().await.unwrap();
    let ns = "ai-models";
    deployment(&standin, ns, "tts", 1);
    pod(&standin, ns, "tts-a", "tts", State::Ready, &[("server", Some("1"), "1Gi"), ("log-shipper", None, "64Mi")]);
    standin.set_pod_metrics(ns, "tts-a", &usage(&[("server", "500m", "512Mi"), ("log-shipper", "10m", "32Mi")]));
    let source = ResourceSource::new(client(&standin).await, ResourceConfig::default());
    let collection = source.collect(&[target(ns, "tts")]).await;
    let values = &collection.values[&target(ns, "tts").key];
    let error = values.cpu.as_ref().unwrap_err();
    assert!(error.is_misconfiguration());
    assert!(matches!(error, ResourceError::MissingRequest { container, pod, .. }
        if container == "log-shipper" && pod == "ai-models/tts-a"));
    let message = error.to_string();
    for needle in ["Deployment ai-models/tts", "log-shipper", "ai-models/tts-a", "resources.requests.cpu"] {
        assert!(message.contains(needle), "{needle:?} missing from: {message}");
    }
    let memory = values.memory.as_ref().expect("memory has every request");
    assert_eq!(memory.groups.ready_usage_milli, 544 * MI);

    // No pods for a selector, and pods without any sample, are plain absences.
    deployment(&standin, ns, "idle", 0);
    deployment(&standin, ns, "fresh", 1);
    pod(&standin, ns, "fresh-a", "fresh", State::Pending, &[("server", Some("1"), "1Gi")]);
    let collection = source.collect(&[target(ns, "idle"), target(ns, "fresh")]).await;
    let idle = collection.values[&target(ns, "idle").key].cpu.as_ref().unwrap_err();
    assert!(matches!(idle, ResourceError::NoPods { selector, .. } if selector == "app=idle"), "{idle}");
    let fresh = collection.values[&target(ns, "fresh").key].memory.as_ref().unwrap_err();
    assert!(matches!(fresh, ResourceError::NoSamples { pods: 1, .. }), "{fresh}");
    assert!(!idle.is_misconfiguration() && !fresh.is_misconfiguration());
    standin.shutdown().await;
}

/// Polls the observer until `ready` holds for its observations.
async fn observe_until(
    observer: &mut LiveObserver,
    list: &[(&ServiceKey, &ScalingPolicySpec)],
    ready: impl Fn(&std::collections::BTreeMap<ServiceKey, Observation>) -> bool,
) -> std::collections::BTreeMap<ServiceKey, Observation> {
    let deadline = Instant::now() + WAIT;
    loop {
        let observations = tokio::time::timeout(Duration::from_secs(5), observer.observe(list, 0))
            .await
            .expect("a tick never waits for metrics.k8s.io");
        // One observation per service asked about, in the order asked.
        assert_eq!(observations.len(), list.len());
        let observed = list.iter().map(|(key, _)| (*key).clone()).zip(observations).collect();
        if ready(&observed) {
            return observed;
        }
        assert!(Instant::now() < deadline, "the observations never got there: {observed:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_observer_carries_cpu_and_memory_and_a_failing_metrics_api_blanks_only_them() {
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    redis.cmd(&url, &["RPUSH", "bull:stt-queue:wait", "1", "2", "3"]).unwrap();
    let standin = StandIn::start().await.unwrap();
    let ns = "ai-models";
    deployment(&standin, ns, "stt", 2);
    deployment(&standin, ns, "mt", 1);
    for name in ["stt-a", "stt-b"] {
        pod(&standin, ns, name, "stt", State::Ready, &[("server", Some("500m"), "1Gi")]);
        standin.set_pod_metrics(ns, name, &usage(&[("server", "250m", "256Mi")]));
    }
    pod(&standin, ns, "mt-a", "mt", State::Ready, &[("server", Some("1"), "1Gi")]);
    standin.set_pod_metrics(ns, "mt-a", &usage(&[("server", "1", "1Gi")]));

    let metrics = Arc::new(Metrics::new().unwrap());
    let bullmq =
        BullmqSource::new(&url, ConnectOptions { timeout: Duration::from_secs(1), ca_cert_pem: None }).unwrap();
    // A short timeout: kube retries the aggregator's 503s by itself until the timeout ends the request.
    let config = ResourceConfig { timeout: Duration::from_secs(1), ..ResourceConfig::default() };
    let source = ResourceSource::new(client(&standin).await, config);
    let mut observer =
        LiveObserver::new(Some(bullmq), None, Duration::from_secs(60), Duration::from_secs(60), metrics.clone())
            .with_resources(source, Duration::from_millis(200));
    let stt = (ServiceKey { namespace: ns.into(), name: "stt".into() }, spec("stt", json!({}), &["stt-queue"], true));
    let mt = (ServiceKey { namespace: ns.into(), name: "mt".into() }, spec("mt", json!({}), &[], false));
    let list = [(&stt.0, &stt.1), (&mt.0, &mt.1)];

    let observed = observe_until(&mut observer, &list, |o| o[&stt.0].cpu_percent_of_request.is_some()).await;
    let stt_obs = &observed[&stt.0];
    assert_eq!(stt_obs.cpu_percent_of_request, Some(50.0));
    assert_eq!(stt_obs.memory_percent_of_request, Some(25.0));
    assert_eq!(stt_obs.queue.map(|q| q.waiting), Some(3));
    assert!(stt_obs.sample_age_ms[RESOURCES] < 10_000, "{:?}", stt_obs.sample_age_ms);
    let sent: Vec<&str> = stt_obs.custom.iter().map(|(name, _)| name.as_str()).collect();
    let expected: Vec<String> = [sdk::Resource::Cpu, sdk::Resource::Memory]
        .iter()
        .flat_map(|r| sdk::POD_GROUP_FIELDS.iter().map(move |f| r.metric_name(f)))
        .collect();
    assert_eq!(sent, expected, "the names the SDK reads");
    assert_eq!(observed[&mt.0].cpu_percent_of_request, None, "metrics.resources: false is not observed");
    assert!(!observed[&mt.0].sample_age_ms.contains_key(RESOURCES));
    assert!(metrics.encode().contains(r#"ballast_source_last_success_timestamp_seconds{source="metrics.k8s.io"}"#));

    // metrics-server down: the aggregator answers 503. CPU and memory go away (never 0), queues stay.
    standin.set_metrics_api(MetricsApi::Unavailable);
    let observed = observe_until(&mut observer, &list, |o| o[&stt.0].cpu_percent_of_request.is_none()).await;
    assert_eq!(observed[&stt.0].memory_percent_of_request, None);
    assert!(observed[&stt.0].custom.is_empty());
    assert!(!observed[&stt.0].sample_age_ms.contains_key(RESOURCES));
    assert_eq!(observed[&stt.0].queue.map(|q| q.waiting), Some(3), "the queue source is unaffected");
    assert!(
        metrics.encode().contains(r#"ballast_source_errors_total{source="metrics.k8s.io"}"#),
        "{}",
        metrics.encode()
    );

    // Back, then not installed at all (404): the same.
    standin.set_metrics_api(MetricsApi::Available);
    observe_until(&mut observer, &list, |o| o[&stt.0].cpu_percent_of_request == Some(50.0)).await;
    standin.set_metrics_api(MetricsApi::NotRegistered);
    let observed = observe_until(&mut observer, &list, |o| o[&stt.0].cpu_percent_of_request.is_none()).await;
    assert_eq!(observed[&stt.0].queue.map(|q| q.waiting), Some(3));
    standin.shutdown().await;
}

#[test]
fn the_source_error_of_a_missing_metrics_api_says_what_to_do() {
    let error = ResourceError::MetricsApi {
        namespace: "ai-models".into(),
        detail: "ApiError: the server could not find the requested resource: NotFound (404)".into(),
    };
    let message = error.to_string();
    assert!(message.contains("metrics-server") && message.contains("v1beta1.metrics.k8s.io"), "{message}");
}

/// One case of Kubernetes' replica_calculator_test.go: pods with two containers requesting 1 CPU each, their
/// per-container usage in millicores (`None`: no sample), the current replicas, the CPU target and the HPA's answer.
struct HpaCase {
    name: &'static str,
    current: u32,
    target: u32,
    pods: Vec<(State, Option<u32>)>,
    expected: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_plugin_reproduces_the_hpa_replica_count_from_live_observations() {
    let hot = State::ReadySince { started: 30, ready_for: 10 };
    let cases = [
        HpaCase {
            name: "scale-up-unready-less-scale",
            current: 3,
            target: 30,
            pods: vec![(State::NotReady, Some(300)), (State::Ready, Some(500)), (State::Ready, Some(700))],
            expected: 4,
        },
        HpaCase {
            name: "scale-up-hot-cpu-less-scale",
            current: 3,
            target: 30,
            pods: vec![(hot, Some(300)), (State::Ready, Some(500)), (State::Ready, Some(700))],
            expected: 4,
        },
        HpaCase {
            name: "scale-up-ignores-failed-pods",
            current: 2,
            target: 30,
            pods: vec![
                (State::Ready, Some(500)),
                (State::Ready, Some(700)),
                (State::Failed, None),
                (State::Failed, None),
            ],
            expected: 4,
        },
        HpaCase {
            name: "missing-metrics",
            current: 4,
            target: 100,
            pods: vec![(State::Ready, Some(400)), (State::Ready, Some(95)), (State::Ready, None), (State::Ready, None)],
            expected: 3,
        },
        HpaCase {
            name: "missing-metrics-unready-scale-up",
            current: 3,
            target: 50,
            pods: vec![(State::NotReady, Some(100)), (State::Ready, Some(2000)), (State::Ready, None)],
            expected: 4,
        },
        HpaCase {
            name: "scale-down-exclude-unscheduled-pods",
            current: 5,
            target: 50,
            pods: vec![
                (State::Ready, Some(100)),
                (State::Pending, None),
                (State::Pending, None),
                (State::Pending, None),
                (State::Pending, None),
            ],
            expected: 1,
        },
        HpaCase {
            name: "scale-down-ignore-hot-cpu-pods",
            current: 5,
            target: 50,
            pods: vec![
                (State::Ready, Some(100)),
                (State::Ready, Some(300)),
                (State::Ready, Some(500)),
                (hot, Some(250)),
                (hot, Some(250)),
            ],
            expected: 2,
        },
        HpaCase {
            name: "missing-metrics-no-change-lt",
            current: 2,
            target: 100,
            pods: vec![(State::Ready, Some(600)), (State::Ready, None)],
            expected: 2,
        },
    ];
    let standin = StandIn::start().await.unwrap();
    let mut services = Vec::new();
    for case in &cases {
        deployment(&standin, case.name, "web", case.current);
        for (i, (state, level)) in case.pods.iter().enumerate() {
            let name = format!("web-{i}");
            let containers = [("container1", Some("1"), "1Gi"), ("container2", Some("1"), "1Gi")];
            pod(&standin, case.name, &name, "web", *state, &containers);
            if let Some(level) = level {
                let cpu = format!("{level}m");
                standin.set_pod_metrics(
                    case.name,
                    &name,
                    &usage(&[("container1", &cpu, "100Mi"), ("container2", &cpu, "100Mi")]),
                );
            }
        }
        let key = ServiceKey { namespace: case.name.into(), name: "web".into() };
        services.push((key, spec("web", json!({"cpuUtilization": case.target}), &[], true)));
    }
    let metrics = Arc::new(Metrics::new().unwrap());
    let source = ResourceSource::new(client(&standin).await, ResourceConfig::default());
    let mut observer = LiveObserver::new(None, None, Duration::from_secs(60), Duration::from_secs(60), metrics)
        .with_resources(source, Duration::from_secs(60));
    let list: Vec<_> = services.iter().map(|(k, s)| (k, s)).collect();
    let observed =
        observe_until(&mut observer, &list, |o| o.values().all(|o| o.cpu_percent_of_request.is_some())).await;

    let limits = RuntimeLimits { deadline: Duration::from_secs(1), ..RuntimeLimits::default() };
    let engine = testing::engine(limits);
    let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    for (case, (key, spec)) in cases.iter().zip(&services) {
        let plugin = load_plugin(&engine, key, spec, |_, _| None).unwrap();
        let at = Moment { now_ms, current: case.current, ready: case.current };
        let mut memory = ServiceMemory::default();
        let record = Decider::new(spec.clone(), plugin).decide(key, &mut memory, observed[key].clone(), at);
        match &record.plugin {
            PluginVerdict::Decided { replicas, reason, .. } => {
                assert_eq!(
                    *replicas, case.expected,
                    "{}: the HPA asks for {}; plugin: {reason}",
                    case.name, case.expected
                )
            }
            other => panic!("{}: the hpa plugin did not decide: {other:?}", case.name),
        }
    }
    standin.shutdown().await;
}
